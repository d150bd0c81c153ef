"""wonde schools: state and cursors

Revision ID: 0001
Revises:
Create Date: 2026-12-01 05:00:00
"""

import servicekit.database
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('wonde_schools',
    sa.Column('wonde_id', sa.String(length=32), nullable=False),
    sa.Column('urn', sa.String(length=8), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('refused_status', sa.Integer(), nullable=True),
    sa.Column('refused_at', servicekit.database.UtcDateTime(timezone=True), nullable=True),
    sa.Column('roster_cursor', servicekit.database.UtcDateTime(timezone=True), nullable=True),
    sa.Column('attendance_cursor', servicekit.database.UtcDateTime(timezone=True),
              nullable=True),
    sa.Column('roster_digest', sa.String(length=64), nullable=True),
    sa.Column('last_synced_at', servicekit.database.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('wonde_id', name=op.f('pk_wonde_schools'))
    )


def downgrade() -> None:
    op.drop_table('wonde_schools')
