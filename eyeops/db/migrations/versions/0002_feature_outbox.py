"""feature outbox: the durable queue of Feast pushes

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('feature_outbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('exam_id', sa.String(length=64), nullable=False),
    sa.Column('enqueued_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('pushed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['exam_id'], ['exams.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_feature_outbox_exam_id'), 'feature_outbox', ['exam_id'], unique=False)
    op.create_index('ix_feature_outbox_due', 'feature_outbox', ['pushed_at', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_feature_outbox_due', table_name='feature_outbox')
    op.drop_index(op.f('ix_feature_outbox_exam_id'), table_name='feature_outbox')
    op.drop_table('feature_outbox')
