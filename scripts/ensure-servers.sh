#!/usr/bin/env bash
# Make sure the local PostgreSQL and RabbitMQ answer, starting (or restarting) them if they do not.
# Used by .ci/run; harmless to run by hand. An open port is not enough: a broker that ran out of
# file descriptors keeps its port open but never finishes a handshake, so RabbitMQ is probed with
# a real AMQP protocol header and restarted, with a raised descriptor limit, when it stays silent.
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

# A working broker answers the AMQP 0-9-1 header with a Connection.Start method frame (type 1).
amqp_answers() {
  local reply
  reply=$(timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672 && printf "AMQP\x00\x00\x09\x01" >&3 \
    && head -c 1 <&3 | od -An -tx1' 2>/dev/null | tr -d ' \n') || true
  [ "$reply" = "01" ]
}

wait_amqp() {
  for _ in $(seq 1 "$1"); do
    amqp_answers && return 0
    sleep 1
  done
  return 1
}

broker_fd_limit() {
  local pid
  pid=$(pgrep -f beam.smp | head -n1) || return 1
  awk '/Max open files/ {print $4}' "/proc/$pid/limits"
}

start_rabbitmq() {
  # The broker inherits this shell's soft limit; 1024 is too few for a test run's connections.
  # `rabbitmq-server` run as root switches user through su, whose PAM session resets the limit to
  # 1024; setpriv switches without PAM, so the raised limit reaches the broker.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
  if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1 && command -v setpriv >/dev/null; then
    (cd /var/lib/rabbitmq && HOME=/var/lib/rabbitmq \
      setpriv --reuid rabbitmq --regid rabbitmq --init-groups rabbitmq-server -detached)
  else
    rabbitmq-server -detached
  fi
}

stop_rabbitmq() {
  timeout 30 rabbitmqctl stop >/dev/null 2>&1 || true
  pkill -9 -f beam.smp 2>/dev/null || true
  pkill -9 -x epmd 2>/dev/null || true
  sleep 1
}

if ! port_open 5432; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
wait_port PostgreSQL 5432
# The test suite runs several five-service stacks at once; PostgreSQL's default 100 connections
# can run out under them ("too many clients already"), so make sure there is room.
wanted_connections=300
current_connections=$(psql -h 127.0.0.1 -U postgres -Atc 'SHOW max_connections' 2>/dev/null || echo 0)
if [ "${current_connections:-0}" -lt "$wanted_connections" ]; then
  echo "PostgreSQL allows $current_connections connections: raising it to $wanted_connections (restart)"
  psql -h 127.0.0.1 -U postgres -qc "ALTER SYSTEM SET max_connections = $wanted_connections"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main restart
  wait_port PostgreSQL 5432
fi

if ! port_open 5672; then
  echo "starting RabbitMQ"
  start_rabbitmq
  wait_port RabbitMQ 5672
fi
limit=$(broker_fd_limit || echo 0)
if ! wait_amqp 20 || [ "${limit:-0}" -lt 4096 ]; then
  echo "RabbitMQ does not answer the AMQP handshake or allows only ${limit:-?} open files: restarting it"
  stop_rabbitmq
  start_rabbitmq
  if ! wait_amqp 90; then
    # A broker killed mid-write can leave a database it cannot boot from; start from an empty one
    # (tests create their own vhosts, nothing else lives there).
    echo "RabbitMQ still silent: restarting it on a fresh database" >&2
    stop_rabbitmq
    mnesia=/var/lib/rabbitmq/mnesia
    [ -d "$mnesia" ] && mv "$mnesia" "$mnesia.broken.$(date +%s)"
    start_rabbitmq
    wait_amqp 90 || { echo "RabbitMQ did not come up" >&2; exit 1; }
  fi
fi
echo "RabbitMQ answers on port 5672 (open files allowed: $(broker_fd_limit || echo '?'))"
# The AMQP port answers before the broker's own CLI does; wait until it answers a ping too.
for _ in $(seq 1 60); do
  rabbitmq-diagnostics -q ping >/dev/null 2>&1 && break
  sleep 1
done
