"""Review 57: number forms in line protocol, ingest's /write against a real influxd's /write (the
harness of tests/ingest/test_lineprotocol_influxd.py). A value influxd refuses but ingest stores is
a divergence (not a loss); one influxd stores and ingest refuses would lose data sent by a client
that worked against influxd.

Review 57 found ``+1.5`` stored by ingest and refused by influxd (which reads a value starting with
``+`` as a boolean: "invalid boolean"); the forms after its list were added with the fix."""

from __future__ import annotations

import pytest

from tests.ingest.test_lineprotocol_influxd import Pair, _direct, _ingest, _lp, _site, pair  # noqa: F401

FORMS = ["+1.5", ".5", "1.", "-.5", "1e5", "1E-5", "1.5e+3", "-0", "01", "1e", "1i", "+1i", "-0i", "01i",
         "9223372036854775807i", "-9223372036854775808i",  "1.5i",
         "t", "T", "true", "True", "TRUE", "tRUE", "f", "false", "False", "FALSE", "fALSE", "nan", "inf",
         "1e400", "-1e400",
         # more float forms, each answered as influxd answers it
         "+.5", "+1e5", "+0", "+inf", "-inf", "Inf", "NaN", ".", "-", "-.", ".e5", "-e5", "1.e5", "1e+",
         "1e5.5", "1.5.5", "1_0", "0x10", "1e-400", "00.50", "1e05", "-1.5E+05", "\u0661\u0667", "1d5"]


@pytest.mark.parametrize("form", FORMS)
def test_number_forms_as_influxd(pair: Pair, form: str) -> None:  # noqa: F811
    site = _site()
    body = (_lp(site, "cnc-1", f"f{FORMS.index(form)}={form}") + "\n").encode()
    status, error, direct = _direct(pair, body)
    got_status, doc, stored = _ingest(pair, body)
    assert (got_status, len(stored)) == (status, len(direct)), (
        form, status, error, direct, got_status, doc, stored)
