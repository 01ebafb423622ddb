"""One landing page's HTML -> ``ParsedPage``: title, description, main text, language, canonical, images.

Metadata and images come from a fast lexbor parse (selectolax); the main text from trafilatura,
which removes navigation, ads and other boilerplate. ``parse_html`` never raises: whatever went
wrong (binary body, undecodable bytes, a page cut at the byte cap, a parser failure) is listed in
``ParsedPage.problems`` so that callers can count it.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any
from urllib.parse import urljoin, urlsplit

from linksage.content.encoding import decode_html, looks_binary

MAX_HTML_BYTES = 2 * 1024 * 1024  # pages above this are cut before parsing (real articles are < 1.5 MB)
MAX_TEXT_CHARS = 100_000  # main text kept per page; encoders read far less
MAX_IMAGES = 64  # per page, in document order after og:image
MAX_DEPTH = 3000  # element nesting kept (real pages stay under ~500; browsers cap the DOM at 512)

_SPACE_RE = re.compile(r"\s+")
_LANG_RE = re.compile(r"^([a-zA-Z]{2,3})(?:[-_].*)?$")
_DIMENSION_RE = re.compile(r"^\s*(\d{1,6})(?:\.\d+)?\s*(?:px)?\s*$")
_TAG_RE = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)")
# Elements that never nest deeper: void elements, and those an open sibling closes implicitly.
_FLAT_TAGS = frozenset(
    str.split(
        "area base br col embed hr img input link meta param source track wbr p li dt dd tr td th option optgroup "
        "rp rt tbody thead tfoot colgroup html head body"
    )
)


@dataclass(frozen=True)
class ImageRef:
    """An image of a page: absolute URL, size in pixels when known (from attributes or bytes), alt text."""

    url: str
    width: int | None = None
    height: int | None = None
    alt: str = ""

    @property
    def area(self) -> int:
        """Pixels, 0 when the size is unknown (used to rank a page's images)."""
        return (self.width or 0) * (self.height or 0)


@dataclass(frozen=True)
class ParsedPage:
    """What a landing page says about itself; empty strings (not None) for missing text fields."""

    url: str
    title: str = ""
    description: str = ""
    main_text: str = ""
    language: str | None = None
    canonical_url: str | None = None
    images: tuple[ImageRef, ...] = ()
    encoding: str = ""
    problems: tuple[str, ...] = field(default=())

    def text(self) -> str:
        """Title, description and main text joined by newlines (empty and repeated parts skipped)."""
        parts: list[str] = []
        for part in (self.title, self.description, self.main_text):
            if part and part not in parts:
                parts.append(part)
        return "\n".join(parts)


def parse_html(
    html: bytes | str,
    url: str,
    *,
    content_type: str | None = None,
    max_bytes: int = MAX_HTML_BYTES,
    extract_main_text: bool = True,
) -> ParsedPage:
    """Parse one HTML document fetched from ``url`` (used to make links absolute). Never raises.

    ``content_type`` is the HTTP header, when known (its charset is evidence for decoding bytes).
    Bodies over ``max_bytes`` are cut first (``problems`` gets ``"truncated"``); binary bodies give an
    empty page with ``"binary"``. ``extract_main_text=False`` skips trafilatura: metadata and images only,
    about 10x less CPU (3-5 ms instead of 33-45 ms per page on the article benchmark).
    """
    problems: list[str] = []
    encoding = "str"
    if isinstance(html, bytes | bytearray | memoryview):
        data = bytes(html)
        if len(data) > max_bytes:
            data = data[:max_bytes]
            problems.append("truncated")
        if not data.strip():
            return ParsedPage(url=url, problems=(*problems, "empty"))
        if looks_binary(data):
            return ParsedPage(url=url, problems=(*problems, "binary"))
        decoded = decode_html(data, content_type)
        text, encoding = decoded.text, decoded.encoding
        problems.extend(decoded.problems)
    else:
        text = html
        if len(text) > max_bytes:
            text = text[:max_bytes]
            problems.append("truncated")
        if not text.strip():
            return ParsedPage(url=url, problems=(*problems, "empty"))
    text = text.replace("\x00", "")  # lexbor and lxml stop or fail at NUL characters
    cut = _too_deep_at(text, MAX_DEPTH)
    if cut is not None:
        text = text[:cut]
        problems.append("too_deep")
    try:
        page = _parse_text(text, url, problems, extract_main_text)
    except Exception as exc:  # a parser bug on one hostile page must not stop a million-page run
        return ParsedPage(url=url, encoding=encoding, problems=(*problems, f"parse_error:{type(exc).__name__}"))
    return replace(page, encoding=encoding)


def _parse_text(text: str, url: str, problems: list[str], extract_main_text: bool) -> ParsedPage:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(text)
    meta = _meta_tags(tree)
    base = url
    base_node = tree.css_first("base[href]")
    if base_node is not None:
        base = _absolute(url, base_node.attributes.get("href")) or url

    main_text = ""
    if extract_main_text:
        try:
            main_text = _main_text(text, url)
        except Exception as exc:  # trafilatura/lxml on pathological markup (deep nesting, odd entities)
            problems.append(f"extract_error:{type(exc).__name__}")
        if not main_text:
            problems.append("no_main_text")

    title = _clean(meta.get("og:title") or meta.get("twitter:title") or "")
    if not title:
        node = tree.css_first("title")
        title = _clean(node.text()) if node is not None else ""
    if not title:
        node = tree.css_first("h1")
        title = _clean(node.text()) if node is not None else ""
    description = _clean(meta.get("description") or meta.get("og:description") or meta.get("twitter:description") or "")
    canonical = None
    for node in tree.css("link[rel][href]"):
        if "canonical" in (node.attributes.get("rel") or "").lower().split():
            canonical = _absolute(base, node.attributes.get("href"))
            break
    if canonical is None and meta.get("og:url"):
        canonical = _absolute(base, meta["og:url"])
    language = _language(tree, meta)
    if language is None and main_text:
        language = _detect_language(main_text)
    return ParsedPage(
        url=url,
        title=title,
        description=description,
        main_text=main_text[:MAX_TEXT_CHARS],
        language=language,
        canonical_url=canonical,
        images=tuple(_images(tree, base, meta)),
        problems=tuple(problems),
    )


def _too_deep_at(text: str, limit: int) -> int | None:
    """Offset of the first tag nested deeper than ``limit``, or None (a cheap over-estimate of depth).

    HTML tree building costs O(depth) per tag, so a hostile page of 200,000 nested ``<div>`` (1.2 MB)
    would take lexbor minutes; cutting the page there keeps everything before it.
    """
    depth = 0
    for match in _TAG_RE.finditer(text):
        if match.group(2).lower() in _FLAT_TAGS:
            continue
        if match.group(1):
            depth = max(0, depth - 1)
        else:
            depth += 1
            if depth > limit:
                return match.start()
    return None


# trafilatura parses every page with one module-level lxml HTMLParser, and an lxml parser must not be
# used by two threads at once (the crawler's workers did: a segmentation fault in lxml's fromstring).
_TRAFILATURA_LOCK = threading.Lock()


def _main_text(text: str, url: str) -> str:
    import trafilatura

    # Settings measured on the article-extraction benchmark (docs/parsing.md): comments are not the
    # page's content, tables often are; favouring precision keeps boilerplate out of the first few
    # hundred tokens, the only ones a text encoder reads.
    with _TRAFILATURA_LOCK:
        result = trafilatura.extract(
            text,
            url=url,
            include_comments=False,
            include_tables=True,
            favor_precision=True,
            deduplicate=False,
            with_metadata=False,
        )
    return (result or "").strip()


def _meta_tags(tree: Any) -> dict[str, str]:
    """``<meta name|property=K content=V>`` as {k.lower(): v}; the first occurrence of a key wins."""
    out: dict[str, str] = {}
    for node in tree.css("meta[content]"):
        attrs = node.attributes
        key = attrs.get("property") or attrs.get("name") or attrs.get("itemprop") or attrs.get("http-equiv")
        value = attrs.get("content")
        if key and value and key.lower() not in out:
            out[key.strip().lower()] = value
    return out


def _language(tree: Any, meta: Mapping[str, str]) -> str | None:
    node = tree.css_first("html")
    candidates = [
        node.attributes.get("lang") if node is not None else None,
        node.attributes.get("xml:lang") if node is not None else None,
        meta.get("content-language"),
        meta.get("language"),
        meta.get("og:locale"),
    ]
    for value in candidates:
        if value:
            match = _LANG_RE.match(value.strip().split(",")[0].strip())
            if match:
                return match.group(1).lower()
    return None


@cache
def _language_detector() -> Any:
    """A cheap detector if one is installed (py3langid or langid), else None."""
    for module in ("py3langid", "langid"):
        try:
            return __import__(module)
        except ImportError:
            continue
    return None


def _detect_language(text: str) -> str | None:
    detector = _language_detector()
    if detector is None:
        return None
    try:
        code, _ = detector.classify(text[:2000])
    except Exception:
        return None
    return str(code)


def _images(tree: Any, base: str, meta: Mapping[str, str]) -> Iterable[ImageRef]:
    """og:image first (the page's chosen picture), then img/picture sources in document order."""
    seen: set[str] = set()
    found: list[ImageRef] = []

    def add(raw: str | None, width: int | None, height: int | None, alt: str) -> None:
        absolute = _absolute(base, raw)
        if absolute is None or absolute in seen or len(found) >= MAX_IMAGES:
            return
        if width is not None and height is not None and width <= 2 and height <= 2:
            return  # tracking pixels
        seen.add(absolute)
        found.append(ImageRef(absolute, width, height, _clean(alt)))

    for key in ("og:image", "og:image:url", "og:image:secure_url", "twitter:image", "twitter:image:src"):
        if meta.get(key):
            add(meta[key], _dimension(meta.get("og:image:width")), _dimension(meta.get("og:image:height")), "")
            break
    for node in tree.css("img, picture source[srcset]"):
        attrs = node.attributes
        width, height = _dimension(attrs.get("width")), _dimension(attrs.get("height"))
        alt = attrs.get("alt") or ""
        srcset = attrs.get("srcset") or attrs.get("data-srcset")
        best = _largest_candidate(srcset) if srcset else None
        if best is not None:
            src, w_desc, x_desc = best
            if w_desc is not None:
                if width and height:
                    height = round(height * w_desc / width)
                width = w_desc
            elif x_desc is not None and width and height:
                width, height = round(width * x_desc), round(height * x_desc)
            add(src, width, height, alt)
            continue
        src = attrs.get("src") or attrs.get("data-src") or attrs.get("data-lazy-src") or attrs.get("data-original")
        add(src, width, height, alt)
    return found


def _largest_candidate(srcset: str) -> tuple[str, int | None, float | None] | None:
    """The srcset candidate with the largest ``w`` (else ``x``) descriptor: (url, width, density)."""
    best: tuple[float, str, int | None, float | None] | None = None
    for candidate in _split_srcset(srcset):
        pieces = candidate.split()
        if not pieces:
            continue
        src, descriptor = pieces[0], (pieces[1] if len(pieces) > 1 else "1x")
        w: int | None = None
        x: float | None = None
        try:
            if descriptor.endswith("w"):
                w = int(float(descriptor[:-1]))
                score = float(w)
            elif descriptor.endswith("x"):
                x = float(descriptor[:-1])
                score = x * 1e-6  # any w descriptor outranks x descriptors
            else:
                continue
        except ValueError:
            continue
        if best is None or score > best[0]:
            best = (score, src, w, x)
    return None if best is None else best[1:]


def _split_srcset(srcset: str) -> list[str]:
    """Candidates of a srcset as the HTML spec splits them: a URL is a run of non-spaces (so
    ``.../c_fill,w_300/x.jpg`` keeps its comma), then descriptors up to the next comma."""
    out: list[str] = []
    i, n = 0, len(srcset)
    while i < n:
        while i < n and (srcset[i].isspace() or srcset[i] == ","):
            i += 1
        start = i
        while i < n and not srcset[i].isspace():
            i += 1
        url = srcset[start:i]
        if not url:
            break
        if url.endswith(","):
            out.append(url.rstrip(","))
            continue
        comma = srcset.find(",", i)
        end = n if comma == -1 else comma
        out.append(f"{url} {srcset[i:end].strip()}".strip())
        i = end + 1
    return out


def _dimension(value: str | None) -> int | None:
    if not value:
        return None
    match = _DIMENSION_RE.match(value)
    if match is None:
        return None  # "100%", "auto"
    number = int(match.group(1))
    return number if number > 0 else None


def _absolute(base: str, href: str | None) -> str | None:
    """Absolute http(s) URL of a link, or None for data:, javascript:, empty or malformed links."""
    if not href:
        return None
    href = href.strip()
    if not href or href.startswith(("data:", "javascript:", "about:", "blob:", "#")):
        return None
    try:
        absolute = urljoin(base, href)
        parts = urlsplit(absolute)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return absolute


def _clean(text: str) -> str:
    return _SPACE_RE.sub(" ", text).strip()


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from an image's header with Pillow (nothing is decoded); None if unreadable."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:  # truncated, unknown format, decompression bomb: no trustworthy size
        return None
    return (int(width), int(height)) if width > 0 and height > 0 else None


def with_image_sizes(page: ParsedPage, image_bytes: Mapping[str, bytes]) -> ParsedPage:
    """The page with each image's size read from its bytes where given (bytes beat HTML attributes)."""
    images = []
    for ref in page.images:
        data = image_bytes.get(ref.url)
        size = image_size(data) if data else None
        images.append(replace(ref, width=size[0], height=size[1]) if size else ref)
    return replace(page, images=tuple(images))
