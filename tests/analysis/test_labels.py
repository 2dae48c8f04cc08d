"""Tests for `auditor.analysis.labels`: the strong-evidence rule and the probe's bounded fit.

Probabilities are simulated as in test_label_noise.py (a probe of known quality, labels flipped uniformly at a
planted rate); neighbour agreement is simulated as a vote that a wrong label loses more often than a right one.
"""

from __future__ import annotations

import numpy as np
import pytest

from auditor.analysis import label_noise as ln
from auditor.analysis import labels as la
from tests.analysis.test_label_noise import simulated


def neighbour_votes(flipped: np.ndarray, k: int, seed: int, right_agree: float = 0.85,
                    wrong_agree: float = 0.3) -> np.ndarray:
    """Share of k neighbours carrying the unit's label: binomial, lower for a flipped label."""
    rng = np.random.default_rng(seed)
    return rng.binomial(k, np.where(flipped, wrong_agree, right_agree)) / k


# ------------------------------------------------------------------------------------------------
# Strong evidence

def test_strong_evidence_takes_as_many_as_the_estimate_the_likeliest_first():
    wrong = np.array([0.9, 0.1, 0.6, 0.0, 0.3, 0.95, 0.2, 0.05, 0.4, 0.7])
    chosen = la.strong_evidence(wrong, rate=0.3)
    assert chosen.sum() == 3 and set(np.flatnonzero(chosen)) == {0, 5, 9}
    assert not la.strong_evidence(wrong, rate=0.0).any()  # clean data: nothing
    assert not la.strong_evidence(np.zeros(10), rate=0.5).any()  # P(wrong) = 0 is never chosen
    # an estimate above 0 whose interval reaches 0 does not say any label is wrong: nothing
    assert not la.strong_evidence(wrong, rate=0.3, rate_low=0.0).any()
    assert la.strong_evidence(wrong, rate=0.3, rate_low=0.01).sum() == 3
    # the neighbours' ratio re-ranks: the 0.4 whose neighbours all disagree beats the 0.7 whose neighbours agree
    ratio = np.ones(10)
    ratio[8], ratio[9] = 20.0, 0.1
    assert set(np.flatnonzero(la.strong_evidence(wrong, 0.3, ratio))) == {0, 5, 8}


def test_the_neighbour_ratio_is_estimated_from_the_data():
    rng = np.random.default_rng(0)
    flipped = rng.random(4000) < 0.1
    agreement = neighbour_votes(flipped, 10, seed=1)
    wrong = np.clip(np.where(flipped, 0.7, 0.05) + rng.normal(0, 0.05, 4000), 0.0, 1.0)
    ratio = la.neighbour_likelihood_ratio(agreement, wrong, 10)
    assert ratio[agreement <= 0.2].min() > 3.0  # most neighbours disagree: evidence for a wrong label
    assert ratio[agreement >= 0.9].max() < 0.5  # they agree: evidence against
    assert ratio[agreement == 0.5].mean() > ratio[agreement == 0.8].mean()  # fewer agree: more suspicious
    with_gap = agreement.copy()
    with_gap[:5] = np.nan
    assert (la.neighbour_likelihood_ratio(with_gap, wrong, 10)[:5] == 1.0).all()  # no neighbours: no evidence
    assert (la.neighbour_likelihood_ratio(agreement, wrong, 0) == 1.0).all()


@pytest.mark.parametrize("n_classes", [2, 4, 10])
@pytest.mark.parametrize("rate", [0.02, 0.05, 0.10])
def test_a_soft_probe_still_finds_most_flips_with_precision(n_classes, rate):
    # A probe 74–90 % accurate and neighbours that a wrong label loses only somewhat more often: P(wrong) rarely
    # reaches ½ at a low rate, so the previous rule (P(wrong) ≥ ½ and most neighbours disagree) found 0.24–0.55
    # of the flips here (0.42 at 2 % on 32 px photos); the likeliest round(η̂ n) by probe and neighbours are mostly
    # the flips (measured here: precision ≥ 0.81, recall ≥ 0.76).
    seed = int(1000 * rate) + n_classes
    probs, given, flipped = simulated(4000, n_classes, rate, strength=2.0 if n_classes == 2 else 2.5, seed=seed)
    estimate = ln.estimate_noise_rate(probs, given)
    wrong = ln.mislabel_probability(probs, given, estimate)
    agreement = neighbour_votes(flipped, 10, seed, right_agree=0.75, wrong_agree=0.4)
    strong = la.strong_evidence(wrong, estimate.rate, la.neighbour_likelihood_ratio(agreement, wrong, 10))
    hits = (strong & flipped).sum()
    assert hits / strong.sum() >= 0.75 and hits / flipped.sum() >= 0.6
    assert int(strong.sum()) == round(estimate.rate * len(given))
    previous = (wrong >= 0.5) & (agreement < 0.5)
    assert hits >= (previous & flipped).sum() + 0.25 * flipped.sum()


