"""``linksage update``: only new or changed pages are encoded, walked and embedded; the rest stay bit-identical."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from update_world import DAY, NEXT_DAY, config, copy_run, day_input

from linksage.cli import main
from linksage.content.text import HashingTextEncoder
from linksage.store.lance_store import EmbeddingStore
from linksage.train.infer import PageEmbedder
from linksage.update import run as update_run
from linksage.update.run import update


def store_rows(run: Path, version: int | None = None) -> dict[int, tuple[bytes, str, str]]:
    """page_id -> (embedding bytes, model version, day) of the store at ``version`` (default the newest)."""
    table = EmbeddingStore.open(run / "store", version=version).read()
    emb = table["embedding"].combine_chunks().values.to_numpy()
    dim = len(emb) // max(table.num_rows, 1)
    ids = table["page_id"].to_pylist()
    models, days = table["model_version"].to_pylist(), [str(d) for d in table["day"].to_pylist()]
    return {i: (emb[k * dim : (k + 1) * dim].tobytes(), models[k], days[k]) for k, i in enumerate(ids)}


def manifests(run: Path) -> dict[str, str]:
    return {s: (run / s / "manifest.json").read_text() for s in ("ingest", "content", "graph", "walk", "embed")}


def test_update_touches_only_new_and_changed_pages(run: Path, day: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[str] = []
    embedded: list[np.ndarray] = []
    real_encode, real_embed = HashingTextEncoder.encode, PageEmbedder.embed

    def spy_encode(self: HashingTextEncoder, texts: list[str]) -> np.ndarray:
        encoded.extend(texts)
        return real_encode(self, texts)

    def spy_embed(self: PageEmbedder, pages: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        embedded.append(np.asarray(pages).copy())
        return real_embed(self, pages, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(HashingTextEncoder, "encode", spy_encode)
    monkeypatch.setattr(PageEmbedder, "embed", spy_embed)
    before = store_rows(run)
    old_walk = np.load(run / "walk" / "neighbours.npy")
    n_old_pages, n_old_pins = len(old_walk), pq.read_metadata(run / "ingest" / "pins.parquet").num_rows

    summary = update(config(), run, day, DAY)

    n_pages = pq.read_metadata(run / "ingest" / "pages.parquet").num_rows
    n_pins = pq.read_metadata(run / "ingest" / "pins.parquet").num_rows
    new_pages, new_pins = n_pages - n_old_pages, n_pins - n_old_pins
    assert new_pages == summary["counts"]["ingest_new_pages"] > 0 and new_pins > new_pages
    # text encoding: at most the day's pins and pages (the shared cache may know them from another test)
    assert len(encoded) <= new_pages + new_pins
    assert summary["counts"]["content_texts_encoded"] + summary["counts"]["content_text_cache_hits"] > 0
    # inference: exactly the pages the embed stage selected, among them every new page
    pages = np.concatenate(embedded)
    assert len(pages) == summary["counts"]["embed_embedded"] < n_pages // 4
    assert set(range(n_old_pages, n_pages)) <= set(pages.tolist())

    # walk rows: old pages keep theirs unless the neighbour-change rule adopted a new top-K
    walk = np.load(run / "walk" / "neighbours.npy")
    adopted = np.load(run / "walk" / "adopted.npy")
    kept = np.setdiff1d(np.arange(n_old_pages), adopted)
    np.testing.assert_array_equal(walk[kept], old_walk[kept])
    assert len(np.load(run / "walk" / "walked.npy")) == summary["counts"]["walk_walked"] < n_pages // 4

    # the store: one new version; pages not embedded keep their rows bit for bit
    after = store_rows(run)
    store = EmbeddingStore.open(run / "store")
    assert store.version == summary["store_version"] == EmbeddingStore.open(run / "store", version=None).version
    assert len(after) == n_pages and len(before) == n_old_pages
    changed = {pid for pid in after if pid not in before or after[pid] != before[pid]}
    assert len(changed) == len(pages)
    for pid in set(before) - changed:
        assert after[pid] == before[pid]
    assert all(after[pid][2] == DAY for pid in changed)
    assert f"day-{DAY}" in store.history()[-1].tags


def test_rerunning_a_day_is_idempotent_and_days_accumulate(run: Path, day: Path, tmp_path: Path) -> None:
    first = update(config(), run, day, DAY)
    rows, version, state = store_rows(run), first["store_version"], manifests(run)
    again = update(config(), run, day, DAY)
    assert again["rerun"] and not again["committed"] and again["store_version"] == version
    assert again["counts"]["embed_embedded"] == 0 and store_rows(run) == rows
    assert {k: v for k, v in manifests(run).items() if k != "embed"} == {k: v for k, v in state.items() if k != "embed"}

    second = update(config(), run, day_input(tmp_path / NEXT_DAY, NEXT_DAY), NEXT_DAY)
    assert second["store_version"] == version + 1 and second["counts"]["ingest_new_pages"] > 0
    days = json.loads((run / "update" / "days.json").read_text())
    assert [d["day"] for d in days] == [DAY, NEXT_DAY]
    assert [u["day"] for u in json.loads((run / "walk" / "manifest.json").read_text())["updates"]] == [DAY, NEXT_DAY]
    # the pipeline still sees every stage as fresh: a plain run redoes nothing
    from linksage.pipeline import STAGES, stage_key
    from linksage.rundir import RunDir

    rd = RunDir(run)
    for stage in STAGES[:6]:
        assert stage_key(stage, config(), rd)[0] == rd.manifest(stage.name)["key"], stage.name  # type: ignore[index]


def test_an_applied_day_with_other_input_is_refused(run: Path, day: Path, tmp_path: Path) -> None:
    update(config(), run, day, DAY)
    other = day_input(tmp_path / "other", DAY, growth=0.05)
    code = main(["update", "--run-dir", str(run), "--input", str(other), "--day", DAY, *sets()])
    assert code == 2


def test_a_changed_config_is_refused(run: Path, day: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["update", "--run-dir", str(run), "--input", str(day), "--day", DAY, *sets(), "--set", "walk.top_k=5"])
    assert code == 2
    assert "stage 'walk'" in capsys.readouterr().err


def test_retrain_reembeds_every_page(run: Path, day: Path) -> None:
    summary = update(config(), run, day, DAY, retrain=True)  # the model trains on the grown run: new weights
    assert summary["retrain"] and summary["counts"]["embed_embedded"] == summary["counts"]["embed_pages"]


def sets() -> list[str]:
    from update_world import OVERRIDES

    return [arg for item in OVERRIDES for arg in ("--set", item)]


def test_pages_whose_board_tokens_changed_are_embedded_again(run: Path, day: Path) -> None:
    from linksage.train.infer import load_model

    model = load_model(run / "train")
    before = model.features(run)
    assert before.boards is not None, "the template model takes board tokens (train.board_tokens > 0)"
    old_boards = before.boards.numpy().copy()
    rows = store_rows(run)
    update(config(), run, day, DAY)
    after = model.features(run)
    assert after.boards is not None
    moved = np.flatnonzero((after.boards.numpy()[: len(old_boards)] != old_boards).any(axis=1))
    assert len(moved) > 0, "the day should give some old page a new board"
    urls = pq.read_table(run / "ingest" / "pages.parquet", columns=["url"])["url"].combine_chunks()
    from linksage.store.fingerprint import page_ids

    ids = page_ids(urls.take(moved))
    now = store_rows(run)
    assert all(now[int(i)] != rows[int(i)] for i in ids)  # re-embedded: a new row (day and bytes)


def test_comparing_only_the_days_pages_selects_what_comparing_every_page_does(
    run: Path, day: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the day also re-crawls two old pages and re-texts an old board: their readers must be found too
    edited = tmp_path / "day"
    shutil.copytree(day, edited)
    old_pages = pq.read_table(run / "ingest" / "pages.parquet", columns=["url"])["url"].to_pylist()
    pages = pq.read_table(edited / "pages" / "part-00000.parquet")
    recrawl = pa.table(
        {
            "url": [old_pages[3], old_pages[40]],
            "title": ["a new title", "another new title"],
            "description": [None] * 2,
            "body": [None] * 2,
            "fetched_at": [pages["fetched_at"][0].as_py()] * 2,
        },
        schema=pages.schema,
    )
    pq.write_table(pa.concat_tables([pages, recrawl]), edited / "pages" / "part-00000.parquet")
    board = pq.read_table(run / "ingest" / "boards.parquet", columns=["board_id"])["board_id"][2].as_py()
    (edited / "board_meta").mkdir()
    pq.write_table(
        pa.table({"board_id": [board], "text": ["a board about something else"]}),
        edited / "board_meta" / "part-00000.parquet",
    )

    other = copy_run(run, run.parent / f"full-{tmp_path.name}")
    limited = update(config(), run, edited, DAY)
    c = limited["counts"]
    assert c["ingest_pages_recrawled"] == 2 and c["ingest_boards_retexted"] == 1
    assert c["embed_checked"] == c["walk_touched"] < c["embed_pages"] // 2  # only the day's pages were compared

    monkeypatch.setattr(update_run, "_store_follows_run", lambda cfg, rd: False)
    full = update(config(), other, edited, DAY)
    assert full["counts"]["embed_checked"] == full["counts"]["embed_pages"]  # every page compared
    assert c["embed_embedded"] == full["counts"]["embed_embedded"] > c["ingest_new_pages"]
    assert store_rows(run) == store_rows(other)


def test_every_page_is_compared_when_the_store_moved_since_the_last_embed(run: Path, day: Path) -> None:
    store = EmbeddingStore.open(run / "store")
    store.restore(store.version)  # the same rows as a new version: not the one the last embed made
    summary = update(config(), run, day, DAY)
    assert summary["counts"]["embed_checked"] == summary["counts"]["embed_pages"]


def test_with_pin_means_every_stored_row_is_what_the_grown_run_gives(tmp_path: Path, day: Path) -> None:
    """A new pin moves its board's mean for pages the day's walks never reach: every page is compared, and
    the store ends up holding exactly what inference on the grown run gives, page for page."""
    from linksage.pipeline import run_stages
    from linksage.store.fingerprint import page_ids
    from linksage.train.infer import PageEmbedder

    means = ("train.board_means=true", "train.neighbour_means=true")
    run = tmp_path / "run"
    run_stages(config(means), run, ["embed"])
    summary = update(config(means), run, day, DAY)
    c = summary["counts"]
    assert c["embed_checked"] == c["embed_pages"] > c["walk_touched"]
    assert c["embed_embedded"] > c["walk_touched"]  # pages the walks did not touch moved too
    urls = pq.read_table(run / "ingest" / "pages.parquet", columns=["url"])["url"].combine_chunks()
    direct = PageEmbedder.from_run(run / "train", run, "cpu").embed(np.arange(len(urls)))
    rows = store_rows(run)
    stored = np.stack([np.frombuffer(rows[int(i)][0], dtype=np.float32) for i in page_ids(urls)])
    np.testing.assert_allclose(stored, direct, atol=1e-5)
