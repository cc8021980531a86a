"""Publishing the dashboards to an existing Grafana with ``grafana-client`` — idempotent.

:func:`push` makes sure the InfluxDB datasource (uid ``zhizao-influxdb``) and the folder exist,
creating them when missing, then creates or overwrites every dashboard by uid. Running it twice
changes nothing the second time except dashboard versions. This module is the only one that imports
``grafana_client``; its errors are translated into :class:`~zhizao.errors.Unavailable` (Grafana
unreachable, 5xx, timeout) and :class:`~zhizao.errors.Rejected` (bad token, 4xx).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from dashboards.grafana import DATASOURCE_UID
from zhizao.errors import Rejected, Unavailable

NOT_FOUND = 404


@dataclass(frozen=True, slots=True)
class InfluxSource:
    """Where Grafana reaches InfluxDB (see ``provisioning/datasources/zhizao.yaml`` for each version)."""

    url: str
    database: str = "zhizao"
    token: str | None = None

    def datasource(self) -> dict[str, Any]:
        """The Grafana datasource document (InfluxQL, token sent as ``Authorization: Token ...``)."""
        doc: dict[str, Any] = {
            "uid": DATASOURCE_UID, "name": "zhizao InfluxDB", "type": "influxdb", "access": "proxy",
            "url": self.url, "isDefault": False,
            "jsonData": {"version": "InfluxQL", "dbName": self.database, "httpMode": "POST",
                         "timeInterval": "10s"},
        }
        if self.token:
            doc["jsonData"]["httpHeaderName1"] = "Authorization"
            doc["secureJsonData"] = {"httpHeaderValue1": f"Token {self.token}"}
        return doc


@dataclass(slots=True)
class PushReport:
    """What :func:`push` did, one line per action, for the command's output."""

    actions: list[str] = field(default_factory=list)


def push(
    grafana_url: str, token: str, boards: Mapping[str, dict[str, Any]], *, influx: InfluxSource | None = None,
    folder_uid: str = "zhizao", folder_title: str = "zhizao", timeout_s: float = 10.0,
) -> PushReport:
    """Publish ``boards`` (uid -> dashboard JSON) to the Grafana at ``grafana_url``.

    The datasource is created from ``influx`` when missing (``Rejected`` if it is missing and ``influx``
    is ``None``) and updated to ``influx`` when both exist; the folder is created when missing.
    """
    api: Any = GrafanaApi.from_url(grafana_url, credential=token, timeout=timeout_s)
    report = PushReport()
    try:
        _datasource(api, influx, report)
        _folder(api, folder_uid, folder_title, report)
        for uid, doc in boards.items():
            body = {"dashboard": {**doc, "id": None}, "folderUid": folder_uid, "overwrite": True,
                    "message": "zhizao dashboards push"}
            result = api.dashboard.update_dashboard(body)
            report.actions.append(f"dashboard {uid}: {result.get('status', 'success')} "
                                  f"(version {result.get('version', '?')})")
    except GrafanaClientError as exc:
        raise Rejected(
            f"Grafana at {grafana_url} refused the request ({exc.status_code}): {exc.message}"
        ) from exc
    except GrafanaException as exc:
        raise Unavailable(f"Grafana at {grafana_url} failed: {exc}") from exc
    except OSError as exc:
        raise Unavailable(f"cannot reach Grafana at {grafana_url}: {exc}") from exc
    return report


def _exists(call: Any, *args: Any) -> bool:
    try:
        call(*args)
    except GrafanaClientError as exc:
        if exc.status_code == NOT_FOUND:
            return False
        raise
    return True


def _datasource(api: Any, influx: InfluxSource | None, report: PushReport) -> None:
    if _exists(api.datasource.get_datasource_by_uid, DATASOURCE_UID):
        if influx is None:
            report.actions.append(f"datasource {DATASOURCE_UID}: exists, left as is")
            return
        api.datasource.update_datasource_by_uid(DATASOURCE_UID, influx.datasource())
        report.actions.append(f"datasource {DATASOURCE_UID}: updated ({influx.url})")
        return
    if influx is None:
        raise Rejected(f"Grafana has no datasource {DATASOURCE_UID!r}: pass --influx-url to create it")
    api.datasource.create_datasource(influx.datasource())
    report.actions.append(f"datasource {DATASOURCE_UID}: created ({influx.url})")


def _folder(api: Any, uid: str, title: str, report: PushReport) -> None:
    if _exists(api.folder.get_folder, uid):
        report.actions.append(f"folder {uid}: exists")
        return
    api.folder.create_folder(title, uid=uid)
    report.actions.append(f"folder {uid}: created")
