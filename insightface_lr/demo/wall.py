"""The wall time of a demo folder over every invocation that worked in it (``wall.json``).

A comparison on real faces takes hours and spans sessions, so its time is the sum of each invocation's seconds.
Each invocation is logged with the load average it started under and the highest one seen while it ran (another
job on the box slows every stage: a time measured beside one says so). A heartbeat rewrites the file every
``beat_s`` seconds while the workers train, so an invocation that is killed (a session that ends) loses at most
that much of its time; the file is written atomically, as every record of a run.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes


def load_average() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


class WallClock:
    """Loads ``path``, times this invocation, saves both (``save``; ``beating()`` saves every ``beat_s`` s)."""

    def __init__(self, path: Path, record: bool = True, beat_s: float = 60.0) -> None:
        self.path, self.record_to_file, self.beat_s = Path(path), record, beat_s
        self.before, self.started = 0.0, time.perf_counter()
        self.invocations: list[dict[str, Any]] = []
        self.invocation: dict[str, Any] = {"started": "", "seconds": 0.0, "load_average_at_start": None}
        self._lock = threading.Lock()

    def load(self) -> None:
        """Read the earlier invocations and start timing this one."""
        recorded = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
        self.invocations = list(recorded.get("invocations", []))
        self.before = float(recorded.get("total_s", 0.0))  # the total is the record; the list, its log
        unlogged = self.before - sum(i["seconds"] for i in self.invocations)
        if unlogged > 1.0:  # time of invocations made before they were logged (an older wall.json): one entry
            self.invocations.insert(0, {"started": None, "seconds": round(unlogged, 1), "load_average_at_start": None})
        self.started = time.perf_counter()
        self.invocation = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": 0.0,
                           "load_average_at_start": load_average(), "load_average_max": load_average()}

    def total(self) -> float:
        """Seconds of every invocation, this one up to now."""
        return self.before + (time.perf_counter() - self.started)

    def record(self) -> dict[str, Any]:
        """What the last ``save()`` wrote (the summary and wall.json must agree to the tenth of a second)."""
        with self._lock:
            total = round(self.before + self.invocation["seconds"], 1)
            return {"wall_total_s": total, "invocations": [*self.invocations, dict(self.invocation)]}

    def save(self) -> None:
        """This invocation's seconds (and the highest load seen) into the file, atomically."""
        with self._lock:
            self.invocation["seconds"] = round(time.perf_counter() - self.started, 1)
            now, highest = load_average(), self.invocation.get("load_average_max")
            if now is not None:
                self.invocation["load_average_max"] = now if highest is None else max(now, highest)
            if self.record_to_file:
                body = {"total_s": round(self.total(), 1), "invocations": [*self.invocations, self.invocation]}
                atomic_write_bytes(self.path, (json.dumps(body, indent=1, sort_keys=True) + "\n").encode())

    def beating(self) -> _Heartbeat:
        """Context manager: ``save()`` every ``beat_s`` seconds inside it (the caller saves its last stage's end
        itself, so that the summary and the file agree)."""
        return _Heartbeat(self)


class _Heartbeat:
    def __init__(self, clock: WallClock) -> None:
        self.clock, self.stop = clock, threading.Event()
        self.thread = threading.Thread(target=self._beat, name="wall-clock", daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(self.clock.beat_s):
            self.clock.save()

    def __enter__(self) -> WallClock:
        self.thread.start()
        return self.clock

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
