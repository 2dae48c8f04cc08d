"""The copies' recall weighted to the nearness mix of the images a rule flags (Calibrator.recall_for_flagged_mix,
Estimate.for_flagged_mix), on synthetic evidence whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.similarity.decision import NEARNESS_EDGES, Calibrator, CopySample, Rule
from auditor.similarity.evidence import Pairs

RULE = Rule(min_scaled=None, min_correlation=0.85)  # on the relative correlation


def pairs(query, target, correlation, relative) -> Pairs:
    n = len(query)
    return Pairs(query=np.asarray(query, np.int64), target=np.asarray(target, np.int64), rank=np.zeros(n, np.int64),
                 cosine=np.zeros(n, np.float32), scaled=np.zeros(n, np.float32),
                 correlation=np.asarray(correlation, np.float32), variant=np.zeros(n, np.int64),
                 hash_match=np.zeros(n, bool), phash_distance=np.full(n, 99), dhash_distance=np.full(n, 99),
                 relative_correlation=None if relative is None else np.asarray(relative, np.float32))


def world(dataset_duplicates: str, relative: bool = True):
    """200 images; 40 duplicate pairs (2i, 2i + 1), `near` ones (raw correlation 0.995, all found), `hard` ones
    (raw 0.85, every second found) or half of each (`like_copies`); 200 copies, half near-identical to their source
    (all found), half hard (every second found): the copies' plain recall is 0.75."""
    n, duplicates = 200, 40
    near_pairs = {"near": duplicates, "hard": 0, "like_copies": duplicates // 2}[dataset_duplicates]
    raw = [0.995] * near_pairs + [0.85] * (duplicates - near_pairs)
    found = [True] * near_pairs + [i % 2 == 0 for i in range(duplicates - near_pairs)]
    dataset = pairs([2 * i for i in range(duplicates)], [2 * i + 1 for i in range(duplicates)], raw,
                    [0.9 if f else 0.5 for f in found] if relative else None)
    copies = 200
    source = np.arange(copies) % n
    near = np.arange(copies) < copies // 2
    copy_found = near | (np.arange(copies) % 2 == 0)
    copy_pairs = pairs(np.arange(copies), source, np.where(near, 0.995, 0.85), np.where(copy_found, 0.9, 0.5))
    sample = CopySample(source=source, kind=["same_shot"] * copies, pairs=copy_pairs,
                        source_correlation=np.where(near, 0.995, 0.85))
    return Calibrator(dataset, n, sample), sum(found) / duplicates


@pytest.mark.parametrize("kind", ["near", "hard"])
def test_the_weighted_recall_reads_the_dataset_duplicates_where_the_plain_one_reads_the_copies_mix(kind):
    calibrator, truth = world(kind)
    plain = calibrator.estimate(RULE)
    assert plain.recall == pytest.approx(0.75)
    mixed = calibrator.recall_for_flagged_mix(RULE)
    assert mixed.weighted and mixed.mix_p_value < 1e-6
    assert mixed.estimate == pytest.approx(truth, abs=0.02)
    assert mixed.low <= truth <= mixed.high
    flagged = {band["min_correlation"]: band["flagged"] for band in mixed.bands}
    top = NEARNESS_EDGES[-1] if kind == "near" else None
    assert flagged[top] == (80 if kind == "near" else 40)  # both images of each found pair are flagged
    assert len(mixed.bands) == len(NEARNESS_EDGES) + 1


def test_the_reported_estimate_keeps_the_plain_reading_and_spans_both_intervals():
    calibrator, _truth = world("near")
    plain = calibrator.estimate(RULE)
    weighted = plain.for_flagged_mix(calibrator.recall_for_flagged_mix(RULE))
    assert weighted.recall > 0.95
    assert weighted.recall_interval[0] <= plain.recall_interval[0]
    assert weighted.precision == plain.precision  # precision keeps the plain recall π was read with
    report = weighted.as_dict()
    assert report["recall_copies_mix"] == pytest.approx(0.75)
    assert report["recall_copies_mix_interval"] == [round(v, 3) for v in plain.recall_interval]
    assert report["recall_by_nearness"]["weighted"]
    assert sum(band["copies"] for band in report["recall_by_nearness"]["bands"]) == 200


def test_where_the_flagged_mix_is_the_copies_own_the_plain_recall_stands():
    # Duplicates mixed like the copies the rule finds (two near-identical flagged for each hard one): weighting would
    # only move the estimate by noise. The bands are reported, the recall is the plain one (here also the truth).
    calibrator, truth = world("like_copies")
    plain = calibrator.estimate(RULE)
    mixed = calibrator.recall_for_flagged_mix(RULE)
    assert not mixed.weighted and mixed.mix_p_value > 0.5
    reported = plain.for_flagged_mix(mixed)
    assert reported.recall == plain.recall == pytest.approx(truth)
    assert reported.recall_interval == plain.recall_interval
    assert reported.as_dict()["recall_by_nearness"]["weighted"] is False


def test_no_weighting_where_the_pixel_tier_judges_the_raw_correlation_itself():
    # The bands would be the rule's own variable: every band above a raw threshold is found whole.
    calibrator, _truth = world("hard", relative=False)
    assert calibrator.recall_for_flagged_mix(Rule(min_scaled=None, min_correlation=0.8)) is None
    plain = calibrator.estimate(RULE)
    assert plain.for_flagged_mix(None) is plain
    assert plain.as_dict()["recall_by_nearness"] is None


def test_nothing_flagged_leaves_the_plain_recall():
    calibrator, _truth = world("near")
    assert calibrator.recall_for_flagged_mix(Rule(min_scaled=None, min_correlation=0.99)) is None


def test_the_plain_reading_still_decides_whether_the_dataset_contradicts_the_copies():
    # A weighted interval reaching far down (a band of few copies) must not hide that the dataset's own reading lies
    # far below the copies' plain one: precision π·R/F is computed with the plain R, and is withheld there.
    from auditor.similarity.decision import PRECISION_RECALLS_DISAGREE, Estimate

    estimate = Estimate(recall=0.9, recall_interval=(0.3, 0.97), precision=0.95, precision_interval=(0.9, 1.0),
                        false_match_rate=0.01, flagged=100, population=1000, duplicate_share=0.1,
                        copies_mix_recall=(0.9, 0.85, 0.95))
    judged = estimate.with_dataset_recall((0.2, 0.1, 0.3, 50))
    assert judged.precision is None and judged.precision_note == PRECISION_RECALLS_DISAGREE
    assert judged.recall_interval == (0.1, 0.97)
