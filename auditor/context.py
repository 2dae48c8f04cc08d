"""The audit context: the dataset, the encodings, and artefacts derived from them once, lazily,
for every check that needs them (the duplicate graph, the calibration)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Mapping

import numpy as np

from auditor.backbones.registry import Backbone
from auditor.encoding.cache import Cache
from auditor.similarity.calibration import Calibration, calibrate, default_sample_images
from auditor.config import REFERENCE_SPLIT, AuditConfig
from auditor.index.dataset import DatasetIndex, ImageRecord
from auditor.similarity.duplicate_graph import DuplicateGraph, build_graph
from auditor.encoding.encode import Encoded
from auditor.encoding.imaging import ScanLimits
from auditor.engines.local import WorkerPool


def scan_limits(config: AuditConfig) -> ScanLimits:
    return ScanLimits(max_pixels=config.max_pixels, min_side=config.min_side, max_aspect_ratio=config.max_aspect_ratio)


@dataclass
class AuditContext:
    index: DatasetIndex
    config: AuditConfig
    encoded: Encoded
    backbone: Backbone | None
    cache: Cache
    # Where per-image work after the encode phase runs (the calibration copies): the engine's decoding workers.
    pool: WorkerPool = field(default_factory=WorkerPool)
    _group_memo: dict = field(default_factory=dict, repr=False)
    _evidence_memo: dict = field(default_factory=dict, repr=False)  # group (record positions) → its pairs' evidence
    check_seconds: dict = field(default_factory=dict, repr=False)  # check id → seconds it took
    reused_checks: list = field(default_factory=list, repr=False)  # check ids served from the result cache
    # How each neighbour search of this audit was done ("embeddings", "hashes", …): exact, or an approximate
    # index with its recall measured against exact search on a sample (similarity.neighbours.SearchQuality).
    search_quality: dict = field(default_factory=dict, repr=False)
    graph_store: object = field(default=None, repr=False)  # where the shared exact k-NN graph is kept (unit_matrix)

    @property
    def records(self) -> list[ImageRecord]:
        return self.index.records

    def sha(self, position: int) -> str | None:
        return self.encoded.record_sha[position]

    def is_usable(self, position: int) -> bool:
        sha = self.encoded.record_sha[position]
        return sha is not None and sha in self.encoded.scans and self.encoded.scans[sha].usable

    @cached_property
    def usable_positions(self) -> list[int]:
        return [i for i in range(len(self.records)) if self.is_usable(i)]

    @cached_property
    def unique_shas(self) -> list[str]:
        """Usable contents in first-seen order: the nodes of the duplicate graph."""
        seen: dict[str, None] = {}
        for i in self.usable_positions:
            seen.setdefault(self.encoded.record_sha[i], None)
        return list(seen)

    @cached_property
    def positions_by_sha(self) -> dict[str, list[int]]:
        grouped: dict[str, list[int]] = {}
        for i in self.usable_positions:
            grouped.setdefault(self.encoded.record_sha[i], []).append(i)
        return grouped

    @cached_property
    def node_of_sha(self) -> dict[str, int]:
        """Content → its node in the duplicate graph (the position in unique_shas)."""
        return {sha: i for i, sha in enumerate(self.unique_shas)}

    @property
    def has_embeddings(self) -> bool:
        return self.backbone is not None and bool(self.encoded.embeddings)

    @cached_property
    def calibration_shas(self) -> list[str]:
        """The images calibration samples from: all, or those the index names (with --against, the existing
        dataset's, so a gate run samples what the existing dataset's audit sampled and reuses its cached copies)."""
        pool = getattr(self.index, "calibration_positions", None)
        if pool is None:
            return self.unique_shas
        allowed = {self.encoded.record_sha[p] for p in pool}
        return [s for s in self.unique_shas if s in allowed]

    @cached_property
    def calibration(self) -> Calibration:
        """Copies of a sample of this dataset's own images, made like real leaks, scanned and embedded."""
        config = self.config
        backbone = self.backbone if self.has_embeddings else None
        return calibrate(
            shas=self.calibration_shas,
            paths=FirstPaths(self),  # read for the sampled images only: no Path made for each of 10⁶ others
            scans=self.encoded.scans,
            thumbnails=self.encoded.thumbnails,
            embeddings=self.encoded.embeddings if backbone else None,
            backbone=backbone,
            cache=self.cache,
            sample_images=(config.calibration_images if config.calibration_images is not None
                           else default_sample_images(len(self.calibration_shas))),
            limits=scan_limits(config),
            input_size=backbone.input_size if backbone else 224,
            seed=config.seed or 0,
            pool=self.pool,
        )

    @cached_property
    def duplicate_decision(self):
        """The near-duplicate decision chosen on this dataset (auditor/similarity/engine.py)."""
        from auditor.memory import release_free_memory
        from auditor.similarity.engine import decide

        # Only the accepted pairs are kept: the rejected candidates would stay alive through every later check.
        decision = decide(**self._decision_inputs(), memo=self.cache.pixel_memo()).accepted_only()
        release_free_memory()  # what its search and merge freed: gigabytes of heap chunks at 10⁶ images
        return decision

    def _decision_inputs(self) -> dict:
        from auditor.config import REFERENCE_SPLIT
        from auditor.similarity.neighbours import normalise
        from auditor.similarity.input_size import are_small

        shas = self.unique_shas
        cal = self.calibration
        node_of = {sha: i for i, sha in enumerate(shas)}
        cal_pool = self.calibration_shas
        splits: dict[str, set[str]] = {}
        for sha, positions in self.positions_by_sha.items():
            splits[sha] = {self.records[p].split for p in positions}
        two_splits = len(self.index.splits) > 1 and self.index.reference_split is not None
        unit = None
        if self.has_embeddings and shas:
            # The shared float16 matrix when every node has an embedding (its rows are then the nodes, in order):
            # no float32 copy (5 GB at 10⁶ × 1280), and the candidate search reuses the k-NN graph of the other
            # checks' searches (one index per matrix object).
            unit = self.unit_matrix if len(self.embedded_shas) == len(shas) else self.unit_embeddings(shas)
        return dict(
            unit=unit,
            thumbs=self._thumbnails(shas),
            reference=np.array([REFERENCE_SPLIT in splits[s] for s in shas]) if two_splits else None,
            held_out=np.array([bool(splits[s] - {REFERENCE_SPLIT}) for s in shas]) if two_splits else None,
            copy_unit=normalise(cal.vectors) if unit is not None and cal.vectors is not None else None,
            copy_thumbs=cal.thumbs,
            copy_source=np.array([node_of[cal_pool[i]] for i in cal.source], dtype=np.int64),
            copy_kind=cal.kind,
            grey=np.array([self.encoded.scans[s].is_grey for s in shas], dtype=bool),
            copy_grey=cal.grey,
            max_phash=self.config.max_phash_distance,
            max_dhash=self.config.max_dhash_distance,
            fixed_cosine=self.config.min_cosine,
            fixed_correlation=self.config.min_correlation,
            small_images=are_small([max(self.encoded.scans[s].width or 0, self.encoded.scans[s].height or 0)
                                    for s in shas if self.encoded.scans[s].width]),
        )

    def _thumbnails(self, shas: list[str]) -> np.ndarray:
        """(n, 32, 32) uint8 grey thumbnails of these contents: the encoded table's own array when they are its
        first rows in order (an audit's nodes are), else gathered from it."""
        return self.encoded.thumbnails.of(shas)

    @cached_property
    def duplicate_graph(self) -> DuplicateGraph:
        from auditor.memory import release_free_memory

        graph = build_graph(self.unique_shas, self.encoded.scans, self.duplicate_decision)
        release_free_memory()
        return graph

    @cached_property
    def left_out_leaks(self) -> list[list[int]]:
        """Held-out images the rule pairs with a training image on both tiers but that the groups left alone (in
        no group: the partner went into a clique they could not join entirely, e.g. with a mirrored look-alike of
        both): each with its best-evidenced such training partner (the highest cosine), record positions, a group
        of its own. Such an image has its own train duplicate, so `leakage` and `gap_attribution` count it. A pair
        accepted on one tier only is not enough (on digits, where look-alikes align, it added 6 false leak flags to
        3 rows and no leak); a held-out image inside some group keeps that group's verdict."""
        if self.index.reference_split is None:
            return []
        graph = self.duplicate_graph
        chained = graph.chained_edges(both_tiers=True)
        if not len(chained):
            return []
        grouped = {p for g in self.duplicate_groups for p in g}
        positions_of = lambda node: self.positions_by_sha[graph.shas[int(node)]]
        in_train = lambda p: self.records[p].split == REFERENCE_SPLIT
        found: dict[tuple[int, ...], list[int]] = {}
        chained = chained[np.argsort(-self._edge_cosines(chained), kind="stable")]  # best partner first
        for a, b in chained.tolist():
            for held_node, train_node in ((a, b), (b, a)):
                held = [p for p in positions_of(held_node) if not in_train(p)]
                train = [p for p in positions_of(train_node) if in_train(p)]
                if held and train and not grouped.intersection(positions_of(held_node)):
                    found.setdefault(tuple(held), sorted(held + train))
        return sorted(found.values())

    def _edge_cosines(self, pairs: np.ndarray) -> np.ndarray:
        """Cosine of each (a, b) pair of the duplicate graph's nodes (`unique_shas` rows, both embedded), read from the
        shared unit matrix; their rows read from the record columns at once (a dict lookup per node: ≈ 0.4 s at 10⁶)."""
        from auditor.similarity.neighbours import paired_cosines

        rows = self.columns.embedded_row[np.asarray(pairs, dtype=np.int64).reshape(-1, 2)]
        return paired_cosines(self.unit_matrix, rows[:, 0], self.unit_matrix, rows[:, 1])

    @property
    def duplicate_groups(self) -> list[list[int]]:
        """Record positions that are copies of one image, by any evidence (exact or near), largest first."""
        from auditor.similarity.duplicate_graph import ALL_KINDS

        return self.record_groups(ALL_KINDS)

    def record_groups(self, kinds: tuple[str, ...], include_byte_identical: bool = True) -> list[list[int]]:
        """Groups of record positions connected by the given kinds of evidence (plus identical bytes).

        Several checks ask for the same groups; they are computed once per (kinds, bytes) question."""
        key = (tuple(sorted(kinds)), include_byte_identical)
        if key not in self._group_memo:
            self._group_memo[key] = self._record_groups(kinds, include_byte_identical)
        return [list(g) for g in self._group_memo[key]]

    def _record_groups(self, kinds: tuple[str, ...], include_byte_identical: bool) -> list[list[int]]:
        graph = self.duplicate_graph
        groups: list[list[int]] = []
        covered: set[str] = set()
        for nodes in graph.components(kinds):
            members = [p for node in nodes for p in self.positions_by_sha[graph.shas[node]]]
            covered.update(graph.shas[node] for node in nodes)
            groups.append(sorted(members))
        if include_byte_identical:
            for sha, positions in self.positions_by_sha.items():
                if len(positions) > 1 and sha not in covered:
                    groups.append(sorted(positions))
        return sorted(groups, key=lambda g: (-len(g), self.records[g[0]].path))

    def group_evidence(self, positions: list[int]) -> list[dict]:
        """Per-pair evidence inside a group, with paths, for the report (`groups_evidence` of one group)."""
        return self.groups_evidence([positions])[0]

    def groups_evidence(self, groups: list[list[int]]) -> list[list[dict]]:
        """Per-pair evidence inside each group (record positions), with paths, for the report. Read once per group
        and audit, those not read before all at once (`DuplicateGraph.evidence_within_groups`): the three duplicate
        checks report many of the same groups. The pairs' dicts are shared by the findings that show them (the
        report only reads them)."""
        memo = self._evidence_memo
        missing = list({tuple(group): None for group in groups if tuple(group) not in memo})
        if missing:
            graph = self.duplicate_graph
            node_groups = [sorted({self.node_of_sha[self.encoded.record_sha[p]] for p in group}) for group in missing]
            for group, nodes, edges in zip(missing, node_groups, graph.evidence_within_groups(node_groups)):
                pairs = []
                for sha in sorted({self.encoded.record_sha[p] for p in group}):
                    same = self.positions_by_sha[sha]
                    for a, b in zip(same, same[1:]):
                        pairs.append({"a": self.records[a].path, "b": self.records[b].path, "kinds": ["bytes"]})
                path = {node: self.records[self.positions_by_sha[graph.shas[node]][0]].path for node in nodes}
                pairs += [{"a": path[a], "b": path[b], **evidence} for a, b, evidence in edges]
                memo[group] = pairs
        return [list(memo[tuple(group)]) for group in groups]

    # Shared intermediate results: computed on first use, by whichever check asks first ------------------

    @cached_property
    def domain_scores(self) -> dict[str, dict[str, float]]:
        """{held-out split: {sha256: P(held-out | image)}} from the domain classifier (split_shift,
        gap_attribution)."""
        from auditor.analysis.domain import domain_scores

        return domain_scores(self)

    @cached_property
    def label_analysis(self):
        """The cross-validated label probe and confident learning (label_issues, gap_attribution)."""
        from auditor.analysis.labels import compute_label_analysis

        return compute_label_analysis(self)

    @cached_property
    def reference_run(self):
        """The reference fine-tune on the cached feature maps (reference_finetune, gap_attribution)."""
        from auditor.finetune.head import train_reference

        return train_reference(self)

    def unit_embeddings(self, shas: list[str]) -> np.ndarray:
        """L2-normalised float32 embeddings of `shas`, in that order (read in bulk from the store). For the whole
        dataset at scale use `unit_matrix` (float16, memory-mapped: 2.6 GB at 10⁶ × 1280 instead of 5 GB)."""
        from auditor.similarity.neighbours import normalise

        if not len(shas):
            return np.zeros((0, self.backbone.dim if self.backbone else 0), dtype=np.float32)
        bulk = getattr(self.encoded.embeddings, "unit_rows", None)
        if bulk is not None:
            return normalise(bulk(list(shas)))
        return normalise(np.stack([self.encoded.embeddings[s] for s in shas]))

    @cached_property
    def columns(self) -> "RecordColumns":
        """Per-record arrays (split, label, content node, usable) for checks that count or group at 10⁶ records."""
        return RecordColumns.build(self)

    @cached_property
    def embedded_shas(self) -> list[str]:
        """unique_shas that have an embedding (the rows of `unit_matrix`)."""
        embedded = self.encoded.embeddings
        return [s for s in self.unique_shas if s in embedded]

    @cached_property
    def embedded_row(self) -> dict[str, int]:
        return {sha: i for i, sha in enumerate(self.embedded_shas)}

    @cached_property
    def unit_matrix(self) -> np.ndarray:
        """Unit embeddings of `embedded_shas`, float16, read-only: one slice of a memory map when the store holds
        them in this order (it rewrites them so, once, when they are many), else gathered. The same object for
        every check, so neighbour searches on it share one index (similarity.neighbours)."""
        bulk = getattr(self.encoded.embeddings, "unit_rows", None)
        if bulk is not None:
            matrix = bulk(self.embedded_shas)
        else:
            matrix = self.unit_embeddings(self.embedded_shas).astype(np.float16)
        matrix.flags.writeable = False  # shared by every check (and its search fingerprint kept: neighbours.py)
        self._attach_stored_graphs(matrix)
        return matrix

    def _attach_stored_graphs(self, matrix: np.ndarray) -> None:
        """Below the exact-search limit, the checks' shared k-NN graph of this matrix is kept in the cache and
        read (or extended: only new rows searched) by later audits of the same or a grown dataset
        (similarity/graph_store.py)."""
        from auditor.similarity import neighbours
        from auditor.similarity.graph_store import GraphStore

        if self.cache.directory is None or self.backbone is None or not 2 <= len(matrix) <= neighbours.EXACT_LIMIT:
            return
        try:
            self.graph_store = GraphStore(self.cache.directory, self.backbone.cache_key, self.embedded_shas)
        except OSError:  # a cache folder that cannot take the graph's folder: searched as before, not kept
            return
        neighbours.attach_graph_source(matrix, self.graph_store)


