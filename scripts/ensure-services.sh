#!/usr/bin/env bash
# Make sure the local RabbitMQ / PostgreSQL are up: start them if they are installed but
# stopped. Services already listening are left alone; services not installed are reported.
# `chromium` (the browser tests' browser) is installed from Debian when missing and we are root:
# Playwright cannot download its own browser here, so never `playwright install`.
set -u

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do
    port_open "$port" && return 0
    sleep 1
  done
  echo "$name did not start listening on port $port" >&2
  return 1
}

ensure_rabbitmq() {
  port_open 5672 && return 0
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "starting RabbitMQ..."
    rabbitmq-server -detached >/dev/null 2>&1 || true
    wait_for_port 5672 RabbitMQ
    # The port opens before the broker accepts AMQP sessions.
    command -v rabbitmqctl >/dev/null 2>&1 && rabbitmqctl await_startup >/dev/null 2>&1 || true
  else
    echo "RabbitMQ is not running on 127.0.0.1:5672 and is not installed (apt-get install rabbitmq-server)" >&2
    return 1
  fi
}

ensure_postgresql() {
  port_open 5432 && return 0
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL..."
    for version in $(ls /etc/postgresql); do
      pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
    done
    wait_for_port 5432 PostgreSQL
  else
    echo "PostgreSQL is not running on 127.0.0.1:5432 and is not installed (apt-get install postgresql)" >&2
    return 1
  fi
}

ensure_chromium() {
  command -v chromium >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "chromium is not installed: sudo apt-get install chromium (the browser tests drive it)" >&2
    return 1
  fi
  echo "installing chromium..."
  # The package lists are refreshed only when they turn out to be stale.
  apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
  apt_install || { apt-get update -q >/dev/null && apt_install; } || {
    echo "could not install chromium (apt-get install chromium)" >&2
    return 1
  }
}

status=0
for service in "$@"; do
  case "$service" in
    rabbitmq) ensure_rabbitmq || status=1 ;;
    postgresql) ensure_postgresql || status=1 ;;
    chromium) ensure_chromium || status=1 ;;
    *) echo "unknown service $service" >&2; status=1 ;;
  esac
done
exit $status
