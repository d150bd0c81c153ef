-- Run once by the postgres image, on first start with an empty data volume
-- (later edits need `docker compose down -v`). Each service owns its database
-- and applies its own Alembic migrations at start-up.
CREATE DATABASE triage;
CREATE DATABASE notifier;
CREATE DATABASE staff;
