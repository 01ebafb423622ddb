"""linksage: graph-aware landing-page embeddings, from input tables to a versioned store.

Every command is a function that takes an argv list (the tests call them so).

linksage run [STAGE ...] --config F --run-dir D [--set section.key=value ...] [--force]
linksage config [--config F] [--set ...]
linksage stages
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from linksage import log
from linksage.config import Config, ConfigError, config_to_toml, load_config
from linksage.errors import LinksageError
from linksage.rundir import MANIFEST, RUN_CONFIG, atomic_write_text

EXIT_USAGE = 2

Command = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        _COMMANDS[name] = fn
        return fn

    return register


def _add_log_args(p: argparse.ArgumentParser, default: object) -> None:
    p.add_argument("--quiet", action="store_true", default=default, help="only warnings and errors; no progress bars")
    p.add_argument("--json-log", action="store_true", default=default, help="log one JSON object per line (for jobs)")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML file overriding the defaults (default: the run directory's config.toml, which every "
        "`linksage run` records, if there is one)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable), e.g. --set walk.top_k=30",
    )


def build_parser() -> argparse.ArgumentParser:
    from linksage.pipeline import STAGES

    parser = argparse.ArgumentParser(prog="linksage", description=__doc__.split("\n")[0] if __doc__ else None)
    _add_log_args(parser, False)
    sub = parser.add_subparsers(dest="command", required=True)
    # the logging flags also after the command (`linksage run --quiet ...`); SUPPRESS keeps the top-level value
    common = argparse.ArgumentParser(add_help=False)
    _add_log_args(common, argparse.SUPPRESS)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    p = add("run", "run pipeline stages (and any stale upstream ones)")
    names = ", ".join(s.name for s in STAGES)
    p.add_argument("stages", nargs="*", help=f"stages to run, in any order: {names} (default: all)")
    p.add_argument("--run-dir", type=Path, required=True, help="the run directory")
    p.add_argument("--force", action="store_true", help="rerun the named stages even when up to date")
    _add_config_args(p)

    p = add("config", "print the resolved config as TOML")
    _add_config_args(p)

    add("stages", "list the pipeline's stages in order")

    p = add("store", "the versioned embedding store")
    store_sub = p.add_subparsers(dest="store_command", required=True)
    q = store_sub.add_parser("history", help="list the store's versions")
    q.add_argument("--run-dir", type=Path, required=True, help="the run directory")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_config_args(q)
    q = store_sub.add_parser("restore", help="make an earlier version the newest again (nothing is deleted)")
    q.add_argument("version", type=int, help="the version to restore (see `linksage store history`)")
    q.add_argument("--run-dir", type=Path, required=True, help="the run directory")
    _add_config_args(q)

    p = add("update", "apply one day of new input: re-walk and re-embed only what changed")
    p.add_argument("--run-dir", type=Path, required=True, help="a run directory whose stages have all completed")
    p.add_argument("--input", type=Path, required=True, help="the day's tables folder (or Reddit posts file/folder)")
    p.add_argument("--day", required=True, help="the day, YYYY-MM-DD (Reddit input: posts created that day)")
    p.add_argument(
        "--input-format",
        choices=("auto", "tables", "reddit"),
        default="auto",
        help="auto: Reddit posts when the config's ingest.source is reddit, else the tables layout",
    )
    p.add_argument("--retrain", action="store_true", help="train the model again on the updated run first")
    p.add_argument("--json", action="store_true", help="print the day's summary as JSON")
    _add_config_args(p)

    p = add("synthetic-day", "write the input tables of one later day of the synthetic world")
    p.add_argument("--day", required=True, help="a date at or after ingest.synthetic.end")
    p.add_argument("--out", type=Path, required=True, help="folder to write pins/, links/, boards/, pages/ into")
    p.add_argument("--growth", type=float, default=0.01, help="new pages as a share of the world's (default 0.01)")
    _add_config_args(p)

    p = add("serve", "the HTTP API and browse page over a run directory")
    p.add_argument("--run-dir", type=Path, required=True, help="the run directory")
    p.add_argument("--host", default=None, help="default: serve.host (127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="default: serve.port (8000)")
    _add_config_args(p)

    p = add("search", "top-k pins for a page URL, or top-k pages for a pin")
    p.add_argument("--run-dir", type=Path, required=True, help="the run directory")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--url", help="a page URL (canonicalised before look-up)")
    which.add_argument("--pin", help="a pin id")
    p.add_argument("-k", type=int, default=10, help="how many results (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON instead of lines")
    _add_config_args(p)
    return parser


def _config(args: argparse.Namespace) -> Config:
    """--config and --set; without --config, the run directory's recorded config (then --set on top)."""
    path, run_dir = args.config, getattr(args, "run_dir", None)
    if path is None and run_dir is not None:
        recorded = Path(run_dir) / RUN_CONFIG
        if recorded.exists():
            path = recorded
            log.event(f"no --config: using the run directory's recorded config {recorded}")
        elif any(Path(run_dir).glob(f"*/{MANIFEST}")):
            log.logger.warning(
                f"no --config and no {recorded}: the built-in defaults, for a run directory with results"
            )
    return load_config(path, args.overrides)


