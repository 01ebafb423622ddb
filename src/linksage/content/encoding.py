"""Bytes of a web page -> text: binary sniffing and charset detection that never raises.

Order of evidence, as browsers use it: byte-order mark, then the HTTP ``Content-Type`` charset, then
``<meta charset>`` / ``http-equiv`` in the first 4 KiB. A declared charset that does not decode
cleanly is distrusted (pages often lie): UTF-8 is tried next, then charset-normalizer's guess, and
last windows-1252 with replacement characters, which always succeeds.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: its BOM starts with UTF-16 LE's
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Magic numbers of formats that are surely not HTML (servers mislabel them as text/html).
_BINARY_MAGIC = (
    b"%PDF",
    b"\x89PNG",
    b"GIF87a",
    b"GIF89a",
    b"\xff\xd8\xff",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"BZh",
    b"\xfd7zXZ",
    b"RIFF",
    b"\x00\x00\x00\x18ftyp",
    b"\x00\x00\x00\x20ftyp",
    b"OggS",
    b"ID3",
    b"\x7fELF",
    b"MZ",
)
_META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_:.\-]+)""", re.IGNORECASE)
_HEADER_CHARSET_RE = re.compile(r"""charset\s*=\s*["']?([a-zA-Z0-9_:.\-]+)""", re.IGNORECASE)


@dataclass(frozen=True)
class Decoded:
    """Text of a document, the codec that produced it, and what went wrong on the way."""

    text: str
    encoding: str
    problems: tuple[str, ...] = ()


def looks_binary(data: bytes) -> bool:
    """True for bodies that are not text: known binary magic numbers or many control bytes."""
    head = data[:4096]
    if head.startswith(_BINARY_MAGIC):
        return True
    if head.startswith(tuple(bom for bom, _ in _BOMS)):
        return False
    if b"\x00" in head and (b"<\x00" in head or b"\x00<" in head):
        return False  # UTF-16 without BOM: NULs interleaved with ASCII markup
    controls = sum(1 for b in head if b < 9 or 13 < b < 32)
    return controls > max(8, len(head) // 20)


def declared_charset(data: bytes, content_type: str | None = None) -> str | None:
    """Charset named by the HTTP header, else by the document's ``<meta>`` (first 4 KiB)."""
    if content_type:
        header = _HEADER_CHARSET_RE.search(content_type)
        if header and _codec(header.group(1)):
            return _codec(header.group(1))
    meta = _META_CHARSET_RE.search(data[:4096])
    if meta:
        return _codec(meta.group(1).decode("ascii", "ignore"))
    return None


def decode_html(data: bytes, content_type: str | None = None) -> Decoded:
    """Decode an HTML body; see the module docstring for the order of evidence. Never raises."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return Decoded(data[len(bom) :].decode(name, "replace"), name)
    head = data[:4096]
    if head.count(b"\x00") > len(head) // 4 and (b"<\x00" in head or b"\x00<" in head):
        first = head.find(b"<\x00")
        name = "utf-16-le" if first != -1 and first % 2 == 0 else "utf-16-be"
        return Decoded(data.decode(name, "replace"), name, ("utf16_without_bom",))
    declared = declared_charset(data, content_type)
    # Valid UTF-8 with multi-byte sequences is almost never an accident, whatever the page declares
    # (a page saying iso-8859-1 while sending UTF-8 is common); so UTF-8 is tried first.
    # The incremental decoder forgives a character cut in half at the end (pages capped at N bytes).
    try:
        return Decoded(codecs.getincrementaldecoder("utf-8")().decode(data, final=False), "utf-8")
    except UnicodeDecodeError:
        pass
    # Mostly valid UTF-8 with a few stray bytes (a bad splice, a cut) is UTF-8 with damage, not another codec.
    lenient = data.decode("utf-8", "replace")
    bad = lenient.count("\ufffd")
    non_ascii = len(lenient) - len(lenient.encode("ascii", "ignore"))
    if non_ascii - bad > bad:
        return Decoded(lenient, "utf-8", ("utf8_errors",))
    problems: list[str] = []
    if declared is not None and declared != "utf-8":
        try:
            return Decoded(data.decode(declared), declared)
        except (UnicodeDecodeError, LookupError):
            problems.append(f"bad_charset:{declared}")
    elif declared == "utf-8":
        problems.append("bad_charset:utf-8")
    guessed = _guess(data) if len(data) >= 1024 else None  # guesses on short texts are coin flips
    if guessed is not None and guessed != declared:
        try:
            return Decoded(data.decode(guessed), guessed, (*problems, "charset_guessed"))
        except (UnicodeDecodeError, LookupError):
            pass
    fallback = declared if declared not in (None, "utf-8") else "cp1252"
    return Decoded(data.decode(fallback, "replace"), fallback, (*problems, "charset_replaced"))


def _codec(label: str) -> str | None:
    """Python's codec name for a charset label; None for labels Python does not know."""
    label = label.strip().lower()
    if label in ("iso-8859-1", "latin-1", "latin1", "us-ascii", "ascii"):
        label = "cp1252"  # WHATWG: browsers decode these labels as windows-1252
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def _guess(data: bytes) -> str | None:
    """charset-normalizer's best guess on the first 64 KiB (it ships with trafilatura)."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:
        return None
    best = from_bytes(data[:65536]).best()
    return None if best is None else _codec(best.encoding)
