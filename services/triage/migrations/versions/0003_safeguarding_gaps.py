"""safeguarding gaps: request ids on actions, task details and due times

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 21:40:00
"""

import servicekit.database
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('scheduled_actions', schema=None) as batch_op:
        # The contact request an action was handed over in, so an amendment can cancel it.
        batch_op.add_column(sa.Column('request_id', sa.String(length=200), nullable=True))
        # How many times the action was re-armed after a cancelled request: a new request id.
        batch_op.add_column(sa.Column('generation', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.create_index('ix_scheduled_actions_request', ['request_id'], unique=False)
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('detail', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('due_at', servicekit.database.UtcDateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_column('due_at')
        batch_op.drop_column('detail')
    with op.batch_alter_table('scheduled_actions', schema=None) as batch_op:
        batch_op.drop_index('ix_scheduled_actions_request')
        batch_op.drop_column('generation')
        batch_op.drop_column('request_id')
