"""Text of a landing page that was never crawled, read from its URL alone.

``https://www.example.co.uk/2013/04/best-pizzaRecipes_for-kids.html?id=9`` becomes
``"example best pizza recipes for kids"``: host words (without ``www`` and public suffixes), then the
path de-slugged. Query strings and fragments are ignored: they are mostly ids and tracking.
"""

from __future__ import annotations

import contextlib
import re
from functools import lru_cache
from urllib.parse import unquote


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Host labels that name no topic: www, mobile prefixes, public suffixes, language/country codes.
_HOST_STOP = _words(
    "www www1 www2 www3 m mobile amp com org net edu gov mil int info biz co ac io tv me ly gl "
    "uk us de fr ca au in jp ru br es it nl pl se ch cn be at dk no fi ie nz za mx kr tw hk sg "
    "en ja zh ko pt ar sv"
)
# Path words that name no topic: scripts, extensions and routing words.
_PATH_STOP = _words(
    "http https www html htm shtml xhtml php php3 asp aspx jsp jspx cfm cgi do action "
    "index default home main page view show get id"
)
# Extensions dropped from the last path segment (the word before the dot is kept).
_EXTENSIONS = _words(
    "html htm shtml xhtml php php3 asp aspx jsp jspx cfm cgi pl py do action "
    "jpg jpeg png gif gifv webp bmp svg tif tiff mp4 webm mov avi mkv mp3 wav ogg pdf doc docx txt xml json rss"
)
_HOST_RE = re.compile(r"^(?:[a-z][a-z0-9+.\-]*:)?//([^/?#]*)(.*)$", re.IGNORECASE)
_RAW_TOKEN_RE = re.compile(r"[^\W_]+", re.UNICODE)  # split on -, _, ., /, +, %, punctuation, spaces
_CAMEL_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+|[^\W\d_a-zA-Z]+", re.UNICODE)
_HEX_RE = re.compile(r"^[0-9a-fA-F]+$")
_BRAND_RE = re.compile(r"^[ie][A-Z][a-z]+$")


def text_from_url(url: str) -> str:
    """Words of a URL for a page with no crawl: host words, then de-slugged path words.

    Splits on ``- _ . / +`` and on camelCase and letter/digit boundaries; drops ``www``, public
    suffixes, file extensions, common technical words (``index``, ``php`` ...), ids (long numbers,
    hex strings, mixed letter-digit codes such as ``dQw4w9WgXcQ``), all-digit path segments (dates,
    ids) and one-letter words. Lower-cased, space-joined; ``""`` when nothing is left. Never raises.
    """
    if not isinstance(url, str) or not url:
        return ""
    match = _HOST_RE.match(url.strip())
    if match is None:  # no scheme and no //: treat as host/path ("example.com/a-b")
        host, _, rest = url.strip().partition("/")
        rest = "/" + rest
    else:
        host, rest = match.group(1), match.group(2)
    path = rest.split("?", 1)[0].split("#", 1)[0]
    words = list(_host_words(host))
    with contextlib.suppress(Exception):  # unquote only fails on exotic input; keep the raw path then
        path = unquote(path)
    segments = [s for s in path.split("/") if s]
    if segments:
        stem, dot, ext = segments[-1].rpartition(".")
        if dot and stem and ext.lower() in _EXTENSIONS:
            segments[-1] = stem
    for segment in segments:
        words.extend(_segment_words(segment))
    return " ".join(words)


# Hosts and path segments repeat a lot across a million URLs (youtube.com, /comments/, /wiki/): cache them.
@lru_cache(maxsize=1 << 16)
def _host_words(host: str) -> tuple[str, ...]:
    host = host.rpartition("@")[2].split(":")[0].strip("[]")  # drop userinfo and port
    words: list[str] = []
    for label in host.lower().split("."):
        if label and label not in _HOST_STOP:
            words.extend(w for w in _RAW_TOKEN_RE.findall(label) if len(w) > 1 and not w.isdigit())
    return tuple(words)


@lru_cache(maxsize=1 << 16)
def _segment_words(segment: str) -> tuple[str, ...]:
    raw = _RAW_TOKEN_RE.findall(segment)
    if not raw or all(t.isdigit() for t in raw):
        return ()  # dates, numeric ids, "2013/04/05"
    out: list[str] = []
    for token in raw:
        if _is_id(token):
            continue
        if _BRAND_RE.match(token):  # "iPhone", "eBay": one word, not "i" + "phone"
            out.append(token.lower())
            continue
        for piece in _CAMEL_RE.findall(token):
            word = piece.lower()
            if (len(word) < 2 and not word.isdigit()) or word in _PATH_STOP or (word.isdigit() and len(word) > 4):
                continue
            out.append(word)
    return tuple(out)


def _is_id(token: str) -> bool:
    """Identifiers, not words: long numbers, hex digests, codes such as ``dQw4w9WgXcQ`` or ``uVYI6``."""
    if token.isdigit():
        return len(token) > 4
    if len(token) > 40:
        return True
    if token.isalpha() and (token.islower() or token.isupper() or token.istitle()):
        return False  # the common case, decided without regexes
    if not token.isascii():
        return False
    if len(token) >= 8 and _HEX_RE.match(token) and not token.isalpha():
        return True
    # camelCase words split into pieces of 2+ letters ("pizzaRecipes", "CoinMapUSA600"); generated codes
    # leave one-letter pieces ("zOFye5R", "uVYI6"), several numbers ("a1b2", "1366x768"), or a number
    # squeezed between short letter runs ("ry0Sc"). A leading "i"/"e" ("iPhone") is a brand, not a code.
    pieces = _CAMEL_RE.findall(token)
    if len(pieces) > 1 and len(pieces[0]) == 1 and pieces[0].islower() and pieces[1].istitle():
        pieces = pieces[1:]
    numbers = [i for i, p in enumerate(pieces) if p.isdigit()]
    if len(numbers) > 1 or any(len(p) == 1 and not p.isdigit() for p in pieces):
        return True
    return any(0 < i < len(pieces) - 1 and min(len(pieces[i - 1]), len(pieces[i + 1])) < 3 for i in numbers)
