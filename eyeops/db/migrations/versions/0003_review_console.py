"""review console: exam version and reviewer, kept images, audit, labelled crops

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('exams', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('reviewed_by', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('corners', sa.Text(), nullable=True))
    op.create_table('exam_images',
    sa.Column('exam_id', sa.String(length=64), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['exam_id'], ['exams.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('exam_id')
    )
    op.create_table('review_audit',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('exam_id', sa.String(length=64), nullable=False),
    sa.Column('field_name', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('old_value', sa.Text(), nullable=True),
    sa.Column('new_value', sa.Text(), nullable=True),
    sa.Column('user', sa.String(length=128), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['exam_id'], ['exams.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_review_audit_exam_id'), 'review_audit', ['exam_id'], unique=False)
    op.create_table('labelled_crops',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('exam_id', sa.String(length=64), nullable=False),
    sa.Column('device_kind', sa.String(length=64), nullable=False),
    sa.Column('field_name', sa.String(length=64), nullable=False),
    sa.Column('grammar', sa.Text(), nullable=False),
    sa.Column('text', sa.String(length=128), nullable=False),
    sa.Column('corrected', sa.Integer(), nullable=False),
    sa.Column('crop', sa.LargeBinary(), nullable=False),
    sa.Column('labelled_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['exam_id'], ['exams.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_labelled_crops_exam_id'), 'labelled_crops', ['exam_id'], unique=False)
    op.create_index(op.f('ix_labelled_crops_device_kind'), 'labelled_crops', ['device_kind'], unique=False)
    op.create_index('ix_review_queue_open', 'review_queue', ['resolved_at', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_review_queue_open', table_name='review_queue')
    op.drop_index(op.f('ix_labelled_crops_device_kind'), table_name='labelled_crops')
    op.drop_index(op.f('ix_labelled_crops_exam_id'), table_name='labelled_crops')
    op.drop_table('labelled_crops')
    op.drop_index(op.f('ix_review_audit_exam_id'), table_name='review_audit')
    op.drop_table('review_audit')
    op.drop_table('exam_images')
    with op.batch_alter_table('exams', schema=None) as batch_op:
        batch_op.drop_column('corners')
        batch_op.drop_column('reviewed_at')
        batch_op.drop_column('reviewed_by')
        batch_op.drop_column('version')
