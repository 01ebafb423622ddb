"""The HTML report: tables, plots and sampled query pages with their neighbours and top pins.

One self-contained ``report.html`` beside a ``plots/`` folder of PNGs, referenced by relative paths so
the report opens straight from the run directory (or from a copy of the ``evaluate`` folder).
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linksage.evaluate import plots
from linksage.evaluate.embeddings import Evaluation
from linksage.evaluate.targets import format_value
from linksage.rundir import atomic_write_text


@dataclass(frozen=True)
class PinHit:
    """One pin in a page's result list."""

    rank: str  # "3", or "> 100" beyond the exact ranks kept
    text: str
    score: float
    positive: bool
    pin_id: str = ""


@dataclass(frozen=True)
class PageCard:
    """A sampled query page as shown in the report."""

    url: str
    tags: list[str]  # slices the page belongs to
    degree: int  # number of positive pins
    first_rank: int  # rank of the best positive over the whole pool
    neighbours: list[tuple[str, float]]  # (url, visits), by visits desc
    top_pins: list[PinHit]
    missed: list[PinHit] = field(default_factory=list)  # positives outside the top list
    baseline_ranks: dict[str, int] = field(default_factory=dict)  # best positive's rank under each baseline


_CSS = """
body { font-family: -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 24px auto; max-width: 1180px;
       color: #222; line-height: 1.4; padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px;
     margin-top: 1.8em; } h3 { margin-bottom: 0.3em; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th { background: #f3f5f8; } td.name, th.name { text-align: left; }
tr.main td { font-weight: 600; background: #f5f9ff; }
.met { color: #1b7f3b; font-weight: 600; } .unmet { color: #b3261e; font-weight: 600; } .na { color: #888; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; } .plots figure { margin: 0; flex: 0 1 560px; }
.plots img { width: 100%; border: 1px solid #eee; } .plots figcaption { font-size: 0.85em; color: #555; }
.tables { display: flex; flex-wrap: wrap; gap: 0 24px; align-items: flex-start; }
.card h4 { margin: 8px 0 4px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; margin: 12px 0; }
.card .url { font-family: monospace; font-size: 0.95em; word-break: break-all; }
.tag { display: inline-block; background: #eef2f7; border-radius: 3px; padding: 0 6px; margin-right: 4px;
       font-size: 0.8em; color: #345; }
.cols { display: flex; gap: 18px; flex-wrap: wrap; } .cols > div { flex: 1 1 420px; min-width: 0; }
.card table { width: 100%; } .card td { text-align: left; vertical-align: top; }
.card td.num { text-align: right; white-space: nowrap; width: 1%; }
.card tr.pos td { background: #e8f6ec; } .small { font-size: 0.85em; color: #555; }
.nbr { font-family: monospace; font-size: 0.85em; word-break: break-all; }
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return '<span class="na">–</span>'
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _e(value)


def _metric_table(metrics: dict[str, Any], metric: str) -> str:
    """Rows = models, columns = every dim any model was scored at."""
    rows = [(metrics["model"], metrics, True)] + [(n, b, False) for n, b in metrics["baselines"].items()]
    dims = sorted({int(d) for _, doc, _ in rows for d in doc.get(metric, {})})
    head = "".join(f"<th>{d}</th>" for d in dims)
    body = []
    for name, doc, is_main in rows:
        cells = "".join(f"<td>{_fmt(doc.get(metric, {}).get(str(d)))}</td>" for d in dims)
        body.append(f'<tr class="{"main" if is_main else ""}"><td class="name">{_e(name)}</td>{cells}</tr>')
    return f'<table><tr><th class="name">{_e(metric)} \\ dim</th>{head}</tr>{"".join(body)}</table>'


def _slice_table(metrics: dict[str, Any], metric: str) -> str:
    """Rows = slices, columns = models at the main model's largest dim (and a single-dim model at its own dim)."""
    top = str(metrics["dims"][-1])
    models = [metrics["model"], *metrics["baselines"]]

    def dim_of(model: str) -> str:
        dims = metrics["dims"] if model == metrics["model"] else metrics["baselines"][model]["dims"]
        return top if int(top) in dims else str(max(dims))

    def value(doc: dict[str, Any], model: str) -> Any:
        source = doc if model == metrics["model"] else doc.get("baselines", {}).get(model, {})
        return source.get(metric, {}).get(dim_of(model))

    head = "".join(f"<th>{_e(m)}{'' if dim_of(m) == top else f' (dim {dim_of(m)})'}</th>" for m in models)
    rows = [f'<tr class="main"><td class="name">all</td><td>{metrics["num_queries"]:,}</td><td>1.00</td>']
    rows[0] += "".join(f"<td>{_fmt(value(metrics, m))}</td>" for m in models) + "</tr>"
    for name, doc in metrics["slices"].items():
        cells = "".join(f"<td>{_fmt(value(doc, m))}</td>" for m in models)
        rows.append(
            f'<tr><td class="name">{_e(name)}</td><td>{doc["num_queries"]:,}</td>'
            f"<td>{_fmt(doc['share'], 2)}</td>{cells}</tr>"
        )
    return (
        f'<table><tr><th class="name">slice ({_e(metric)} at dim {top})</th><th>queries</th><th>share</th>'
        f"{head}</tr>{''.join(rows)}</table>"
    )


