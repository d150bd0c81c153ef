#!/usr/bin/env bash
# `make run`: the services and the staff web app on the embedded defaults (SQLite, local
# outbox), in the foreground. Ctrl-C stops them all. Migrations are applied by each service as it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
# Everything created from here on (var/, the token file, the databases, the outbox) is the
# user's alone: it holds pupils' names and families' numbers (docs/security.md).
umask 077
mkdir -p var
if [ -z "${API_TOKEN:-}" ]; then
  [ -s var/api-token ] || .venv/bin/python -c "import secrets; print(secrets.token_urlsafe(24))" > var/api-token
  chmod 600 var/api-token
  API_TOKEN=$(cat var/api-token)
fi
# Both services need the same key: triage signs contact requests with it, the notifier sends
# only what verifies.
if [ -z "${CONTACT_SIGNING_KEY:-}" ]; then
  [ -s var/contact-signing-key ] || (umask 077; .venv/bin/python -c "import secrets; print(secrets.token_urlsafe(32))" > var/contact-signing-key)
  CONTACT_SIGNING_KEY=$(cat var/contact-signing-key)
fi
# A local Twilio auth token lets `make demo` sign a parent's reply to /twilio/inbound the way
# Twilio would. Without an account SID the notifier still writes texts to the outbox
# (notifier/app.py build_providers): nothing is sent to Twilio. A configured account is left alone.
if [ -z "${TWILIO_ACCOUNT_SID:-}" ] && [ -z "${TWILIO_AUTH_TOKEN:-}" ]; then
  [ -s var/twilio-auth-token ] || .venv/bin/python -c "import secrets; print(secrets.token_hex(16))" > var/twilio-auth-token
  TWILIO_AUTH_TOKEN=$(cat var/twilio-auth-token)
  export TWILIO_AUTH_TOKEN
fi
export API_TOKEN CONTACT_SIGNING_KEY
# Social workers' alert emails link to the pupil on the staff web app.
export NOTIFIER_STAFF_URL="${NOTIFIER_STAFF_URL:-http://127.0.0.1:${STAFF_PORT:-8003}}"

# Sign-ins for the demo school's staff web app, made once; one password for the three demo
# accounts, kept in var/ (docs/staff.md "Trying it").
if [ ! -s var/staff-demo-password ]; then
  .venv/bin/python -c "import secrets; print(secrets.token_urlsafe(12))" > var/staff-demo-password
  for account in "officer attendance_officer Demo-Attendance-Officer" "dsl dsl Demo-Safeguarding-Lead" \
                 "social.worker social_worker Demo-Social-Worker"; do
    set -- $account
    school=(--school 100001); [ "$2" = social_worker ] && school=()
    .venv/bin/python -m staff users add --email "$1@demo.example" --name "${3//-/ }" --role "$2" \
      "${school[@]}" --password-stdin < var/staff-demo-password >/dev/null
  done
fi

.venv/bin/python -m triage & triage=$!
.venv/bin/python -m notifier & notifier=$!
.venv/bin/python -m staff & staff=$!
# The MIS sync through Wonde (README "Connecting a school's MIS") only when there is a token.
mis_sync=
if [ -n "${WONDE_TOKEN:-}" ]; then
  .venv/bin/python -m mis_sync & mis_sync=$!
fi
trap 'kill $triage $notifier $staff $mis_sync 2>/dev/null; wait' INT TERM EXIT

for port in "${TRIAGE_PORT:-8001}" "${NOTIFIER_PORT:-8002}" "${STAFF_PORT:-8003}"; do
  for _ in $(seq 1 60); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 $triage 2>/dev/null && kill -0 $notifier 2>/dev/null && kill -0 $staff 2>/dev/null \
      || { echo "a service failed to start" >&2; exit 1; }
    sleep 0.5
  done
done

cat <<MSG

  Staff web app: http://127.0.0.1:${STAFF_PORT:-8003}/
                 sign in as officer@demo.example (also dsl@ and social.worker@demo.example)
                 password: $(cat var/staff-demo-password)   (saved in var/staff-demo-password)
  Triage API:    http://127.0.0.1:${TRIAGE_PORT:-8001}/docs
  Notifier API:  http://127.0.0.1:${NOTIFIER_PORT:-8002}/docs
  API token:     $API_TOKEN   (Authorization: Bearer \$API_TOKEN; saved in var/api-token)
  Outbox:        ${OUTBOX_DIR:-var/outbox}/  (messages land here while no Twilio/SMTP is configured)

  In another terminal, 'make demo' loads a sample school with eight weeks of register marks
  and this morning's absences, then open the staff web app and sign in.
  Ctrl-C stops all three.

MSG
wait -n $triage $notifier $staff $mis_sync
