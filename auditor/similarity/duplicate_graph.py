"""Who duplicates whom: one graph over unique image contents, with the evidence for every edge.

Nodes are unique file contents (sha256) of usable images; records that share bytes share a node.
Edges come from five kinds of evidence, each kept so the report can show it:
  - `pixels`: identical decoded pixels under another encoding;
  - `embedding`, `correlation`, `hash`, `joint`: pairs the near-duplicate decision accepts (auditor/similarity/):
    scaled embedding cosine, aligned pixel correlation, perceptual hashes under rotation/mirroring, and the
    cosine and correlation together where neither alone reaches its threshold (the rule's both-tiers clause).
Exact groups (`pixels` only) are connected components: identical pixels are transitive. Near-duplicate
groups are not: inside each component every two members must be duplicates (similarity/groups.py), so
similar-but-different images never chain into one group.

The graph is columnar: its edges are arrays (both ends, a bit per kind of evidence, and which candidate pair of
the decision carries the evidence), and an edge's evidence is read from the decision when the report asks for
it. A dict per edge cost ≈ 450 bytes (tracemalloc, 10⁵ resampled vectors, where 94 % of the images are in
accepted pairs: the graph stage grew anonymous memory by 0.24 GB, now by 0.02); the arrays cost 25 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterable

import numpy as np

from auditor.encoding.imaging import ImageScan

# Kinds of edge. Exact: the same decoded pixels; all: any evidence of a near-duplicate too.
EXACT_KINDS = ("pixels",)
ALL_KINDS = ("pixels", "hash", "embedding", "correlation", "joint")
# The order an edge's kinds are listed in (identical pixels first, then the decision's tiers) and their bits.
KIND_ORDER = ("pixels", "embedding", "correlation", "joint", "hash")
KIND_BIT = {kind: 1 << number for number, kind in enumerate(KIND_ORDER)}
NO_SOURCE = -1  # an edge no candidate pair of the decision carries (identical pixels only)


def kinds_bits(kinds: Iterable[str]) -> int:
    return sum(KIND_BIT[kind] for kind in set(kinds))


def _empty(dtype) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


@dataclass
class DuplicateGraph:
    """Edges a < b, sorted by (a, b), one per pair of nodes; `source`: the decision's candidate pair whose
    evidence the edge shows (NO_SOURCE for identical pixels alone); `evidence_of(ks)`: those pairs' evidence
    (a list of dicts)."""
    shas: list[str]
    a: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    b: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    kinds: np.ndarray = field(default_factory=lambda: _empty(np.uint8))
    source: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    evidence_of: Callable[[list[int]], list[dict[str, Any]]] | None = None
    near_groups: list[list[int]] | None = None  # groups in which every two members are duplicates
    split: Any = None  # similarity.groups.SplitStats: how the chained components were split into groups

    @classmethod
    def from_pairs(cls, shas: list[str], a: np.ndarray, b: np.ndarray, kinds: np.ndarray,
                   source: np.ndarray | None = None,
                   evidence_of: Callable[[list[int]], list[dict[str, Any]]] | None = None) -> "DuplicateGraph":
        """One edge per node pair from pairs in any order and orientation: a pair given more than once has the
        union of its kinds and the evidence of its lowest source (pairs without kinds, or of a node with itself,
        are no edges)."""
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        kinds = np.asarray(kinds, dtype=np.uint8)
        source = np.full(len(a), NO_SOURCE, np.int64) if source is None else np.asarray(source, dtype=np.int64)
        keep = (kinds != 0) & (a != b)
        low, high = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
        kinds, source = kinds[keep], source[keep]
        order = np.lexsort((high, low))
        low, high, kinds, source = low[order], high[order], kinds[order], source[order]
        if len(low):
            starts = np.flatnonzero(np.r_[True, (np.diff(low) != 0) | (np.diff(high) != 0)])
            kinds = np.bitwise_or.reduceat(kinds, starts)
            unset = np.iinfo(np.int64).max
            lowest = np.minimum.reduceat(np.where(source < 0, unset, source), starts)
            source = np.where(lowest == unset, NO_SOURCE, lowest)
            low, high = low[starts], high[starts]
        return cls(shas=list(shas), a=low, b=high, kinds=kinds.astype(np.uint8), source=source.astype(np.int64),
                   evidence_of=evidence_of)

    def __len__(self) -> int:
        return len(self.a)

    def with_kinds(self, kinds: Iterable[str]) -> np.ndarray:
        """Which edges carry any of these kinds of evidence (bool per edge)."""
        return (self.kinds & kinds_bits(kinds)) != 0

    def near(self) -> np.ndarray:
        """Which edges carry near-duplicate evidence (any kind but identical pixels)."""
        return self.with_kinds(set(KIND_ORDER) - set(EXACT_KINDS))

    def evidence_of_edges(self, edges: list[int]) -> list[dict[str, Any]]:
        """These edges' kinds (in KIND_ORDER) and the evidence of the decision's pairs behind them (read for all
        of them at once)."""
        sources = self.source[np.asarray(edges, dtype=np.int64)].tolist()
        with_source = [number for number, k in enumerate(sources) if k != NO_SOURCE]
        measured = (self.evidence_of([sources[number] for number in with_source])
                    if with_source and self.evidence_of is not None else [])
        by_edge = dict(zip(with_source, measured))
        out = []
        for number, bits in enumerate(self.kinds[np.asarray(edges, dtype=np.int64)].tolist()):
            evidence: dict[str, Any] = {"kinds": [kind for kind in KIND_ORDER if bits & KIND_BIT[kind]]}
            if number in by_edge:
                found = by_edge[number]
                found.pop("kinds", None)
                evidence.update(found)
            out.append(evidence)
        return out

    def pairs(self) -> Iterable[tuple[int, int, dict[str, Any]]]:
        """Every edge as (a, b, evidence), in (a, b) order (evidence built on demand)."""
        for edge, evidence in enumerate(self.evidence_of_edges(list(range(len(self.a))))):
            yield int(self.a[edge]), int(self.b[edge]), evidence

    def components(self, kinds: Iterable[str]) -> list[list[int]]:
        """Groups (node lists, size ≥ 2) for the given kinds: the non-chaining near-duplicate groups when any
        near kind is asked for, else connected components of those edges."""
        from auditor.similarity.groups import connected

        if self.near_groups is not None and set(kinds) - set(EXACT_KINDS):
            return [list(g) for g in self.near_groups]
        chosen = self.with_kinds(kinds)
        return connected(len(self.shas), np.stack([self.a[chosen], self.b[chosen]], axis=1))

    def chained_edges(self, both_tiers: bool = False) -> np.ndarray:
        """Accepted near-duplicate pairs left out of the groups: chains A≈B≈C with A≉C, which a group (every two
        members duplicates) cannot hold whole. Each is a pair the rule accepts between images that do not share a
        group: a look-alike that passes the rule, or a duplicate whose other duplicates the rule misses; on planted
        truth (bench/bench_truth.py) they were look-alikes (see docs/duplicates.md). With `both_tiers`, only those that
        what the images show (the embedding tier) and how their pixels align or hash accept alike: look-alikes pass
        one tier, rarely both. (m, 2) array of (a, b), sorted."""
        if self.near_groups is None:
            return np.zeros((0, 2), np.int64)
        group_of = np.full(len(self.shas), -1, dtype=np.int64)
        for number, group in enumerate(self.near_groups):
            group_of[group] = number
        outside = self.near() & ((group_of[self.a] < 0) | (group_of[self.a] != group_of[self.b]))
        if both_tiers:
            outside &= self.with_kinds(["embedding"]) & self.with_kinds(["correlation", "hash"])
        return np.stack([self.a[outside], self.b[outside]], axis=1)

    def evidence_within(self, nodes: list[int]) -> list[tuple[int, int, dict[str, Any]]]:
        """The edges between these nodes, in (a, b) order: read from each node's own edges (a contiguous run of
        the sorted edges), so asking for every group costs O(edges) in all, not O(edges) per group. Groups are
        small and asked for one at a time, so this walks Python lists: numpy's per-call overhead doubled the
        duplicate checks' time at 10⁵ images."""
        members = sorted(set(int(node) for node in nodes))
        if len(members) < 2 or not len(self.a):
            return []
        inside = set(members)
        starts = self._run_starts
        found = []
        for node in members[:-1]:
            first, last = int(starts[node]), int(starts[node + 1])
            if first == last:
                continue
            for offset, other in enumerate(self.b[first:last].tolist()):
                if other in inside:
                    found.append(first + offset)
        return [(int(self.a[edge]), int(self.b[edge]), evidence)
                for edge, evidence in zip(found, self.evidence_of_edges(found))]

    def evidence_within_groups(self, groups: list[list[int]]) -> list[list[tuple[int, int, dict[str, Any]]]]:
        """`evidence_within` of each group, read for all of them at once: the edges inside groups that share no
        node are found in one pass over the edge arrays and their evidence read in one call (at 10⁶ resampled
        vectors, 9 697 groups asked for one at a time were ≈ 80 % of each duplicate check's 4–6 s); a group sharing
        a node with an earlier one is read alone."""
        found: list[list[tuple[int, int, dict[str, Any]]]] = [[] for _ in groups]
        group_of = np.full(len(self.shas), -1, dtype=np.int64)
        alone = []
        for number, nodes in enumerate(groups):
            members = np.unique(np.asarray(nodes, dtype=np.int64))
            if len(members) < 2:
                continue
            if (group_of[members] >= 0).any():
                alone.append(number)
            else:
                group_of[members] = number
        if len(self.a) and (group_of >= 0).any():
            owner_a, owner_b = group_of[self.a], group_of[self.b]
            edges = np.flatnonzero((owner_a >= 0) & (owner_a == owner_b))
            edges = edges[np.argsort(owner_a[edges], kind="stable")]  # by group, each group's in (a, b) order
            for number, a, b, evidence in zip(owner_a[edges].tolist(), self.a[edges].tolist(),
                                              self.b[edges].tolist(), self.evidence_of_edges(edges.tolist())):
                found[number].append((a, b, evidence))
        for number in alone:
            found[number] = self.evidence_within(groups[number])
        return found

    @cached_property
    def _run_starts(self) -> np.ndarray:
        """Where each node's run of edges (as the lower end, a) starts in the sorted edges; node n's run ends
        where node n + 1's starts."""
        return np.searchsorted(self.a, np.arange(len(self.shas) + 1)).astype(np.int64)


