#!/bin/sh
# Refuse to start the stack with a secret still at its .env.example value (or empty, or too short).
# Sourced by setup/setup.sh (the `setup` one-shot every other service waits for); also runnable
# alone: `sh setup/check-secrets.sh` with the variables in the environment (`set -a; . ./.env`).
# Exits 1 naming every bad variable and how to generate a value.
zhizao_bad=""
for var in INFLUX_PASSWORD INFLUX_TOKEN GRAFANA_ADMIN_PASSWORD \
           MQTT_AGENT_PASSWORD MQTT_GATEWAY_PASSWORD MQTT_SCORING_PASSWORD; do
  eval "value=\${$var-}"
  # shellcheck disable=SC2154  # value is set by the eval above
  case "$value" in
    "") zhizao_bad="$zhizao_bad
  $var is empty";;
    *[Cc][Hh][Aa][Nn][Gg][Ee]-[Mm][Ee]*) zhizao_bad="$zhizao_bad
  $var still has the placeholder value of .env.example";;
    *)
      if [ "${#value}" -lt 16 ]; then
        zhizao_bad="$zhizao_bad
  $var is shorter than 16 characters"
      fi
      # The MQTT passwords go into TOML strings and the Mosquitto password file: keep them plain.
      case "$var" in MQTT_*)
        case "$value" in *[!A-Za-z0-9._~+/=-]*) zhizao_bad="$zhizao_bad
  $var may only contain A-Z a-z 0-9 . _ ~ + / = -";; esac;;
      esac;;
  esac
done
if [ -n "$zhizao_bad" ]; then
  cat >&2 <<MSG
zhizao setup: refusing to start with these secrets in .env:$zhizao_bad
A new stack: set each to a fresh random value, e.g.:  openssl rand -hex 32
(then \`docker compose up -d\` again; deploy/compose/README.md, "Walk-through").
An existing stack (an upgrade): INFLUX_PASSWORD, INFLUX_TOKEN and GRAFANA_ADMIN_PASSWORD only take
effect when InfluxDB and Grafana are first set up — do not change them, they must keep the values
the stack was created with (rotate them in InfluxDB/Grafana first); new variables (MQTT_*_PASSWORD)
get fresh values. UPGRADING.md says what else changed.
MSG
  exit 1
fi
