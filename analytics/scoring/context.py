"""Which rows of a machine a model scores, what it sees of the machine state, and where it lives.

A machine can have several models, each with a *name*:

* ``health`` (the default): equipment health on process signals, in a comparable operating state
  only — it scores the ``running`` rows (:attr:`AnomalyModel.states` ``"running"``);
* ``energy``: expected power (``expected_power`` detector) — it scores **every** row
  (``states = "all"``), since waste such as a compressed-air leak shows in idle as much as in
  running, and sees the machine state as one-hot columns named ``state=<state>``
  (:func:`state_columns`) beside its load signals and, last, the measured power.

A model column ``state=<s>`` is not a stored signal: it is 1.0 on rows whose (forward-filled)
machine state is ``<s>``, else 0.0 (:func:`design`). Every other column is a signal read from the
store. The simulated-line evaluation, training and both live scorers build their rows with these
functions, so what is evaluated is what is served.

Registry scope and score series: the ``health`` model of machine ``A`` lives in the registry under
``A`` and writes ``anomaly_score``; any other model ``m`` under ``A#m`` (:func:`model_scope`)
and writes ``anomaly_score.m`` (:func:`score_signal`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from zhizao import signals as sig

HEALTH: Final = "health"
ENERGY: Final = "energy"
STATE_PREFIX: Final = "state="
STATES: Final = tuple(s.value for s in sig.MachineState)
"""``running``, ``idle``, ``setup``, ``down``, ``off``: the one-hot columns' order."""
_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def check_model_name(name: str) -> str:
    """``name`` if it is a valid model name (``health``, ``energy``, ``[a-z][a-z0-9_]{0,31}``),
    else ``ValueError``."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"model name {name!r} is invalid: use 1-32 lower-case letters, digits, '_'")
    return name


def model_scope(asset: str, model: str = HEALTH) -> str:
    """The registry scope (and state key) of ``model`` of machine ``asset``."""
    return asset if model == HEALTH else f"{asset}#{check_model_name(model)}"


def split_scope(scope: str) -> tuple[str, str]:
    """Inverse of :func:`model_scope`: ``(asset, model)``."""
    asset, _, model = scope.partition("#")
    return asset, model or HEALTH


def score_signal(model: str = HEALTH) -> str:
    """The signal ``model``'s scores are written as."""
    return sig.ANOMALY_SCORE if model == HEALTH else f"{sig.ANOMALY_SCORE}.{check_model_name(model)}"


def is_score_signal(signal: str) -> bool:
    """True for ``anomaly_score`` and every ``anomaly_score.<model>`` (never a model feature)."""
    return signal == sig.ANOMALY_SCORE or signal.startswith(sig.ANOMALY_SCORE + ".")


def state_columns(states: Sequence[str] = STATES) -> list[str]:
    return [f"{STATE_PREFIX}{s}" for s in states]


def signal_columns(columns: Sequence[str]) -> list[str]:
    """The columns that are stored signals (every one but the ``state=`` columns), in order."""
    return [c for c in columns if not c.startswith(STATE_PREFIX)]


def state_labels(state: pd.Series) -> NDArray[np.object_]:
    """The machine state per row of an aligned (forward-filled) ``state`` series, ``None`` where
    it is not known yet (what :func:`design` takes)."""
    labels: NDArray[np.object_] = state.astype(object).where(state.notna(), None).to_numpy(dtype=object)
    return labels


def design(columns: Sequence[str], signals: Sequence[str], values: NDArray[np.float64],
           state: NDArray[np.object_] | None) -> NDArray[np.float64]:
    """The model matrix (rows × ``columns``) from ``values`` (rows × ``signals``) and the machine
    state per row (``None`` or a missing entry: every ``state=`` column 0). ``values`` itself when
    the columns are exactly the signals (a health model: no copy on the scoring path)."""
    if list(columns) == list(signals):
        return values
    n = len(values)
    index = {s: i for i, s in enumerate(signals)}
    out = np.empty((n, len(columns)), dtype=np.float64)
    for j, c in enumerate(columns):
        if c.startswith(STATE_PREFIX):
            label = c[len(STATE_PREFIX):]
            out[:, j] = 0.0 if state is None else (state == label).astype(np.float64)
        else:
            out[:, j] = values[:, index[c]]
    return out
