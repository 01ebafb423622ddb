"""Metapaths such as ``page-pin-board-pin-page``: parsing, validation against the edge types, hop plans.

A metapath names the node types a walk passes through between two page visits. It starts and ends at
``page`` and every consecutive pair must be an edge type of the graph (``linksage.graph.schema``).

A *hop plan* is what the walk kernel executes for one traversal of the metapath: one op per hop, the
index of the edge type's CSR, plus a ``MERGE`` op after each arrival at a pin when near-duplicate pins
are merged into their clusters (jump to a uniformly random member of the pin's cluster, stay when the
pin has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from linksage.graph.schema import EDGE_TYPES, NODE_TYPES

MERGE = -1  # op code: jump to a random member of the current pin's near-duplicate cluster


class MetapathError(ValueError):
    """A metapath string is malformed or uses a pair of node types that is not an edge type."""


@dataclass(frozen=True)
class Metapath:
    text: str
    nodes: tuple[str, ...]

    @property
    def hops(self) -> tuple[tuple[str, str], ...]:
        return tuple(pairwise(self.nodes))


def parse_metapath(text: str) -> Metapath:
    """``"page-pin-page"`` -> ``Metapath``; raises ``MetapathError`` naming the offending part."""
    nodes = tuple(part.strip() for part in text.split("-"))
    if len(nodes) < 2 or any(not n for n in nodes):
        raise MetapathError(f"metapath {text!r}: expected node types joined by '-', e.g. 'page-pin-page'")
    for node in nodes:
        if node not in NODE_TYPES:
            raise MetapathError(f"metapath {text!r}: unknown node type {node!r} (known: {', '.join(NODE_TYPES)})")
    if nodes[0] != "page" or nodes[-1] != "page":
        raise MetapathError(f"metapath {text!r}: must start and end at 'page'")
    for src, dst in pairwise(nodes):
        if (src, dst) not in EDGE_TYPES:
            known = ", ".join(f"{a}-{b}" for a, b in EDGE_TYPES)
            raise MetapathError(f"metapath {text!r}: {src}-{dst} is not an edge type (edge types: {known})")
    return Metapath(text=text, nodes=nodes)


def hop_plan(path: Metapath, edge_index: dict[tuple[str, str], int], merge: bool) -> list[int]:
    """Ops of one traversal: ``edge_index[(src, dst)]`` per hop, plus ``MERGE`` after arrivals at pins.

    No merge is inserted next to an explicit cluster hop (the path already goes through the cluster).
    """
    ops: list[int] = []
    hops = path.hops
    for i, (src, dst) in enumerate(hops):
        ops.append(edge_index[(src, dst)])
        arrives_at_pin = dst == "pin"
        came_from_cluster = src == "cluster"
        goes_to_cluster = i + 1 < len(hops) and hops[i + 1][1] == "cluster"
        if merge and arrives_at_pin and not came_from_cluster and not goes_to_cluster:
            ops.append(MERGE)
    return ops
