"""history lookups: the marks key carries the code; the deduplication log is found by age

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 11:00:00

On the 190th school day (bench.year), reading each pupil's recent marks fetched one heap
page per mark, because a pupil's marks are written a day apart and lie on different pages.
With `code` in the primary key's index, PostgreSQL answers those reads from the index alone
(an index-only scan); SQLite has no INCLUDE and keeps its key as it was. Rebuilding the key
takes the table's lock for as long as the build (about 7 s per 2 million marks on the bench
machine): run this upgrade outside school hours.

The purge of `received_events` looked for expired rows with a sequential scan of the whole
log, once per batch of 1,000 and once more on every hourly pass with nothing to delete.
"""

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE marks DROP CONSTRAINT marks_pkey, ADD CONSTRAINT marks_pkey '
                   'PRIMARY KEY (school_urn, pupil_id, date, session) INCLUDE (code)')
    op.create_index('ix_received_events_received', 'received_events', ['received_at'])


def downgrade() -> None:
    op.drop_index('ix_received_events_received', table_name='received_events')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE marks DROP CONSTRAINT marks_pkey, ADD CONSTRAINT marks_pkey '
                   'PRIMARY KEY (school_urn, pupil_id, date, session)')
