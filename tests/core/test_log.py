"""The CLI's logger writes to the stderr of the moment, so a closed earlier stream never swallows a line."""

from __future__ import annotations

import io
import sys

import pytest

from linksage import log


def test_lines_go_to_the_current_stderr_even_after_the_first_one_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    log.configure()
    log.event("to the first stream")
    first.close()  # e.g. a test's capture, closed when that test ended
    monkeypatch.setattr(sys, "stderr", second)
    log.event("to the second stream")
    assert "to the second stream" in second.getvalue() and "Logging error" not in second.getvalue()
