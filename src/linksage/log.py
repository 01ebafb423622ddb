"""Logging and progress bars: human lines by default, ``--quiet``, or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable, Sized
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
_state = {"quiet": False, "json": False}
logger = logging.getLogger("linksage")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is logged, not the one of the ``configure`` call
    (a caller that swaps stderr, a test's capture that is closed afterwards, still gets every line)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it; the property ignores that
        pass


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}))
        return json.dumps(payload, default=str)


def configure(*, quiet: bool = False, json_log: bool = False) -> None:
    """Set up the ``linksage`` logger once per process (called by the CLI)."""
    _state["quiet"], _state["json"] = quiet, json_log
    logger.handlers.clear()
    handler = _StderrHandler()
    handler.setFormatter(_JsonFormatter() if json_log else logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def event(message: str, **fields: Any) -> None:
    """Log one line with structured fields (they become keys in JSON mode)."""
    if fields and not _state["json"]:
        message = f"{message} " + " ".join(f"{k}={v}" for k, v in fields.items())
    logger.info(message, extra={"fields": fields})


def progress(
    iterable: Iterable[T] | None = None, *, total: float | None = None, desc: str = "", unit: str = "it"
) -> Any:
    """A tqdm bar with rate and ETA on stderr; silent with ``--quiet`` or JSON logs.

    Counts are shown as 1.2M past a thousand; below that as they are (tqdm would print 4 as "4.00").
    """
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=total is None or total >= 1000,
        dynamic_ncols=True,
        disable=_state["quiet"] or _state["json"],
        file=sys.stderr,
        mininterval=0.5,
    )


class Timer:
    """``with Timer() as t: ...; t.seconds``"""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
