"""URL canonicalisation: the canonical URL is a page's identity.

Rules, applied in this order (docs/ingest.md has the table with examples):

* repairs: surrounding whitespace stripped; HTML-escaped ``&amp;`` turned back into ``&`` (Reddit
  stores URLs escaped); a missing scheme (``example.com/a``, ``//example.com/a``), missing or extra
  slashes (``http:/example.com``, ``http:///example.com``) and a repeated scheme
  (``http://http://example.com``) are repaired;
* scheme: only http and https are landing pages, and both are written ``https`` (the same page is
  served on both; choosing one keeps ``http://x`` and ``https://x`` one page);
* user info dropped; host lowercased, trailing dots stripped, IDNA (Unicode) hosts written as
  punycode (``xn--``: ASCII, what DNS resolves), IPv6 literals compressed, leading ``www.`` labels
  stripped; a host must contain a dot (or be an IP literal);
* ports 80 and 443 dropped (both are defaults of the unified scheme); other ports kept;
* percent-encoding: escapes of unreserved characters decoded, other escapes upper-cased, characters
  that are not allowed (spaces, non-ASCII, a lone ``%``) encoded as UTF-8 escapes;
* path: dot segments removed, trailing slashes removed except for the root path ``/``;
* query: empty items and tracking parameters (``TRACKING_PARAMS``, any ``utm_*``) removed, remaining
  items sorted; ``?`` dropped when nothing is left;
* fragment dropped, except a Twitter-style hashbang on the root path (``/#!/user/status/1``), whose
  fragment is the real path.

``canonicalise`` never raises: a URL beyond repair comes back as ``(None, reason)``.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa

# Parameters that identify a campaign or a click, never the page (case-insensitive keys).
TRACKING_PARAMS: frozenset[str] = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "msclkid",
        "yclid",
        "twclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "_ga",
        "_gl",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "oly_anon_id",
        "oly_enc_id",
        "vero_id",
        "wickedid",
        "rb_clickid",
        "s_cid",
        "ref_src",
        "ref_url",
    }
)
TRACKING_PREFIXES: tuple[str, ...] = ("utm_",)
# The host (no port) of a canonical URL, as group 1 "host": an IPv6 literal in brackets or a name.
HOST_PATTERN = r"^https://(?P<host>\[[^\]]*\]|[^/:]+)"

_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")  # a repr()'d value inside a reason
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# Looks like "host.tld[:port]" followed by a path, query, fragment or the end: a URL missing its scheme.
_BARE_HOST = re.compile(r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*\.[A-Za-z]{2,63}\.?(?::\d*)?(?:[/?#]|$)")
_REPEATED_SCHEME = re.compile(r"^(?:[Hh][Tt][Tt][Pp][Ss]?(?::[/\\]*|//+))+")
_HOST_OK = re.compile(r"[a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*")
# Text already in canonical form needs no escape fix-up (the common case: one regex match, no rewrite).
_PATH_OK = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]*")
_QUERY_OK = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*")
_PATH_FIX = re.compile(r"%[0-9A-Fa-f]{2}|[^A-Za-z0-9\-._~!$&'()*+,;=:@/]")
_QUERY_FIX = re.compile(r"%[0-9A-Fa-f]{2}|[^A-Za-z0-9\-._~!$&'()*+,;=:@/?]")
# The common case in one match: http(s), a plain ASCII host, no user info, no escapes to fix.
_FAST = re.compile(
    r"[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9_\-.]+)(?::([0-9]{1,5}))?"
    r"(/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*)?(?:\?([A-Za-z0-9\-._~!$&'()*+,;=:@/?]*))?(?:#(.*))?",
    re.S,
)


def canonicalise(raw: object) -> tuple[str, None] | tuple[None, str]:
    """``(canonical_url, None)``, or ``(None, reason)`` when the URL is beyond repair. Never raises."""
    if not isinstance(raw, str):
        return None, "URL is missing" if raw is None else f"URL is not a string but {type(raw).__name__}"
    result = _canonicalise_once(raw)
    # Sorting query items or decoding escapes can spell a new "&amp;"; un-escaping it shortens the URL,
    # so repeating reaches a fixed point (this keeps canonicalise idempotent).
    while result[0] is not None and "&amp;" in result[0]:
        result = _canonicalise_once(result[0])
    return result


def _canonicalise_once(raw: str) -> tuple[str, None] | tuple[None, str]:
    text = raw.strip()
    while "&amp;" in text:  # Reddit (and many scrapes) store URLs HTML-escaped, sometimes twice
        text = text.replace("&amp;", "&")
    fast = _canonicalise_fast(text)
    return fast if fast is not None else _canonicalise_general(text)


def _canonicalise_fast(text: str) -> tuple[str, None] | None:
    """The common case, about twice as fast as the general path; None hands the URL over to it.

    Must agree with ``_canonicalise_general`` wherever it answers (a test checks this).
    """
    m = _FAST.fullmatch(text)
    if m is None:
        return None
    host, port, path, query, fragment = m.groups()
    if fragment is not None and fragment.startswith("!/"):
        return None
    host = host.lower()
    if host.endswith("."):
        host = host.rstrip(".")
    if len(host) > 253 or "." not in host or not _HOST_OK.fullmatch(host):
        return None
    while host.startswith("www.") and "." in host[4:]:
        host = host[4:]
    if port:
        number = int(port)
        if number > 65535:
            return None
        if number not in (80, 443):
            host = f"{host}:{number}"
    if path is None or path == "/":
        path = "/"
    else:
        if "/." in path:
            path = _remove_dot_segments(path)
        path = path.rstrip("/") or "/"
    return f"https://{host}{path}{_query(query) if query else ''}", None


def _canonicalise_general(text: str) -> tuple[str, None] | tuple[None, str]:
    if not text:
        return None, "empty URL"
    rest = _after_scheme(text)
    if rest is None:
        m = _SCHEME.match(text)
        if m is not None:
            return None, f"unsupported scheme {m.group(1).lower()!r} (only http and https are landing pages)"
        return None, "no scheme and no host"

    # Split authority / path / query / fragment (RFC 3986 appendix B, done by hand: it is the hot path).
    end = len(rest)
    for sep in "/?#":
        i = rest.find(sep)
        if i != -1 and i < end:
            end = i
    authority, tail = rest[:end], rest[end:]
    fragment = ""
    if "#" in tail:
        tail, fragment = tail.split("#", 1)
    query = ""
    if "?" in tail:
        path, query = tail.split("?", 1)
    else:
        path = tail
    if fragment.startswith("!/") and path in ("", "/") and not query:
        # Twitter-style hashbang: the fragment is the page's real path and query.
        path = fragment[1:].split("#", 1)[0]
        if "?" in path:
            path, query = path.split("?", 1)

    host_port, reason = _host_port(authority)
    if host_port is None:
        return None, reason or "invalid host"
    return f"https://{host_port}{_path(path)}{_query(query)}", None


def canonical_url(raw: object) -> str | None:
    """The canonical form of ``raw``, or None when it is beyond repair (see ``canonicalise`` for why)."""
    return canonicalise(raw)[0]


def url_host(canonical: str) -> str:
    """The host of a canonical URL (no port): the page's domain."""
    host = canonical[8:].split("/", 1)[0]
    if host.startswith("["):
        return host[: host.index("]") + 1]
    return host.split(":", 1)[0]


