"""The whole zhizao line in one process, shared by ``zhizao demo`` and ``zhizao check``.

``broker`` (embedded amqtt), ``ingest`` (uvicorn in the event loop, KPI API and web dashboard
mounted), ``agent`` (edge agent assembled from ``edge_agent``), ``analytics`` (KPI feed and live
scoring loops), ``models`` (reference anomaly models), ``line`` (:class:`Line`, the orchestration),
``expectations``/``verdict``/``report`` (the QA check).
"""

from zhizao.stack.line import Line, LineOptions

__all__ = ["Line", "LineOptions"]
