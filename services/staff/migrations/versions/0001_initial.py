"""people, sessions, notes and the audit log

Revision ID: 0001
Revises:
Create Date: 2026-12-01 04:00:00
"""

import servicekit.database
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('staff_audit_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', servicekit.database.UtcDateTime(timezone=True), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('user_name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('school_urn', sa.String(length=8), nullable=False),
    sa.Column('pupil_id', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_audit_log'))
    )
    with op.batch_alter_table('staff_audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_staff_audit_log_school', ['school_urn', 'at'], unique=False)

    op.create_table('staff_notes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('school_urn', sa.String(length=8), nullable=False),
    sa.Column('pupil_id', sa.String(length=64), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('author_name', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', servicekit.database.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_notes'))
    )
    with op.batch_alter_table('staff_notes', schema=None) as batch_op:
        batch_op.create_index('ix_staff_notes_pupil', ['school_urn', 'pupil_id'], unique=False)

    op.create_table('staff_sessions',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('created_at', servicekit.database.UtcDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', servicekit.database.UtcDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', servicekit.database.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_staff_sessions'))
    )
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_sessions_user_id'), ['user_id'], unique=False)

    op.create_table('staff_users',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('schools', sa.JSON(), nullable=True),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('locked_until', servicekit.database.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', servicekit.database.UtcDateTime(timezone=True), nullable=False),
    sa.Column('disabled_at', servicekit.database.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_users')),
    sa.UniqueConstraint('email', name=op.f('uq_staff_users_email'))
    )


def downgrade() -> None:
    op.drop_table('staff_users')
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_sessions_user_id'))

    op.drop_table('staff_sessions')
    with op.batch_alter_table('staff_notes', schema=None) as batch_op:
        batch_op.drop_index('ix_staff_notes_pupil')

    op.drop_table('staff_notes')
    with op.batch_alter_table('staff_audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_staff_audit_log_school')

    op.drop_table('staff_audit_log')
