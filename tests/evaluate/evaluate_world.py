"""A tiny planted-topic world of page and pin vectors for evaluation tests (no pipeline needed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from linksage.evaluate.embeddings import Embeddings
from linksage.evaluate.metrics import Positives


@dataclass
class World:
    graph: Embeddings  # pages close to their topic
    content: Embeddings  # pages far noisier
    positives: Positives
    topic_of_pin: np.ndarray
    topic_of_page: np.ndarray
    urls: list[str]
    pin_texts: list[str]


def planted_world(n_pages: int = 120, n_pins: int = 1500, n_topics: int = 12, dim: int = 64, seed: int = 0) -> World:
    """Pins around topic centres; each page links to 1-5 pins of its topic.

    Matryoshka-like: topic centres live mostly in the leading coordinates, so prefixes keep most signal.
    """
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(1.0 + np.arange(dim))  # leading coordinates carry the most variance
    centres = rng.standard_normal((n_topics, dim)) * scale
    topic_of_pin = rng.integers(0, n_topics, n_pins)
    pins = centres[topic_of_pin] + 0.25 * rng.standard_normal((n_pins, dim)) * scale
    topic_of_page = rng.integers(0, n_topics, n_pages)
    lists = []
    for t in topic_of_page:
        members = np.flatnonzero(topic_of_pin == t)
        lists.append(sorted(rng.choice(members, size=int(rng.integers(1, 6)), replace=False).tolist()))
    positives = Positives.from_lists(lists)
    graph_pages = np.stack([pins[p].mean(0) for p in lists]) + 0.15 * rng.standard_normal((n_pages, dim)) * scale
    content_pages = centres[topic_of_page] + 1.2 * rng.standard_normal((n_pages, dim)) * scale
    words = [
        "pizza",
        "garden",
        "rocket",
        "violin",
        "python",
        "soccer",
        "desert",
        "coffee",
        "bridge",
        "poetry",
        "tiger",
        "cloud",
    ]
    urls = [
        f"https://example{i % 7}.com/{words[t]}-story-{i}" if i % 3 else f"https://example{i % 7}.com/p/{i:06d}"
        for i, t in enumerate(topic_of_page)
    ]
    pin_texts = [f"a {words[t]} pin number {j}" for j, t in enumerate(topic_of_pin)]
    dims = (8, 16, 32, 64)
    return World(
        graph=Embeddings(graph_pages.astype(np.float32), pins.astype(np.float32), dims),
        content=Embeddings(content_pages.astype(np.float32), pins.astype(np.float32), dims),
        positives=positives,
        topic_of_pin=topic_of_pin,
        topic_of_page=topic_of_page,
        urls=urls,
        pin_texts=pin_texts,
    )
