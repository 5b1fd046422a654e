"""fields: the second recogniser's reading and the proposal a reviewer confirms

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('fields', schema=None) as batch_op:
        batch_op.add_column(sa.Column('second_text', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('second_confidence', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('proposal', sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('fields', schema=None) as batch_op:
        batch_op.drop_column('proposal')
        batch_op.drop_column('second_confidence')
        batch_op.drop_column('second_text')