@dataclass
class BadUrls:
    """URLs that could not be canonicalised: how many, why, and a few examples."""

    count: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, raw: object, reason: str, n: int = 1) -> None:
        self.count += n
        self.reasons[_QUOTED.sub("…", reason)] += n  # by kind of problem: "host … has no dot"
        if len(self.examples) < 10:
            self.examples.append(repr(raw)[:200])

    def as_metrics(self) -> dict[str, object]:
        return {"bad_url_reasons": dict(self.reasons.most_common(20)), "bad_url_examples": list(self.examples)}


def canonicalise_many(values: Sequence[object]) -> tuple[list[str | None], list[str | None]]:
    """``canonicalise`` over a sequence, each distinct value computed once: (urls, reasons)."""
    cache: dict[object, tuple[str, None] | tuple[None, str]] = {}
    urls: list[str | None] = []
    reasons: list[str | None] = []
    for value in values:
        hit = cache.get(value)
        if hit is None:
            hit = canonicalise(value)
            cache[value] = hit
        urls.append(hit[0])
        reasons.append(hit[1])
    return urls, reasons


# _FAST in Rust regex syntax, with named groups, for the vectorised path.
_FAST_GROUPS = (
    r"(?s)^[Hh][Tt][Tt][Pp][Ss]?://(?P<host>[A-Za-z0-9_.\-]+)(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*)?(?:\?(?P<query>[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*))?"
    r"(?:#(?P<fragment>.*))?$"
)
_ASCII_SPACE = " \t\n\r\x0b\x0c"
_TRACKING_ITEM = (
    "(?i)^(?:"
    + "|".join([re.escape(p) + "[^=]*" for p in TRACKING_PREFIXES] + [re.escape(k) for k in sorted(TRACKING_PARAMS)])
    + ")(?:=|$)"
)


