"""Who duplicates whom: one graph over unique image contents, with the evidence for every edge.

Nodes are unique file contents (sha256) of usable images; records that share bytes share a node.
Edges come from three kinds of evidence, each kept so the report can show it:
  - `pixels`: identical decoded pixels under another encoding;
  - `hash`: pHash and dHash both within their Hamming thresholds (directly or against the mirror image);
  - `embedding`: backbone cosine similarity at or above the threshold.
Groups are connected components (scipy), computed for whichever kinds of edge a check cares about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from auditor.encoding.imaging import ImageScan
from auditor.similarity.neighbours import cosine_pairs, hamming_pairs, hex_to_codes, normalise

# Kinds of edge. Exact: the same decoded pixels; all: any evidence of a near-duplicate too.
EXACT_KINDS = ("pixels",)
ALL_KINDS = ("pixels", "hash", "embedding")


@dataclass
class DuplicateGraph:
    shas: list[str]
    edges: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)

    def add(self, a: int, b: int, kind: str, **evidence: Any) -> None:
        key = (min(a, b), max(a, b))
        entry = self.edges.setdefault(key, {"kinds": []})
        if kind not in entry["kinds"]:
            entry["kinds"].append(kind)
        for name, value in evidence.items():
            entry.setdefault(name, value)

    def components(self, kinds: Iterable[str]) -> list[list[int]]:
        """Connected components (as node lists, size ≥ 2) using only edges of the given kinds."""
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


def build_graph(
    shas: list[str],
    scans: dict[str, ImageScan],
    embeddings: dict[str, np.ndarray] | None,
    max_phash: int,
    max_dhash: int,
    min_cosine: float | None,
) -> DuplicateGraph:
    """All the evidence, in one graph over the given (usable, unique) contents."""
    graph = DuplicateGraph(shas=list(shas))
    by_pixels: dict[str, int] = {}
    for position, sha in enumerate(shas):
        pixel_hash = scans[sha].pixel_hash
        if pixel_hash in by_pixels:
            graph.add(by_pixels[pixel_hash], position, "pixels")
        else:
            by_pixels[pixel_hash] = position
    ordered = [scans[sha] for sha in shas]
    for (a, b), evidence in hash_distance_pairs(ordered, max_phash, max_dhash).items():
        graph.add(a, b, "hash", **evidence)
    if embeddings is not None and min_cosine is not None:
        have = [i for i, sha in enumerate(shas) if sha in embeddings]
        if len(have) >= 2:
            unit = normalise(np.stack([embeddings[shas[i]] for i in have]))
            pairs, sims = cosine_pairs(unit, min_cosine)
            for (a, b), sim in zip(pairs, sims):
                graph.add(have[a], have[b], "embedding", cosine=round(float(sim), 4))
            # Cosine for hash-found pairs too, so every edge shows both tiers' evidence.
            row_of = {node: row for row, node in enumerate(have)}
            for (a, b), evidence in graph.edges.items():
                if "cosine" not in evidence and a in row_of and b in row_of:
                    evidence["cosine"] = round(float(unit[row_of[a]] @ unit[row_of[b]]), 4)
            _add_relative_evidence(graph, unit, have)
    return graph


def _add_relative_evidence(graph: DuplicateGraph, unit: np.ndarray, nodes: list[int]) -> None:
    """Rank and margin for every edge: a copy is usually its partner's nearest neighbour by a clear
    margin, while two merely similar photos sit among other similar ones. Evidence only: the decision
    stays with the calibrated thresholds, but a reader can weigh a borderline pair by it."""
    from auditor.similarity.neighbours import knn

    if not graph.edges or len(nodes) < 3:
        return
    sims, labels = knn(unit, 3)
    row_of = {node: row for row, node in enumerate(nodes)}

    def neighbours(row: int) -> list[tuple[int, float]]:
        return [(int(l), float(s)) for l, s in zip(labels[row], sims[row]) if l >= 0 and l != row]

    for (a, b), evidence in graph.edges.items():
        if a not in row_of or b not in row_of:
            continue
        ra, rb = row_of[a], row_of[b]
        na, nb = neighbours(ra), neighbours(rb)
        a_top = bool(na) and na[0][0] == rb
        b_top = bool(nb) and nb[0][0] == ra
        evidence["mutual_nearest"] = a_top and b_top
        if a_top and len(na) > 1:
            evidence["margin_over_next"] = round(na[0][1] - na[1][1], 4)
