"""A synthetic world with planted topics, written as contract input tables in Parquet parts.

Every page, board and domain has a topic (``index % n_topics``). Pins are saved to boards of their
topic (mostly), link to pages of their topic (mostly), carry text drawn from their topic's vocabulary
plus general words, and a target embedding = topic centroid + noise (normalised), plus, with
``board_spread`` > 0, a direction of the pin's board (its theme: what only the graph knows). Pages have noisy
content, no content at all (``missing_content``), and URL slugs that are sometimes random ids
(``opaque_urls``); near-duplicate pins copy another pin and link to a *different* page of the same
topic. So a page's own content often says little about its topic while its neighbourhood (pins,
boards, near-duplicates, domain) says a lot: the graph carries signal the content lacks.

Popularity of pages, boards and domains follows a power law (rank ``r`` drawn as ``n * u**(1/(1-s))``,
i.e. P(rank) ~ rank**-s). Per-page attributes are hashes of the page index, so a part can be written
without knowing any other part: memory is bounded by ``part_rows`` and the same seed gives identical
files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from linksage import log
from linksage.config.ingest import SyntheticSource, parse_time

_TLDS = (".com", ".net", ".org", ".co.uk", ".io", ".info")
_WORDS_PER_TOPIC = 120
_GENERAL_WORDS = 2000
_TITLE_WORDS = (4, 9)  # [low, high) words in a page title
_SLUG_WORDS = 5  # a readable URL slug is the title's first words
_BODY_WORDS = 24
_PIN_WORDS = (6, 13)


@dataclass(frozen=True)
class WorldFiles:
    """Folders of Parquet parts, one per contract table, plus the planted topics (url, topic)."""

    pins: Path
    links: Path
    boards: Path
    board_meta: Path
    pages: Path
    truth: Path


def generate_world(cfg: SyntheticSource, out_dir: Path) -> WorldFiles:
    """Write the world described by ``cfg`` under ``out_dir`` (contract tables, Parquet parts)."""
    world = _World(cfg)
    files = WorldFiles(*(out_dir / name for name in ("pins", "links", "boards", "board_meta", "pages", "truth")))
    for folder in vars(files).values():
        folder.mkdir(parents=True, exist_ok=True)
    bar = log.progress(total=cfg.n_links, desc="synthetic links", unit="rows")
    for part, (pin0, n_pins, n_dup) in enumerate(world.parts):
        pins, links, boards = world.pins_part(part, pin0, n_pins, n_dup)
        _write(pins, files.pins / f"part-{part:05d}.parquet")
        _write(links, files.links / f"part-{part:05d}.parquet")
        _write(boards, files.boards / f"part-{part:05d}.parquet")
        bar.update(links.num_rows)
    bar.close()
    step = cfg.part_rows
    for part, j0 in enumerate(range(0, world.n_pages, step)):
        pages, truth = world.pages_part(np.arange(j0, min(j0 + step, world.n_pages), dtype=np.int64))
        _write(pages, files.pages / f"part-{part:05d}.parquet")
        _write(truth, files.truth / f"part-{part:05d}.parquet")
    for part, b0 in enumerate(range(0, world.n_boards, step)):
        boards_meta = world.board_meta_part(np.arange(b0, min(b0 + step, world.n_boards), dtype=np.int64))
        _write(boards_meta, files.board_meta / f"part-{part:05d}.parquet")
    return files


def _write(table: pa.Table, path: Path) -> None:
    # Scratch files read once: no statistics, no dictionaries, no compression of random floats.
    compression = {c: ("none" if c == "embedding" else "snappy") for c in table.column_names}
    pq.write_table(
        table, path, row_group_size=131_072, use_dictionary=False, write_statistics=False, compression=compression
    )


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fixed pseudo-random bijection of uint64."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _powerlaw(u: np.ndarray, n: np.ndarray | int, skew: float) -> np.ndarray:
    """Ranks in [0, n) with P(rank) ~ (rank + 1)**-skew, from uniforms ``u`` (inverse CDF)."""
    ranks = np.floor(np.asarray(n, dtype=np.float64) * u ** (1.0 / (1.0 - skew))).astype(np.int64)
    return np.minimum(ranks, np.asarray(n, dtype=np.int64) - 1)


def _vocabulary(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct pronounceable pseudo-words."""
    onsets = [*list("bdfgklmnprstvz"), "br", "ch", "dr", "gl", "kr", "pl", "sh", "st", "tr"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou", "ee"]
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < n:
        k = int(rng.integers(2, 4))
        word = "".join(onsets[rng.integers(len(onsets))] + vowels[rng.integers(len(vowels))] for _ in range(k))
        if rng.random() < 0.3:
            word += "n"
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _join_words(vocab: pa.Array, ids: np.ndarray, lengths: np.ndarray, sep: str = " ") -> pa.Array:
    """Row i = the first ``lengths[i]`` words of ``ids[i]``, joined by ``sep``."""
    keep = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    words = pa.ListArray.from_arrays(pa.array(offsets), vocab.take(pa.array(ids[keep])))
    return pc.binary_join(words, sep)


def _text(values: np.ndarray) -> pa.Array:
    """Integers as decimal strings (Arrow's cast: numpy's ``astype(str)`` is ten times slower)."""
    return pa.array(values).cast(pa.string())


def _base36(values: np.ndarray, width: int = 8) -> pa.Array:
    digits = np.frombuffer(b"0123456789abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    out = np.empty((len(values), width), dtype=np.uint8)
    v = values.astype(np.uint64)
    for k in range(width - 1, -1, -1):
        out[:, k] = digits[(v % np.uint64(36)).astype(np.int64)]
        v = v // np.uint64(36)
    return pa.array(out.view(f"S{width}").ravel()).cast(pa.string())


class _World:
    """Sizes, vocabularies, centroids and the per-index attribute functions of one world."""

    def __init__(self, cfg: SyntheticSource) -> None:
        self.cfg = cfg
        self.t_start = parse_time(cfg.start, "ingest.synthetic.start")
        self.t_end = parse_time(cfg.end, "ingest.synthetic.end")
        rng = np.random.default_rng([cfg.seed, 0])
        topics = cfg.n_topics
        words = _vocabulary(rng, topics * _WORDS_PER_TOPIC + _GENERAL_WORDS)
        self.vocab = pa.array(words, pa.string())
        centroids = rng.standard_normal((topics, cfg.embedding_dim)).astype(np.float32)
        self.centroids = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
        self.key = int(_mix(np.array([cfg.seed], dtype=np.uint64))[0])

        # Parts of part_rows link rows; a part's pins are its rows minus its duplicate-link rows.
        self.parts: list[tuple[int, int, int]] = []
        pin0 = 0
        for row0 in range(0, cfg.n_links, cfg.part_rows):
            rows = min(cfg.part_rows, cfg.n_links - row0)
            n_dup = min(int(rows * cfg.duplicate_links / (1.0 + cfg.duplicate_links)), rows // 2)
            self.parts.append((pin0, rows - n_dup, n_dup))
            pin0 += rows - n_dup
        self.n_pins = pin0
        self.n_pages = max(1, min(self.n_pins, round(self.n_pins / cfg.pins_per_page)))
        self.n_boards = max(topics, int(np.ceil(self.n_pins / cfg.pins_per_board)))
        self.n_domains = max(topics, int(np.ceil(self.n_pages / cfg.pages_per_domain)))

    # -- hashing --------------------------------------------------------------------------------------

    def uniform(self, salt: int, index: np.ndarray) -> np.ndarray:
        """Deterministic uniforms in [0, 1) for (salt, index)."""
        with np.errstate(over="ignore"):
            x = index.astype(np.uint64) * np.uint64(0x100000001B3) + np.uint64(self.key) + np.uint64(salt << 40)
        return (_mix(x) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))

    def in_topic(self, topic: np.ndarray, u: np.ndarray, n: int) -> np.ndarray:
        """A power-law pick among the indices ``< n`` whose topic is ``topic`` (i.e. ``topic + k * T``)."""
        t = self.cfg.n_topics
        count = np.maximum((n - topic + t - 1) // t, 1)
        return np.minimum(_powerlaw(u, count, self.cfg.popularity_skew) * t + topic, n - 1)

    def topic_words(self, topic: np.ndarray, u_pick: np.ndarray, u_noise: np.ndarray, noise: float) -> np.ndarray:
        """Word ids: from the topic's vocabulary, or (with probability ``noise``) the general one."""
        skew = self.cfg.popularity_skew
        ids = topic[:, None] * _WORDS_PER_TOPIC + _powerlaw(u_pick, _WORDS_PER_TOPIC, skew)
        off = u_noise < noise
        ids[off] = self.cfg.n_topics * _WORDS_PER_TOPIC + _powerlaw(u_pick[off], _GENERAL_WORDS, skew)
        return ids

    def board_theme(self, board: np.ndarray) -> np.ndarray:
        """(n, embedding_dim) float32 unit vectors: a fixed random direction per board (a hash of its index)."""
        d = self.cfg.embedding_dim
        cell = (board.astype(np.uint64)[:, None] * np.uint64(d) + np.arange(d, dtype=np.uint64)[None, :]).ravel()
        u1, u2 = self.uniform(30, cell), self.uniform(31, cell)
        z = np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)  # Box-Muller: standard normal
        theme = z.reshape(len(board), d).astype(np.float32)
        return theme / np.maximum(np.linalg.norm(theme, axis=1, keepdims=True), np.float32(1e-12))

    # -- pages ----------------------------------------------------------------------------------------

    def page_topic(self, j: np.ndarray) -> np.ndarray:
        return j % self.cfg.n_topics

    def page_birth(self, j: np.ndarray) -> np.ndarray:
        return self.t_start + np.floor(self.uniform(1, j) * (self.t_end - self.t_start)).astype(np.int64)

    def page_domain(self, j: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        own = self.in_topic(self.page_topic(j), self.uniform(2, j), self.n_domains)
        anywhere = _powerlaw(self.uniform(3, j), self.n_domains, cfg.popularity_skew)
        return np.where(self.uniform(4, j) < cfg.domain_purity, own, anywhere)

    def page_title_ids(self, j: np.ndarray, words: int = _TITLE_WORDS[1]) -> tuple[np.ndarray, np.ndarray]:
        """Word ids of the titles' first ``words`` words (the URL slug needs only five), and title lengths."""
        cell = j[:, None] * 64 + np.arange(words)[None, :]
        ids = self.topic_words(self.page_topic(j), self.uniform(5, cell), self.uniform(6, cell), self.cfg.content_noise)
        spread = _TITLE_WORDS[1] - _TITLE_WORDS[0]
        lengths = _TITLE_WORDS[0] + (self.uniform(7, j) * spread).astype(np.int64)
        return ids, lengths

    def page_url(self, j: np.ndarray, slugs: pa.Array | None = None) -> tuple[pa.Array, pa.Array]:
        """(host, path) of each page's canonical URL."""
        d = self.page_domain(j)
        name_ids = self.cfg.n_topics * _WORDS_PER_TOPIC + (_mix(d.astype(np.uint64)) % np.uint64(_GENERAL_WORDS))
        tld = pa.array(_TLDS).take(pa.array(d % len(_TLDS)))
        host = pc.binary_join_element_wise(self.vocab.take(pa.array(name_ids.astype(np.int64))), _text(d), tld, "")
        with np.errstate(over="ignore"):
            scrambled = (j.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) & np.uint64((1 << 40) - 1)
        token = _base36(scrambled)
        if slugs is None:
            ids, lengths = self.page_title_ids(j, _SLUG_WORDS)
            slugs = _join_words(self.vocab, ids, np.minimum(lengths, _SLUG_WORDS), "-")
        opaque = pa.array(self.uniform(8, j) < self.cfg.opaque_urls)
        readable = pc.binary_join_element_wise("/", pc.binary_join_element_wise(slugs, token, "-"), "")
        path = pc.if_else(opaque, pc.binary_join_element_wise("/p/", token, ""), readable)
        return host, path

    def pages_part(self, j: np.ndarray) -> tuple[pa.Table, pa.Table]:
        """Crawled content of pages ``j`` (title/body null where missing) and their planted topics."""
        cfg = self.cfg
        topic = self.page_topic(j)
        ids, lengths = self.page_title_ids(j)
        title = _join_words(self.vocab, ids, lengths)
        slugs = _join_words(self.vocab, ids, np.minimum(lengths, _SLUG_WORDS), "-")
        host, path = self.page_url(j, slugs)
        cell = j[:, None] * 64 + 16 + np.arange(_BODY_WORDS)[None, :]
        body_ids = self.topic_words(topic, self.uniform(9, cell), self.uniform(10, cell), cfg.content_noise)
        body = _join_words(self.vocab, body_ids, np.full(len(j), _BODY_WORDS))
        description = _join_words(self.vocab, body_ids, np.full(len(j), 10))
        missing = pa.array(self.uniform(11, j) < cfg.missing_content)
        canonical = pc.binary_join_element_wise("https://", host, path, "")
        raw = self.raw_urls(host, path, self.uniform(12, j), self.uniform(13, j))
        null = pa.nulls(len(j), pa.string())
        pages = pa.table(
            {
                "url": raw,
                "title": pc.if_else(missing, null, title),
                "description": pc.if_else(missing, null, description),
                "body": pc.if_else(missing, null, body),
                "fetched_at": pa.array(self.page_birth(j) + 3600),
            }
        )
        truth = pa.table({"url": canonical, "topic": pa.array(topic.astype(np.int32))})
        return pages, truth

    def raw_urls(self, host: pa.Array, path: pa.Array, u: np.ndarray, v: np.ndarray) -> pa.Array:
        """URL variants that all canonicalise to ``https://host/path``: scheme, www, case, slash, tracking."""
        n = len(u)
        scheme = np.where(u < 0.5, "http://", "https://")
        www = np.where((u * 7) % 1 < 0.4, "www.", "")
        host_text = pc.if_else(pa.array((u * 13) % 1 < 0.03), pc.utf8_upper(host), host)
        slash = np.where((u * 17) % 1 < 0.15, "/", "")
        extra = np.full(n, "", dtype=object)
        extra[v < 0.10] = "?utm_source=feed&utm_medium=rss"
        extra[(v >= 0.10) & (v < 0.13)] = "?fbclid=IwAR0x"
        extra[(v >= 0.13) & (v < 0.18)] = "#comments"
        return pc.binary_join_element_wise(
            pa.array(scheme), pa.array(www), host_text, path, pa.array(slash), pa.array(extra, pa.string()), ""
        )

    # -- boards ---------------------------------------------------------------------------------------

    def board_meta_part(self, b: np.ndarray) -> pa.Table:
        topic = b % self.cfg.n_topics
        cell = b[:, None] * 8 + np.arange(4)[None, :]
        ids = self.topic_words(topic, self.uniform(20, cell), self.uniform(21, cell), 0.2)
        lengths = 2 + (self.uniform(22, b) * 3).astype(np.int64)
        board_id = pc.binary_join_element_wise("b", _text(b), "")
        return pa.table({"board_id": board_id, "text": _join_words(self.vocab, ids, lengths)})

    # -- pins -----------------------------------------------------------------------------------------

    def pins_part(self, part: int, pin0: int, n: int, n_dup: int) -> tuple[pa.Table, pa.Table, pa.Table]:
        """Pins ``[pin0, pin0 + n)``: the pins table, their link rows (plus ``n_dup`` variants), boards."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, 1, part])
        n_pins, n_pages = self.n_pins, self.n_pages
        i = np.arange(pin0, pin0 + n, dtype=np.int64)
        # Each page's first pin: pages spread evenly over the pin order, so every part looks alike.
        first_page = i * n_pages // n_pins
        is_first = (i == 0) | (first_page != (i - 1) * n_pages // n_pins)
        page = np.where(is_first, first_page, _powerlaw(rng.random(n), n_pages, cfg.popularity_skew))

        def created(page: np.ndarray) -> np.ndarray:
            birth = self.page_birth(page)
            return np.where(is_first, birth, birth + np.floor(rng.random(n) * (self.t_end - birth)).astype(np.int64))

        return self.pins_of(rng, i, page, is_first, n_dup, n_pages, created)

    def day_sizes(self, growth: float) -> tuple[int, int]:
        """(new pages, new pins) of one later day that adds ``growth`` times the world's pages."""
        pages = max(1, round(self.n_pages * growth))
        return pages, max(pages, round(pages * self.cfg.pins_per_page))

    def day_part(self, day: int, growth: float) -> tuple[pa.Table, pa.Table, pa.Table, np.ndarray]:
        """Day ``day`` after the world's end (0 = the first): new pins, their links and boards, new page indices.

        New pages continue the page numbering (their attributes are hashes of the index, like every
        page's); each gets a first pin, and the day's other pins link to any page by the same power law
        (so mostly to popular old pages). Pins are created during the day.
        """
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, 2, day])
        n_new_pages, n_new_pins = self.day_sizes(growth)
        j0 = self.n_pages + day * n_new_pages
        n_pages = j0 + n_new_pages
        i = self.n_pins + day * n_new_pins + np.arange(n_new_pins, dtype=np.int64)
        is_first = np.arange(n_new_pins) < n_new_pages
        page = np.where(
            is_first, j0 + np.arange(n_new_pins), _powerlaw(rng.random(n_new_pins), n_pages, cfg.popularity_skew)
        )
        t0 = self.t_end + day * 86_400

        def created(page: np.ndarray) -> np.ndarray:
            return t0 + np.floor(rng.random(n_new_pins) * 86_400).astype(np.int64)

        n_dup = min(int(n_new_pins * cfg.duplicate_links / (1.0 + cfg.duplicate_links)), n_new_pins // 2)
        pins, links, boards = self.pins_of(rng, i, page, is_first, n_dup, n_pages, created)
        return pins, links, boards, np.arange(j0, n_pages, dtype=np.int64)

    def pins_of(
        self,
        rng: np.random.Generator,
        i: np.ndarray,
        page: np.ndarray,
        is_first: np.ndarray,
        n_dup: int,
        n_pages: int,
        created: Callable[[np.ndarray], np.ndarray],
    ) -> tuple[pa.Table, pa.Table, pa.Table]:
        """Pins ``i`` linking to ``page``: text, target embedding, near-duplicates, links, boards."""
        cfg = self.cfg
        t, n = cfg.n_topics, len(i)
        topic = np.where(rng.random(n) < cfg.link_noise, rng.integers(0, t, n), self.page_topic(page))
        width = _PIN_WORDS[1]
        words = self.topic_words(topic, rng.random((n, width)), rng.random((n, width)), cfg.text_noise)
        lengths = rng.integers(_PIN_WORDS[0], width, n)
        emb = self.centroids[topic] + rng.standard_normal((n, cfg.embedding_dim), dtype=np.float32) * np.float32(
            cfg.target_noise / np.sqrt(cfg.embedding_dim)
        )

        # Near-duplicates: a copy of another pin of this part (a few words changed, a nudged target),
        # linking to a different page of the same topic.
        near = ~is_first & (rng.random(n) < cfg.near_duplicate_rate)
        base = np.flatnonzero(~near)
        dup = np.flatnonzero(near)
        if len(dup) and len(base):
            src = base[rng.integers(0, len(base), len(dup))]
            topic[dup] = topic[src]
            other = self.in_topic(topic[src], rng.random(len(dup)), n_pages)
            clash = other == page[src]
            other[clash] = np.where(other[clash] + t < n_pages, other[clash] + t, other[clash] % t)
            page[dup] = other
            words[dup] = words[src]
            lengths[dup] = lengths[src]
            change = rng.random((len(dup), width)) < 0.1  # about one word in ten: a near-copy
            general = t * _WORDS_PER_TOPIC + rng.integers(0, _GENERAL_WORDS, (len(dup), width))
            words[dup] = np.where(change, general, words[dup])
            emb[dup] = emb[src] + rng.standard_normal((len(dup), cfg.embedding_dim), dtype=np.float32) * np.float32(
                0.1 / np.sqrt(cfg.embedding_dim)
            )
        pin_id = pc.binary_join_element_wise("p", _text(i), "")
        created_at = pa.array(created(page))  # here, in the generator's order of draws

        # Links: one per pin, plus a second URL variant for n_dup pins (merged by canonicalisation).
        twice = np.sort(rng.choice(n, size=min(n_dup, n), replace=False)) if n_dup else np.zeros(0, np.int64)
        link_rows = np.concatenate([np.arange(n), twice])
        host, path = self.page_url(page[link_rows])
        urls = self.raw_urls(host, path, rng.random(len(link_rows)), rng.random(len(link_rows)))
        links = pa.table({"pin_id": pin_id.take(pa.array(link_rows)), "url": urls})

        own = self.in_topic(topic, rng.random(n), self.n_boards)
        anywhere = _powerlaw(rng.random(n), self.n_boards, cfg.popularity_skew)
        board = np.where(rng.random(n) < cfg.board_purity, own, anywhere)
        boards = pa.table({"board_id": pc.binary_join_element_wise("b", _text(board), ""), "pin_id": pin_id})

        if cfg.board_spread > 0:  # the board's theme: what the page's boards say beyond its topic
            emb += np.float32(cfg.board_spread) * self.board_theme(board)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        pins = pa.table(
            {
                "pin_id": pin_id,
                "text": _join_words(self.vocab, words, lengths),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), cfg.embedding_dim),
                "created_at": created_at,
            }
        )
        return pins, links, boards


