"""Tests for `auditor.analysis.label_noise`: the noise-rate estimate, its interval, and per-image probabilities.

Probabilities are simulated: a probe of known quality (its logits favour the true class by `strength`)
and labels flipped uniformly at a planted rate, as in the benchmark. The estimate must recover the planted
rate, its interval must cover it, and a confused probe must not turn its confusion into label noise (the
failure of confident learning's count this module replaces).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from auditor.analysis import label_noise as ln
from auditor.analysis import labels as la


def simulated(n: int, n_classes: int, rate: float, strength: float, seed: int, tails: str = "normal"):
    """(probe probabilities, given labels, flipped mask). The probe never saw the labels (out-of-fold)."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, n_classes, n)
    noise = rng.standard_t(3, size=(n, n_classes)) if tails == "heavy" else rng.normal(size=(n, n_classes))
    logits = noise
    logits[np.arange(n), true] += strength
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    given = true.copy()
    flipped = rng.random(n) < rate
    given[flipped] = (true[flipped] + rng.integers(1, n_classes, flipped.sum())) % n_classes
    return probs, given, flipped


@pytest.mark.parametrize("n_classes", [2, 10])
@pytest.mark.parametrize("rate", [0.02, 0.05, 0.10])
def test_the_estimate_recovers_the_planted_rate_and_its_interval_covers_it(n_classes, rate):
    probs, given, flipped = simulated(4000, n_classes, rate, strength=4.0, seed=int(100 * rate) + n_classes)
    estimate = ln.estimate_noise_rate(probs, given)
    planted = flipped.mean()
    assert planted / 1.5 <= estimate.rate <= planted * 1.5
    assert estimate.interval[0] <= planted <= estimate.interval[1]
    assert estimate.interval[0] <= estimate.rate <= estimate.interval[1]


@pytest.mark.parametrize("seed", range(3))
def test_clean_labels_and_a_confused_probe_give_no_noise(seed):
    # A ~75 %-accurate probe on clean labels: confident learning counts its confusion as label errors
    # (several percent); the noise model puts it in the temperature and finds none.
    probs, given, _ = simulated(3000, 4, 0.0, strength=1.6, seed=seed)
    assert 0.65 < (probs.argmax(axis=1) == given).mean() < 0.85
    estimate = ln.estimate_noise_rate(probs, given)
    assert estimate.interval[0] == 0.0
    assert estimate.rate < 0.01
    assert la.estimated_label_errors(probs, given) / len(given) > 5 * max(estimate.rate, 0.005)


def test_a_confused_probe_widens_the_interval_and_does_not_resolve_the_rate():
    strong = ln.estimate_noise_rate(*simulated(1500, 4, 0.05, strength=4.0, seed=1)[:2])
    weak = ln.estimate_noise_rate(*simulated(1500, 4, 0.05, strength=1.0, seed=1)[:2])
    assert weak.width > 2 * strong.width
    assert weak.interval[0] <= 0.05 <= weak.interval[1]  # wide, but still honest
    assert ln.resolves_rate(strong, 0.02, 1.0)
    assert not ln.resolves_rate(weak, 0.02, 1.0)


def test_more_images_narrow_the_interval():
    small = ln.estimate_noise_rate(*simulated(500, 3, 0.05, strength=3.5, seed=2)[:2])
    large = ln.estimate_noise_rate(*simulated(8000, 3, 0.05, strength=3.5, seed=2)[:2])
    assert large.width < 0.5 * small.width
    assert small.samples == 500 and large.samples == 8000 and large.n_classes == 3


def test_the_limit_of_the_model_confident_mistakes_at_a_constant_rate_count_as_noise():
    # The assumption, pinned: a probe whose confident mistakes do not thin out as it grows surer (Student t
    # logits: heavier tails than any tempered softmax) is indistinguishable from flipped labels; the model
    # counts them as noise. Real embeddings measured so far (photos at native, 64, 32 px; digits) showed no
    # such floor on clean labels (estimates 0.00–0.05 %); the probe-accuracy gate limits the exposure.
    probs, given, _ = simulated(3000, 10, 0.0, strength=3.0, seed=4, tails="heavy")
    estimate = ln.estimate_noise_rate(probs, given)
    assert estimate.interval[0] > 0.02


def test_mislabel_probability_finds_the_flips_and_sums_to_the_estimated_count():
    probs, given, flipped = simulated(4000, 5, 0.05, strength=4.0, seed=3)
    estimate = ln.estimate_noise_rate(probs, given)
    wrong = ln.mislabel_probability(probs, given, estimate)
    assert ((wrong >= 0) & (wrong <= 1)).all()
    assert wrong.sum() == pytest.approx(estimate.rate * len(given), rel=0.1)
    likely = wrong >= 0.5
    assert (likely & flipped).sum() >= 0.75 * likely.sum()  # precision
    assert (likely & flipped).sum() >= 0.6 * flipped.sum()  # recall
    # A label the probe is sure of is almost surely right; one it rules out is probably wrong.
    q = probs[np.arange(len(given)), given]
    assert wrong[q > 0.9].max() < 0.05 and np.median(wrong[q < 0.01]) > 0.5