def _distribution_table(metrics: dict[str, Any]) -> str:
    cols = [
        ("positive_mean", "positive mean"),
        ("positive_share_above_0.25", "positives > 0.25"),
        ("negative_mean", "negative mean"),
        ("negative_p95", "negative p95"),
        ("negative_share_above_0.25", "negatives > 0.25"),
        ("kurtosis", "excess kurtosis"),
    ]
    head = "".join(f"<th>{_e(label)}</th>" for _, label in cols)
    rows = []
    models = [(metrics["model"], metrics["distributions"]), *metrics.get("baseline_distributions", {}).items()]
    for name, per_dim in models:
        for dim, summary in per_dim.items():
            cells = "".join(f"<td>{_fmt(summary.get(key))}</td>" for key, _ in cols)
            cls = "main" if name == metrics["model"] else ""
            rows.append(f'<tr class="{cls}"><td class="name">{_e(name)}</td><td>{_e(dim)}</td>{cells}</tr>')
    return f'<table><tr><th class="name">model</th><th>dim</th>{head}</tr>{"".join(rows)}</table>'


def _targets_table(targets: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name, check in targets.items():
        met = check["met"]
        verdict = (
            '<span class="na">not measured</span>'
            if met is None
            else ('<span class="met">met</span>' if met else '<span class="unmet">not met</span>')
        )
        note = check.get("missing", "")
        rows.append(
            f'<tr><td class="name">{_e(name)}</td><td class="name">{_e(check["target"])}</td>'
            f'<td>{_e(format_value(check))}</td><td class="name">{verdict} {_e(note)}</td></tr>'
        )
    return (
        '<table><tr><th class="name">check</th><th class="name">target</th><th>value</th>'
        f'<th class="name">verdict</th></tr>{"".join(rows)}</table>'
    )


def _card(card: PageCard, index: int) -> str:
    others = "".join(f" · {_e(name)}: {rank:,}" for name, rank in card.baseline_ranks.items())
    tags = "".join(f'<span class="tag">{_e(t)}</span>' for t in card.tags)
    nbrs = "".join(
        f'<tr><td class="nbr">{_e(url)}</td><td class="num">{visits:,.0f}</td></tr>' for url, visits in card.neighbours
    )
    nbr_html = (
        f'<table><tr><th class="name">neighbour page</th><th>visits</th></tr>{nbrs}</table>'
        if card.neighbours
        else '<p class="small">no walk neighbours</p>'
    )

    def hit_rows(hits: Sequence[PinHit]) -> str:
        return "".join(
            f'<tr class="{"pos" if h.positive else ""}"><td class="num">{_e(h.rank)}</td>'
            f'<td class="num">{h.score:.3f}</td><td>{"✔ " if h.positive else ""}{_e(h.text) or "<i>(no text)</i>"}'
            f"</td></tr>"
            for h in hits
        )

    missed = (
        f'<p class="small">positives outside the top {len(card.top_pins)}:</p><table>{hit_rows(card.missed)}</table>'
        if card.missed
        else ""
    )
    return f"""
<div class="card" id="page-{index}">
  <div class="url"><a href="{_e(card.url)}" rel="noreferrer">{_e(card.url)}</a></div>
  <div class="small">{tags} {card.degree} positive pin{"s" if card.degree != 1 else ""} ·
    best positive at rank <b>{card.first_rank:,}</b>{others}</div>
  <div class="cols">
    <div><h4>top pins (✔ = true positive)</h4>
      <table><tr><th>rank</th><th>cosine</th><th class="name">pin text</th></tr>{hit_rows(card.top_pins)}</table>
      {missed}</div>
    <div><h4>graph neighbours</h4>{nbr_html}</div>
  </div>
</div>"""


def write_report(
    out_dir: Path,
    ev: Evaluation,
    metrics: dict[str, Any],
    targets: dict[str, dict[str, Any]],
    cards: Sequence[PageCard],
    *,
    title: str = "linksage evaluation",
    notes: Sequence[str] = (),
) -> Path:
    """Draw the plots into ``out_dir/plots`` and write ``out_dir/report.html``; returns the report's path."""
    plot_dir = out_dir / "plots"
    top = ev.main.dims[-1]
    metric = f"recall@{max(ev.ks)}"
    images: list[tuple[str, str]] = []

    def plot(name: str, caption: str) -> Path:
        images.append((f"plots/{name}", caption))
        return plot_dir / name

    plots.recall_by_dim(ev, metric, plot(f"{metric.replace('@', '_at_')}_by_dim.png", f"{metric} by dim"))
    plots.recall_by_dim(ev, "mrr", plot("mrr_by_dim.png", "MRR by dim"))
    plots.score_histograms(ev.main, top, plot(f"scores_dim{top}.png", f"score distribution at dim {top}"))
    if 64 in ev.main.dims and top != 64:
        plots.score_histograms(ev.main, 64, plot("scores_dim64.png", "score distribution at dim 64"))
    with_pairs = [ev.main] + [b for b in ev.baselines.values() if b.name in ("content_only", "zero_shot")]
    plots.pairwise_histogram(with_pairs, plot("pairwise_cosines.png", "pairwise cosines of page embeddings"))
    if ev.slices:
        plots.slice_bars(ev, metric, top, plot(f"slices_dim{top}.png", f"{metric} by slice"))

    sections = [
        f"<h2>Targets</h2>{_targets_table(targets)}",
        "<h2>Retrieval</h2>"
        f'<p class="meta">Exact search over a pool of {metrics["pool_size"]:,} pins ({_e(metrics.get("pool", ""))}); '
        f"{metrics['num_queries']:,} query pages with {metrics['num_positives']:,} positive pins. "
        "Recall@k: per query, the share of its positives ranked in the top k, averaged over queries; "
        "MRR: mean of 1 / rank of the best positive over the whole pool. Prefixes re-normalised.</p>",
        '<div class="tables">'
        + "".join(
            _metric_table(metrics, m) for m in [metric, *[f"recall@{k}" for k in ev.ks if k != max(ev.ks)], "mrr"]
        )
        + "</div>",
    ]
    if metrics["baselines"] or metrics["skipped_baselines"]:
        skipped = "".join(f"<li>{_e(n)}: {_e(r)}</li>" for n, r in metrics["skipped_baselines"].items())
        if skipped:
            sections.append(f"<p class='small'>Baselines not run:</p><ul class='small'>{skipped}</ul>")
    if metrics["slices"]:
        sections.append(f"<h2>Slices</h2>{_slice_table(metrics, metric)}{_slice_table(metrics, 'mrr')}")
    if metrics["skipped_slices"]:
        items = "".join(f"<li>{_e(n)}: {_e(r)}</li>" for n, r in metrics["skipped_slices"].items())
        sections.append(f"<p class='small'>Slices not computed:</p><ul class='small'>{items}</ul>")
    sections.append(
        "<h2>Score distributions</h2>"
        f'<p class="meta">Kurtosis: {_e(metrics["kurtosis_definition"])}.</p>{_distribution_table(metrics)}'
    )
    figures = "".join(
        f'<figure><img src="{_e(src)}" alt="{_e(cap)}"><figcaption>{_e(cap)}</figcaption></figure>'
        for src, cap in images
    )
    sections.append(f'<h2>Plots</h2><div class="plots">{figures}</div>')
    if cards:
        sections.append(
            f"<h2>Sampled query pages</h2><p class='meta'>{len(cards)} random query pages; top pins by "
            f"{_e(ev.main.name)} at dim {top}; rows in green are the page's true positives.</p>"
            + "".join(_card(c, i) for i, c in enumerate(cards))
        )
    if notes:
        sections.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>"
        f'<p class="meta">model <b>{_e(ev.main.name)}</b>, dims {", ".join(map(str, ev.main.dims))}; '
        f"written {stamp}</p>{''.join(sections)}</body></html>\n"
    )
    path = out_dir / "report.html"
    atomic_write_text(path, page)
    return path
