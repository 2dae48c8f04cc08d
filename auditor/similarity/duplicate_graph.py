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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from auditor.encoding.imaging import ImageScan
from auditor.similarity.neighbours import hamming_pairs, hex_to_codes

# Kinds of edge. Exact: the same decoded pixels; all: any evidence of a near-duplicate too.
EXACT_KINDS = ("pixels",)
ALL_KINDS = ("pixels", "hash", "embedding", "correlation", "joint")


@dataclass
class DuplicateGraph:
    shas: list[str]
    edges: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    near_groups: list[list[int]] | None = None  # groups in which every two members are duplicates
    split: Any = None  # similarity.groups.SplitStats: how the chained components were split into groups

    def add(self, a: int, b: int, kind: str, **evidence: Any) -> None:
        key = (min(a, b), max(a, b))
        entry = self.edges.setdefault(key, {"kinds": []})
        if kind not in entry["kinds"]:
            entry["kinds"].append(kind)
        for name, value in evidence.items():
            entry.setdefault(name, value)

    def components(self, kinds: Iterable[str]) -> list[list[int]]:
        """Groups (node lists, size ≥ 2) for the given kinds: the non-chaining near-duplicate groups when any
        near kind is asked for, else connected components of those edges."""
        if self.near_groups is not None and set(kinds) - {"pixels"}:
            return [list(g) for g in self.near_groups]
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        wanted = set(kinds)
        chosen = [key for key, ev in self.edges.items() if wanted & set(ev["kinds"])]
        n = len(self.shas)
        if not chosen or n == 0:
            return []
        rows = np.array([a for a, _ in chosen])
        cols = np.array([b for _, b in chosen])
        graph = coo_matrix((np.ones(len(chosen)), (rows, cols)), shape=(n, n))
        count, labels = connected_components(graph, directed=False)
        groups: dict[int, list[int]] = {}
        for node, label in enumerate(labels):
            groups.setdefault(label, []).append(node)
        return [members for members in groups.values() if len(members) > 1]

    def chained_edges(self) -> list[tuple[int, int]]:
        """Accepted near-duplicate pairs left out of the groups: chains A≈B≈C with A≉C, which a group (every two
        members duplicates) cannot hold whole. Each is a pair the rule accepts between images that do not share a
        group: a look-alike that passes the rule, or a duplicate whose other duplicates the rule misses; on planted
        truth (bench/bench_truth.py) they were look-alikes (see the README). Sorted (a, b)."""
        if self.near_groups is None:
            return []
        group_of: dict[int, int] = {}
        for number, group in enumerate(self.near_groups):
            for node in group:
                group_of[node] = number
        return sorted(key for key, evidence in self.edges.items()
                      if set(evidence["kinds"]) - set(EXACT_KINDS)
                      and (key[0] not in group_of or group_of[key[0]] != group_of.get(key[1])))

    def evidence_within(self, nodes: list[int]) -> list[tuple[int, int, dict[str, Any]]]:
        """The edges between these nodes, in (a, b) order: read from each node's own edges, so asking for
        every group costs O(edges) in all, not O(edges) per group."""
        members = set(nodes)
        found = {(a, b) for node in members for a, b in self._edges_of().get(node, ()) if a in members and b in members}
        return [(a, b, self.edges[(a, b)]) for a, b in sorted(found)]

    def _edges_of(self) -> dict[int, list[tuple[int, int]]]:
        if getattr(self, "_adjacency_size", None) != len(self.edges):  # rebuilt when edges were added
            adjacency: dict[int, list[tuple[int, int]]] = {}
            for key in self.edges:
                adjacency.setdefault(key[0], []).append(key)
                adjacency.setdefault(key[1], []).append(key)
            self._adjacency, self._adjacency_size = adjacency, len(self.edges)
        return self._adjacency


def hash_distance_pairs(scans: list[ImageScan], max_phash: int, max_dhash: int) -> dict[tuple[int, int], dict[str, Any]]:
    """Pairs whose pHash and dHash are both close, directly or with one image mirrored.

    FAISS finds candidates by pHash; dHash must agree, which keeps unrelated images with a
    similar low-frequency layout out."""
    if len(scans) < 2:
        return {}
    phash = hex_to_codes([s.phash for s in scans])
    phash_mirror = hex_to_codes([s.phash_mirror for s in scans])
    dhash = hex_to_codes([s.dhash for s in scans])
    dhash_mirror = hex_to_codes([s.dhash_mirror for s in scans])
    found: dict[tuple[int, int], dict[str, Any]] = {}
    for mirrored, queries, dqueries in ((False, None, dhash), (True, phash_mirror, dhash_mirror)):
        for i, j, p_dist in hamming_pairs(phash, max_phash, queries=queries):
            if i == j:
                continue
            d_dist = int(np.unpackbits(np.bitwise_xor(dqueries[i], dhash[j])).sum())
            if d_dist > max_dhash:
                continue
            key = (int(min(i, j)), int(max(i, j)))
            best = found.get(key)
            if best is None or p_dist + d_dist < best["phash_distance"] + best["dhash_distance"]:
                found[key] = {"phash_distance": int(p_dist), "dhash_distance": d_dist, "mirrored": mirrored}
    return found


def build_graph(shas: list[str], scans: dict[str, ImageScan], decision: Any) -> DuplicateGraph:
    """All the evidence, in one graph over the given (usable, unique) contents. `decision`: a
    similarity.engine.DuplicateDecision over the same nodes."""
    from auditor.similarity.groups import SplitStats, clique_groups

    graph = DuplicateGraph(shas=list(shas))
    by_pixels: dict[str, int] = {}
    for position, sha in enumerate(shas):
        pixel_hash = scans[sha].pixel_hash
        if pixel_hash in by_pixels:
            graph.add(by_pixels[pixel_hash], position, "pixels")
        else:
            by_pixels[pixel_hash] = position
    for k in np.flatnonzero(decision.accepted):
        evidence = decision.edge_evidence(int(k))
        kinds = evidence.pop("kinds")
        a, b = int(decision.pairs.query[k]), int(decision.pairs.target[k])
        for kind in kinds:
            graph.add(a, b, kind, **evidence)
    same_pixels = np.array([by_pixels[scans[sha].pixel_hash] for sha in shas], dtype=np.int64)

    def judge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (same_pixels[a] == same_pixels[b]) | decision.judge(a, b)

    edges = np.array(list(graph.edges), dtype=np.int64).reshape(-1, 2)
    stats: list[SplitStats] = []
    graph.near_groups = clique_groups(len(shas), edges, judge, stats=stats)
    graph.split = stats[0]
    return graph
