"""task assignee (the staff web app), and an index of the N marks still standing

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 04:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('assignee', sa.String(length=200), nullable=True))
    op.create_index('ix_marks_unexplained', 'marks', ['school_urn', 'date'], unique=False,
                    sqlite_where=sa.text("code = 'N'"), postgresql_where=sa.text("code = 'N'"))


def downgrade() -> None:
    op.drop_index('ix_marks_unexplained', table_name='marks')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_column('assignee')
