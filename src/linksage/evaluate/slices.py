"""Query slices: boolean masks over the evaluated pages, each answering one question about the model.

- ``opaque`` / ``readable``: the page's URL shares no word / some word with its pins' text, so a model
  reading the URL alone cannot match words (the graph has to carry the page);
- ``degree a-b``: pages with a..b linking pins (their positives);
- ``new_pages``: pages first seen after every training page was first seen (a later day);
- ``unseen_domains``: pages whose domain has no training page.

A slice that cannot be computed (no ``first_seen`` column, no training pages) is left out with a reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

# Words that say nothing about a topic: English function words and the parts every URL has.
_STOP_WORDS = """
    the and for are but not you your with this that from have has was were will can all any our out
    its his her their they them what when who how why which about into over more most than then
    there here just only also very http https www com org net edu gov html htm php asp aspx jsp cgi
    index default page pages amp
"""
_STOP = frozenset(_STOP_WORDS.split())
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+|[^\W\d_a-zA-Z]+", re.UNICODE)


def words(text: str) -> set[str]:
    """Lower-cased words of 3+ characters, split on punctuation and camelCase; no digits-only words, no stop words.

    ``"https://www.ex.com/BestPizza-recipes_2013"`` -> ``{"best", "pizza", "recipes"}``.
    """
    out: set[str] = set()
    for token in _TOKEN.findall(text or ""):
        for piece in _CAMEL.findall(token) or [token]:
            word = piece.lower()
            if len(word) >= 3 and not word.isdigit() and word not in _STOP:
                out.add(word)
    return out


def opaque_mask(urls: Sequence[str], pin_texts: Sequence[Iterable[str]]) -> np.ndarray:
    """True where the URL shares no word with any of its pins' texts."""
    out = np.zeros(len(urls), dtype=bool)
    for i, (url, texts) in enumerate(zip(urls, pin_texts, strict=True)):
        url_words = words(url)
        out[i] = not any(url_words & words(t) for t in texts)
    return out


def degree_masks(degrees: np.ndarray, lower_bounds: Sequence[int]) -> dict[str, np.ndarray]:
    """One mask per bucket ``[lower_bounds[i], lower_bounds[i + 1])``, the last open: ``{"degree 2-3": ...}``."""
    out = {}
    for i, low in enumerate(lower_bounds):
        high = lower_bounds[i + 1] - 1 if i + 1 < len(lower_bounds) else None
        if high is None:
            name, mask = f"degree {low}+", degrees >= low
        else:
            name = f"degree {low}" if high == low else f"degree {low}-{high}"
            mask = (degrees >= low) & (degrees <= high)
        out[name] = mask
    return out


def new_pages_mask(first_seen: np.ndarray, train_first_seen: np.ndarray) -> np.ndarray:
    """True for pages first seen strictly after the last training page was first seen."""
    known = train_first_seen[~np.isnan(train_first_seen)] if train_first_seen.dtype.kind == "f" else train_first_seen
    if len(known) == 0:
        raise ValueError("no training page has a first_seen time")
    return np.asarray(first_seen > known.max())


def unseen_domains_mask(domains: np.ndarray, train_domains: np.ndarray) -> np.ndarray:
    """True for pages whose domain has no training page."""
    return ~np.isin(domains, np.unique(train_domains))
