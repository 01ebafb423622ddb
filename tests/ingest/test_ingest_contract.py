"""The contract is defined once: the config's column names, the schema's kinds and the converters agree."""

from __future__ import annotations

from typing import get_args

from linksage.config.ingest import TABLE_COLUMNS
from linksage.ingest.validate import _CONVERT
from linksage.schema import INPUT_TABLES, REQUIRED_TABLES, Kind


def test_config_and_schema_name_the_same_columns() -> None:
    assert {t: tuple(c.name for c in cols) for t, cols in INPUT_TABLES.items()} == TABLE_COLUMNS
    assert set(REQUIRED_TABLES) <= set(INPUT_TABLES)


def test_every_kind_has_a_converter() -> None:
    assert set(_CONVERT) == set(get_args(Kind))
    assert {c.kind for cols in INPUT_TABLES.values() for c in cols} <= set(_CONVERT)
