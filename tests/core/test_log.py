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


def test_progress_counts_read_as_integers_below_a_thousand_and_scaled_above(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(log._state, "quiet", False)
    monkeypatch.setitem(log._state, "json", False)
    for total, shown in [(4, "4/4"), (999, "999/999"), (2_500_000, "2.50M/2.50M")]:
        monkeypatch.setattr(sys, "stderr", io.StringIO())
        bar = log.progress(total=total, desc="rows", unit="rows")
        bar.update(total)
        bar.close()
        assert shown in sys.stderr.getvalue(), sys.stderr.getvalue()
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    for _ in log.progress(range(4), desc="items"):  # a sized iterable: its length is the total
        pass
    assert "4/4" in sys.stderr.getvalue() and "4.00" not in sys.stderr.getvalue()