def generate_day(cfg: SyntheticSource, day: str, out_dir: Path, growth: float = 0.01) -> WorldFiles:
    """The contract tables of one day after the world's ``end`` (pins, links, boards, pages of new pages).

    ``day`` is an ISO date at or after ``cfg.end``; the same config and day give the same files, so a
    day can be generated again to re-run an update. ``board_meta`` is empty: the day's pins join
    existing boards.
    """
    if not 0.0 < growth <= 1.0:
        raise ValueError(f"growth: must be in (0, 1], got {growth}")
    world = _World(cfg)
    start = parse_time(day, "day")
    if start < world.t_end or (start - world.t_end) % 86_400:
        raise ValueError(f"day: expected a date at or after the world's end {cfg.end!r}, got {day!r}")
    d = (start - world.t_end) // 86_400
    files = WorldFiles(*(out_dir / name for name in ("pins", "links", "boards", "board_meta", "pages", "truth")))
    for folder in (files.pins, files.links, files.boards, files.pages, files.truth):
        folder.mkdir(parents=True, exist_ok=True)
    pins, links, boards, new_pages = world.day_part(d, growth)
    pages, truth = world.pages_part(new_pages)
    for folder, table in ((files.pins, pins), (files.links, links), (files.boards, boards)):
        _write(table, folder / "part-00000.parquet")
    _write(pages, files.pages / "part-00000.parquet")
    _write(truth, files.truth / "part-00000.parquet")
    return files


def write_truth(truth_dir: Path, out: Path) -> int:
    """``truth.parquet`` (page_idx, topic) for the canonical pages in ``out``; returns its row count."""
    from linksage.ingest.urls import canonicalise_array
    from linksage.schema import TRUTH_SCHEMA, read_table

    truth = read_table(truth_dir)
    urls, _ = canonicalise_array(truth["url"])
    pages = pq.read_table(out / "pages.parquet", columns=["url"])["url"].combine_chunks()
    page_idx = pc.index_in(urls, value_set=pages)
    known = pc.is_valid(page_idx)
    table = pa.table(
        {
            "page_idx": page_idx.filter(known).cast(pa.int32()),
            "topic": truth["topic"].combine_chunks().filter(known).cast(pa.int32()),
        },
        schema=TRUTH_SCHEMA,
    )
    table = table.sort_by("page_idx")
    pq.write_table(table, out / "truth.parquet")
    return table.num_rows
