"""JSONL input errors name the file, the row, the line, the column and the value (linksage.jsonl_errors)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from linksage import jsonl_errors
from linksage.errors import InputError
from linksage.jsonl_errors import json_kind, locate_jsonl_error
from linksage.schema import DataFile


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_json_kinds() -> None:
    assert [json_kind(v) for v in (None, True, 3, 2.5, "x", [1], {"a": 1})] == [
        None,
        "boolean",
        "number",
        "number",
        "string",
        "array",
        "object",
    ]


def test_a_line_that_is_not_json_is_named_by_row_line_and_text(tmp_path: Path) -> None:
    path = _write(tmp_path / "pins.jsonl", '{"a": 1}\n\n{"a": 2}\n{"a": 3, "b": "z"\n{"a": 4}\n')
    with pytest.raises(InputError) as info:
        DataFile(path)
    err = info.value
    assert (err.file, err.row, err.value) == (str(path), 2, '{"a": 3, "b": "z"')  # the blank line is no row
    assert "line 4 is not valid JSON" in str(err)


def test_a_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = _write(tmp_path / "pins.jsonl", '{"a": 1}\n[1, 2]\n')
    err = locate_jsonl_error(path)
    assert err is not None and err.row == 1 and "line 2 is not a JSON object" in str(err)


def test_a_type_change_deep_in_a_large_file_names_the_absolute_row(tmp_path: Path) -> None:
    # pyarrow counts rows from the start of the block it parses (about 12,000 rows in, here); we count from
    # the start of the file
    bad = 150_000
    lines = [json.dumps({"pin_id": str(i), "title": "a title"}) for i in range(200_000)]
    lines[bad] = json.dumps({"pin_id": "x", "title": 5})
    path = _write(tmp_path / "pins.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(InputError) as info:
        DataFile(path)
    err = info.value
    assert (err.row, err.column, err.value) == (bad, "title", 5)
    assert f"line {bad + 1}: a number where row 0 has a string" in str(err)


def test_nulls_and_mixed_numbers_are_no_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "pins.jsonl", '{"a": 1, "b": null}\n{"a": 2.5, "b": "x"}\n{"a": null, "b": "y"}\n')
    assert locate_jsonl_error(path) is None
    assert DataFile(path).columns == ["a", "b"]


def test_compressed_files_are_read_too(tmp_path: Path) -> None:
    path = tmp_path / "pins.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": "x"}\n{"a": true}\n'))
    err = locate_jsonl_error(path)
    assert err is not None and (err.row, err.column, err.value) == (1, "a", True)


def test_what_the_scan_cannot_place_keeps_pyarrows_message(tmp_path: Path) -> None:
    # a nested type change: the scan checks top-level keys only, so pyarrow's own words are kept
    path = _write(tmp_path / "pins.jsonl", '{"a": {"b": 1}}\n{"a": {"b": "x"}}\n')
    assert locate_jsonl_error(path) is None
    with pytest.raises(InputError, match="cannot read jsonl file: JSON parse error"):
        DataFile(path)


def test_what_pyarrow_accepts_the_scan_accepts_too(tmp_path: Path) -> None:
    # a byte-order mark, a carriage return inside an object, and CRLF line ends; then the real error
    path = tmp_path / "pins.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n{"a":\r2}\r\n{"a": "x"}\r\n')
    with pytest.raises(InputError) as info:
        DataFile(path)
    assert (info.value.row, info.value.column, info.value.value) == (2, "a", "x")
    assert "line 3: a string where row 0 has a number" in str(info.value)


def test_long_lines_are_shown_cut_and_arrays_are_not_parsed(tmp_path: Path) -> None:
    path = _write(tmp_path / "pins.json", "[" + ", ".join(str(i) for i in range(100_000)) + "]\n")
    err = locate_jsonl_error(path)
    assert err is not None and err.row == 0 and len(err.value) == 200


def test_what_the_scan_cannot_read_returns_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deep = _write(tmp_path / "deep.jsonl", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    assert locate_jsonl_error(deep) is None  # too deep for Python's parser: no guess
    bad_gzip = tmp_path / "bad.jsonl.gz"
    bad_gzip.write_bytes(b"not gzip at all")
    assert locate_jsonl_error(bad_gzip) is None
    monkeypatch.setattr(jsonl_errors, "SCAN_LIMIT", 10)
    late = _write(tmp_path / "late.jsonl", '{"a": 1}\n{"a": 2}\n{"a": "x"}\n')
    assert locate_jsonl_error(late) is None  # past the limit: pyarrow's message stays
