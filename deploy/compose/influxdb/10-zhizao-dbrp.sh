#!/bin/bash
# InfluxDB 2.x init script (run once by the image's entrypoint after the first-start setup, with the
# admin token configured for the `influx` CLI): map the v1 database/retention policy zhizao uses
# (ZHIZAO_INFLUX_DATABASE/autogen) onto the bucket, so InfluxQL on /query and /write?db= — which
# ingest and Grafana speak — reach it.
set -euo pipefail
db="${ZHIZAO_INFLUX_DATABASE:-zhizao}"
bucket_id="$(influx bucket list --name "${DOCKER_INFLUXDB_INIT_BUCKET}" --hide-headers | cut -f1)"
if influx v1 dbrp list --db "${db}" --hide-headers 2>/dev/null | grep -q .; then
  echo "zhizao: DBRP mapping for ${db} exists"
else
  influx v1 dbrp create --db "${db}" --rp autogen --bucket-id "${bucket_id}" --default
  echo "zhizao: mapped database ${db}/autogen to bucket ${DOCKER_INFLUXDB_INIT_BUCKET} (${bucket_id})"
fi