@command("run")
def cmd_run(args: argparse.Namespace) -> int:
    from linksage.pipeline import get_stage, run_stages

    for name in args.stages:
        get_stage(name)  # unknown names fail before any work
    cfg = _config(args)
    atomic_write_text(args.run_dir / RUN_CONFIG, config_to_toml(cfg))
    manifests = run_stages(cfg, args.run_dir, args.stages, force=args.force)
    for name, manifest in manifests.items():
        counts = ", ".join(f"{k}={v:,}" for k, v in manifest.get("counts", {}).items())
        log.event(f"{name}: {counts}" if counts else name)
    return 0


@command("config")
def cmd_config(args: argparse.Namespace) -> int:
    cfg = _config(args)
    sys.stdout.write(config_to_toml(cfg))
    return 0


@command("stages")
def cmd_stages(args: argparse.Namespace) -> int:
    from linksage.pipeline import STAGES

    for stage in STAGES:
        up = f" (after {', '.join(stage.upstream)})" if stage.upstream else ""
        print(f"{stage.name}{up}")
    return 0


@command("store")
def cmd_store(args: argparse.Namespace) -> int:
    from linksage.store.commands import format_history, store_history, store_restore

    cfg = _config(args)
    if args.store_command == "history":
        rows = store_history(args.run_dir, cfg.store)
        print(json.dumps(rows, indent=2, default=str) if args.json else format_history(rows))
    else:
        print(json.dumps(store_restore(args.run_dir, args.version, cfg.store), indent=2))
    return 0


@command("search")
def cmd_search(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from linksage.search.lookup import format_hits, search

    cfg = _config(args)
    hits = search(args.run_dir, url=args.url, pin=args.pin, k=args.k, cfg=cfg.store)
    print(json.dumps([asdict(h) for h in hits], indent=2) if args.json else format_hits(hits))
    return 0


@command("update")
def cmd_update(args: argparse.Namespace) -> int:
    from linksage.update.run import update

    cfg = _config(args)
    summary = update(cfg, args.run_dir, args.input, args.day, input_format=args.input_format, retrain=args.retrain)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        c, t = summary["counts"], summary["timings"]
        log.event(
            f"update {summary['day']}: store version {summary['store_version']}, "
            f"{c.get('embed_embedded', 0):,} pages embedded, {c.get('walk_walked', 0):,} walked, "
            f"{c.get('ingest_new_pages', 0):,} new pages; " + ", ".join(f"{k} {v:.1f}" for k, v in t.items())
        )
    return 0


@command("synthetic-day")
def cmd_synthetic_day(args: argparse.Namespace) -> int:
    from linksage.ingest.synthetic import generate_day

    cfg = _config(args)
    try:
        files = generate_day(cfg.ingest.synthetic, args.day, args.out, args.growth)
    except ValueError as exc:
        raise LinksageError(str(exc)) from exc
    log.event(f"synthetic day {args.day} written to {files.pins.parent}")
    return 0


@command("serve")
def cmd_serve(args: argparse.Namespace) -> int:
    from linksage.serve.server import serve

    serve(args.run_dir, args.host, args.port, _config(args))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log.configure(quiet=args.quiet, json_log=args.json_log)
    try:
        return _COMMANDS[args.command](args)
    except (ConfigError, LinksageError, FileNotFoundError) as exc:
        if args.json_log:
            print(json.dumps({"level": "error", "message": str(exc)}), file=sys.stderr)
        else:
            print(f"linksage: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
