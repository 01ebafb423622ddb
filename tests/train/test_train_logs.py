"""Metric logs: TensorBoard event records (CRC-checked round trip), CSV rows, truncation on resume."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from linksage.train.logs import MetricsCSV, TensorBoardWriter, crc32c, masked_crc32c, read_tensorboard_scalars


def test_crc32c_known_vectors() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c(b"") == 0
    assert masked_crc32c(b"") == 0xA282EAD8


def test_tensorboard_round_trip_and_resume(tmp_path: Path) -> None:
    tb = TensorBoardWriter(tmp_path)
    assert tb.name.startswith("events.out.tfevents.")
    tb.scalars(1, {"train/loss": 2.5, "train/lr": 1e-3})
    tb.flush()
    size = tb.size()
    tb.scalars(2, {"train/loss": 2.0})
    tb.close()
    got = read_tensorboard_scalars(tmp_path / tb.name)
    assert [(s, t) for s, t, _ in got] == [(1, "train/loss"), (1, "train/lr"), (2, "train/loss")]
    assert got[0][2] == pytest.approx(2.5) and got[1][2] == pytest.approx(1e-3)
    again = TensorBoardWriter(tmp_path, tb.name, truncate_to=size)  # a resume from the checkpoint at step 1
    again.scalars(2, {"train/loss": 1.5})
    again.close()
    got = read_tensorboard_scalars(tmp_path / tb.name)
    assert [(s, round(v, 3)) for s, t, v in got if t == "train/loss"] == [(1, 2.5), (2, 1.5)]


def test_corrupt_event_file_is_detected(tmp_path: Path) -> None:
    tb = TensorBoardWriter(tmp_path)
    tb.scalars(1, {"x": 1.0})
    tb.close()
    data = bytearray((tmp_path / tb.name).read_bytes())
    data[-6] ^= 0xFF
    (tmp_path / tb.name).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="bad CRC"):
        read_tensorboard_scalars(tmp_path / tb.name)


def test_csv_rows_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    log = MetricsCSV(path, ["step", "loss", "val"])
    log.write([{"step": 1, "loss": 0.5}])
    size = log.size()
    log.write([{"step": 2, "loss": 0.25, "val": 0.9}])
    log.close()
    log = MetricsCSV(path, ["step", "loss", "val"], truncate_to=size)
    log.write([{"step": 2, "loss": 0.125}])
    log.close()
    rows = list(csv.DictReader(path.open()))
    assert rows == [{"step": "1", "loss": "0.5", "val": ""}, {"step": "2", "loss": "0.125", "val": ""}]
