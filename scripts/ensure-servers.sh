#!/usr/bin/env bash
# Make sure the local PostgreSQL and RabbitMQ answer, starting them if they do not.
# Used by .ci/run; harmless to run by hand.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 60); do
    port_open "$port" && { echo "$name is up on port $port"; return 0; }
    sleep 1
  done
  echo "$name did not come up on port $port" >&2
  return 1
}

if ! port_open 5432; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
wait_port PostgreSQL 5432

if ! port_open 5672; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached
fi
wait_port RabbitMQ 5672
# The AMQP port opens before the broker accepts work; wait until it answers a ping.
for _ in $(seq 1 60); do
  rabbitmq-diagnostics -q ping >/dev/null 2>&1 && break
  sleep 1
done