def test_no_noise_means_no_label_is_probably_wrong():
    probs, given, _ = simulated(1000, 3, 0.0, strength=4.0, seed=5)
    estimate = ln.NoiseEstimate(rate=0.0, interval=(0.0, 0.01), level=0.95, temperature=1.0, samples=1000,
                                n_classes=3, log_likelihood_gain=0.0)
    assert ln.mislabel_probability(probs, given, estimate).max() == 0.0


def test_the_likeliest_true_class_and_the_expected_pairs():
    probs = np.array([[0.1, 0.7, 0.2], [0.05, 0.05, 0.9], [0.8, 0.15, 0.05]])
    labels = np.array([0, 0, 0])
    estimate = ln.NoiseEstimate(rate=0.2, interval=(0.1, 0.3), level=0.95, temperature=1.0, samples=3,
                                n_classes=3, log_likelihood_gain=1.0)
    assert ln.likeliest_true_class(probs, labels, estimate).tolist() == [1, 2, 1]
    wrong = ln.mislabel_probability(probs, labels, estimate)
    pairs = ln.expected_pair_counts(probs, labels, estimate, wrong)
    np.testing.assert_allclose(pairs.sum(axis=1), [wrong.sum(), 0, 0])
    assert pairs[0, 0] == 0 and pairs[0, 2] > pairs[0, 1]  # image 2 is surely class 2, image 1 maybe class 1
    # Bayes' rule by hand for the first image: flipped 0.2/2·(1 − 0.1) against kept 0.8·0.1.
    assert wrong[0] == pytest.approx(0.09 / (0.09 + 0.08))


def test_holding_the_model_at_the_ends_of_the_interval_brackets_the_per_image_probabilities():
    probs, given, _ = simulated(2000, 4, 0.05, strength=3.5, seed=6)
    estimate = ln.estimate_noise_rate(probs, given)
    low, high = (ln.at_rate(probs, given, estimate, r) for r in estimate.interval)
    totals = [ln.mislabel_probability(probs, given, e).sum() for e in (low, estimate, high)]
    assert totals[0] <= totals[1] <= totals[2]


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        ln.estimate_noise_rate(np.zeros((0, 2)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError):
        ln.estimate_noise_rate(np.ones((5, 1)), np.zeros(5, dtype=int))


@functools.lru_cache(maxsize=None)
def _pairs_world(kind: str, rate: float, seed: int = 0, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Four classes in two close pairs (like cats/dogs and ants/bees), labels moved at `rate` to the class's partner
    (`pair`) or to any other class (`uniform`), and a real out-of-fold logistic probe trained on those labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    rng = np.random.default_rng(seed)
    centres = np.repeat(rng.normal(size=(2, 16)) * 3.0, 2, axis=0) + rng.normal(size=(4, 16)) * 0.5
    true = np.repeat(np.arange(4), n)
    x = centres[true] + rng.normal(size=(len(true), 16))
    labels = true.copy()
    flip = rng.random(len(true)) < rate
    labels[flip] = (np.array([1, 0, 3, 2])[true[flip]] if kind == "pair"
                    else (true[flip] + rng.integers(1, 4, flip.sum())) % 4)
    probs = cross_val_predict(LogisticRegression(max_iter=2000), x, labels, cv=5, method="predict_proba")
    return probs, labels


def test_flips_that_all_go_to_the_nearest_class_are_read_by_the_concentrated_model_and_unsupport_the_estimate():
    # The probe learns flips that always go one way as its own confusion of the two classes: the estimate, which
    # spreads wrong labels over the other classes, reads almost none of 10 %; the reading with a destination per
    # class sees them, and the estimate is then not supported.
    probs, labels = _pairs_world("pair", 0.10)
    estimate = ln.estimate_noise_rate(probs, labels)
    concentrated = ln.estimate_concentrated_noise(probs, labels, estimate.temperature)
    assert estimate.interval[1] < 0.03 and concentrated.interval[0] > 0.06
    supported, reason = la.support(estimate, 0.9, concentrated=concentrated)
    assert not supported and "concentrated between similar classes" in reason


@pytest.mark.parametrize("kind, rate", [("uniform", 0.0), ("uniform", 0.10)])
def test_where_wrong_labels_spread_or_there_are_none_the_concentrated_reading_agrees(kind, rate):
    probs, labels = _pairs_world(kind, rate)
    estimate = ln.estimate_noise_rate(probs, labels)
    concentrated = ln.estimate_concentrated_noise(probs, labels, estimate.temperature)
    assert concentrated.interval[0] <= estimate.interval[1] + la.CONCENTRATION_MARGIN
    assert la.support(estimate, 0.9, concentrated=concentrated) == la.support(estimate, 0.9)
