"""Helpers of the end-to-end tests: agent configs for the simulator, and the delivery check."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from zhizao.model import Sample

ROOT = Path(__file__).resolve().parents[2]
MQTT_DIR = ROOT / "edge_agent" / "connectors" / "mqtt"
Key = tuple[str, str, datetime]


def agent_toml(
    state_dir: Path,
    *,
    opcua_endpoint: str,
    broker_port: int,
    receiver_url: str,
    health_port: int = 0,
    agent_id: str = "e2e-agent",
) -> str:
    """A full agent config reading the simulator over OPC UA and MQTT, sending to ``receiver_url``;
    creates ``state_dir`` (the agent never creates it: an installer does)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    mappings = "\n".join((MQTT_DIR / f"{v}.toml").read_text() for v in ("acme", "brightline"))
    return f"""
[agent]
id = "{agent_id}"
state_dir = "{state_dir}"
log_level = "info"

[buffer]
commit_interval_s = 0.05

[health]
port = {health_port}
interval_s = 2.0
stale_intervals = 3

[[connectors]]
type = "opcua"
name = "sim-opcua"
endpoint = "{opcua_endpoint}"
publishing_interval_ms = 100
sampling_interval_ms = 0
queue_size = 1000
request_timeout_s = 3
browse = [{{ pattern = "Objects/plant1/*/*/*/*" }}]

[[connectors]]
type = "mqtt"
name = "vendor-mqtt"
host = "127.0.0.1"
port = {broker_port}
{mappings}

[uplink]
type = "http"
url = "{receiver_url}"
max_batch_samples = 2000
linger_s = 0.2
backoff_initial_s = 0.2
backoff_cap_s = 1.0
"""


def key(s: Sample) -> Key:
    return (str(s.asset), s.signal, s.ts)


@dataclass
class Delivery:
    """What the receiver got compared with what the simulator served."""

    checked: int = 0
    missing: list[Sample] = field(default_factory=list)
    duplicates: list[Key] = field(default_factory=list)
    different: list[tuple[Sample, Sample]] = field(default_factory=list)
    never_received: list[tuple[str, str]] = field(default_factory=list)
    excluded: int = 0

    def ok(self) -> bool:
        return not (self.missing or self.duplicates or self.different or self.never_received)

    def summary(self) -> str:
        return (
            f"checked {self.checked}, excluded {self.excluded}, missing {len(self.missing)} "
            f"(first {self.missing[:3]}), duplicates {len(self.duplicates)} (first {self.duplicates[:3]}), "
            f"different {len(self.different)} (first {self.different[:2]}), "
            f"never received {self.never_received[:5]}"
        )


def check_delivery(
    served: Sequence[Sample],
    received: Sequence[Sample],
    exclude: Callable[[int, Sample], bool] = lambda i, s: False,
) -> Delivery:
    """Every served sample of a series after the first one the receiver has of that series must
    arrive exactly once with the same value, unit and quality (``exclude(index, sample)`` marks
    served samples allowed to be missing, e.g. while the agent was killed)."""
    d = Delivery()
    counts = Counter(key(s) for s in received)
    d.duplicates = [k for k, n in counts.items() if n > 1]
    got = {key(s): s for s in received}
    first: dict[tuple[str, str], datetime] = {}
    for s in received:
        series = (str(s.asset), s.signal)
        if series not in first or s.ts < first[series]:
            first[series] = s.ts
    asset_first: dict[str, datetime] = {}
    for (asset, _), ts in first.items():
        asset_first[asset] = min(ts, asset_first.get(asset, ts))
    for i, s in enumerate(served):
        series = (str(s.asset), s.signal)
        start = first.get(series)
        if start is None:
            a0 = asset_first.get(series[0])
            if (a0 is None or s.ts > a0) and series not in d.never_received and not exclude(i, s):
                d.never_received.append(series)
            continue
        if s.ts <= start:
            continue
        if exclude(i, s):
            d.excluded += 1
            continue
        d.checked += 1
        r = got.get(key(s))
        if r is None:
            d.missing.append(s)
        elif (r.value, r.unit, r.quality) != (s.value, s.unit, s.quality):
            d.different.append((s, r))
    return d
