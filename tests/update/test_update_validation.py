"""A bad day's input fails like a bad ingest (file, row, value; exit code 2) and changes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_update_day import manifests, sets, store_rows
from update_world import DAY, config

from linksage.cli import main
from linksage.errors import InputError
from linksage.update.run import update

EMB = '"' + str([0.125] * 64) + '"'  # the template world's target embeddings are 64-dimensional


def write_day(folder: Path, pins: str | None, links: str | None) -> Path:
    folder.mkdir(parents=True)
    if pins is not None:
        (folder / "pins.csv").write_text(pins)
    if links is not None:
        (folder / "links.csv").write_text(links)
    return folder


GOOD_PINS = f"pin_id,text,created_at,embedding\nnew1,fresh shoes,2013-07-01T10:00:00Z,{EMB}\n"
CASES = {
    "links table missing": (GOOD_PINS, None, ["links table is missing"]),
    "pin already ingested": (
        f"pin_id,text,created_at,embedding\nnew1,a,2013-07-01,{EMB}\np0,b,2013-07-01,{EMB}\n",
        "pin_id,url\nnew1,https://shoes.example/a\n",
        ["pins.csv", "row 1", "p0", "already ingested"],
    ),
    "bad url": (
        GOOD_PINS,
        "pin_id,url\nnew1,https://shoes.example/a\nnew1,not a url at all\n",
        ["links.csv", "row 1", "not a url at all"],
    ),
    "unknown pin": (GOOD_PINS, "pin_id,url\nnew1,https://a.example/x\nghost,https://a.example/y\n", ["row 1", "ghost"]),
    "wrong embedding width": (
        'pin_id,text,created_at,embedding\nnew1,a,2013-07-01,"[1.0, 0.0]"\n',
        "pin_id,url\nnew1,https://a.example/x\n",
        ["pins.csv", "embedding"],
    ),
    "no embedding column": (
        "pin_id,text,created_at\nnew1,a,2013-07-01\n",
        "pin_id,url\nnew1,https://a.example/x\n",
        ["pins.csv", "64-dim target embeddings"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_day_input_fails_with_location_and_writes_nothing(
    case: str, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pins, links, expected = CASES[case]
    folder = write_day(tmp_path / "day", pins, links)
    before_manifests, before_rows = manifests(run), store_rows(run)
    code = main(["update", "--run-dir", str(run), "--input", str(folder), "--day", DAY, *sets()])
    err = capsys.readouterr().err
    assert code == 2, err
    for text in expected:
        assert text in err, f"{text!r} not in {err!r}"
    assert manifests(run) == before_manifests and store_rows(run) == before_rows
    assert not (run / "update").exists()
    assert not any((run / ".work" / "update").glob("*")) if (run / ".work" / "update").exists() else True


def test_a_malformed_day_is_refused(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_day(tmp_path / "day", GOOD_PINS, "pin_id,url\nnew1,https://a.example/x\n")
    assert main(["update", "--run-dir", str(run), "--input", str(folder), "--day", "2013-13-01", *sets()]) == 2
    assert "expected an ISO date" in capsys.readouterr().err


def test_a_content_array_of_the_wrong_length_fails_the_day(run: Path, day: Path) -> None:
    # copied in the background and never read by the day's encoding: its error must still fail the step
    has_image = run / "content" / "page_has_image.npy"
    np.save(has_image, np.load(has_image)[:-1])
    before = manifests(run)
    with pytest.raises(InputError, match="rows, the run's tables have"):
        update(config(), run, day, DAY)
    assert manifests(run) == before  # the run is untouched
    journal = run / ".work" / "update"
    assert not journal.exists() or not any(journal.iterdir())  # and no journal is left
