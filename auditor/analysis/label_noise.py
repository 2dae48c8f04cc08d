"""How many labels are wrong, estimated from a probe's out-of-fold probabilities, with an interval.

The model (a contaminated-label likelihood, Copas 1988 for two classes): every label is flipped to one of
the other K − 1 classes, uniformly, with probability η, independently of the image; the probe's
out-of-fold probabilities, sharpened or softened by one temperature T, describe the true class:

    P(label = j | image) = (1 − η) · q_j + η / (K − 1) · (1 − q_j),      q = softmax(log p / T)

T absorbs the probe's own confusion (how sure it is, and how often it is right when sure); η is what the
probe's confusion cannot explain: labels that contradict confident, otherwise reliable predictions at a
constant rate. Both are fitted by maximum likelihood on (probabilities, given labels); the interval for
η is the profile-likelihood interval (T re-fitted for every η).

Why not confident learning's count: it counts every image the probe puts confidently in another class,
so a probe that confuses the classes counts its own confusion as label errors (3.7× the planted noise
with a ~70 % accurate probe). Here confusion and noise have different shapes: confusion is where the
probe is unsure or wrong *together with* its calibration; noise is a floor of contradicting labels that
persists where the probe is sure. When the probe is weak the two cannot be told apart, the likelihood
is flat in η, and the interval says so.

Pure numpy (and one scipy polish); cost is O(grid × n × K) on the probabilities only, so the estimate
can run on a subsample of a very large dataset (the interval widens as 1/√n).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-12
MAX_RATE = 0.5  # beyond this the given labels carry too little of the truth for the model to mean anything
TEMPERATURES = np.geomspace(0.05, 20.0, 49)  # log grid, 13 % apart, refined by a parabola (smooth in log T)
RATES = np.concatenate([[0.0], np.geomspace(1e-4, MAX_RATE, 97)])  # 9 % apart


@dataclass(frozen=True)
class NoiseEstimate:
    rate: float  # maximum-likelihood share of wrong labels
    interval: tuple[float, float]  # profile-likelihood interval at `level`
    level: float
    temperature: float  # the probe's calibration at the estimate (< 1 sharpens, > 1 softens)
    samples: int
    n_classes: int
    log_likelihood_gain: float  # log-likelihood of the fitted η over η = 0 (0 when η̂ = 0)

    @property
    def width(self) -> float:
        return self.interval[1] - self.interval[0]


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the probe's probabilities sharpened (T < 1) or softened (T > 1)."""
    logits = np.log(np.clip(probs, EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def _label_probabilities(log_probs: np.ndarray, labels: np.ndarray, temperatures: np.ndarray) -> np.ndarray:
    """q at the given label for every temperature: (temperatures × samples)."""
    rows = np.arange(len(labels))
    out = np.empty((len(temperatures), len(labels)))
    for i, t in enumerate(temperatures):
        logits = log_probs / t
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        out[i] = e[rows, labels] / e.sum(axis=1)
    return out


def _log_likelihoods(q_label: np.ndarray, rates: np.ndarray, n_classes: int) -> np.ndarray:
    """Σ log P(label | image) for every (temperature, rate): (temperatures × rates)."""
    out = np.empty((q_label.shape[0], len(rates)))
    for i, q in enumerate(q_label):
        p = (1.0 - rates[None, :]) * q[:, None] + rates[None, :] / (n_classes - 1) * (1.0 - q[:, None])
        out[i] = np.log(np.maximum(p, EPS, out=p)).sum(axis=0)
    return out


def estimate_noise_rate(probs: np.ndarray, labels: np.ndarray, level: float = 0.95) -> NoiseEstimate:
    """Maximum-likelihood label-noise rate and its profile-likelihood interval (see the module docstring)."""
    probs = np.asarray(probs, dtype=float)
    labels = np.asarray(labels)
    n, n_classes = probs.shape
    if n == 0 or n_classes < 2:
        raise ValueError("need at least one sample and two classes")
    log_probs = np.log(np.clip(probs, EPS, 1.0))
    grid = _log_likelihoods(_label_probabilities(log_probs, labels, TEMPERATURES), RATES, n_classes)
    profile = _profile(grid)  # best temperature for every rate
    best_rate, best_ll, low, high = _maximum_and_interval(profile, level)
    best_t = _best_temperature(log_probs, labels, best_rate, n_classes)
    gain = best_ll - float(profile[0])
    return NoiseEstimate(rate=best_rate, interval=(low, high), level=level, temperature=best_t, samples=n,
                         n_classes=n_classes, log_likelihood_gain=max(0.0, gain))


def estimate_rate_at_temperature(probs: np.ndarray, labels: np.ndarray, temperature: float, n_classes: int,
                                 level: float = 0.95) -> NoiseEstimate:
    """The share of wrong labels among these samples alone, the probe's calibration held at `temperature` (fitted on
    the whole dataset): a split's own rate, with its profile-likelihood interval. Why not the sum of the images'
    P(wrong) under the whole dataset's rate: that carries the dataset's rate into the split, so a validation set
    labelled less carefully than training is read at the training's rate (bench_label_issues.py --flip-split val:
    5.0 % planted in val, 4.1–4.2 % read with intervals that missed it), and its interval carries only the rate's
    uncertainty, not how many of the split's own images happen to be wrong (uniform flips of 2 % and 10 %: the
    interval missed the split's share on 4 of 6 photo rows and 5 of 6 digit rows)."""
    probs = np.asarray(probs, dtype=float)
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("need at least one sample")
    log_probs = np.log(np.clip(probs, EPS, 1.0))
    profile = _log_likelihoods(_label_probabilities(log_probs, labels, np.array([temperature])), RATES, n_classes)[0]
    best_rate, best_ll, low, high = _maximum_and_interval(profile, level)
    return NoiseEstimate(rate=best_rate, interval=(low, high), level=level, temperature=temperature,
                         samples=len(labels), n_classes=n_classes,
                         log_likelihood_gain=max(0.0, best_ll - float(profile[0])))


def _maximum_and_interval(profile: np.ndarray, level: float) -> tuple[float, float, float, float]:
    """(rate, log-likelihood, interval low, interval high) of a log-likelihood over RATES: its maximum, refined by a
    parabola in log rate through the best grid point, and where it falls chi²₁(level)/2 below that."""
    from scipy.stats import chi2

    r_i = int(np.argmax(profile))
    best_rate, best_ll = float(RATES[r_i]), float(profile[r_i])
    if 0 < r_i < len(RATES) - 1 and RATES[r_i - 1] > 0:  # parabola in log rate through the best grid point
        x = np.log(RATES[r_i - 1 : r_i + 2])
        y = profile[r_i - 1 : r_i + 2]
        a, b, c = np.polyfit(x - x[1], y, 2)
        if a < 0:
            shift = float(np.clip(-b / (2 * a), x[0] - x[1], x[2] - x[1]))
            best_rate = float(np.exp(x[1] + shift))
            best_ll = float(max(best_ll, a * shift**2 + b * shift + c))
    cut = best_ll - chi2.ppf(level, 1) / 2.0
    inside = np.flatnonzero(profile >= cut)
    low_i, high_i = int(inside.min()), int(inside.max())
    low = 0.0 if low_i == 0 else _crossing(RATES, profile, low_i - 1, low_i, cut)
    high = MAX_RATE if high_i == len(RATES) - 1 else _crossing(RATES, profile, high_i, high_i + 1, cut)
    return best_rate, best_ll, min(low, best_rate), max(high, best_rate)


def _best_temperature(log_probs: np.ndarray, labels: np.ndarray, rate: float, n_classes: int) -> float:
    from scipy.optimize import minimize_scalar

    def negative(log_t: float) -> float:
        q = _label_probabilities(log_probs, labels, np.array([np.exp(log_t)]))
        return -float(_log_likelihoods(q, np.array([rate]), n_classes)[0, 0])

    result = minimize_scalar(negative, bounds=(np.log(TEMPERATURES[0]), np.log(TEMPERATURES[-1])), method="bounded",
                             options={"xatol": 1e-3})
    return float(np.exp(result.x))


def _profile(grid: np.ndarray) -> np.ndarray:
    """Max over temperatures (rows) for every rate (column), refined by a parabola through the best grid
    point and its neighbours (the log-likelihood is smooth in log T, the grid is even in log T)."""
    best = grid.argmax(axis=0)
    cols = np.arange(grid.shape[1])
    values = grid[best, cols]
    inner = (best > 0) & (best < grid.shape[0] - 1)
    if inner.any():
        b, c = best[inner], cols[inner]
        left, mid, right = grid[b - 1, c], grid[b, c], grid[b + 1, c]
        curvature = left - 2 * mid + right
        safe = curvature < 0
        vertex = mid - np.where(safe, (right - left) ** 2 / (8 * np.where(safe, curvature, -1.0)), 0.0)
        values[inner] = np.maximum(mid, vertex)
    return values


def _crossing(rates: np.ndarray, profile: np.ndarray, a: int, b: int, cut: float) -> float:
    """Where the profile crosses `cut` between grid points a and b (linear in log rate when both > 0)."""
    ya, yb = profile[a], profile[b]
    w = 0.5 if yb == ya else float(np.clip((cut - ya) / (yb - ya), 0.0, 1.0))
    ra, rb = rates[a], rates[b]
    if ra > 0 and rb > 0:
        return float(np.exp(np.log(ra) + w * (np.log(rb) - np.log(ra))))
    return float(ra + w * (rb - ra))


def mislabel_probability(probs: np.ndarray, labels: np.ndarray, estimate: NoiseEstimate) -> np.ndarray:
    """P(the given label is wrong | image, label) under the fitted model: Bayes' rule between "kept"
    ((1 − η) q_label) and "flipped here" (η / (K − 1) · (1 − q_label))."""
    q = tempered(probs, estimate.temperature)[np.arange(len(labels)), labels]
    flipped = estimate.rate / (estimate.n_classes - 1) * (1.0 - q)
    kept = (1.0 - estimate.rate) * q
    return np.divide(flipped, flipped + kept, out=np.zeros_like(q), where=(flipped + kept) > 0)


def likeliest_true_class(probs: np.ndarray, labels: np.ndarray, estimate: NoiseEstimate) -> np.ndarray:
    """The likeliest class other than the given one (what a wrong label should have been)."""
    q = tempered(probs, estimate.temperature)
    q[np.arange(len(labels)), labels] = -1.0
    return q.argmax(axis=1)


def at_rate(probs: np.ndarray, labels: np.ndarray, estimate: NoiseEstimate, rate: float) -> NoiseEstimate:
    """The same model held at another rate (its temperature re-fitted), e.g. at the ends of the interval, to
    carry the rate's uncertainty into per-image and per-split figures."""
    log_probs = np.log(np.clip(np.asarray(probs, dtype=float), EPS, 1.0))
    temperature = _best_temperature(log_probs, np.asarray(labels), rate, estimate.n_classes)
    return NoiseEstimate(rate=rate, interval=estimate.interval, level=estimate.level, temperature=temperature,
                         samples=estimate.samples, n_classes=estimate.n_classes, log_likelihood_gain=0.0)


def resolves_rate(estimate: NoiseEstimate, max_absolute_width: float, max_relative_width: float) -> bool:
    """True when the data pins the rate down: the interval is no wider than `max_absolute_width` or than
    `max_relative_width` × the estimate. A flat likelihood (weak probe, few images) fails this."""
    return estimate.width <= max(max_absolute_width, max_relative_width * estimate.rate)


def expected_pair_counts(probs: np.ndarray, labels: np.ndarray, estimate: NoiseEstimate,
                         wrong: np.ndarray | None = None) -> np.ndarray:
    """[i, j]: expected number of images labelled i whose true class is j ≠ i. A wrong label's true class is
    one of the others in proportion to the probe's (tempered) probabilities."""
    n, n_classes = probs.shape
    q = tempered(probs, estimate.temperature)
    if wrong is None:
        wrong = mislabel_probability(probs, labels, estimate)
    rows = np.arange(n)
    others = q.copy()
    others[rows, labels] = 0.0
    share = np.divide(others, others.sum(axis=1, keepdims=True), out=np.zeros_like(others),
                      where=others.sum(axis=1, keepdims=True) > 0)
    counts = np.zeros((n_classes, n_classes))
    np.add.at(counts, labels, wrong[:, None] * share)
    return counts


def expected_accuracy(probs: np.ndarray, labels: np.ndarray, estimate: NoiseEstimate,
                      wrong: np.ndarray | None = None) -> float:
    """The probe's accuracy against the *true* labels, expected under the model: a prediction that matches
    the given label counts when that label is right; one that does not, when the label is wrong and the
    true class is the predicted one. Judges the probe without blaming it for the noise."""
    n = len(labels)
    if n == 0:
        return float("nan")
    if wrong is None:
        wrong = mislabel_probability(probs, labels, estimate)
    q = tempered(probs, estimate.temperature)
    rows = np.arange(n)
    predicted = probs.argmax(axis=1)
    others = np.maximum(1.0 - q[rows, labels], EPS)
    right = np.where(predicted == labels, 1.0 - wrong, wrong * q[rows, predicted] / others)
    return float(right.mean())


# Wrong labels concentrated between similar classes (cats ↔ dogs), as human labelling errors are. The model above
# sends a wrong label to each other class alike: flips that all go one way look to it like the probe's own
# confusion of those classes (native photos, 10 % of labels moved to the nearest class: 0.0 % [0, 0.34]). The
# same model with a destination per class, P(label = j | true i ≠ j) = η·D[i, j] (D by EM), reads those flips, but
# it also reads part of the probe's pair-specific confusion as noise (clean 32 px photos: up to 2.2 % [0.4, 3.1]),
# so it is not the estimate: it checks the estimate's assumption (labels.support; docs/labels.md, "Wrong labels
# concentrated between similar classes").
# Grids for this reading (it runs EM at every grid point): 9 temperatures 13 % apart around the estimate's own (a
# coarse grid over all of them left the probe miscalibrated, and its miscalibration read as noise: clean 32 px
# photos 3.2 % [2.1, 3.9] with temperatures 2.5× apart), 49 rates 19 % apart, 15 EM steps from uniform destinations.
CONCENTRATED_TEMPERATURE_STEPS = np.geomspace(0.6, 1.6, 9)
CONCENTRATED_RATES = RATES[::2]
CONCENTRATED_ITERATIONS = 15
CONCENTRATED_MAX_CLASSES = 20  # (rates × samples × classes) arrays, classes² destinations: bounded here


def estimate_concentrated_noise(probs: np.ndarray, labels: np.ndarray, temperature: float,
                                level: float = 0.95) -> NoiseEstimate:
    """The noise rate when each class's wrong labels may go to the other classes in any proportion (a destination
    row D[i] per class, fitted by EM at every rate and temperature on the grids, the temperatures around
    `temperature`, the estimate's): maximum likelihood and the profile-likelihood interval (D and T profiled out).
    `temperature` of the result is the best one on the grid."""
    from scipy.stats import chi2

    probs = np.asarray(probs, dtype=float)
    labels = np.asarray(labels)
    n, n_classes = probs.shape
    rows = np.arange(n)
    onehot = np.eye(n_classes)[labels]
    rates = CONCENTRATED_RATES[:, None]
    profile = np.full(len(CONCENTRATED_RATES), -np.inf)
    temperature_of = np.zeros(len(CONCENTRATED_RATES))
    for step in CONCENTRATED_TEMPERATURE_STEPS:
        q = tempered(probs, temperature * step)
        q_label = q[rows, labels][None]
        destinations = np.full((len(CONCENTRATED_RATES), n_classes, n_classes), 1.0 / (n_classes - 1))
        destinations[:, np.arange(n_classes), np.arange(n_classes)] = 0.0
        for iteration in range(CONCENTRATED_ITERATIONS + 1):
            arriving = np.matmul(q[None], destinations)[:, rows, labels]  # Σ_i q_i D[i, label]: (rates, n)
            likelihood = np.maximum((1.0 - rates) * q_label + rates * arriving, EPS)
            if iteration == CONCENTRATED_ITERATIONS:
                break
            # E: how likely each other class is the true one; M: D[i, j] ∝ those responsibilities where labelled j.
            responsibility = (rates[:, :, None] * q.T[None] * destinations[:, :, labels]) / likelihood[:, None, :]
            counts = np.matmul(responsibility, onehot)
            counts[:, np.arange(n_classes), np.arange(n_classes)] = 0.0
            destinations = counts / np.maximum(counts.sum(axis=2, keepdims=True), EPS)
            destinations[counts.sum(axis=2) <= EPS] = 1.0 / (n_classes - 1)  # no evidence: uniform, as before
            destinations[:, np.arange(n_classes), np.arange(n_classes)] = 0.0
        log_likelihood = np.log(likelihood).sum(axis=1)
        better = log_likelihood > profile
        profile[better], temperature_of[better] = log_likelihood[better], temperature * step
    best = int(np.argmax(profile))
    cut = profile[best] - chi2.ppf(level, 1) / 2.0
    inside = np.flatnonzero(profile >= cut)
    low_i, high_i, last = int(inside.min()), int(inside.max()), len(CONCENTRATED_RATES) - 1
    # Where the profile crosses the cut between grid points (the estimate's way): the grid is coarse, and a grid
    # point's end would make the interval narrower than the data say (a check must not overstate its low end).
    low = 0.0 if low_i == 0 else _crossing(CONCENTRATED_RATES, profile, low_i - 1, low_i, cut)
    high = MAX_RATE if high_i == last else _crossing(CONCENTRATED_RATES, profile, high_i, high_i + 1, cut)
    return NoiseEstimate(rate=float(CONCENTRATED_RATES[best]), interval=(low, high),
                         level=level, temperature=float(temperature_of[best]), samples=n, n_classes=n_classes,
                         log_likelihood_gain=max(0.0, float(profile[best] - profile[0])))
