"""shared rate limit

The per-channel send rate is shared by every notifier replica: `rate_slots` holds each
channel's next free slot (notifier.rate_limit.SharedRateLimit).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 11:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'rate_slots',
        sa.Column('channel', sa.String(length=8), nullable=False),
        sa.Column('next_at', sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint('channel'),
    )


def downgrade() -> None:
    op.drop_table('rate_slots')
