"""traffic_crops: fields of machine-accepted exams both recognisers read alike (learning from traffic)

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('traffic_crops',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('exam_id', sa.String(length=64), nullable=False),
    sa.Column('field_name', sa.String(length=64), nullable=False),
    sa.Column('grammar', sa.Text(), nullable=False),
    sa.Column('text', sa.String(length=128), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('second_text', sa.String(length=128), nullable=False),
    sa.Column('second_confidence', sa.Float(), nullable=False),
    sa.Column('crop', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['exam_id'], ['exams.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_traffic_crops_exam_id'), 'traffic_crops', ['exam_id'], unique=False)
    op.create_index(op.f('ix_traffic_crops_created_at'), 'traffic_crops', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_traffic_crops_created_at'), table_name='traffic_crops')
    op.drop_index(op.f('ix_traffic_crops_exam_id'), table_name='traffic_crops')
    op.drop_table('traffic_crops')