def canonicalise_array(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """``canonicalise`` over a column: (canonical URLs, reasons), each null where the other is not.

    The common case runs vectorised in polars (half the CPU time of the Python loop); every other
    value goes through ``canonicalise``, which defines the result (a test checks they agree).
    """
    raw = pl.Series("raw", values)
    if raw.dtype != pl.String:
        raw = raw.cast(pl.String, strict=False)  # only the error path sees non-strings
    text = raw.str.strip_chars(_ASCII_SPACE).str.replace_all("&amp;", "&", literal=True)
    # Each step materialises its columns: one big nested expression re-evaluates shared parts.
    df = pl.DataFrame({"text": text}).select(pl.col("text").str.extract_groups(_FAST_GROUPS).alias("g")).unnest("g")
    df = df.with_columns(
        pl.col("host").str.to_lowercase().str.strip_chars_end("."),
        pl.col("port").cast(pl.Int64),
        ok_text=~text.str.contains("&amp;", literal=True),
    )
    df = df.with_columns(bare=pl.col("host").str.replace(r"^(?:www\.)+", ""))
    kept = pl.element().filter((pl.element() != "") & ~pl.element().str.contains(_TRACKING_ITEM))
    df = df.with_columns(
        ok=pl.col("ok_text")
        & pl.col("host").str.contains(r"^[a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*$")
        & pl.col("host").str.contains(".", literal=True)
        & (pl.col("host").str.len_bytes() <= 253)
        & (pl.col("port").is_null() | (pl.col("port") <= 65535))
        & ~pl.col("path").fill_null("").str.contains("/.", literal=True)
        & ~pl.col("fragment").fill_null("").str.starts_with("!/"),
        host=pl.when(pl.col("bare").str.contains(".", literal=True))
        .then(pl.col("bare"))
        .when(pl.col("bare") != pl.col("host"))
        .then(pl.lit("www.") + pl.col("bare"))
        .otherwise(pl.col("host")),
        port=pl.when(pl.col("port").is_null() | pl.col("port").is_in([80, 443]))
        .then(pl.lit(""))
        .otherwise(pl.lit(":") + pl.col("port").cast(pl.String)),
        path=pl.col("path").fill_null("/").str.strip_chars_end("/"),
        query=pl.col("query").str.split("&").list.eval(kept).list.sort().list.join("&"),
    )
    df = df.with_columns(
        path=pl.when(pl.col("path") == "").then(pl.lit("/")).otherwise(pl.col("path")),
        query=pl.when(pl.col("query").fill_null("") == "").then(pl.lit("")).otherwise(pl.lit("?") + pl.col("query")),
    )
    df = df.select(url=pl.lit("https://") + pl.col("host") + pl.col("port") + pl.col("path") + pl.col("query"), ok="ok")
    fast = df.select(pl.when(pl.col("ok") & ~pl.col("url").str.contains("&amp;", literal=True)).then("url"))
    urls = fast.to_series().alias("url")
    reasons = pl.Series("reason", [None] * len(urls), dtype=pl.String)
    slow_rows = urls.is_null().arg_true()
    if len(slow_rows):
        slow_urls, slow_reasons = canonicalise_many(raw.gather(slow_rows).to_list())
        urls = urls.scatter(slow_rows, pl.Series(slow_urls, dtype=pl.String))
        reasons = reasons.scatter(slow_rows, pl.Series(slow_reasons, dtype=pl.String))
    return urls.to_arrow().cast(pa.string()), reasons.to_arrow().cast(pa.string())


def _after_scheme(text: str) -> str | None:
    """Everything after ``scheme://`` for http(s) or scheme-less URLs; None for other schemes."""
    m = _SCHEME.match(text)
    if m is not None and m.group(1).lower() in ("http", "https"):
        rest = text[m.end() :].lstrip("/\\")  # "http:/x", "http:///x", "http:\\x" repaired
        return _REPEATED_SCHEME.sub("", rest)  # "http://http://x", "http://http//x" repaired
    if text.startswith("//"):
        return text[2:]
    if _BARE_HOST.match(text):  # "www.example.com/a", "example.com:8080/a" (the latter parses as a scheme)
        return text
    return None


def _host_port(authority: str) -> tuple[str, None] | tuple[None, str]:
    authority = authority.rpartition("@")[2]  # user info never identifies a page
    port = ""
    if authority.startswith("["):
        close = authority.find("]")
        if close == -1:
            return None, f"unclosed IPv6 host {authority!r}"
        host, after = authority[: close + 1], authority[close + 1 :]
        if after:
            if not after.startswith(":"):
                return None, f"invalid host {authority!r}"
            port = after[1:]
        try:
            host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            return None, f"invalid IPv6 host {host!r}"
    else:
        host, colon, port = authority.partition(":")
        if colon and ":" in port:
            return None, f"invalid host {authority!r}"
        host = host.lower().rstrip(".")
        if not host:
            return None, "no host"
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except (UnicodeError, ValueError):
                return None, f"host {host!r} is not a valid international domain name"
            host = host.rstrip(".")
        if len(host) > 253 or not _HOST_OK.fullmatch(host):
            return None, f"invalid host {host!r}"
        if "." not in host:
            return None, f"host {host!r} has no dot (not a public host name)"
        while host.startswith("www.") and "." in host[4:]:
            host = host[4:]
    if port:
        if not port.isdigit() or not port.isascii() or len(port) > 5:
            return None, f"invalid port {port!r}"
        number = int(port)
        if number > 65535:
            return None, f"invalid port {port!r}"
        port = "" if number in (80, 443) else str(number)
    return (f"{host}:{port}" if port else host), None


def _fix_escape(m: re.Match[str]) -> str:
    s = m.group()
    if len(s) == 3 and s[0] == "%":
        ch = chr(int(s[1:], 16))
        return ch if ch in _UNRESERVED else s.upper()
    return "".join(f"%{b:02X}" for b in s.encode("utf-8", "surrogatepass"))


def _path(path: str) -> str:
    if not _PATH_OK.fullmatch(path):
        path = _PATH_FIX.sub(_fix_escape, path)
    if "." in path and ("/." in path or path.startswith(".")):
        path = _remove_dot_segments(path)
    path = path.rstrip("/")
    if not path.startswith("/"):
        path = "/" + path
    return path


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    segments = path.split("/")
    for seg in segments:
        if seg == "..":
            if len(out) > 1:
                out.pop()
        elif seg != ".":
            out.append(seg)
    if segments[-1] in (".", ".."):
        out.append("")  # "/a/b/.." is the folder "/a/", as in RFC 3986 5.2.4
    result = "/".join(out)
    return result if result.startswith("/") else "/" + result


def _query(query: str) -> str:
    if not query:
        return ""
    if not _QUERY_OK.fullmatch(query):
        query = _QUERY_FIX.sub(_fix_escape, query)
    kept = []
    for item in query.split("&"):
        if not item:
            continue
        key = item.split("=", 1)[0].lower()
        if key in TRACKING_PARAMS or key.startswith(TRACKING_PREFIXES):
            continue
        kept.append(item)
    if not kept:
        return ""
    kept.sort()
    return "?" + "&".join(kept)
