"""Schemathesis against the ingest OpenAPI schema: no generated request gets a 5xx.

Requests are sent with httpx from ``case.as_transport_kwargs`` because schemathesis' own
``requests`` transport breaks on the installed urllib3 (``'TrafficPolice' object has no
attribute 'keys'``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation

from ingest.app import create_app
from ingest.testing import run_server, server_settings


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    """The bulk endpoint's body: one JSON document per line (generated as a JSON array)."""
    items = value if isinstance(value, list) else [value]
    return b"\n".join(json.dumps(item).encode() for item in items)


schema = schemathesis.openapi.from_dict(create_app().openapi())
# keep it short (the suite's budget is ~2 minutes): generated examples only, no coverage phase,
# which alone sends hundreds of boundary cases per operation
schema.config.phases.coverage.enabled = False


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    s = server_settings(tmp_path_factory.mktemp("schemathesis"))
    s.limits.max_body_bytes = 1_000_000
    with run_server(s) as url:
        yield url


def _operations() -> list[APIOperation[Any, Any, Any, Any]]:
    out = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the ingest schema is invalid: {result}"
        out.append(result.ok())
    return out


OPERATIONS = _operations()
"""Every operation of the schema, one test each. Not ``schema.parametrize()``: its items share one
node id (``test_no_server_errors``), and pytest-xdist then ran one of the 13 in CI, silently."""


def test_every_operation_is_a_test_of_its_own() -> None:
    assert len(OPERATIONS) >= 13 and len({op.label for op in OPERATIONS}) == len(OPERATIONS)


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_server_errors(
    operation: APIOperation[Any, Any, Any, Any], data: st.DataObject, base_url: str
) -> None:
    case: schemathesis.Case[Any] = data.draw(operation.as_strategy())
    kw = case.as_transport_kwargs(base_url=base_url)
    content = json.dumps(kw["json"]).encode() if "json" in kw else kw.get("data", kw.get("content"))
    if isinstance(content, str):
        content = content.encode()
    headers = {k: v.strip() for k, v in kw["headers"].items()}  # h11 refuses trailing blanks
    response = httpx.request(kw["method"], kw["url"], headers=headers, params=kw.get("params"),
                             cookies=kw.get("cookies"), content=content, timeout=30)
    assert response.status_code < 500, (case.as_curl_command(), response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), response.text
