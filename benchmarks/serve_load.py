"""Load test of the HTTP API (linksage.serve) on loopback, with a store of 1M pages.

Builds a run directory with the real writers: 1M pages of generated 256-dim embeddings upserted into
the Lance store, 1M pins with generated 256-dim targets, an (untrained) LinkSage model whose version
the rows carry, and the default ANN indices (IVF-PQ + exact re-ranking). Then starts two servers
(``linksage.serve.server.serve`` in subprocesses on 127.0.0.1) over it: ``fast``, as shipped, and
``fastapi``, the baseline, with ``serve.fast_lookup = false`` (look-ups through FastAPI's routing to the
same code). Every phase is bounded in time:

1. closed loop: ``--connections`` keep-alive connections each send the next request as soon as the last
   answer arrives: the most the server sustains (``*_rps``) and the latencies at that load (``*_p99_ms``).
   The look-up's closed loop alternates between the two servers ``--repeats`` times; figures are medians
   over the repeats and ``embedding_ratio_vs_fastapi`` the median of the paired ratios;
2. open loop at the target rate (1,000/s look-ups, 100/s top-k) on ``fast``: requests are due on a fixed
   schedule and latency counts from when a request was due, queueing included (``*_at_target_*``);
3. both target rates at once on ``fast`` (``mixed_*``), as a server in service would see them.

The closed loops are driven by ``wrk`` (Debian's package; one C thread) when it is on PATH, else by the
small asyncio client here; the open loops by the asyncio client (wrk has no fixed-rate mode). The client
shares the machine with the server, so its CPU per request and ``*_client_core_share`` (the share of
one core it used) are reported: the generator is not the bottleneck while that share stays well under 1.

``*_target_met``: the closed loop sustains the target rate and, held at that rate, the p99 is within
the bound (1,000/s with p99 <= 50 ms; 100/s with p99 <= 100 ms). ``*_server_cpu_us_per_request`` is the
server process's CPU time per answer, the figure least disturbed by other load on a shared machine.
For a clean 2-core figure on a bigger machine: ``taskset -c 0,1 .venv/bin/python benchmarks/serve_load.py``.

Requests: ``GET /v1/pages/embedding?url=...&dim=64`` and ``GET /v1/pages/pins?url=...&k=20`` for
pages drawn uniformly from the store. Every answer is checked to be a 200.

    .venv/bin/python benchmarks/serve_load.py                       # 1M pages, 1M pins (~4 min on 2 cores)
    .venv/bin/python benchmarks/serve_load.py --pages 100000 --pins 100000 --seconds 5   # quick look
    .venv/bin/python benchmarks/serve_load.py --keep /tmp/serve-1m  # keep the run directory for reruns

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from _machine import machine

DIM = 256
DIMS = (16, 32, 64, 128, 256)
TARGETS = {"embedding": (1_000.0, 50.0), "pins": (100.0, 100.0)}  # (requests/s at least, p99 ms at most)


def unit_vectors(n: int, seed: int, topics: int = 256, spread: float = 0.6) -> np.ndarray:
    """(n, DIM) float32 unit rows around ``topics`` random centres (embeddings are clustered, not uniform)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, DIM)).astype(np.float32)
    out = np.empty((n, DIM), np.float32)
    for lo in range(0, n, 1 << 16):
        m = min(1 << 16, n - lo)
        x = centres[rng.integers(0, topics, m)] + spread * rng.standard_normal((m, DIM)).astype(np.float32)
        out[lo : lo + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def page_urls(n: int) -> list[str]:
    return [f"https://site{i % 20_000}.example.com/articles/{i}/some-title-words" for i in range(n)]


def build_run(root: Path, n_pages: int, n_pins: int) -> dict[str, float]:
    """The run directory the server reads; returns build timings."""
    import torch

    from linksage.config.store import IndexConfig
    from linksage.embed.batch import model_version
    from linksage.model import EncoderConfig, LinkSageEncoder
    from linksage.rundir import atomic_write_json
    from linksage.search.indices import pages_index, pins_index
    from linksage.store.fingerprint import page_ids
    from linksage.store.lance_store import EmbeddingStore, make_batch
    from linksage.train.infer import LinkSageModel
    from linksage.train.target_space import identity_rotation

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    for stage in ("ingest", "content", "train"):
        (root / stage).mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    encoder = LinkSageEncoder(
        EncoderConfig(
            text_dim=8,
            image_dim=0,
            image_slots=1,
            neighbours=0,
            output_dim=DIM,
            n_dims=len(DIMS),
            d_model=32,
            layers=1,
            heads=2,
        )
    )
    LinkSageModel(encoder, DIMS, identity_rotation(DIM), "each", 24).save(root / "train" / "model.pt")
    version = model_version(root / "train")
    pq.write_table(
        pa.table(
            {
                "pin_idx": pa.array(np.arange(n_pins, dtype=np.int32)),
                "pin_id": [f"pin{i}" for i in range(n_pins)],
                "text": [f"generated pin {i}" for i in range(n_pins)],
            }
        ),
        root / "ingest" / "pins.parquet",
    )
    np.save(root / "content" / "pin_target.npy", unit_vectors(n_pins, seed=1).astype(np.float16))
    for stage in ("ingest", "content", "train"):
        atomic_write_json(
            root / stage / "manifest.json", {"stage": stage, "key": f"serve-load-{stage}-{n_pages}-{n_pins}"}
        )

    urls = page_urls(n_pages)
    ids = page_ids(urls)
    vectors = unit_vectors(n_pages, seed=2)
    store = EmbeddingStore.open_or_create(root / "store", DIM)
    chunk = 131_072

    def batches():  # streamed: memory stays at one chunk of Arrow data
        for lo in range(0, n_pages, chunk):
            hi = min(lo + chunk, n_pages)
            fp = np.arange(lo, hi, dtype=np.uint64)
            yield make_batch(ids[lo:hi], urls[lo:hi], vectors[lo:hi], version, fp, fp, "2013-06-30")

    store.upsert(batches(), "2013-06-30")
    timings["store_write_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    pins_index(root, root / "store", IndexConfig())
    timings["pins_index_s"] = time.perf_counter() - t
    t = time.perf_counter()
    pages_index(EmbeddingStore.open(root / "store"), IndexConfig())
    timings["pages_index_s"] = time.perf_counter() - t
    (root / "params.json").write_text(json.dumps({"pages": n_pages, "pins": n_pins}))
    return {k: round(v, 1) for k, v in timings.items()}


# -- the load generators ------------------------------------------------------------------------------

# wrk (C, one thread) cycles through the request paths; its `done` hook prints one JSON line
WRK_SCRIPT = """
local paths, i = {}, 0
function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
end
function request()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"seconds":%.6f,"non2xx":%d,"socket_errors":%d,"p50_ms":%.3f,"p99_ms":%.3f}\\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU seconds of this process's finished children (the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)  # seconds (the Python client)
    done: int = 0
    errors: int = 0
    seconds: float = 0.0
    p50_ms: float = float("nan")  # set directly by wrk; else from latencies
    p99_ms: float = float("nan")
    server_cpu: float = 0.0  # CPU seconds the server process used during the phase
    client_cpu: float = 0.0  # ... and the load generator

    def figures(self) -> dict[str, float]:
        if self.latencies:
            lat = np.asarray(self.latencies) * 1e3
            self.done = len(lat)
            self.p50_ms, self.p99_ms = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
        per = 1e6 / max(self.done + self.errors, 1)
        return {
            "rps": round(self.done / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "requests": self.done,
            "errors": self.errors,
            "server_cpu_us_per_request": round(self.server_cpu * per, 1),
            "client_cpu_us_per_request": round(self.client_cpu * per, 1),
            # share of one core the generator used: near 1.0 it, not the server, would set the pace
            "client_core_share": round(self.client_cpu / self.seconds, 2) if self.seconds else 0.0,
        }


class Connection:
    """One HTTP/1.1 keep-alive connection; ``get`` sends one request and reads the whole answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def get(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length)
        return status, body

    def close(self) -> None:
        self.writer.close()


def requests_for(paths: list[str]) -> list[bytes]:
    return [f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() for p in paths]


async def closed_loop(port: int, requests: list[bytes], connections: int, seconds: float) -> Phase:
    phase = Phase()
    conns = [await Connection.open(port) for _ in range(connections)]
    deadline = time.perf_counter() + seconds

    async def worker(conn: Connection, offset: int) -> None:
        i = offset
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            status, _ = await conn.get(requests[i % len(requests)])
            if status == 200:
                phase.latencies.append(time.perf_counter() - t)
            else:
                phase.errors += 1
            i += connections

    start = time.perf_counter()
    await asyncio.gather(*(worker(c, k) for k, c in enumerate(conns)))
    phase.seconds = time.perf_counter() - start
    for c in conns:
        c.close()
    return phase


async def open_loop(port: int, requests: list[bytes], rate: float, seconds: float, connections: int) -> Phase:
    """Requests due every 1/rate s; latency from when each was due (a late start counts against the server)."""
    phase = Phase()
    n = int(rate * seconds)
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    conns = [await Connection.open(port) for _ in range(connections)]

    async def worker(conn: Connection) -> None:
        while (item := await queue.get()) is not None:
            due, request = item
            status, _ = await conn.get(request)
            if status == 200:
                phase.latencies.append(time.perf_counter() - due)
            else:
                phase.errors += 1

    workers = [asyncio.create_task(worker(c)) for c in conns]
    start = time.perf_counter()
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((due, requests[i % len(requests)]))
    for _ in conns:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    phase.seconds = time.perf_counter() - start
    for c in conns:
        c.close()
    return phase


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]


class Driver:
    """Runs one measured phase against a server with the chosen generator, timing both sides' CPU."""

    def __init__(self, client: str, workdir: Path, connections: int) -> None:
        self.client = client
        self.workdir = workdir
        self.connections = connections
        (workdir / "wrk.lua").write_text(WRK_SCRIPT)

    def closed(self, server: Server, paths: list[str], seconds: float) -> Phase:
        cpu = cpu_seconds(server.proc.pid)
        if self.client == "wrk":
            phase = self._wrk(server.port, paths, seconds)
        else:
            client = time.process_time()
            phase = asyncio.run(closed_loop(server.port, requests_for(paths), self.connections, seconds))
            phase.client_cpu = time.process_time() - client
        phase.server_cpu = cpu_seconds(server.proc.pid) - cpu
        return phase

    def open(self, server: Server, paths: list[str], rate: float, seconds: float, connections: int) -> Phase:
        """A fixed rate: always the Python client (wrk has no open-loop mode)."""
        cpu, client = cpu_seconds(server.proc.pid), time.process_time()
        phase = asyncio.run(open_loop(server.port, requests_for(paths), rate, seconds, connections))
        phase.server_cpu, phase.client_cpu = cpu_seconds(server.proc.pid) - cpu, time.process_time() - client
        return phase

    def mixed(self, server: Server, emb: list[str], pins: list[str], seconds: float) -> tuple[Phase, Phase]:
        """Both target rates at once (look-ups and top-k share the server as they would in service)."""
        rate_e, rate_p = TARGETS["embedding"][0], TARGETS["pins"][0]

        async def both() -> list[Phase]:
            return list(
                await asyncio.gather(
                    open_loop(server.port, requests_for(emb), rate_e, seconds, 64),
                    open_loop(server.port, requests_for(pins), rate_p, seconds, 32),
                )
            )

        cpu, client = cpu_seconds(server.proc.pid), time.process_time()
        e, p = asyncio.run(both())
        for phase in (e, p):  # CPU is shared by the two streams: each is charged all of it
            phase.server_cpu, phase.client_cpu = cpu_seconds(server.proc.pid) - cpu, time.process_time() - client
        return e, p

    def _wrk(self, port: int, paths: list[str], seconds: float) -> Phase:
        listing = self.workdir / "paths.txt"
        listing.write_text("".join(p + "\n" for p in paths))
        command = [
            "wrk", "-t1", f"-c{self.connections}", f"-d{seconds:g}s", "--timeout", "10s",
            "-s", str(self.workdir / "wrk.lua"), f"http://127.0.0.1:{port}", "--", str(listing),
        ]  # fmt: skip
        before = children_cpu_seconds()
        out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
        line = out.stdout.strip().splitlines()[-1]
        w = json.loads(line)
        phase = Phase(done=w["requests"] - w["non2xx"], errors=w["non2xx"] + w["socket_errors"], seconds=w["seconds"])
        phase.p50_ms, phase.p99_ms = w["p50_ms"], w["p99_ms"]
        phase.client_cpu = children_cpu_seconds() - before
        return phase


def start_servers(root: Path, names: list[str], timeout: float) -> tuple[list[Server], float]:
    """Start the servers side by side (``fastapi``: ``serve.fast_lookup = false``); wait until all are healthy."""
    servers = []
    for name in names:
        port = free_port()
        cfg = f"ServeConfig(fast_lookup={name != 'fastapi'})"
        code = (
            "from linksage.config.serve import ServeConfig; from linksage.serve.server import serve; "
            f"serve({str(root)!r}, '127.0.0.1', {port}, serve_cfg={cfg})"
        )
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        servers.append(Server(name, port, proc))
    t0 = time.perf_counter()
    waiting = list(servers)
    while waiting:
        for s in list(waiting):
            if s.proc.poll() is not None:
                stop(servers)
                err = s.proc.stderr.read().decode()[-2000:] if s.proc.stderr else ""
                raise RuntimeError(f"the {s.name} server exited: {err}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{s.port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        waiting.remove(s)
            except OSError:
                pass
        if waiting and time.perf_counter() - t0 > timeout:
            stop(servers)
            raise RuntimeError(f"the servers did not answer /healthz within {timeout:.0f} s")
        time.sleep(0.5)
    return servers, time.perf_counter() - t0


def stop(servers: list[Server]) -> None:
    for s in servers:
        s.proc.terminate()
    for s in servers:
        try:
            s.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            s.proc.kill()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def median_of(runs: list[dict[str, float]], key: str) -> float:
    return round(float(np.median([r[key] for r in runs])), 2)


def drive(driver: Driver, servers: list[Server], urls: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Every phase; the embedding look-up's closed loop alternates between the servers, ``--repeats`` times."""
    rng = np.random.default_rng(0)
    picks = [urls[i] for i in rng.integers(0, len(urls), 20_000)]
    emb = [f"/v1/pages/embedding?url={quote(u, safe='')}&dim=64" for u in picks]
    pins = [f"/v1/pages/pins?url={quote(u, safe='')}&k=20" for u in picks]
    fast = servers[0]
    for s in servers:  # warm-up: page faults, first-call costs
        driver.closed(s, emb, 2.0)
    driver.closed(fast, pins, 2.0)
    runs: dict[str, list[dict[str, float]]] = {s.name: [] for s in servers}
    for r in range(args.repeats):
        order = servers if r % 2 == 0 else servers[::-1]  # neither server always goes first
        for s in order:
            runs[s.name].append(driver.closed(s, emb, args.seconds).figures())
            print(f"[{r + 1}/{args.repeats}] {s.name}: {runs[s.name][-1]}", file=sys.stderr)
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        prefix = "embedding" if name == fast.name else f"embedding_{name}"
        for key in rs[0]:
            out[f"{prefix}_{key}"] = median_of(rs, key)
        out[f"{prefix}_rps_runs"] = [r["rps"] for r in rs]
        out[f"{prefix}_p99_ms_runs"] = [r["p99_ms"] for r in rs]
    if len(servers) > 1:
        base = runs[servers[1].name]
        paired = [f["rps"] / b["rps"] for f, b in zip(runs[fast.name], base, strict=True)]
        cpu = [
            b["server_cpu_us_per_request"] / f["server_cpu_us_per_request"]
            for f, b in zip(runs[fast.name], base, strict=True)
        ]
        out["embedding_ratio_vs_fastapi"] = round(float(np.median(paired)), 2)  # look-ups/s, paired per repeat
        out["embedding_cpu_ratio_vs_fastapi"] = round(float(np.median(cpu)), 2)  # server CPU per look-up
    for key, value in driver.closed(fast, pins, args.seconds).figures().items():
        out[f"pins_{key}"] = value
    rate_e, rate_p = TARGETS["embedding"][0], TARGETS["pins"][0]
    for key, value in driver.open(fast, emb, rate_e, args.seconds, 64).figures().items():
        out[f"embedding_at_target_{key}"] = value
    for key, value in driver.open(fast, pins, rate_p, args.seconds, 32).figures().items():
        out[f"pins_at_target_{key}"] = value
    mixed_e, mixed_p = driver.mixed(fast, emb, pins, args.seconds)
    for name, phase in (("embedding", mixed_e), ("pins", mixed_p)):
        f = phase.figures()
        for key in ("rps", "p50_ms", "p99_ms", "errors"):
            out[f"mixed_{name}_{key}"] = f[key]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=1_000_000)
    parser.add_argument("--pins", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured phase")
    parser.add_argument("--repeats", type=int, default=3, help="closed-loop look-up phases per server")
    parser.add_argument("--connections", type=int, default=16, help="closed-loop concurrency")
    parser.add_argument(
        "--client", choices=["auto", "wrk", "python"], default="auto", help="closed-loop generator (auto: wrk if found)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the FastAPI-route server (half the memory)")
    parser.add_argument(
        "--keep", type=Path, default=None, help="build the run here and keep it (reused when it matches)"
    )
    parser.add_argument("--startup-timeout", type=float, default=600.0)
    args = parser.parse_args()
    client = args.client if args.client != "auto" else ("wrk" if shutil.which("wrk") else "python")
    if client == "wrk" and not shutil.which("wrk"):
        parser.error("--client wrk: wrk is not on PATH (Debian: apt-get install wrk)")

    root = args.keep or Path(tempfile.mkdtemp(prefix="linksage-serve-load-"))
    params = root / "params.json"
    reuse = params.exists() and json.loads(params.read_text()) == {"pages": args.pages, "pins": args.pins}
    load_before = os.getloadavg()
    build = {} if reuse else build_run(root, args.pages, args.pins)
    print(f"run directory {root} ({'reused' if reuse else f'built: {build}'})", file=sys.stderr)
    names = ["fast"] if args.no_baseline else ["fast", "fastapi"]
    servers, startup = start_servers(root, names, args.startup_timeout)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        with tempfile.TemporaryDirectory(prefix="serve-load-client-") as work:
            figures = drive(Driver(client, Path(work), args.connections), servers, page_urls(args.pages), args)
    finally:
        stop(servers)
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    result: dict[str, object] = dict(figures)
    for name, (rps, p99) in TARGETS.items():
        # met: the closed loop sustains the rate, and at that rate (open loop) the p99 is within bound
        at = f"{name}_at_target"
        result[f"{name}_target_met"] = bool(
            figures[f"{name}_rps"] >= rps
            and figures[f"{at}_rps"] >= 0.99 * rps
            and figures[f"{at}_p99_ms"] <= p99
            and figures[f"{at}_errors"] == 0
        )
        result[f"mixed_{name}_target_met"] = bool(
            figures[f"mixed_{name}_rps"] >= 0.99 * rps
            and figures[f"mixed_{name}_p99_ms"] <= p99
            and figures[f"mixed_{name}_errors"] == 0
        )
    result.update(
        {
            "client": client,
            "pages": args.pages,
            "pins": args.pins,
            "connections": args.connections,
            "seconds_per_phase": args.seconds,
            "repeats": args.repeats,
            "server_startup_s": round(startup, 1),
            **build,
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "machine": f"{machine()}, Python {platform.python_version()}",
        }
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
