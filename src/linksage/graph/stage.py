"""The ``graph`` stage: canonical tables + content vectors -> one CSR per edge type and direction."""

from __future__ import annotations

import time

from linksage import log
from linksage.graph.build import build_graph, graph_metrics, read_inputs, write_graph
from linksage.pipeline import StageContext, StageResult


def run(ctx: StageContext) -> StageResult:
    cfg = ctx.config.graph
    t = time.perf_counter()
    inputs = read_inputs(ctx.input_dir("ingest"), ctx.input_dir("content"))
    read_s = time.perf_counter() - t
    log.event("[graph] building", **{f"{k}s": v for k, v in inputs.counts.items()}, links=len(inputs.link_pin))
    graph = build_graph(inputs, cfg)
    t = time.perf_counter()
    csr = graph.csr()
    write_graph(graph, csr, ctx.out)
    write_s = time.perf_counter() - t
    t = time.perf_counter()
    metrics = {**graph.metrics, **graph_metrics(graph, csr)}
    metrics_s = time.perf_counter() - t
    timings = {"read_s": read_s, **graph.timings, "csr_write_s": write_s, "metrics_s": metrics_s}
    return StageResult(counts=graph.tallies, metrics=metrics, timings={k: round(v, 3) for k, v in timings.items()})
