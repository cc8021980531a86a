#!/bin/sh
# Entry point of the zhizao services (and Grafana) in the compose stack: gives the process its own
# secrets, and only those, without writing them into a committed file.
#   - every file in /run/zhizao-env (this service's volume of scoped InfluxDB tokens, written by
#     influxdb/zhizao-tokens.sh) is exported as the variable named like the file, e.g.
#     ZHIZAO_INGEST_INFLUX_TOKEN;
#   - an argument after --config whose file contains @MQTT_PASSWORD@ is a template: it is rendered
#     with $MQTT_PASSWORD (this service's own broker password from .env) into /tmp/zhizao/ (mode
#     0600), and the rendered copy is passed instead.
# Then it execs its arguments (`zhizao ...`, or Grafana's /run.sh).
set -eu
umask 077
if [ -d /run/zhizao-env ]; then
  for f in /run/zhizao-env/*; do
    [ -f "$f" ] || continue
    name=$(basename "$f")
    case "$name" in *[!A-Z0-9_]*) continue;; esac
    value=$(cat "$f")
    export "$name=$value"
  done
fi
n=$#
prev=""
while [ "$n" -gt 0 ]; do
  arg=$1
  shift
  n=$((n - 1))
  if [ "$prev" = "--config" ] && [ -f "$arg" ] && grep -q '@MQTT_PASSWORD@' "$arg"; then
    : "${MQTT_PASSWORD:?$arg needs MQTT_PASSWORD, the broker password of this service, in the environment}"
    mkdir -p /tmp/zhizao
    rendered="/tmp/zhizao/$(basename "$arg")"
    escaped=$(printf '%s' "$MQTT_PASSWORD" | sed 's/[\\&|]/\\&/g')
    sed "s|@MQTT_PASSWORD@|$escaped|g" "$arg" > "$rendered"
    arg=$rendered
  fi
  set -- "$@" "$arg"
  prev=$arg
done
exec "$@"
