"""Per-machine state of the scoring service, persisted so a restart (even ``kill -9``) resumes exactly.

One file per machine in ``state_dir`` (``<sha1 of the asset path>.state``, pickled
:class:`MachineState`), replaced atomically (temp file, fsync, ``os.replace``, fsync of the folder)
*after* a step's scores were written and its events handed to the sinks. A crash before the
replace leaves the previous state: the step is redone from the same cursor with the same scorer
state, so it produces the same windows with the same batch ids (deduplicated by the store) and the
same episodes with the same event ids (upserted). Nothing is skipped, nothing stored twice.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path

from zhizao.events import Event
from zhizao.files import replace_atomically

FORMAT = 1


@dataclass
class MachineState:
    """``cursor_us``: every window ending at or before it is done (scores written).
    ``scorer``: :meth:`MachineScorer.snapshot` at the cursor, for model ``version``.
    ``last_row_us``: timestamp of the last row read (gap detection). ``carry``: the last known
    value of each model signal, by name (a new model may use other signals), and ``carry_state``
    the machine's last known state, carried into the next step (signals and state may be reported
    only on change). ``seen``: the catalogue's last-seen time (µs) of each model signal and of
    ``state`` when the carried values were taken — a last-seen time that moves but stays behind
    the cursor is a late report, read again so the rows from the cursor on use it. ``held``: the
    model signals carried forward at the save (signal → its last report, µs), held again at once
    after a restart while that is still their last report. ``pending``: event updates not
    delivered to every sink yet, latest per episode id (redelivered next step).

    ``seen`` and ``held`` were added without a format change: a file saved before them reads
    them as ``None`` (the class defaults)."""

    asset: str
    version: str
    cursor_us: int
    scorer: bytes | None = None
    last_row_us: int | None = None
    carry: dict[str, float] | None = None
    carry_state: str | None = None
    pending: dict[str, Event] = field(default_factory=dict)
    seen: dict[str, int] | None = None
    held: dict[str, int] | None = None
    format: int = FORMAT


def asset_key(asset: str) -> str:
    """A short, filesystem- and batch-id-safe key of a machine path."""
    return hashlib.sha1(asset.encode(), usedforsecurity=False).hexdigest()[:16]


class StateStore:
    """Loads and saves :class:`MachineState` files; see module docstring. One writer per folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, asset: str) -> Path:
        return self.root / f"{asset_key(asset)}.state"

    def load(self, asset: str) -> MachineState | None:
        """The saved state of ``asset``; ``None`` when there is none. A file that cannot be read
        raises ``ValueError`` naming it (never silently restarted from scratch)."""
        p = self.path(asset)
        if not p.exists():
            return None
        try:
            state = pickle.loads(p.read_bytes())  # the service's own file
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise ValueError(f"scoring state {p} of {asset} is unreadable ({exc}); move it away to "
                             "start that machine afresh") from exc
        if not isinstance(state, MachineState) or state.asset != asset or state.format != FORMAT:
            raise ValueError(f"scoring state {p} does not belong to {asset} (or is another format)")
        return state

    def save(self, state: MachineState) -> None:
        p = self.path(state.asset)
        replace_atomically(p, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), p.with_suffix(".tmp"))
