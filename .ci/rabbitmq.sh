#!/usr/bin/env bash
# Starts a private RabbitMQ node with the MQTT plugin on a free loopback
# port, for the tests against a 3.1.1-only broker (issue 11). Source it:
#
#   . .ci/rabbitmq.sh && rabbitmq_start   # exports MQTTSN_TEST_RABBITMQ
#   rabbitmq_stop
#
# The node has its own name, config, database and logs under a temporary
# directory; its AMQP listener is off, management is not loaded and the
# Erlang distribution port is a free one, so nothing clashes with a
# packaged RabbitMQ or with another run. Needs Debian's rabbitmq-server.

RABBITMQ_BIN=${RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}

# free_port prints a loopback TCP port nothing listens on (bash only: a
# fresh CI machine may have no python).
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
}

rabbitmq_start() {
  RABBITMQ_DIR=$(mktemp -d /tmp/mqttsn-rabbitmq.XXXXXX)
  local mqtt_port dist_port
  mqtt_port=$(free_port)
  dist_port=$(free_port)
  cat >"$RABBITMQ_DIR/rabbitmq.conf" <<EOF
listeners.tcp = none
mqtt.listeners.tcp.default = 127.0.0.1:$mqtt_port
mqtt.allow_anonymous = true
mqtt.vhost = /
mqtt.exchange = amq.topic
loopback_users = none
log.console = false
log.file.level = warning
EOF
  echo "[rabbitmq_mqtt]." >"$RABBITMQ_DIR/enabled_plugins"
  export RABBITMQ_NODENAME="mqttsn-test-$$@localhost"
  export RABBITMQ_CONFIG_FILE="$RABBITMQ_DIR/rabbitmq.conf"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$RABBITMQ_DIR/enabled_plugins"
  export RABBITMQ_MNESIA_BASE="$RABBITMQ_DIR/mnesia"
  export RABBITMQ_LOG_BASE="$RABBITMQ_DIR/log"
  export RABBITMQ_DIST_PORT="$dist_port"
  # The distribution port on loopback too: nothing of this node is
  # reachable from outside.
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  # HOME only for RabbitMQ's commands: the Erlang cookie lives there.
  HOME="$RABBITMQ_DIR" "$RABBITMQ_BIN/rabbitmq-plugins" enable --offline rabbitmq_mqtt >/dev/null
  HOME="$RABBITMQ_DIR" "$RABBITMQ_BIN/rabbitmq-server" >"$RABBITMQ_DIR/server.out" 2>&1 &
  RABBITMQ_PID=$!
  # Erlang boots slowly: wait until the MQTT port accepts (up to 120 s).
  local i
  for i in $(seq 1 240); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$mqtt_port") 2>/dev/null; then
      export MQTTSN_TEST_RABBITMQ="127.0.0.1:$mqtt_port"
      echo "RabbitMQ node $RABBITMQ_NODENAME: MQTT on $MQTTSN_TEST_RABBITMQ"
      return 0
    fi
    if ! kill -0 "$RABBITMQ_PID" 2>/dev/null; then
      echo "RabbitMQ exited before listening:"; cat "$RABBITMQ_DIR/server.out"
      return 1
    fi
    sleep 0.5
  done
  echo "RabbitMQ not listening on $mqtt_port after 120 s:"; cat "$RABBITMQ_DIR/server.out"
  rabbitmq_stop
  return 1
}

rabbitmq_stop() {
  if [ -n "${RABBITMQ_PID:-}" ]; then
    HOME="$RABBITMQ_DIR" "$RABBITMQ_BIN/rabbitmqctl" -n "$RABBITMQ_NODENAME" stop >/dev/null 2>&1 || kill "$RABBITMQ_PID" 2>/dev/null || true
    wait "$RABBITMQ_PID" 2>/dev/null || true
    RABBITMQ_PID=
  fi
  if [ -n "${RABBITMQ_DIR:-}" ]; then
    rm -rf "$RABBITMQ_DIR"
    RABBITMQ_DIR=
  fi
}
