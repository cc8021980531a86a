"""Running every query of the generated dashboards against a live InfluxDB (``/query``).

What Grafana would do when a person opens a board: resolve each template variable from its own
query (in order, so ``$line`` sees the chosen ``$site``), pick a value (the first one, or the one
given in ``overrides``), substitute the variables and macros (:func:`dashboards.influxql.resolve`)
and run each panel's and annotation's query. A query that errors or returns no rows is a failure.
Used by the tests and by ``zhizao dashboards check --influx-url``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from dashboards.influxql import Resolution, resolve
from zhizao.errors import Unavailable


@dataclass(frozen=True, slots=True)
class QueryRun:
    """One executed query: where it comes from, the text sent, rows returned, the error if any."""

    board: str
    where: str
    query: str
    rows: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.rows > 0


class InfluxQL:
    """A minimal ``/query`` client (InfluxDB 1.x API; 2.x/3.x v1-compatible with a token)."""

    def __init__(self, url: str, database: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        headers = {"Authorization": f"Token {token}"} if token else {}
        self._client = httpx.Client(base_url=url, headers=headers, timeout=timeout_s)
        self.database = database

    def close(self) -> None:
        self._client.close()

    def run(self, query: str) -> tuple[list[dict[str, Any]], str | None]:
        """The series of the first statement's result and its error message (``None`` if none)."""
        try:
            resp = self._client.post("/query", data={"q": query, "db": self.database, "epoch": "ms"})
        except httpx.HTTPError as exc:
            raise Unavailable(f"InfluxDB at {self._client.base_url} unreachable: {exc}") from exc
        try:
            body = resp.json()
        except ValueError:
            return [], f"HTTP {resp.status_code}: {resp.text[:200]}"
        result = (body.get("results") or [{}])[0]
        error = result.get("error") or body.get("error")
        return list(result.get("series") or []), error


def data_span(client: InfluxQL, measurement: str) -> tuple[datetime, datetime] | None:
    """The times of the oldest and the newest point of ``measurement`` (any series), or ``None``
    when it holds none. ``quality`` is the field every sample carries."""
    found: list[datetime] = []
    for selector in ("first", "last"):
        series, error = client.run(f'SELECT {selector}("quality") FROM "{measurement}"')
        if error is not None:
            raise Unavailable(f"InfluxDB could not tell the time span of {measurement!r}: {error}")
        values = [v for s in series for v in (s.get("values") or [])]
        if not values:
            return None
        found.append(datetime.fromtimestamp(values[0][0] / 1000, UTC))
    return found[0], found[1]


def rows(series: list[dict[str, Any]]) -> int:
    return sum(len(s.get("values") or []) for s in series)


def resolve_variables(
    client: InfluxQL, doc: Mapping[str, Any], start: datetime, end: datetime,
    overrides: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], list[QueryRun]]:
    """Values for each template variable of ``doc`` and the runs of the variable queries."""
    values: dict[str, str] = {}
    runs: list[QueryRun] = []
    wanted = dict(overrides or {})
    for var in doc.get("templating", {}).get("list", []):
        name = str(var["name"])
        text = resolve(str(var["query"]), Resolution(start, end, values))
        series, error = client.run(text)
        found = [str(v[1]) for s in series for v in (s.get("values") or [])]
        runs.append(QueryRun(str(doc["uid"]), f"variable ${name}", text, len(found), error))
        if name in wanted:
            if wanted[name] not in found:
                runs.append(QueryRun(str(doc["uid"]), f"variable ${name}", text, 0,
                                     f"override {wanted[name]!r} is not among {found}"))
            values[name] = wanted[name]
        elif found:
            values[name] = found[0]
        else:
            values[name] = ""
    return values, runs


def run_board(
    client: InfluxQL, doc: Mapping[str, Any], start: datetime, end: datetime, *,
    overrides: Mapping[str, str] | None = None, interval: str = "1m",
) -> list[QueryRun]:
    """Every variable, panel and annotation query of ``doc`` run over ``[start, end)``."""
    values, runs = resolve_variables(client, doc, start, end, overrides)
    r = Resolution(start, end, values, interval)
    uid = str(doc["uid"])
    for panel in doc.get("panels", []):
        for t in panel.get("targets", []):
            text = resolve(str(t["query"]), r)
            series, error = client.run(text)
            runs.append(QueryRun(uid, f"panel {panel['id']} {panel['title']!r} {t['refId']}", text,
                                 rows(series), error))
    for a in doc.get("annotations", {}).get("list", []):
        if a.get("builtIn"):
            continue
        text = resolve(str(a["query"]), r)
        series, error = client.run(text)
        runs.append(QueryRun(uid, f"annotation {a['name']!r}", text, rows(series), error))
    return runs
