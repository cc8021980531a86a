"""Prometheus metrics of the scoring service (process-wide, in the default registry, beside the
event emitter's ``zhizao_events_sent_total`` / ``zhizao_events_failed_total``)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

ROWS: Final = Counter("zhizao_scoring_rows", "Rows scored (anomaly_score samples written), by machine",
                      ["machine"])
WINDOWS: Final = Counter("zhizao_scoring_windows", "Windows completed, by machine", ["machine"])
DUPLICATES: Final = Counter("zhizao_scoring_duplicate_batches",
                            "Score batches the store already had (a step redone after a restart)",
                            ["machine"])
EVENTS: Final = Counter("zhizao_scoring_events", "Anomaly event updates emitted, by machine", ["machine"])
FAILURES: Final = Counter("zhizao_scoring_failures",
                          "Failures by kind: store_unavailable, rejected, model_mismatch, no_model, "
                          "missing_signals, registry, state, events_dropped, internal", ["kind"])
LAG: Final = Gauge("zhizao_scoring_lag_seconds",
                   "Data not scored yet: the machine's newest data (slowest model signal) minus the end "
                   "of its last scored window, seconds", ["machine"])
CURSOR: Final = Gauge("zhizao_scoring_cursor_timestamp_seconds",
                      "End of the last scored window (Unix seconds); time() minus it is the wall lag",
                      ["machine"])
MODEL: Final = Gauge("zhizao_scoring_model_info", "1 for the model version a machine is scored with",
                     ["machine", "version"])
UP: Final = Gauge("zhizao_scoring_machine_ok", "1 when the machine is being scored, 0 when it has a problem",
                  ["machine"])
ROUND_SECONDS: Final = Gauge("zhizao_scoring_round_seconds", "Duration of the last round, seconds")
HELD: Final = Gauge("zhizao_scoring_held_signals",
                    "Model signals carried forward (quiet for hold_after_s while the others advance)",
                    ["machine"])
LATE_CHANGES: Final = Counter("zhizao_scoring_late_changes",
                              "Reports of a signal (or the state) that arrived behind the cursor with a "
                              "value other than the one the scored rows after them used (not revised)",
                              ["machine", "signal"])
FUTURE: Final = Counter("zhizao_scoring_future_data",
                        "New last-seen times of a model signal stamped more than max_future_s ahead of the "
                        "service's clock (not used to advance the watermark)", ["machine", "signal"])
AHEAD: Final = Gauge("zhizao_scoring_future_ahead_seconds",
                     "Seconds the newest data of the machine's model signals is stamped ahead of the "
                     "service's clock, when more than max_future_s (0: none)", ["machine"])
