"""Per-step metric logs: a CSV file and TensorBoard event files, both resumable by truncation.

The TensorBoard writer produces the TFRecord event format directly (scalar summaries only), so no
TensorFlow or tensorboard package is needed to write; ``tensorboard --logdir`` reads the files.
Both writers report their byte size, which a checkpoint stores; a resumed run truncates back to it, so
a crash never leaves duplicate or half-written rows.
"""

from __future__ import annotations

import csv
import io
import socket
import struct
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


class MetricsCSV:
    """Append rows of a fixed set of columns; values missing from a row are left empty."""

    def __init__(self, path: Path, columns: Sequence[str], truncate_to: int | None = None) -> None:
        self.path, self.columns = path, list(columns)
        path.parent.mkdir(parents=True, exist_ok=True)
        _truncate(path, truncate_to)
        self._fh = open(path, "a", newline="")  # noqa: SIM115 (kept open across steps)
        if self._fh.tell() == 0:
            csv.writer(self._fh).writerow(self.columns)
            self._fh.flush()

    def write(self, rows: Sequence[dict[str, float | int | str]]) -> None:
        buf = io.StringIO()
        w = csv.writer(buf)
        for row in rows:
            w.writerow([_fmt(row.get(c, "")) for c in self.columns])
        self._fh.write(buf.getvalue())
        self._fh.flush()

    def size(self) -> int:
        return self._fh.tell()

    def close(self) -> None:
        self._fh.close()


class TensorBoardWriter:
    """Scalars into ``<logdir>/events.out.tfevents.<time>.<host>`` (one file per run, reopened on resume)."""

    def __init__(self, logdir: Path, name: str | None = None, truncate_to: int | None = None) -> None:
        logdir.mkdir(parents=True, exist_ok=True)
        self.name = name or f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
        self.path = logdir / self.name
        _truncate(self.path, truncate_to)
        self._fh = open(self.path, "ab")  # noqa: SIM115 (kept open across steps)
        if self._fh.tell() == 0:
            self._record(_event(time.time(), 0, file_version="brain.Event:2"))
            self._fh.flush()

    def scalars(self, step: int, values: dict[str, float], wall_time: float | None = None) -> None:
        t = time.time() if wall_time is None else wall_time
        self._record(_event(t, step, summary=values))

    def flush(self) -> None:
        self._fh.flush()

    def size(self) -> int:
        return self._fh.tell()

    def close(self) -> None:
        self._fh.close()

    def _record(self, data: bytes) -> None:
        header = struct.pack("<Q", len(data))
        self._fh.write(
            header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))
        )


