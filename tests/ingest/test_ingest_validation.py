"""Every bad input gives one clear error naming file, row and value; exit code 2; no ingest/ folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_helpers import Tables

from linksage.config import ConfigError, load_config
from linksage.errors import InputError
from linksage.ingest.validate import Loc, to_time, to_vector


def _fails(tables: Tables, capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    code, err, run_dir = tables.run(capsys)
    assert code == 2, err
    assert not (run_dir / "ingest").exists()  # nothing written for the stage
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    return err


def test_missing_column(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    path = tables.write("pins", "id,text\np1,a\n")
    _fails(tables, capsys, str(path), "missing column 'pin_id'", "the file has: id, text")


def test_missing_mapped_column(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    tables.extra["columns"] = {"pins": {"pin_id": "item_id"}}
    _fails(tables, capsys, "missing column 'item_id' (mapped to 'pin_id' by ingest.tables.columns.pins)")


def test_duplicate_pin_id(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    path = tables.write("pins", "pin_id,text\np1,a\np2,b\np1,c\np3,d\n")
    _fails(tables, capsys, f"{path}, row 2, column 'pin_id': duplicate pin_id (first seen at {path}, row 0)", "'p1'")


def test_errors_name_the_files_own_column_when_the_config_renames_it(
    tables: Tables, capsys: pytest.CaptureFixture[str]
) -> None:
    tables.extra["columns"] = {"pins": {"pin_id": "item_id", "created_at": "posted"}}
    path = tables.write("pins", "item_id,text,posted\np1,a,1364774400\np2,b,yesterday\n")
    _fails(
        tables, capsys, f"{path}, row 1: wrong type: column 'posted' (created_at) must hold unix seconds", "'yesterday'"
    )
    tables.write("pins", "item_id,text,posted\np1,a,1\np2,b,2\np1,c,3\n")
    _fails(tables, capsys, f"{path}, row 2, column 'item_id': duplicate pin_id (first seen at {path}, row 0)", "'p1'")


def test_link_to_unknown_pin(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    path = tables.write("links", "pin_id,url\np1,http://a.example/\np9,http://b.example/\n")
    _fails(tables, capsys, f"{path}, row 1, column 'pin_id': link to an unknown pin", "(value: 'p9')")


def test_board_membership_of_unknown_pin(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    path = tables.write("boards", "board_id,pin_id\nb1,p1\nb1,nope\n")
    _fails(tables, capsys, f"{path}, row 1, column 'pin_id': board membership of an unknown pin", "'nope'")


def test_duplicate_board_meta(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    path = tables.write("board_meta", "board_id,text\nb1,x\nb1,y\n")
    _fails(tables, capsys, f"{path}, row 1, column 'board_id': duplicate board_id", "'b1'")


def _pins_parquet(tables: Tables, vectors: list[list[float]]) -> Path:
    path = tables.root / "pins.parquet"
    ids = ["p1", "p2", "p3", "007"][: len(vectors)]
    pq.write_table(pa.table({"pin_id": ids, "embedding": pa.array(vectors, pa.list_(pa.float32()))}), path)
    tables.files["pins"] = path
    return path


def test_nan_embedding(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    path = _pins_parquet(tables, [[1.0, 0.0], [0.0, 1.0], [np.nan, 1.0], [1.0, 1.0]])
    _fails(tables, capsys, f"{path}, row 2, column 'embedding': embedding holds NaN or infinity", "[nan, 1]")


def test_wrong_length_embedding(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    path = _pins_parquet(tables, [[1.0, 0.0], [0.0, 1.0, 2.0], [1.0, 1.0], [1.0, 1.0]])
    _fails(tables, capsys, f"{path}, row 1, column 'embedding': embedding has length 3, expected 2")


def test_missing_embedding_in_some_rows(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    path = tables.write("pins", 'pin_id,embedding\np1,"[1, 2]"\np2,\np3,"[1, 2]"\n007,"[1, 2]"\n')
    _fails(tables, capsys, f"{path}, row 1, column 'embedding': missing embedding")


def test_unparseable_url(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    path = tables.write("links", "pin_id,url\np1,http://a.example/\np2,http://[stone]/x\n")
    _fails(
        tables,
        capsys,
        f"{path}, row 1, column 'url': URL cannot be canonicalised: invalid IPv6 host '[stone]'",
        "ingest.tables.bad_urls",
        "(value: 'http://[stone]/x')",
    )


def test_empty_input(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    path = tables.write("pins", "pin_id,text\n")
    _fails(tables, capsys, f"{path}: empty input: the pins table has no rows")


def test_empty_folder(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tables.root / "links"
    folder.mkdir()
    tables.files["links"] = folder
    _fails(tables, capsys, f"{folder}: folder holds no Parquet, CSV or JSONL files")


def test_all_urls_bad_leaves_no_links(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    tables.write("links", "pin_id,url\np1,http://whaaat\n")
    tables.extra["bad_urls"] = "skip"
    _fails(tables, capsys, "empty input: the links table has no usable rows: all 1 URLs were bad")


@pytest.mark.parametrize(
    ("table", "text", "fragments"),
    [
        (
            "pins",
            "pin_id,created_at\np1,1364774400\np2,yesterday\n",
            ["row 1", "wrong type: column 'created_at' must hold unix seconds or ISO 8601 times", "'yesterday'"],
        ),
        (
            "pins",
            "pin_id,created_at\np1,1364774400\np2,1709250000000\n",
            [
                "row 1",
                "column 'created_at' holds unix seconds, and this is past the year 5000: milliseconds?",
                "1709250000000",
            ],
        ),
        (
            "links",
            "pin_id,url,cohesion\np1,http://a.example/,0.5\np2,http://b.example/,high\n",
            ["row 1", "wrong type: column 'cohesion' must hold numbers", "'high'"],
        ),
        (
            "pins",
            'pin_id,embedding\np1,"[1, 2]"\np2,"[1, two]"\n',
            ["row 1", "wrong type: column 'embedding' must hold lists of numbers", "'[1, two]'"],
        ),
        (
            "pages",
            "url,images\nhttp://a.example/,not json\n",
            ["row 0", "wrong type: column 'images' must hold a JSON list of images", "'not json'"],
        ),
        (
            "links",
            "pin_id,url,cohesion\np1,http://a.example/,0.5\np2,http://b.example/,1.5\n",
            ["row 1", "cohesion must be in [0.0, 1.0]", "1.5"],
        ),
    ],
)
def test_wrong_types(
    tables: Tables, capsys: pytest.CaptureFixture[str], table: str, text: str, fragments: list[str]
) -> None:
    path = tables.write(table, text)
    _fails(tables, capsys, str(path), *fragments)


def test_wrong_type_in_parquet(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    path = tables.root / "pins.parquet"
    pq.write_table(pa.table({"pin_id": ["p1", "p2"], "text": pa.array([3.5, 4.5])}), path)
    tables.files["pins"] = path
    _fails(tables, capsys, f"{path}, row 0: wrong type: column 'text' holds double, expected strings", "3.5")


def test_files_of_one_table_must_agree_on_columns(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tables.root / "pinsdir"
    folder.mkdir()
    (folder / "a.csv").write_text("pin_id,text\np1,a\np2,b\np3,c\n007,d\n")
    (folder / "b.csv").write_text("pin_id\np8\n")
    tables.files["pins"] = folder
    _fails(tables, capsys, f"{folder / 'b.csv'}: the pins files disagree on columns")


def test_missing_input_file_is_named(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    tables.files["links"] = tables.root / "nope.csv"
    _fails(tables, capsys, f"{tables.root / 'nope.csv'}: no such file or folder")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ingest.synthetic.missing_content=1.5", "ingest.synthetic.missing_content: must be in [0, 1], got 1.5"),
        ("ingest.synthetic.popularity_skew=1.0", "ingest.synthetic.popularity_skew: must be in (0, 1), got 1.0"),
        ("ingest.synthetic.end='2012-01-01'", "ingest.synthetic.end: must be after start ('2013-01-01')"),
        ("ingest.reddit.start='April'", "ingest.reddit.start: expected an ISO 8601 date like 2013-04-01, got 'April'"),
        (
            "ingest.reddit.blocked_domains=['http://imgur.com']",
            "ingest.reddit.blocked_domains[0]: expected a lowercase",
        ),
        ("ingest.tables.columns={pins={id='x'}}", "ingest.tables.columns.pins.id: not a column of pins"),
        ("ingest.tables.bad_urls='ignore'", "ingest.tables.bad_urls: 'ignore' is not one of 'error', 'skip'"),
    ],
)
def test_config_errors_name_key_and_value(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_converters_report_row_and_value() -> None:
    loc = Loc("f.csv", rows=np.array([10, 20, 30]))
    with pytest.raises(InputError, match=r"f.csv, row 30: .*'soon'"):
        to_time(pa.array(["1", "2013-01-01", "soon"]), "created_at", loc)
    assert to_time(pa.array(["2013-01-01", "", None]), "t", loc).to_pylist() == [1356998400, None, None]
    assert to_vector(pa.array(["[1, 2]", "3;4", " 5 6 "]), "v", loc).to_pylist() == [[1, 2], [3, 4], [5, 6]]


def test_empty_optional_table(tables: Tables, capsys: pytest.CaptureFixture[str]) -> None:
    path = tables.write("board_meta", "board_id,text\n")
    _fails(tables, capsys, f"{path}: empty input: the board_meta table has no rows")
