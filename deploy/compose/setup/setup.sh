#!/bin/sh
# The `setup` one-shot of the compose stack (image eclipse-mosquitto, run as root), run before every
# other service on each `docker compose up`:
#   1. refuses secrets still at their .env.example value (setup/check-secrets.sh);
#   2. writes Mosquitto's password file from .env (MQTT_*_PASSWORD, hashed by mosquitto_passwd) and
#      installs the ACL files, owned by the broker's user, mode 0600, into the volume
#      `mosquitto-auth` that the broker mounts read-only at /mosquitto/auth.
# The MQTT user names are the client names in config/*.toml and mosquitto/acl: cell-1 (the agent),
# gw-plant1 (the gateway), scoring (the scoring service's alert sink).
set -eu
here="${ZHIZAO_SETUP_DIR:-/setup}"            # overridable for tests/deploy
out="${ZHIZAO_MOSQUITTO_AUTH:-/mosquitto/auth}"
owner="${ZHIZAO_MOSQUITTO_OWNER:-mosquitto:mosquitto}"
# shellcheck source=check-secrets.sh
. "$here/check-secrets.sh"
umask 077
tmp="$out/passwd.new"
: > "$tmp"
mosquitto_passwd -b "$tmp" cell-1 "$MQTT_AGENT_PASSWORD"
mosquitto_passwd -b "$tmp" gw-plant1 "$MQTT_GATEWAY_PASSWORD"
mosquitto_passwd -b "$tmp" scoring "$MQTT_SCORING_PASSWORD"
cp "$here/acl" "$out/acl.new"
cp "$here/acl-internal" "$out/acl-internal.new"
chown "$owner" "$tmp" "$out/acl.new" "$out/acl-internal.new"
chmod 0600 "$tmp" "$out/acl.new" "$out/acl-internal.new"
mv "$tmp" "$out/passwd"
mv "$out/acl.new" "$out/acl"
mv "$out/acl-internal.new" "$out/acl-internal"
echo "zhizao setup: secrets checked; Mosquitto password file and ACLs written (users cell-1, gw-plant1, scoring)"
