"""explanations: parents who tell the school first

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 05:00:00
"""

import sqlalchemy as sa
from alembic import op
from servicekit.database import UtcDateTime

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'explanations',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('school_urn', sa.String(length=8), nullable=False),
        sa.Column('message_id', sa.String(length=100), nullable=False),
        sa.Column('date', sa.Date(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('contact_refs', sa.JSON(), nullable=False),
        sa.Column('matched', sa.Boolean(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('cancelled', sa.JSON(), nullable=False),
        sa.Column('received_at', UtcDateTime(timezone=True), nullable=False),
        sa.Column('decided_at', UtcDateTime(timezone=True), nullable=True),
        sa.Column('decided_by', sa.String(length=64), nullable=True),
        sa.Column('code', sa.String(length=3), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('message_id', 'school_urn', name='uq_explanations_message'),
    )
    op.create_index('ix_explanations_status', 'explanations', ['school_urn', 'status'])
    op.create_table(
        'explanation_pupils',
        sa.Column('explanation_id', sa.Integer(), nullable=False),
        sa.Column('pupil_id', sa.String(length=64), nullable=False),
        sa.Column('school_urn', sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint('explanation_id', 'pupil_id'),
    )
    op.create_index('ix_explanation_pupils_pupil', 'explanation_pupils',
                    ['school_urn', 'pupil_id'])


def downgrade() -> None:
    op.drop_index('ix_explanation_pupils_pupil', table_name='explanation_pupils')
    op.drop_table('explanation_pupils')
    op.drop_index('ix_explanations_status', table_name='explanations')
    op.drop_table('explanations')
