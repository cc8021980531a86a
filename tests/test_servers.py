"""The real servers the integration tests rely on start, answer and restart."""

from __future__ import annotations

import json
import urllib.request

import paho.mqtt.publish as publish
import paho.mqtt.subscribe as subscribe

from tests.support.servers import InfluxDB, Mosquitto


def test_mosquitto_round_trip_and_restart(mosquitto: Mosquitto) -> None:
    publish.single("t/x", b"hello", qos=1, retain=True, hostname=mosquitto.host, port=mosquitto.port)
    mosquitto.restart()
    msg = subscribe.simple("t/x", hostname=mosquitto.host, port=mosquitto.port)  # type: ignore[no-untyped-call]
    assert msg.payload == b"hello"  # the retained message survived the restart (persistence)


def test_influxdb_write_query_and_restart(influxdb: InfluxDB) -> None:
    line = b"m,machine=cnc-1 v=1.5 1700000000000000000"
    req = urllib.request.Request(f"{influxdb.url}/write?db=zhizao", data=line, method="POST")
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 204
    influxdb.restart()
    body = json.loads(influxdb.query("SELECT v FROM m", db="zhizao"))
    assert body["results"][0]["series"][0]["values"] == [["2023-11-14T22:13:20Z", 1.5]]
