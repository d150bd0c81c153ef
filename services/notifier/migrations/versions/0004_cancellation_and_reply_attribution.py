"""cancellation, send guard and reply attribution

Adds what a cancelled contact request needs (docs: ContactCancelled): the reason on the
chain (`contact_requests.cancel_reason`, state `cancelled`), and on each notification the
cancellation flag the dispatcher's guard checks before a provider call, when that call
started, and a note for staff. Replies are now attributed through the notifications that
texted a number (`ix_notifications_to`), and each inbound MessageSid is recorded once
(`inbound_messages`, filled from the replies already stored so their replays stay no-ops).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:00:00.000000
"""

import servicekit.database
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancel_requested', sa.Boolean(),
                                      server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('send_started_at',
                                      servicekit.database.UtcDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('note', sa.Text(), nullable=True))
        batch_op.create_index('ix_notifications_to', ['to'], unique=False)

    with op.batch_alter_table('contact_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancel_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('cancelled_pupils', sa.JSON(), nullable=True))

    op.create_table('inbound_messages',
    sa.Column('message_sid', sa.String(length=64), nullable=False),
    sa.Column('received_at', servicekit.database.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('message_sid')
    )
    op.execute(
        "INSERT INTO inbound_messages (message_sid, received_at) "
        "SELECT message_sid, MIN(received_at) FROM replies GROUP BY message_sid"
    )


def downgrade() -> None:
    op.drop_table('inbound_messages')
    with op.batch_alter_table('contact_requests', schema=None) as batch_op:
        batch_op.drop_column('cancelled_pupils')
        batch_op.drop_column('cancel_reason')

    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_to')
        batch_op.drop_column('note')
        batch_op.drop_column('send_started_at')
        batch_op.drop_column('cancel_requested')