def test_clean_labels_give_no_or_almost_no_strong_evidence():
    for seed in range(3):
        probs, given, _ = simulated(3000, 4, 0.0, strength=3.0, seed=seed)
        estimate = ln.estimate_noise_rate(probs, given)
        wrong = ln.mislabel_probability(probs, given, estimate)
        strong = la.strong_evidence(wrong, estimate.rate, la.neighbour_likelihood_ratio(
            neighbour_votes(np.zeros(3000, bool), 10, seed), wrong, 10))
        assert strong.sum() <= 0.002 * len(given)


# ------------------------------------------------------------------------------------------------
# The probe's bounded fit

def test_the_fit_subsample_is_stratified_seeded_and_keeps_small_classes():
    labels = np.repeat([0, 1, 2], [9000, 960, 40])
    chosen = la.fit_subsample(labels, 1000, seed=3, min_per_class=50)
    counts = np.bincount(labels[chosen], minlength=3)
    assert counts[0] == 900 and counts[1] == 96 and counts[2] == 40  # proportional; the rare class whole
    assert np.array_equal(chosen, np.sort(chosen)) and len(np.unique(chosen)) == len(chosen)
    assert np.array_equal(chosen, la.fit_subsample(labels, 1000, seed=3, min_per_class=50))
    assert not np.array_equal(chosen, la.fit_subsample(labels, 1000, seed=4, min_per_class=50))
    assert np.array_equal(la.fit_subsample(labels[:500], 1000, seed=3), np.arange(500))


def test_folds_keep_a_repeated_group_together_stratify_the_classes_and_cover_every_sample_once():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 3000)
    groups = np.arange(3000)
    groups[1::50] = groups[0::50][:len(groups[1::50])]  # 60 contents filed twice, some under another label
    splits = la.fold_splits(labels, groups, 5, seed=0)
    tested = np.concatenate([test for _train, test in splits])
    assert np.array_equal(np.sort(tested), np.arange(3000))  # every sample held out exactly once
    fold_of = np.empty(3000, dtype=int)
    for fold, (train, test) in enumerate(splits):
        fold_of[test] = fold
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(3000))
        shares = np.bincount(labels[test], minlength=3) / np.bincount(labels, minlength=3)
        assert np.all(np.abs(shares - 0.2) < 0.02)  # each class split evenly
    assert np.all(fold_of[0::50][:60] == fold_of[1::50])  # a repeated content never straddles two folds
    assert [t.tolist() for _r, t in splits] == [t.tolist() for _r, t in la.fold_splits(labels, groups, 5, seed=0)]
    # Unique groups: plain stratified folds of the samples, as before.
    unique = la.fold_splits(labels, np.arange(3000), 5, seed=0)
    from sklearn.model_selection import StratifiedKFold
    expected = StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros((3000, 1)), labels)
    assert [t.tolist() for _r, t in unique] == [t.tolist() for _r, t in expected]


def test_a_capped_probe_predicts_every_sample_out_of_fold_and_fits_on_at_most_the_cap():
    rng = np.random.default_rng(0)
    n, dim, n_classes = 3000, 32, 3
    true = rng.integers(0, n_classes, n)
    centres = rng.normal(0, 1, (n_classes, dim))
    vectors = centres[true] + rng.normal(0, 1.2, (n, dim))
    features = la.probe_features(vectors, seed=0, max_fit=400)
    assert features.shape[0] == n and features.shape[1] <= 400 // la.PROBE_SAMPLES_PER_DIM
    groups = np.arange(n)
    full, _c, full_fit = la.out_of_fold_probabilities(features, true, groups, 5, seed=0, max_fit=n)
    capped, _c, capped_fit = la.out_of_fold_probabilities(features, true, groups, 5, seed=0, max_fit=400)
    assert full_fit == 2400 and capped_fit <= 400 + n_classes
    np.testing.assert_allclose(capped.sum(axis=1), 1.0, atol=1e-5)  # every sample predicted
    accuracy = lambda p: (p.argmax(axis=1) == true).mean()  # noqa: E731
    assert accuracy(capped) >= accuracy(full) - 0.03


