#!/bin/bash
# The `influx-tokens` one-shot of the compose stack (image influxdb, with the operator token; run on
# every `docker compose up`, after InfluxDB is healthy). Issues one InfluxDB API token per service,
# scoped to the one bucket, and writes each into that service's own volume (file name = the
# environment variable config/entrypoint.sh exports from it):
#   ingest    read + write on the bucket  -> /out/ingest/ZHIZAO_INGEST_INFLUX_TOKEN      (uid 10001)
#   kpi-feed  read + write on the bucket  -> /out/kpi-feed/ZHIZAO_KPI_FEED_INFLUX_TOKEN (uid 10001)
#   grafana   read only on the bucket     -> /out/grafana/ZHIZAO_INFLUX_TOKEN           (uid 472)
# Ingest reads too (dedup records reloaded at start, the series/latest/catalogue/events and KPI API),
# so its token is read + write — but on its bucket only, never the operator (all-access) token.
# The tokens work on the v1-compatible API (/write, /query with `Authorization: Token ...`) through
# the DBRP mapping of influxdb/10-zhizao-dbrp.sh. A token whose file exists and that InfluxDB still
# knows is kept; a missing or revoked one is issued anew (rotate: delete the file, or the token in
# InfluxDB, and `docker compose up -d`). Environment: INFLUX_HOST, INFLUX_TOKEN (operator),
# INFLUX_ORG, ZHIZAO_INFLUX_BUCKET.
set -euo pipefail
: "${INFLUX_HOST:?}" "${INFLUX_TOKEN:?}" "${INFLUX_ORG:?}" "${ZHIZAO_INFLUX_BUCKET:?}"
umask 077
bucket_id="$(influx bucket list --name "${ZHIZAO_INFLUX_BUCKET}" --hide-headers | cut -f1)"
[ -n "${bucket_id}" ] || { echo "zhizao: bucket ${ZHIZAO_INFLUX_BUCKET} not found" >&2; exit 1; }
known="$(influx auth list --json)"

issue() {  # issue SERVICE FILE-NAME OWNER-UID PERMISSION-FLAGS...
  local service=$1 name=$2 owner=$3
  shift 3
  local file="/out/${service}/${name}"
  if [ -s "${file}" ] && grep -qF "\"token\": \"$(cat "${file}")\"" <<<"${known}"; then
    echo "zhizao: ${service} keeps its InfluxDB token"
  else
    local token
    token="$(influx auth create --org "${INFLUX_ORG}" --description "zhizao ${service}" "$@" --json \
             | sed -n 's/^[[:space:]]*"token":[[:space:]]*"\([^"]*\)".*/\1/p')"
    [ -n "${token}" ] || { echo "zhizao: no token issued for ${service}" >&2; exit 1; }
    printf '%s' "${token}" > "${file}.new"
    mv "${file}.new" "${file}"
    echo "zhizao: issued ${service}'s InfluxDB token ($*)"
  fi
  chown "${owner}:${owner}" "${file}"
  chmod 0400 "${file}"
}

issue ingest ZHIZAO_INGEST_INFLUX_TOKEN 10001 --read-bucket "${bucket_id}" --write-bucket "${bucket_id}"
issue kpi-feed ZHIZAO_KPI_FEED_INFLUX_TOKEN 10001 --read-bucket "${bucket_id}" --write-bucket "${bucket_id}"
issue grafana ZHIZAO_INFLUX_TOKEN 472 --read-bucket "${bucket_id}"