class FirstPaths(Mapping):
    """Content → the file of its first usable record, made when asked for."""

    def __init__(self, ctx: AuditContext):
        self._ctx = ctx

    def __getitem__(self, sha: str) -> Path | str:
        return self._ctx.records[self._ctx.positions_by_sha[sha][0]].abspath

    def __iter__(self):
        return iter(self._ctx.positions_by_sha)

    def __len__(self) -> int:
        return len(self._ctx.positions_by_sha)


@dataclass
class RecordColumns:
    """The records as arrays, built in one pass: what checks need to count, group and select at any size
    without a Python loop per record per split or class.

    split[i], label[i]: codes into `splits` / `classes`; node[i]: the record's content in `unique_shas`
    (-1: not usable); usable[i]. Over contents: node_embedded[j] (has an embedding), embedded_row[j] (its
    row in `unit_matrix`, -1 if none)."""

    splits: list[str]
    classes: list[str]
    split: np.ndarray
    label: np.ndarray
    node: np.ndarray
    usable: np.ndarray
    embedded_row: np.ndarray

    @classmethod
    def build(cls, ctx: "AuditContext") -> "RecordColumns":
        splits, classes = list(ctx.index.splits), list(ctx.index.classes)
        split_code, label_code = {s: i for i, s in enumerate(splits)}, {c: i for i, c in enumerate(classes)}
        records = ctx.records
        n = len(records)
        split = np.fromiter((split_code[r.split] for r in records), dtype=np.int32, count=n)
        label = np.fromiter((label_code[r.label] for r in records), dtype=np.int32, count=n)
        node_of = ctx.node_of_sha
        shas = ctx.encoded.record_sha
        node = np.full(n, -1, dtype=np.int64)
        usable = np.zeros(n, dtype=bool)
        positions = np.asarray(ctx.usable_positions, dtype=np.int64)
        usable[positions] = True
        node[positions] = np.fromiter((node_of[shas[p]] for p in ctx.usable_positions), dtype=np.int64,
                                      count=len(positions))
        embedded_row = np.full(len(ctx.unique_shas), -1, dtype=np.int64)
        row_of = ctx.embedded_row
        embedded_row[:] = np.fromiter((row_of.get(s, -1) for s in ctx.unique_shas), dtype=np.int64,
                                      count=len(ctx.unique_shas))
        return cls(splits, classes, split, label, node, usable, embedded_row)

    def node_members(self, mask: np.ndarray) -> np.ndarray:
        """Distinct content nodes of the usable records selected by `mask`."""
        return np.unique(self.node[mask & self.usable])
