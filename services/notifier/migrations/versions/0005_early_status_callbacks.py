"""early status callbacks

A Twilio status callback can arrive before the sender has recorded the provider id it names
(Twilio may call back before its answer to the create request has been committed here). Such
callbacks were matched against nothing and dropped; they are now kept in
`early_status_callbacks` (one row per provider id and status, so a replay changes nothing) and
applied in the transaction that records the id.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 09:00:00.000000
"""

import servicekit.database
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('early_status_callbacks',
    sa.Column('provider_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('received_at', servicekit.database.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('provider_id', 'status', name='pk_early_status_callbacks')
    )
    with op.batch_alter_table('early_status_callbacks', schema=None) as batch_op:
        batch_op.create_index('ix_early_status_callbacks_received', ['received_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('early_status_callbacks', schema=None) as batch_op:
        batch_op.drop_index('ix_early_status_callbacks_received')
    op.drop_table('early_status_callbacks')
