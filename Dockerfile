# One image for both services; the command picks one (default: triage).
#   docker build -t absence-followup .
#   docker run ... absence-followup python -m notifier
FROM python:3.11-slim

# *_HOST: the services default to 127.0.0.1, which is unreachable from outside a container.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    TEMPLATES_DIR=/app/templates \
    OUTBOX_DIR=/app/var/outbox \
    TRIAGE_HOST=0.0.0.0 \
    NOTIFIER_HOST=0.0.0.0

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home app

WORKDIR /app

# Pinned runtime dependencies first (hash-checked; no test or lint tools), so this layer is
# reused until the lock file changes.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

COPY pyproject.toml ./
COPY services/ services/
COPY templates/ templates/
# --no-deps: every runtime dependency came from requirements.lock above.
# var/ holds the SQLite defaults and the SMS outbox; a named volume mounted on
# /app/var/outbox takes this ownership when first created.
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build services/*.egg-info \
    && mkdir -p /app/var/outbox \
    && chown -R app:app /app/var

USER app

EXPOSE 8001 8002

# Only one service runs per container, so whichever of the two ports answers is it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request\nfor port in (os.environ.get('TRIAGE_PORT', '8001'), os.environ.get('NOTIFIER_PORT', '8002')):\n    try:\n        urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=3)\n        sys.exit(0)\n    except Exception:\n        pass\nsys.exit(1)"]

CMD ["python", "-m", "triage"]