class StepLog:
    """Per-step metric rows kept on the device and written out once per window (one device sync).

    A row is (step, lr, *values) with ``values`` a device tensor in ``value_names`` order. ``flush`` writes
    the buffered rows to ``metrics.csv`` and TensorBoard under ``log_dir`` with the window's samples/s;
    ``extra`` columns (validation) go on the last row. ``position`` / ``resume_from`` let a checkpoint
    truncate both files back to what it covered.
    """

    def __init__(
        self,
        value_names: Sequence[str],
        extra_names: Sequence[str],
        capacity: int,
        samples_per_step: int,
        device: torch.device,
        log_dir: Path | None,
        resume_from: dict[str, Any] | None = None,
    ) -> None:
        self.value_names = list(value_names)
        self.capacity, self.samples_per_step = capacity, samples_per_step
        self._buf = torch.zeros(capacity, len(self.value_names), device=device)
        self._pending: list[tuple[int, float]] = []  # (step, lr) of the rows in _buf
        self._window_start = time.perf_counter()
        self.train_seconds = 0.0
        self.csv: MetricsCSV | None = None
        self.tb: TensorBoardWriter | None = None
        if log_dir is not None:
            pos = resume_from or {}
            columns = ["step", "lr", *self.value_names, "samples_per_s", *extra_names]
            self.csv = MetricsCSV(log_dir / "metrics.csv", columns, pos.get("csv_bytes"))
            self.tb = TensorBoardWriter(log_dir / "tensorboard", pos.get("tb_name"), pos.get("tb_bytes"))

    def add(self, step: int, lr: float, values: Tensor) -> bool:
        """Buffer one row (no sync); True when the buffer is full and wants a flush."""
        self._buf[len(self._pending)] = values
        self._pending.append((step, lr))
        return len(self._pending) == self.capacity

    def flush(self, extra: dict[str, float] | None = None) -> dict[str, float] | None:
        """Write the buffered rows; returns the last row (None when nothing was buffered)."""
        now = time.perf_counter()
        seconds = max(now - self._window_start, 1e-9)
        self.train_seconds += seconds
        last = None
        if self._pending:
            values = self._buf[: len(self._pending)].cpu().numpy()  # the one device sync of the window
            rate = len(self._pending) * self.samples_per_step / seconds
            rows: list[dict[str, Any]] = []
            for (step, lr), v in zip(self._pending, values, strict=True):
                rows.append({"step": step, "lr": lr, **dict(zip(self.value_names, v.tolist(), strict=True))})
                rows[-1]["samples_per_s"] = rate
            rows[-1].update(extra or {})
            if self.csv is not None:
                self.csv.write(rows)
            if self.tb is not None:
                for row in rows:
                    self.tb.scalars(row["step"], {_tb_tag(k): float(v) for k, v in row.items() if k != "step"})
                self.tb.flush()
            self._pending.clear()
            last = rows[-1]
        self._window_start = time.perf_counter()
        return last

    def exclude(self, seconds: float) -> None:
        """Do not count ``seconds`` just spent (evaluation, checkpoints) as training time."""
        self._window_start += seconds

    def position(self) -> dict[str, Any]:
        """Where the files end now (call right after ``flush``), for a checkpoint."""
        return {
            "csv_bytes": self.csv.size() if self.csv else 0,
            "tb_bytes": self.tb.size() if self.tb else 0,
            "tb_name": self.tb.name if self.tb else None,
        }

    def close(self) -> None:
        if self.csv is not None:
            self.csv.close()
        if self.tb is not None:
            self.tb.close()


def _tb_tag(column: str) -> str:
    return column.replace("val_", "val/", 1) if column.startswith("val_") else f"train/{column}"


def read_tensorboard_scalars(path: Path) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every scalar in an event file, checking each record's CRCs."""
    out: list[tuple[int, str, float]] = []
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        body = data[pos + 12 : pos + 12 + length]
        (body_crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
        if crc != masked_crc32c(header) or body_crc != masked_crc32c(body):
            raise ValueError(f"{path}: bad CRC in the record at byte {pos}")
        fields = _decode(body)
        step = int(fields.get(2, [0])[0])
        for summary in fields.get(5, []):
            for value in _decode(summary).get(1, []):
                v = _decode(value)
                out.append((step, v[1][0].decode(), struct.unpack("<f", v[2][0])[0]))
        pos += 16 + length
    return out


# --- the protobuf wire format of tensorflow.Event / Summary / Summary.Value, scalars only ---


def _event(wall_time: float, step: int, file_version: str = "", summary: dict[str, float] | None = None) -> bytes:
    out = b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(step)  # wall_time = 1, step = 2
    if file_version:
        out += _bytes_field(3, file_version.encode())
    if summary:
        values = b"".join(
            _bytes_field(1, _bytes_field(1, tag.encode()) + b"\x15" + struct.pack("<f", value))  # tag = 1, simple = 2
            for tag, value in summary.items()
        )
        out += _bytes_field(5, values)
    return out


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _decode(buf: bytes) -> dict[int, list[Any]]:
    fields: dict[int, list[Any]] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # CRC-32C (Castagnoli), reflected
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _truncate(path: Path, size: int | None) -> None:
    if size is None:
        path.unlink(missing_ok=True)  # a fresh run starts a fresh file
    elif path.exists():
        with open(path, "r+b") as fh:
            fh.truncate(size)


def _fmt(value: float | int | str) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
