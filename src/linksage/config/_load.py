"""Typed construction of frozen config dataclasses from plain dicts (TOML, --set overrides).

Every value is checked against the field's annotation; errors name the dotted key and the value.
"""

from __future__ import annotations

import dataclasses
import datetime
import tomllib
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key or value is wrong; the message names the dotted key and the value."""


def build(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, filling defaults and checking every value's type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a table, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise ConfigError(
            f"unknown config key {key!r} (known keys in {prefix.rstrip('.') or 'the root'}: "
            f"{', '.join(sorted(fields))})"
        )
    kwargs = {name: _coerce(hints[name], value, f"{prefix}{name}") for name, value in data.items()}
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {exc}") from exc
    return obj


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return build(tp, value, prefix=f"{key}.")
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[-1] if errors else f"{key}: bad value {value!r}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} items, got {value!r}")
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict:
        kt, vt = get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return {_coerce(kt, k, key): _coerce(vt, v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (datetime.date, datetime.time)):
            return value.isoformat()  # TOML reads 2013-04-01 as a date; our fields keep ISO strings
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise ConfigError(f"{key}: unsupported config type {tp!r}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``; the value is read as TOML (numbers, booleans, lists) or else a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: bad key {key!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``patch`` wins."""
    out = dict(base)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def set_path(data: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    patch: dict[str, Any] = {path[-1]: value}
    for part in reversed(path[:-1]):
        patch = {part: patch}
    return merge(data, patch)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc


_ADDED_LATER = "linksage_added_later"  # field metadata: at its default, the field is left out of fingerprints


def added_later(default: T) -> T:
    """A config field added after runs were made without it, whose default does what the code did before.

    At that default the field is left out of the stage fingerprints (``to_dict(..., fingerprint=True)``),
    so a run made before the field existed stays up to date; any other value changes them as usual.
    (Marking an *older* field would do the opposite: every run made since it came would go stale once.)
    """
    return dataclasses.field(default=default, metadata={_ADDED_LATER: True})  # type: ignore[no-any-return]


def _left_out(obj: Any, f: dataclasses.Field[Any], fingerprint: bool) -> bool:
    return fingerprint and bool(f.metadata.get(_ADDED_LATER)) and getattr(obj, f.name) == f.default


def to_dict(obj: Any, *, fingerprint: bool = False) -> Any:
    """Dataclass -> plain JSON/TOML-able structure (tuples become lists).

    ``fingerprint``: leave out the ``added_later`` fields that hold their default (what stage keys hash).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_dict(getattr(obj, f.name), fingerprint=fingerprint)
            for f in dataclasses.fields(obj)
            if not _left_out(obj, f, fingerprint)
        }
    if isinstance(obj, (list, tuple)):
        return [to_dict(v, fingerprint=fingerprint) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v, fingerprint=fingerprint) for k, v in obj.items()}
    return obj


__all__ = ["ConfigError", "added_later", "build", "merge", "parse_override", "read_toml", "set_path", "to_dict"]
