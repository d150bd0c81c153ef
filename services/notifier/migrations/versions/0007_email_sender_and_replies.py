"""email sender name and email replies

Family emails go out in the school's name (`notifications.sender_name`), and a parent's email
reply is stored beside SMS replies: `replies.from_phone` holds an email address for those, so
it is widened to an address's maximum length.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 05:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('notifications', sa.Column('sender_name', sa.String(length=200), nullable=True))
    with op.batch_alter_table('replies') as batch:
        batch.alter_column('from_phone', existing_type=sa.String(length=32),
                           type_=sa.String(length=254), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('replies') as batch:
        batch.alter_column('from_phone', existing_type=sa.String(length=254),
                           type_=sa.String(length=32), existing_nullable=False)
    op.drop_column('notifications', 'sender_name')
