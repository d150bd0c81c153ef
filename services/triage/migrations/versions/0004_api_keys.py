"""api keys: one per caller, scoped to schools and permissions, stored hashed

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 02:00:00
"""

import servicekit.database
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('schools', sa.JSON(), nullable=True),
    sa.Column('created_at', servicekit.database.UtcDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', servicekit.database.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name='pk_api_keys')
    )


def downgrade() -> None:
    op.drop_table('api_keys')
