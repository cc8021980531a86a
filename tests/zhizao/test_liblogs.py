"""zhizao.liblogs: httpx's per-request lines and asyncua's tracebacks kept out of the agent's and
gateway's logs (one line per event)."""

from __future__ import annotations

import io
import logging

from zhizao.liblogs import quiet_libraries


def test_asyncua_errors_become_one_warning_line_and_httpx_requests_are_quiet() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    asyncua = logging.getLogger("asyncua")
    asyncua_level = asyncua.level  # the live simulator's CLI, run in-process by other tests, sets it
    asyncua.setLevel(logging.NOTSET)
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # as the agent's default log_level
    try:
        quiet_libraries()
        quiet_libraries()  # idempotent
        session = logging.getLogger("asyncua.client.ua_session.UaSession")
        try:
            raise ConnectionError("Connection is closed")
        except ConnectionError:
            session.exception("Publish iteration crashed; retrying in 1s")
        logging.getLogger("httpx").info('HTTP Request: POST http://x/api/v1/batches "HTTP/1.1 200 OK"')
        logging.getLogger("edge_agent.x").error("a line of ours", exc_info=ValueError("kept"))
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        asyncua.setLevel(asyncua_level)
    lines = stream.getvalue().splitlines()
    assert lines[0] == ("WARNING asyncua.client.ua_session.UaSession: Publish iteration crashed; "
                        "retrying in 1s (ConnectionError: Connection is closed)")
    assert not any("HTTP Request" in ln for ln in lines)
    assert lines[1] == "ERROR edge_agent.x: a line of ours" and "ValueError: kept" in stream.getvalue()
    assert len(handler.filters) == 1
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
