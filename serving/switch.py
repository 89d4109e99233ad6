"""The fallback switch: a persisted order to decide with the scorecard until a person clears it.

Monitoring sets it on a severe alert; a credit or risk manager clears it with a reason. It is a
small JSON file beside the audit log, so every process of the service sees it, and each change
is also appended to a history file: who, when and why. The core stats the file on every call
(about a microsecond) and rereads it only when it changed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from riskcast.data.io import atomic_path
from riskcast.errors import InputError


@dataclass(frozen=True)
class SwitchState:
    active: bool
    reason: str
    set_by: str
    at: str

    @property
    def fallback_reason(self) -> str:
        return f"fallback mode set by {self.set_by} at {self.at}: {self.reason}"


class FallbackSwitch:
    """Reads and moves the switch stored at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._seen: tuple[tuple[int, int, int] | None, SwitchState | None] = (None, None)

    @property
    def history_path(self) -> Path:
        return self.path.with_name(self.path.stem + "_history.jsonl")

    def state(self) -> SwitchState | None:
        """The current state; None if never set. An unreadable file counts as set (fail safe)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)  # a rename gives a new inode
        seen_key, seen = self._seen
        if key == seen_key:
            return seen
        try:
            state = SwitchState(**json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            state = SwitchState(True, f"switch file {self.path.name} unreadable ({type(exc).__name__})",
                                "riskcast", _now())
        self._seen = (key, state)
        return state

    def active_reason(self) -> str | None:
        """Why the scorecard must answer, or None when the model may."""
        state = self.state()
        return state.fallback_reason if state is not None and state.active else None

    def set(self, reason: str, by: str) -> SwitchState:
        return self._write(True, reason, by)

    def clear(self, reason: str, by: str) -> SwitchState:
        return self._write(False, reason, by)

    def _write(self, active: bool, reason: str, by: str) -> SwitchState:
        if not reason or not reason.strip():
            raise InputError("reason: a reason is required to move the fallback switch", field="reason")
        state = SwitchState(active, reason.strip(), by or "unknown", _now())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.history_path, "a", encoding="utf-8") as history:
            history.write(json.dumps(asdict(state)) + "\n")
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(asdict(state), indent=2))
        return state


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
