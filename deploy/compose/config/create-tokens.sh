#!/bin/sh
# One-shot (the `tokens` service): issue the ingest bearer tokens the gateway, the scoring service
# and the analytics readers use, once. A write token writes batches only as the producers it is
# bound to (ingest/README.md): the gateway's is a forwarder (it forwards the agents' batches under
# their own producer), the scoring service's writes as its producer `zhizao-scoring`. Tokens are
# stored hashed in ingest's tokens file (volume ingest-state) and in clear only in the `secrets`
# volume (mode 600), which the gateway and the scoring service mount read-only at /secrets.
set -eu
umask 077
mkdir -p /secrets
if [ ! -s /secrets/gateway.token ]; then
  zhizao ingest token create --config /etc/zhizao/ingest.toml --name gateway --scope write --forwarder \
    > /secrets/gateway.token
fi
if [ ! -s /secrets/reader.token ]; then
  zhizao ingest token create --config /etc/zhizao/ingest.toml --name reader --scope read \
    > /secrets/reader.token
fi
if [ ! -s /secrets/scoring.token ]; then
  zhizao ingest token create --config /etc/zhizao/ingest.toml --name scoring --scope read --scope write \
    --producer zhizao-scoring \
    > /secrets/scoring.token
fi
echo "tokens ready in /secrets"
