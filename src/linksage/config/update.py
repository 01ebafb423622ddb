"""Config of ``linksage update``: which pages an incremental day walks and re-embeds (docs/update.md)."""

from __future__ import annotations

from dataclasses import dataclass

from linksage.config._load import ConfigError


@dataclass(frozen=True)
class UpdateConfig:
    # The neighbour-change rule, one fraction f for its three parts (docs/update.md):
    #   an old page is walked again when >= f of its pins are new or changed (boards, near-duplicate cluster),
    #   or when >= ceil(f * top_k) of the day's walked pages list it among their top-K neighbours;
    #   a walked old page takes its new top-K (and is re-embedded) when >= f of its top-K changed, else it
    #   keeps its stored neighbours bit for bit.
    neighbour_change: float = 0.25
    reverse_neighbours: bool = True  # the second part above (reverse neighbours of the day's walked pages)

    def __post_init__(self) -> None:
        if not 0.0 < self.neighbour_change <= 1.0:
            raise ConfigError(f"update.neighbour_change: must be in (0, 1], got {self.neighbour_change}")