def build_graph(shas: list[str], scans: dict[str, ImageScan], decision: Any) -> DuplicateGraph:
    """All the evidence, in one graph over the given (usable, unique) contents. `decision`: a
    similarity.engine.DuplicateDecision over the same nodes."""
    from auditor.similarity.groups import SplitStats, clique_groups

    # Identical decoded pixels: each content is linked to the first content with its pixels.
    first_with: dict[str, int] = {}
    same_pixels = np.array([first_with.setdefault(scans[sha].pixel_hash, position)
                            for position, sha in enumerate(shas)], dtype=np.int64)
    copies = np.flatnonzero(same_pixels != np.arange(len(shas)))
    accepted = np.flatnonzero(decision.accepted)
    masks = decision.kind_masks
    bits = np.zeros(len(accepted), dtype=np.uint8)
    for kind, mask in masks.items():
        bits |= np.where(mask[accepted], KIND_BIT[kind], 0).astype(np.uint8)
    graph = DuplicateGraph.from_pairs(
        shas,
        np.concatenate([same_pixels[copies], decision.pairs.query[accepted]]),
        np.concatenate([copies, decision.pairs.target[accepted]]),
        np.concatenate([np.full(len(copies), KIND_BIT["pixels"], np.uint8), bits]),
        np.concatenate([np.full(len(copies), NO_SOURCE, np.int64), accepted]),
        evidence_of=decision.edges_evidence)

    def judge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (same_pixels[a] == same_pixels[b]) | decision.judge(a, b)

    stats: list[SplitStats] = []
    graph.near_groups = clique_groups(len(shas), np.stack([graph.a, graph.b], axis=1), judge, stats=stats,
                                      strength=decision.strength(graph.source))
    graph.split = stats[0]
    return graph