def test_above_the_fit_cap_features_are_computed_on_demand_a_block_at_a_time_with_the_same_values(monkeypatch):
    """Above the cap the probe's features are never held whole (1 GB at 10⁶ × 256): each block of rows is
    transformed when asked for, and the probabilities are those of the whole transformed array."""
    from auditor.encoding.embedding_store import to_float32

    monkeypatch.setattr(la, "PROBE_BLOCK", 256)
    rng = np.random.default_rng(1)
    n, dim, n_classes = 3000, 48, 3
    true = rng.integers(0, n_classes, n)
    vectors = rng.normal(0, 1, (n_classes, dim))[true] + rng.normal(0, 1.5, (n, dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)  # as the store holds
    lazy = la.probe_features(vectors, seed=0, max_fit=400)
    assert isinstance(lazy, la.ProbeFeatures) and lazy.shape == (n, 40) and len(lazy) == n
    whole = lazy.pca.transform(to_float32(vectors))
    rows = np.sort(rng.choice(n, 700, replace=False))
    np.testing.assert_allclose(lazy[rows], whole[rows], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lazy[np.arange(100, 900)], whole[100:900], rtol=1e-5, atol=1e-6)  # a run: a slice
    twice = np.concatenate([rows, rows[:5]])
    np.testing.assert_allclose(lazy.for_samples(twice)[np.arange(len(twice))], whole[twice], rtol=1e-5, atol=1e-6)
    sizes = []
    transform = lazy.pca.transform
    monkeypatch.setattr(lazy.pca, "transform", lambda x: sizes.append(len(x)) or transform(x))
    groups = np.arange(n)
    probs, c, _fit = la.out_of_fold_probabilities(lazy, true, groups, 5, seed=0, max_fit=400)
    assert sizes and max(sizes) <= 256  # never the whole matrix, nor a whole fold
    expected, expected_c, _fit = la.out_of_fold_probabilities(whole, true, groups, 5, seed=0, max_fit=400)
    assert c == expected_c
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)
    assert np.array_equal(probs.argmax(axis=1), expected.argmax(axis=1))


# ------------------------------------------------------------------------------------------------
# At scale: one matrix, one k-NN graph

def test_above_the_exact_limit_the_label_analysis_reads_the_shared_matrix_and_its_graph(monkeypatch):
    """At scale the probe and the neighbour vote read `ctx.unit_matrix` (float16, memory-mapped in an audit) and
    its k-NN graph, the one `outliers` reads: not a float32 copy of every vector with an index of its own."""
    from auditor.similarity import neighbours
    from tests.checks.synthetic_audit import gaussian_classes, synthetic_context

    monkeypatch.setattr(neighbours, "EXACT_LIMIT", 100)
    monkeypatch.setattr(neighbours, "REDUCED_DIMS", 16)
    vectors, true = gaussian_classes(120, 2, seed=3)
    items = [{"path": f"train/{'ab'[t]}/{i}.jpg", "label": "ab"[t], "vector": v}
             for i, (v, t) in enumerate(zip(vectors, true))]
    ctx = synthetic_context(items)
    assert la.content_vectors(ctx, ctx.embedded_shas) is ctx.unit_matrix
    built = []
    monkeypatch.setattr(neighbours, "ApproximateIndex",
                        lambda x, _cls=neighbours.ApproximateIndex: built.append(x) or _cls(x))
    analysis = ctx.label_analysis
    assert analysis.probs.shape == (240, 2) and analysis.stats["neighbour_search"]["exact"] is False
    assert len(built) == 1 and built[0] is ctx.unit_matrix  # one index, over the shared matrix
    neighbours.knn(ctx.unit_matrix, 5)
    assert len(built) == 1  # outliers' search reuses it


def test_above_the_exact_limit_a_left_out_class_does_not_make_a_copy_of_every_vector(monkeypatch):
    """A class too small to judge is left out; at scale the kept images are still read as rows of the shared
    matrix, with its one graph (it once fell back to a float32 copy of every kept vector: 5 GB at 10⁶)."""
    from auditor.similarity import neighbours
    from tests.checks.synthetic_audit import gaussian_classes, synthetic_context

    monkeypatch.setattr(neighbours, "EXACT_LIMIT", 100)
    monkeypatch.setattr(neighbours, "REDUCED_DIMS", 16)
    vectors, true = gaussian_classes(120, 3, seed=4)
    items = [{"path": f"train/{'abc'[t]}/{i}.jpg", "label": "abc"[t], "vector": v}
             for i, (v, t) in enumerate(zip(vectors, true)) if t < 2 or i % 40 == 0]  # "c": 3 images, left out
    for i in range(12):  # flipped labels the analysis should still find
        items[i * 17]["label"] = "b" if items[i * 17]["label"] == "a" else "a"
    ctx = synthetic_context(items)
    built = []
    monkeypatch.setattr(neighbours, "ApproximateIndex",
                        lambda x, _cls=neighbours.ApproximateIndex: built.append(x) or _cls(x))
    shared = ctx.unit_matrix  # the shared matrix (gathered once here: the synthetic store has no memory map)
    monkeypatch.setattr(ctx, "unit_embeddings", lambda shas: (_ for _ in ()).throw(AssertionError("a copy")))
    analysis = ctx.label_analysis
    assert analysis.excluded_classes == {"c": 3} and analysis.probs.shape == (240, 2)
    assert len(built) == 1 and built[0] is shared
    assert np.isfinite(analysis.neighbour_agreement).all()
    flagged = {analysis.unit_shas[u] for u in np.argsort(-analysis.wrong_probability)[:12]}
    flipped = {ctx.encoded.record_sha[p] for p in range(len(items)) if p % 17 == 0 and p < 12 * 17}
    assert len(flagged & flipped) >= 9
