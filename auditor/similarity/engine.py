"""The whole near-duplicate decision over arrays: search the dataset and the calibration copies, choose the
rule on the dataset itself, accept pairs, form groups that do not chain, estimate leak detection quality.

Pure: numpy arrays in (unit embeddings, grey thumbnails, which nodes are in the reference split, the
calibration copies' embeddings and thumbnails), a `DuplicateDecision` out.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from auditor.encoding.embedding_store import to_float32
from auditor.similarity import evidence as ev
from auditor.similarity.decision import Calibrator, Choice, CopySample, Estimate, Rule, choose_rule, hash_reliability
from auditor.similarity.groups import clique_groups
from auditor.similarity import neighbours
from auditor.similarity.neighbours import paired_cosines

VARIANT_NAMES = ["as is", "rotated 90°", "rotated 180°", "rotated 270°",
                 "mirrored", "mirrored, rotated 90°", "mirrored, rotated 180°", "mirrored, rotated 270°"]


@dataclass
class DuplicateDecision:
    data: ev.Dataset
    pairs: ev.Pairs  # every candidate pair of dataset nodes (a < b), with evidence
    accepted: np.ndarray  # bool per pair
    choice: Choice
    hash_tier: dict[str, Any]
    leak: Estimate | None
    hash_search: dict[str, Any] | None = None  # how the hash candidates were searched (neighbours.SearchQuality)
    pixel_search: dict[str, Any] | None = None  # how the pixel-alike candidates were searched (approximate only)
    crowds: dict[str, Any] | None = None  # crowds of one picture's copies among the images (crowds.Crowds), if searched

    @functools.cached_property
    def groups(self) -> list[list[int]]:
        """Node groups, every two members duplicates. Computed on demand: the audit's groups come from the
        duplicate graph (duplicate_graph.build_graph, which adds identical-pixel edges and splits chains the same
        way), and splitting here too judged every chained component's pairs twice."""
        accepted = self.accepted
        edges = (np.stack([self.pairs.query[accepted], self.pairs.target[accepted]], axis=1) if accepted.any()
                 else np.zeros((0, 2), np.int64))
        return clique_groups(len(self.data.thumbs), edges, self.judge, strength=self.strength(np.flatnonzero(accepted)))

    def strength(self, pairs: np.ndarray) -> np.ndarray:
        """How strong the evidence of these candidate pairs (their numbers) is: pixel correlation plus scaled cosine,
        as `evidence.unordered` ranks a pair's two directions; infinite where no pair carries it (-1: identical
        pixels alone). Where an image cannot be grouped with all its duplicates, it stays with the strongest."""
        pairs = np.asarray(pairs, dtype=np.int64)
        known = pairs >= 0
        out = np.full(len(pairs), np.inf)
        out[known] = (self.pairs.correlation[pairs[known]].astype(np.float64)
                      + self.pairs.scaled[pairs[known]].astype(np.float64))
        return out

    @property
    def rule(self) -> Rule:
        return self.choice.rule

    def accepted_only(self) -> "DuplicateDecision":
        """This decision with only the candidate pairs it accepts, without the search's embedding neighbour lists
        and without the calibrator its rule was chosen with (which holds every candidate pair too): what an audit
        keeps once the decision is made. Nothing later reads the rejected candidates or the calibrator (the graph,
        its cliques through `judge` and `strength`, the report's evidence and the checks read the accepted pairs,
        the rule and the estimates); kept, 2.8 M pairs (89 MiB at 2·10⁵ 32 px crops) lived through every later
        check. Everything read from the result is what the whole decision gives (tested)."""
        keep = np.flatnonzero(self.accepted)
        return dataclasses.replace(self, data=dataclasses.replace(self.data, neighbours=None, crowds=None),
                                   pairs=self.pairs.subset(keep), accepted=np.ones(len(keep), dtype=bool),
                                   choice=dataclasses.replace(self.choice, calibrator=None))

    @functools.cached_property
    def _embedding_passes(self) -> np.ndarray:
        """Which pairs the embedding tier accepts, judged once for all pairs (not one pair at a time per edge)."""
        return self.rule.embedding_passes(self.pairs)

    @functools.cached_property
    def _pixel_passes(self) -> np.ndarray:
        """Which pairs the rule's pixel tier accepts (its look-alike check included), judged once for all pairs."""
        return self.rule.pixel_passes(self.pairs)

    @functools.cached_property
    def _joint_passes(self) -> np.ndarray:
        """Which pairs the rule's both-tiers clause accepts, judged once for all pairs."""
        return self.rule.joint_passes(self.pairs)

    @functools.cached_property
    def kind_masks(self) -> dict[str, np.ndarray]:
        """Per candidate pair, which kinds of evidence accept it, in the order a pair lists them: the embedding
        tier, the pixel tier, both together where neither alone does, and the hashes (counted where hash matches
        count alone, or beside another tier). The duplicate graph keeps them as bits, not as a list per edge."""
        embedding, pixel = self._embedding_passes, self._pixel_passes
        joint = self._joint_passes & ~embedding & ~pixel
        any_tier = embedding | pixel | joint
        hashed = np.asarray(self.pairs.hash_match, dtype=bool) & (bool(self.rule.hash_alone) | any_tier)
        return {"embedding": embedding, "correlation": pixel, "joint": joint, "hash": hashed}

    def edges_evidence(self, ks) -> list[dict[str, Any]]:
        """The report's evidence of these candidate pairs: kinds, correlation, alignment, cosines, hash distances.
        Each field is read for all of them at once: read pair by pair, numpy's per-element access cost more than
        building the dicts (the duplicate checks read every group's pairs)."""
        ks = np.asarray(ks, dtype=np.int64)
        p = self.pairs
        flags = [(kind, mask[ks].tolist()) for kind, mask in self.kind_masks.items()]
        correlation, variant, hashed = p.correlation[ks].tolist(), p.variant[ks].tolist(), p.hash_match[ks].tolist()
        relative = None if p.relative_correlation is None else p.relative_correlation[ks].tolist()
        embedded = self.data.unit is not None
        cosine, scaled = (p.cosine[ks].tolist(), p.scaled[ks].tolist()) if embedded else (None, None)
        phash, dhash = p.phash_distance[ks].tolist(), p.dhash_distance[ks].tolist()
        out = []
        for i in range(len(ks)):
            evidence: dict[str, Any] = {"kinds": [kind for kind, flag in flags if flag[i]],
                                        "correlation": round(correlation[i], 4),
                                        **({} if relative is None else {"relative_correlation": round(relative[i], 4)}),
                                        "transform": VARIANT_NAMES[variant[i]], "mirrored": variant[i] >= 4}
            if embedded:
                evidence["cosine"] = round(cosine[i], 4)
                evidence["scaled_cosine"] = round(scaled[i], 4)
            if hashed[i]:
                evidence["phash_distance"] = int(phash[i])
                evidence["dhash_distance"] = int(dhash[i])
            out.append(evidence)
        return out

    def judge(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The rule applied to node pairs that were not candidates (for splitting chains into cliques): the same
        verdict as `rule.passes(pair_evidence(...))`, with the pixel tier measured only where it decides, i.e.
        where the rule has one and the embedding tier does not already accept the pair (these pairs are the
        superlinear part at scale: every two members of each chained component, each under 8 variants)."""
        embedding = pair_evidence(self.data, a, b, pixels=False)
        ok = self.rule.embedding_passes(embedding)
        if (self.rule.min_correlation is not None or self.rule.has_joint) and not ok.all():
            rest = np.flatnonzero(~ok)
            correlation, variant = ev.pair_correlation(self.data.thumbs, embedding.query[rest], self.data.thumbs,
                                                       embedding.target[rest], -1, every_variant=True,
                                                       memo=self.data.memo)
            judged = embedding.subset(rest)
            judged.correlation = correlation.astype(np.float32)
            judged.relative_correlation = ev.dataset_relative_correlation(self.data, judged)
            judged.variant = np.asarray(variant, dtype=np.int64)  # the look-alike check reads how they aligned
            ok[rest] = self.rule.passes(judged)
        return ok  # judged pairs carry no hash match: `hash_alone` accepts none of them


def pair_evidence(data: ev.Dataset, a: np.ndarray, b: np.ndarray, pixels: bool = True) -> ev.Pairs:
    """Evidence for arbitrary node pairs (every variant of the pixel tier tried; `pixels=False`: embeddings only,
    correlation left at -1)."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    cosine = np.zeros(len(a), dtype=np.float32)
    scaled = np.zeros(len(a), dtype=np.float32)
    if data.unit is not None:
        cosine = paired_cosines(data.unit, a, data.unit, b)
        scaled = ev.scaled_cosine(cosine, data.background[a], data.background[b]).astype(np.float32)
    rank = np.zeros(len(a), dtype=np.int16)
    if pixels:
        correlation, variant = ev.pair_correlation(data.thumbs, a, data.thumbs, b, np.full(len(a), -1),
                                                   every_variant=True, memo=data.memo)
    else:
        correlation, variant = np.full(len(a), -1.0, dtype=np.float32), np.zeros(len(a), dtype=np.int64)
    none = np.full(len(a), ev.NO_HASH, dtype=np.int16)
    pairs = ev.Pairs(query=a, target=b, rank=rank, cosine=cosine, scaled=scaled, correlation=correlation,
                     variant=variant, hash_match=np.zeros(len(a), dtype=bool), phash_distance=none,
                     dhash_distance=none, colour_differs=data.colour_differs(a, b))
    if pixels:
        pairs.relative_correlation = ev.dataset_relative_correlation(data, pairs)
    return pairs


def decide(unit: np.ndarray | None, thumbs: np.ndarray, reference: np.ndarray | None, held_out: np.ndarray | None,
           copy_unit: np.ndarray | None, copy_thumbs: np.ndarray, copy_source: np.ndarray, copy_kind: list[str],
           max_phash: int, max_dhash: int, fixed_cosine: float | None = None,
           fixed_correlation: float | None = None, small_images: bool = False,
           memo: Any = None, grey: np.ndarray | None = None, copy_grey: np.ndarray | None = None) -> DuplicateDecision:
    """reference / held_out: bool per node (a node can be both: the same file in two splits), or None.
    small_images: the images are small (input_size.are_small): candidates by pixel likeness too.
    memo: a similarity.pixel_memo.PixelMemo (pixel evidence remembered across audits), or None.
    grey, copy_grey: bool per node and per copy, the image has no colour (None: not known); the pixel tier's
    look-alike check does not judge a grey image against a colour one by its embedding (Rule.pixel_min_scaled)."""
    n = len(thumbs)
    if unit is not None and unit.dtype == np.float16 and len(unit) <= neighbours.EXACT_LIMIT:
        # Searched exactly and gathered pair by pair several times below: decoded once (the same bits), not per
        # use (0.3 of the 1.1 CPU-s a 3 000-image gate's decision took). Above the limit the shared float16
        # matrix is kept: its approximate index and k-NN graph belong to that array object.
        unit = to_float32(unit)
        unit.flags.writeable = False  # one copy for the whole decision (its search fingerprint is kept)
    data = ev.make_dataset(unit, thumbs, small_images=small_images, memo=memo, grey=grey)
    searches: list = []  # neighbours.SearchQuality of the approximate searches, by kind
    # The copies first: the dataset's own search, the larger, then drops the pixel indexes before its comparisons.
    copy_pairs = ev.search(data, copy_unit, copy_thumbs, max_phash, max_dhash)
    pairs = ev.unordered(ev.search(data, unit, data.thumbs, max_phash, max_dhash, self_nodes=np.arange(n),
                                   quality=searches, last_pixel_search=True))
    hash_search = [q for q in searches if q.kind.startswith("hamming")]
    pixel_search = [q for q in searches if q.kind == "pixel_knn"]
    pairs.colour_differs = data.colour_differs(pairs.query, pairs.target)
    if fixed_correlation is None:
        # The calibrated pixel tier judges the correlation relative to each image's background; a threshold the
        # user gives is one on the correlation itself (as --min-cosine is on the raw cosine).
        ev.relate_to_backgrounds(data, pairs, copy_pairs, copy_source, copy_kind)
    if copy_grey is not None:
        copy_pairs.colour_differs = data.colour_differs(copy_pairs.query, copy_pairs.target, copy_grey)
    copy_source = np.asarray(copy_source, dtype=np.int64)
    # How near-identical each copy is to its source: the recall is weighted to the flagged images' mix of such bands.
    copies = CopySample(source=copy_source, kind=list(copy_kind), pairs=copy_pairs,
                        source_correlation=ev.copy_source_correlation(data, copy_thumbs, copy_source, copy_pairs)
                        if len(copy_source) else None)
    has_splits = reference is not None and held_out is not None and reference.any() and held_out.any()
    choice = choose_rule(Calibrator(pairs, n, copies), unit is not None, fixed_cosine, fixed_correlation,
                         splits=(reference, held_out) if has_splits else None)
    # Its calibrator excuses the copies' matches with the first choice's duplicates (see choose_rule); so does the
    # leak estimate's (Calibrator.for_leakage).
    calibrator = choice.calibrator
    accepted = choice.rule.passes(pairs)
    hash_tier = hash_reliability(pairs, accepted)
    if hash_tier["reliable"]:
        rule = dataclasses.replace(choice.rule, hash_alone=True)
        near = calibrator.reported_estimate(rule, choice.pi, choice.pi_source, choice.pi_recall_floor, choice.rules)
        choice = dataclasses.replace(choice, rule=rule, near=near,
                                     per_kind_recall=calibrator.per_kind_recall(rule),
                                     per_kind_interval=calibrator.per_kind_interval(rule))
        accepted = rule.passes(pairs)
    choice.tiers["hash"] = hash_tier
    leak = None
    if has_splits:
        leak = _leak_estimate(calibrator.for_leakage(reference, held_out), choice.rule, choice.rules)
    return DuplicateDecision(data=data, pairs=pairs, accepted=accepted, choice=choice, hash_tier=hash_tier, leak=leak,
                             hash_search=hash_search[0].to_dict() if hash_search else None,
                             pixel_search=_pixel_search_record(pixel_search),
                             crowds=data.crowds.as_dict() if data.crowds is not None else None)


def _pixel_search_record(records: list) -> dict[str, Any] | None:
    """The approximate pixel search's SearchQuality (with crops, as is and mirrored) as a dict, the whole-frame index's
    (under rotations) under `whole_frames`; None where the search was exact."""
    crops = [r for r in records if r.parameters.get("rows_per_image", 1) > 1]
    if not crops:
        return None
    out = crops[0].to_dict()
    frames = [r for r in records if r.parameters.get("rows_per_image", 1) == 1]
    if frames:
        out["whole_frames"] = frames[0].to_dict()
    return out


def _leak_estimate(calibrator: Calibrator, rule: Rule, rules: list[Rule]) -> Estimate:
    """Recall and precision of "this held-out image has a duplicate in the reference split" at `rule`
    (`calibrator`: the decision's, `Calibrator.for_leakage`)."""
    grid = [dataclasses.replace(r, hash_alone=rule.hash_alone) for r in rules] + [rule]
    pi, _reference, source = calibrator.duplicate_share(grid)
    return calibrator.reported_estimate(rule, pi, source, calibrator.recall_floor(grid), grid)
