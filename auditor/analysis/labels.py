"""The label analysis shared by `label_issues`, `gap_attribution` and `auditor split`: a cross-validated probe on
the cached embeddings, the label-noise model on its out-of-fold probabilities (`label_noise.py`), each image's
probability that its label is wrong, and k-NN label agreement. Declared lazily on the context
(`ctx.label_analysis`), computed once, whichever asks first.

The probe: logistic regression on PCA-whitened embeddings, C (inverse L2 strength) picked by out-of-fold log
loss. A fixed C = 1 on raw unit-length embeddings was far too strong for 10 classes (digits: 85 % accurate,
95 % with this probe), and soft probabilities hide label errors among confusion.

The estimate is *supported* when the data pins the rate down (a narrow interval) and the probe separates the
classes; otherwise label errors cannot be told apart from the probe's confusion, and only the interval is
given, with no accuracy ceiling.

Confident learning (Northcutt, Jiang & Chuang, JAIR 2021) is kept as pure functions for comparison
(bench/bench_label_issues.py): its count includes every image a weak probe confuses, so it cannot be the
estimate (3.7× the planted noise with a ~70 % accurate probe, 2.5 % "errors" in clean digits).

Folds run over unique contents: copies of one file (same sha256) are one sample, so a copy never sits on both
sides of a fold; a content filed under two labels is two samples kept in one fold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from auditor.analysis import label_noise

MAX_SHOWN_PAIRS = 20  # class pairs listed in class_pair_noise


def percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0
MIN_IMAGES_PER_CLASS = 10  # fewer images than this: the probe cannot learn the class (≤ 8 per training fold), so it is not judged

PROBE_CS = (0.01, 0.1, 1.0)

PROBE_MAX_DIMS = 256

PROBE_SAMPLES_PER_DIM = 10  # whitening more dimensions than n/10 amplifies noise (ants/bees, 398 images: 94 % → 88 %)

MISLABEL_PROBABILITY = 0.5  # "probably mislabelled": the label is more likely wrong than right under the model
# A probe that does not beat always guessing the largest class (one-sided binomial test at this level) names no
# candidates: at chance, "the probe disagrees with the label" is a coin toss (21 images of 2 classes, 52 % accurate:
# 10 of them were listed "for review").
CHANCE_ALPHA = 0.05

NEIGHBOURS_DISAGREE = 0.5  # "neighbours disagree" (finding evidence): most of the k nearest carry another label

# Strong evidence (`strong_evidence`): the round(η̂ · n) images likeliest to carry a wrong label, where η̂ is the
# estimated rate and "likeliest" combines the probe (the odds of P(wrong)) with the k nearest neighbours' votes
# (their likelihood ratio, `neighbour_likelihood_ratio`, estimated from the data). Why not a threshold: how sure the
# model is of one image depends on the probe's calibration (P(wrong) ≥ 0.5 found 0.42 of 2 % flips at 32 px with
# precision 0.86, 0.86 of them on digits at 0.91), while the count is what the model estimates best (within ×1.5 on
# every bench column). Measured (bench/bench_label_issues.py, 2 seeds): see docs/labels.md, "Label issues ... measured".

SUPPORT_MAX_ABSOLUTE_WIDTH = 0.02

SUPPORT_MAX_RELATIVE_WIDTH = 1.0

PROBE_MAX_FIT_IMAGES = 20_000  # each fold's probe (and the PCA) is fitted on at most this many samples (see
# fit_subsample); every sample still gets out-of-fold probabilities. Measured in bench/bench_label_issues.py --cap.

PROBE_MIN_FIT_PER_CLASS = 50  # a subsample keeps at least this many of each class (all of a smaller class), so a
# rare class is never dropped from a fold's probe (its images would get probability 0 for their own label)

NOISE_FIT_MAX_SAMPLES = 50_000  # the rate is fitted on at most this many samples (seeded subsample): O(n) per grid cell
# The check of the model's assumption (wrong labels spread over the other classes): the rate read with a destination
# per class (`label_noise.estimate_concentrated_noise`) on at most this many samples, with at most
# label_noise.CONCENTRATED_MAX_CLASSES classes …
CONCENTRATED_MAX_SAMPLES = 5_000
# … contradicts the estimate when its whole interval lies more than this above the estimate's: then the estimate is
# not supported. Measured (bench_label_issues.py --flip-kind pair / uniform, photos native, 64 px, 32 px, digits
# 32 px, seeds 0–1): flips all moved to the nearest class are caught at 5 and 10 % on every photo set (estimated
# 0.0–0.4 % before), at 2 % on 32 px photos and on one 64 px seed, at 10 % on digits; not at 2 % on native photos
# (1.0–1.2 %) nor at 5 % on digits (2.8–3.0 %); no clean cell and no cell of flips spread over the classes is caught.
CONCENTRATION_MARGIN = 0.01

# Supported: the interval of the noise rate is at most 2 points wide, or no wider than the estimate itself
# (measured: native and 64 px photos, digits: supported at 0.5–10 % planted; 32 px ants/bees never). The probe's
# accuracy against the true labels (expected under the noise model) below which the estimate is not supported,
# whatever its interval, is the setting `label_min_probe_accuracy` (default 0.80): the model tells confusion from
# noise by the shape of the probe's tails, and the weaker the probe, the more of the data lives where that shape is
# an assumption (estimates within ×1.5 measured down to ~81 % on 32 px photos).


def per_class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """t_j = the average probability of class j over the images labelled j (its self-confidence)."""
    n_classes = probs.shape[1]
    thresholds = np.ones(n_classes)
    for j in range(n_classes):
        members = labels == j
        if members.any():
            thresholds[j] = float(probs[members, j].mean())
    return thresholds


def confident_joint(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | None = None) -> np.ndarray:
    """C[i, j]: images labelled i whose probability of class j reaches t_j (the likeliest such j
    when several do). Images confident in no class are not counted."""
    n_classes = probs.shape[1]
    if thresholds is None:
        thresholds = per_class_thresholds(probs, labels)
    confident = probs >= thresholds[None, :] - 1e-9
    counted = confident.any(axis=1)
    guess = np.where(confident, probs, -np.inf).argmax(axis=1)
    joint = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(joint, (labels[counted], guess[counted]), 1)
    return joint


def calibrate_confident_joint(joint: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rescale each row so it sums to the number of images that carry that label (float counts)."""
    n_classes = joint.shape[0]
    label_counts = np.bincount(labels, minlength=n_classes).astype(float)
    row_sums = joint.sum(axis=1).astype(float)
    scale = np.divide(label_counts, row_sums, out=np.zeros(n_classes), where=row_sums > 0)
    calibrated = joint * scale[:, None]
    empty = row_sums == 0  # a class confident nowhere keeps its images on the diagonal
    calibrated[empty, empty] = label_counts[empty]
    return calibrated


def noise_matrix(calibrated: np.ndarray) -> np.ndarray:
    """Row-normalised calibrated joint: [i, j] = estimated share of images labelled i whose true class is j."""
    rows = calibrated.sum(axis=1, keepdims=True)
    return np.divide(calibrated, rows, out=np.zeros_like(calibrated), where=rows > 0)


def estimated_label_errors(probs: np.ndarray, labels: np.ndarray) -> int:
    """How many labels confident learning estimates to be wrong: the off-diagonal mass of the calibrated
    confident joint."""
    calibrated = calibrate_confident_joint(confident_joint(probs, labels), labels)
    return int(np.rint(calibrated.sum() - np.trace(calibrated)))


def find_label_issues(probs: np.ndarray, labels: np.ndarray, method: str = "low_self_confidence") -> np.ndarray:
    """Boolean mask of probable label errors by confident learning. An image whose likeliest class is its
    given label is never flagged.

    `low_self_confidence` (default): the confident joint estimates how many labels are wrong; that many
    images are flagged, lowest self-confidence first (cleanlab's `filter_by="low_self_confidence"`).
    `prune_by_noise_rate`: for every pair (given i, true j ≠ i) the calibrated confident joint estimates
    how many images labelled i are really j; that many images labelled i are flagged, largest margin
    p_j − p_i first (the original paper's method).

    On real photos with flipped labels the first is the more precise (bench/bench_label_issues.py: 4 classes,
    5 % flipped: precision 0.95 vs 0.91 at the same recall or better)."""
    n, n_classes = probs.shape
    candidates = probs.argmax(axis=1) != labels
    issues = np.zeros(n, dtype=bool)
    if method == "low_self_confidence":
        count = estimated_label_errors(probs, labels)
        quality = self_confidence(probs, labels)
        order = np.argsort(quality, kind="stable")
        issues[order[candidates[order]][:count]] = True
        for i in range(n_classes):  # never empty a class: a class that is all noise is not a label error
            members = np.flatnonzero(labels == i)
            if members.size and issues[members].all():
                issues[members[np.argmax(quality[members])]] = False
        return issues
    if method != "prune_by_noise_rate":
        raise ValueError(f"unknown method {method!r}")
    thresholds = per_class_thresholds(probs, labels)
    calibrated = calibrate_confident_joint(confident_joint(probs, labels, thresholds), labels)
    prune_counts = np.rint(calibrated).astype(np.int64)
    for i in range(n_classes):
        members = np.flatnonzero(labels == i)
        if members.size == 0:
            continue
        keep_at_least = 1  # never empty a class: a class that is all noise is not a label error
        budget = max(0, members.size - keep_at_least)
        for j in range(n_classes):
            count = int(min(prune_counts[i, j], budget)) if j != i else 0
            if count <= 0:
                continue
            margin = probs[members, j] - probs[members, i]
            chosen = members[np.argsort(-margin, kind="stable")[:count]]
            issues[chosen] = True
    issues &= candidates
    return issues


def confident_in_other_class(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """True where an image falls off the diagonal of the confident joint: the likeliest class whose
    probability reaches its threshold is not the given label."""
    confident = probs >= thresholds[None, :] - 1e-9
    guess = np.where(confident, probs, -np.inf).argmax(axis=1)
    return confident.any(axis=1) & (guess != labels)


def self_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Label quality in [0, 1]: the probability of the given label (lower = more likely wrong)."""
    return probs[np.arange(len(labels)), labels]


def normalised_margin(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """p(given) − max p(other), mapped to [0, 1] (0.5 = a tie)."""
    given = self_confidence(probs, labels)
    others = probs.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    return (given - others.max(axis=1) + 1.0) / 2.0


def accuracy_ceiling(probably_wrong: int, images: int) -> float | None:
    """The highest accuracy measurable on a split where `probably_wrong` of `images` labels are wrong:
    a perfect model is scored wrong on each of them."""
    return round(1.0 - probably_wrong / images, 4) if images else None


@dataclass
class LabelAnalysis:
    classes: list[str]  # the classes the probe was trained on
    excluded_classes: dict[str, int]  # too few images to judge → their image count
    unit_shas: list[str]  # one sample per (content, label)
    unit_labels: np.ndarray  # index into classes
    unit_positions: list[list[int]]  # record positions with that content and label
    probs: np.ndarray  # out-of-fold probabilities (units × classes)
    folds: int
    noise: label_noise.NoiseEstimate | None  # share of wrong labels, with its profile-likelihood interval
    # the interval reported: the profile's, its top raised to the concentrated reading's where that is higher, or
    # [0, its top] when not supported
    noise_interval: tuple[float, float]
    wrong_probability: np.ndarray  # per unit: P(the given label is wrong) under the noise model
    wrong_probability_range: tuple[np.ndarray, np.ndarray]  # the same at the two ends of the reported interval
    wrong_probability_at_top: np.ndarray  # the same with the rate at the top of its profile interval
    strong_mask: np.ndarray  # per unit: strong evidence (`strong_evidence`), all False when not supported
    suggested: np.ndarray  # per unit: the likeliest other class (index into classes)
    neighbour_agreement: np.ndarray  # share of the k nearest other contents that carry the unit's label
    neighbour_majority: list[str | None]
    neighbours_k: int
    supported: bool = False  # can label errors be told apart from the probe's confusion?
    beats_chance: bool = True  # is the probe more accurate than always guessing the largest class (`chance_test`)?
    reason: str | None = None  # why not, when not supported
    # the rate read as if wrong labels concentrated between classes (the check of the estimate's assumption), or
    # None: not measured (more than label_noise.CONCENTRATED_MAX_CLASSES classes)
    concentrated: label_noise.NoiseEstimate | None = None
    skipped_reason: str | None = None
    stats: dict = field(default_factory=dict)

    @property
    def interval_top_from(self) -> str:
        """Where the reported interval's top comes from: the profile likelihood's; the concentrated reading's
        (supported, but wrong labels concentrated between similar classes would be more); or, not supported, the
        widening to the probe's confusion."""
        if self.noise is None or self.noise_interval[1] <= self.noise.interval[1]:
            return "profile"
        return "concentrated" if self.supported else "not supported"

    @property
    def label_quality(self) -> np.ndarray:
        return self_confidence(self.probs, self.unit_labels)

    @property
    def issues(self) -> np.ndarray:
        """Probably mislabelled: the label is more likely wrong than right under the noise model. When the rate
        is not supported, the candidates for review: more likely wrong than right were the rate at the top of
        what the data allows (on 246 photos with 7 % flipped, interval 0–9.7 %: 14 of 17 flips, 1 other photo).
        Strong evidence is always among them."""
        if not self.supported and not self.beats_chance:
            return self.strong  # all False: a probe at chance names nobody
        wrong = self.wrong_probability if self.supported else self.wrong_probability_at_top
        return (wrong >= MISLABEL_PROBABILITY) | self.strong

    @property
    def neighbours_disagree(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return self.neighbour_agreement < NEIGHBOURS_DISAGREE

    @property
    def strong(self) -> np.ndarray:
        """Strong evidence: among the round(η̂ · n) likeliest wrong labels by probe and neighbours
        (`strong_evidence`), and the estimate is supported (a weak probe gives no strong evidence: the mask is
        all False then)."""
        return self.strong_mask

    @property
    def expected_pair_counts(self) -> np.ndarray:
        return label_noise.expected_pair_counts(self.probs, self.unit_labels, self.noise, self.wrong_probability)


def chance_test(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The probe's out-of-fold accuracy against always guessing the largest class: that share, and the one-sided
    binomial p-value of doing at least this well by such guessing."""
    from scipy.stats import binom

    n = len(labels)
    if not n:
        return {"chance_accuracy": 0.0, "p_value": 1.0}
    correct = int((probs.argmax(axis=1) == labels).sum())
    chance = float(np.bincount(labels).max() / n)
    return {"chance_accuracy": chance, "p_value": float(binom.sf(correct - 1, n, chance))}


def _skipped(reason: str, classes: list[str] | None = None, excluded: dict[str, int] | None = None) -> LabelAnalysis:
    empty = np.zeros(0)
    return LabelAnalysis(classes=classes or [], excluded_classes=excluded or {}, unit_shas=[],
                         unit_labels=np.zeros(0, dtype=int), unit_positions=[], probs=np.zeros((0, 0)), folds=0,
                         noise=None, noise_interval=(0.0, 1.0), wrong_probability=empty,
                         wrong_probability_range=(empty, empty), wrong_probability_at_top=empty,
                         strong_mask=np.zeros(0, dtype=bool),
                         suggested=np.zeros(0, dtype=int), neighbour_agreement=empty, neighbour_majority=[],
                         neighbours_k=0, skipped_reason=reason, reason=reason)


def fit_subsample(labels: np.ndarray, max_images: int, seed: int,
                  min_per_class: int = PROBE_MIN_FIT_PER_CLASS) -> np.ndarray:
    """Sorted positions of a seeded, stratified subsample of at most about `max_images` samples: each class in
    proportion to its count, but at least `min_per_class` (all of a class smaller than that). Every position
    when there are no more than `max_images`."""
    n = len(labels)
    if n <= max_images:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        quota = min(members.size, max(min_per_class, max_images * members.size // n))
        chosen.append(rng.choice(members, size=quota, replace=False))
    return np.sort(np.concatenate(chosen))


PROBE_BLOCK = 16_384  # rows transformed (and predicted) at once when the probe features are computed on demand


class ProbeFeatures:
    """The probe's PCA-whitened features of a large matrix, computed on demand for the rows asked for
    (`features[rows]`), never held whole: at 10⁶ × 256 float32 they were 1 GB held through the probe, with a
    float32 and a float64 copy of a whole test fold (0.2 + 0.4 GB) beside them. Each row's features are the PCA
    transform of that row alone, so they are the values the whole array held (tested, and bitwise at 10⁵).
    `rows`: the vector row of each sample (a content filed under two labels is two samples), default one each."""

    def __init__(self, vectors: np.ndarray, pca, rows: np.ndarray | None = None):
        self.vectors, self.pca, self.rows = vectors, pca, rows
        self.shape = (len(vectors) if rows is None else len(rows), int(pca.n_components_))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        from auditor.encoding.embedding_store import to_float32

        rows = np.asarray(index if self.rows is None else self.rows[index], dtype=np.int64)
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        for start in range(0, len(rows), PROBE_BLOCK):
            part = rows[start:start + PROBE_BLOCK]
            # A run of consecutive rows is a slice of the (memory-mapped) matrix, not a gather.
            block = (self.vectors[part[0]:part[-1] + 1] if part[-1] - part[0] == len(part) - 1
                     else self.vectors[part])
            out[start:start + len(part)] = self.pca.transform(to_float32(block))
        return out

    def for_samples(self, rows: np.ndarray) -> "ProbeFeatures":
        """The same features with sample i read from vector row rows[i]."""
        return ProbeFeatures(self.vectors, self.pca, np.asarray(rows, dtype=np.int64))


def probe_features(vectors: np.ndarray, seed: int, max_fit: int | None = None) -> "np.ndarray | ProbeFeatures":
    """PCA-whitened embeddings, at most PROBE_MAX_DIMS and (fitted samples) / PROBE_SAMPLES_PER_DIM dimensions.
    PCA sees no label, so fitting it on every sample leaks nothing into the folds; on more than `max_fit`
    samples (default PROBE_MAX_FIT_IMAGES) it is fitted on a seeded random subsample and applied to the rows
    each step asks for (`ProbeFeatures`: computed on demand, block by block, never held whole)."""
    from sklearn.decomposition import PCA

    from auditor.encoding.embedding_store import to_float32

    max_fit = PROBE_MAX_FIT_IMAGES if max_fit is None else max_fit
    n, dim = vectors.shape
    fitted = min(n, max_fit)
    dims = int(min(PROBE_MAX_DIMS, dim, fitted - 1, max(2, fitted // PROBE_SAMPLES_PER_DIM)))
    if dims < 2:
        return np.asarray(vectors, dtype=np.float64)
    pca = PCA(dims, whiten=True, svd_solver="randomized" if fitted > 5000 else "auto", random_state=seed)
    if n <= max_fit:
        return pca.fit_transform(vectors)
    sample = np.sort(np.random.default_rng(seed).choice(n, size=max_fit, replace=False))
    pca.fit(to_float32(vectors[sample]))
    return ProbeFeatures(vectors, pca)


def fold_splits(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified K folds (seeded) as (train, test) sample indices; samples that share a group (a content filed
    under two labels) stay in one fold. Where groups repeat, the groups themselves are stratified by their first
    sample's label and each sample follows its group: sklearn's StratifiedGroupKFold balances groups one at a time
    in Python, 0.15 ms a group (≈ 145 s of `label_issues`' 515 at 10⁶ images with two repeated contents; this
    takes 1.4 s)."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    unique_groups, first, group_of = np.unique(groups, return_index=True, return_inverse=True)
    if len(unique_groups) == len(groups):
        placeholder = np.zeros((len(labels), 1), dtype=np.int8)  # the splitter reads only the length of X
        return list(splitter.split(placeholder, labels))
    group_fold = np.empty(len(unique_groups), dtype=np.int64)
    for fold, (_train, test) in enumerate(splitter.split(np.zeros((len(first), 1), dtype=np.int8), labels[first])):
        group_fold[test] = fold
    sample_fold = group_fold[group_of.ravel()]
    return [(np.flatnonzero(sample_fold != fold), np.flatnonzero(sample_fold == fold)) for fold in range(folds)]


def out_of_fold_probabilities(features: "np.ndarray | ProbeFeatures", labels: np.ndarray, groups: np.ndarray,
                              folds: int, seed: int, cs: tuple[float, ...] = PROBE_CS,
                              max_fit: int | None = None) -> tuple[np.ndarray, float, int]:
    """Class probabilities for every sample from a logistic-regression probe that never saw it (stratified K
    folds, seeded; samples that share a group stay in one fold), the C used: the one of `cs` with the
    lowest log loss on the first fold (one fold decides, so the grid costs len(cs) − 1 extra fits, not
    folds × len(cs)), and the most training samples one probe was fitted on. Each fold's probe is fitted on a
    seeded stratified subsample of at most `max_fit` of its training samples (`fit_subsample`; default
    PROBE_MAX_FIT_IMAGES), so the cost of the fits stops growing with the dataset; prediction covers every
    held-out sample, PROBE_BLOCK samples at a time (`features` may be a `ProbeFeatures`: each block's features
    are computed once, for every C of the grid)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    splits = fold_splits(labels, groups, folds, seed)
    n_classes = int(labels.max()) + 1
    probs = np.zeros((len(labels), n_classes))
    max_fit = PROBE_MAX_FIT_IMAGES if max_fit is None else max_fit
    subsets = [train[fit_subsample(labels[train], max_fit, seed + fold)] for fold, (train, _) in enumerate(splits)]
    splits = [(subset, test) for subset, (_train, test) in zip(subsets, splits)]

    # One BLAS thread: each L-BFGS step is a product of (≤ 20 000 × ≤ 256) by (256 × classes), too small for
    # threads to pay, and with the cores busy threads that wait for each other cost 10–20× the CPU (measured:
    # 8 000 × 256, 4 classes: 0.15 CPU-s on one thread, 1.4 on two, at load ≈ 10).
    def fit(c: float, train_features: np.ndarray, train: np.ndarray):
        with threadpool_limits(limits=1, user_api="blas"):
            return LogisticRegression(C=c, max_iter=1000).fit(train_features, labels[train])

    def predict(probes: list, test: np.ndarray) -> list[np.ndarray]:
        """Each probe's probabilities for the samples `test`, block by block."""
        out = [np.zeros((len(test), n_classes)) for _ in probes]
        for start in range(0, len(test), PROBE_BLOCK):
            block = features[test[start:start + PROBE_BLOCK]]
            with threadpool_limits(limits=1, user_api="blas"):
                for probe, probe_out in zip(probes, out):
                    probe_out[start:start + len(block), probe.classes_] = probe.predict_proba(block)
        return out

    train, test = splits[0]
    train_features = features[train]
    grid = predict([fit(c, train_features, train) for c in cs], test)
    losses = {c: float(-np.log(np.clip(fold_probs[np.arange(len(test)), labels[test]], 1e-12, 1.0)).mean())
              for c, fold_probs in zip(cs, grid)}
    best_c = min(losses, key=losses.get)  # the first of equal losses, as before
    probs[test] = grid[list(cs).index(best_c)]
    del grid, train_features
    for train, test in splits[1:]:
        probs[test] = predict([fit(best_c, features[train], train)], test)[0]
    return probs, best_c, max(len(subset) for subset in subsets)


def labels_by_content(content_row: np.ndarray, unit_labels: list[str], n_contents: int) -> list[frozenset[str]]:
    """The labels each content is filed under (unit u: content content_row[u], label unit_labels[u]). Contents under
    one label (all but a few) share one set per label: 10⁶ sets of their own were 0.2 GB."""
    one_label = {label: frozenset((label,)) for label in set(unit_labels)}
    labels: list[frozenset[str]] = [frozenset()] * n_contents
    for row, label in zip(content_row, unit_labels):
        labels[row] = labels[row] | {label} if labels[row] else one_label[label]
    return labels


def neighbour_label_agreement(unit_vectors: np.ndarray, content_row: np.ndarray, unit_labels: list[str],
                              labels_of_content: list[set[str]], k: int,
                              majority_for: np.ndarray | None = None,
                              block: int = 65_536) -> tuple[np.ndarray, list[str | None]]:
    """For each unit: the share of the k nearest *other* contents that carry its label, and (for the units
    in `majority_for`, default all) the label most of them carry. `unit_vectors` are the unique contents'
    unit embeddings; `content_row[u]` is unit u's row among them. Units are taken `block` at a time, so the
    per-neighbour arrays (units × k, several of them) stay small whatever the dataset's size (0.36 GB at 10⁶)."""
    from auditor.similarity.neighbours import drop_self_rows
    from auditor.similarity.neighbours import knn

    n_units = len(unit_labels)
    k = min(k, len(unit_vectors) - 1)
    if k < 1:
        return np.full(n_units, np.nan), [None] * n_units
    sims, neighbours = knn(unit_vectors, k + 1)
    names = sorted({label for labels in labels_of_content for label in labels} | set(unit_labels))
    code = {name: i for i, name in enumerate(names)}
    # Most contents carry one label: compare codes in bulk; the few filed under several are checked one by one.
    single = np.fromiter((code[next(iter(labels))] if len(labels) == 1 else -1 for labels in labels_of_content),
                         dtype=np.int64, count=len(labels_of_content))
    unit_codes = np.fromiter((code[label] for label in unit_labels), dtype=np.int64, count=n_units)
    content_row = np.asarray(content_row, dtype=np.int64)
    agreement = np.full(n_units, np.nan)
    majority: list[str | None] = [None] * n_units
    wanted_mask = np.ones(n_units, dtype=bool) if majority_for is None else np.asarray(majority_for, dtype=bool)
    for start in range(0, n_units, block):
        stop = min(n_units, start + block)
        contents = content_row[start:stop]
        # The k nearest other contents of each unit's content (the content itself left out, wherever it was found).
        _sims, rows = drop_self_rows(sims[contents], neighbours[contents], contents, k)
        valid = rows >= 0
        neighbour_codes = np.where(valid, single[np.maximum(rows, 0)], -2)
        matches = (neighbour_codes == unit_codes[start:stop, None]) & valid
        for u, j in zip(*np.nonzero(neighbour_codes == -1)):
            matches[u, j] = unit_labels[start + u] in labels_of_content[rows[u, j]]
        counted = valid.sum(axis=1)
        agreement[start:stop] = np.where(counted > 0, matches.sum(axis=1) / np.maximum(counted, 1), np.nan)
        for u in np.flatnonzero(wanted_mask[start:stop]):
            votes: dict[str, int] = {}
            for j in rows[u][valid[u]]:
                for label in labels_of_content[j]:
                    votes[label] = votes.get(label, 0) + 1
            majority[start + u] = max(sorted(votes), key=votes.get) if votes else None
    return agreement, majority


def neighbour_likelihood_ratio(agreement: np.ndarray, wrong: np.ndarray, k: int) -> np.ndarray:
    """Per unit: how much likelier its neighbours' vote (how many of the k nearest carry its label) is under a wrong
    label than under a right one. Both distributions are estimated from the data itself: the histogram of
    agreeing counts weighted by P(wrong), and by 1 − P(wrong) (plus ½ per count, so an empty bin is no
    certainty). No constant to tune: it adapts to k, to the number of classes and to how clustered the embedding
    is. 1 where a unit has no neighbours."""
    ratio = np.ones(len(wrong))
    known = np.isfinite(agreement)
    if k < 1 or not known.any():
        return ratio
    counts = np.rint(agreement[known] * k).astype(int)
    when_wrong = np.bincount(counts, weights=wrong[known], minlength=k + 1) + 0.5
    when_right = np.bincount(counts, weights=1.0 - wrong[known], minlength=k + 1) + 0.5
    ratio[known] = (when_wrong / when_wrong.sum())[counts] / (when_right / when_right.sum())[counts]
    return ratio


def strong_evidence(wrong: np.ndarray, rate: float, likelihood_ratio: np.ndarray | None = None,
                    rate_low: float | None = None) -> np.ndarray:
    """The round(rate · n) units likeliest to carry a wrong label: ranked by the odds of P(wrong) times the
    neighbours' likelihood ratio (the probe and the neighbours as two witnesses). The count is the noise model's
    estimate, so clean data (η̂ ≈ 0) gives none, and a weaker probe (softer P(wrong)) does not shrink the list
    below what the model says is there. A unit with P(wrong) = 0 is never chosen. `rate_low`, the lower end of
    the rate's interval: where it reaches 0 the data does not say that any label is wrong, and none is chosen
    (on 60 000 clean 32 px crops, η̂ = 0.04 % [0, 0.07 %] named 21 images without it)."""
    n = len(wrong)
    count = int(min(n, round(rate * n))) if rate_low is None or rate_low > 0 else 0
    chosen = np.zeros(n, dtype=bool)
    if count <= 0:
        return chosen
    odds = wrong / np.maximum(1.0 - wrong, 1e-12)
    score = odds * (1.0 if likelihood_ratio is None else likelihood_ratio)
    top = np.argsort(-score, kind="stable")[:count]
    chosen[top[score[top] > 0]] = True
    return chosen


def analyse(ctx) -> LabelAnalysis:
    """The label analysis of this context (computed once, on the context: `ctx.label_analysis`)."""
    return ctx.label_analysis


def support(estimate: label_noise.NoiseEstimate, probe_accuracy: float,
            min_probe_accuracy: float = 0.80,
            concentrated: label_noise.NoiseEstimate | None = None) -> tuple[bool, str | None]:
    """Can label errors be told apart from the probe's confusion here? (supported, why not).
    `probe_accuracy`: against the true labels, as the model expects it (`label_noise.expected_accuracy`).
    `concentrated`: the rate read as if wrong labels concentrated between classes; where its interval lies wholly
    above the estimate's (by CONCENTRATION_MARGIN), the estimate's assumption is contradicted."""
    low, high = estimate.interval
    if concentrated is not None and concentrated.interval[0] > high + CONCENTRATION_MARGIN:
        c_low, c_high = concentrated.interval
        return False, (f"wrong labels may be concentrated between similar classes: read that way the data say "
                       f"{100 * concentrated.rate:.1f} % ({100 * c_low:.1f}–{100 * c_high:.1f} %), where spread over "
                       f"the other classes they say {100 * estimate.rate:.1f} % ({100 * low:.1f}–{100 * high:.1f} %); "
                       "label errors cannot be told apart from the probe's confusion of those classes")
    if probe_accuracy < min_probe_accuracy:
        return False, (f"the probe separates the classes too poorly (about {100 * probe_accuracy:.1f} % accurate "
                       f"against the true labels, < {100 * min_probe_accuracy:.0f} %): label errors cannot be told "
                       "apart from its confusion")
    if not label_noise.resolves_rate(estimate, SUPPORT_MAX_ABSOLUTE_WIDTH, SUPPORT_MAX_RELATIVE_WIDTH):
        return False, (f"the data does not pin the noise rate down (95 % interval {100 * low:.1f}–{100 * high:.1f} %, "
                       f"out-of-fold probe accuracy {100 * probe_accuracy:.1f} %, {estimate.samples} samples): "
                       "label errors cannot be told apart from the probe's confusion")
    return True, None


def fit_noise(probs: np.ndarray, labels: np.ndarray, seed: int,
              max_samples: int = NOISE_FIT_MAX_SAMPLES) -> label_noise.NoiseEstimate:
    """The noise model, fitted on at most `max_samples` samples (a seeded subsample keeps it O(max_samples))."""
    if len(labels) > max_samples:
        chosen = np.sort(np.random.default_rng(seed).choice(len(labels), size=max_samples, replace=False))
        return label_noise.estimate_noise_rate(probs[chosen], labels[chosen])
    return label_noise.estimate_noise_rate(probs, labels)


def fit_concentrated_noise(probs: np.ndarray, labels: np.ndarray, seed: int, temperature: float,
                           max_samples: int = CONCENTRATED_MAX_SAMPLES) -> label_noise.NoiseEstimate | None:
    """The rate read as if wrong labels concentrated between classes, on at most `max_samples` samples (seeded),
    temperatures around the estimate's; None above label_noise.CONCENTRATED_MAX_CLASSES classes."""
    if probs.shape[1] > label_noise.CONCENTRATED_MAX_CLASSES or probs.shape[1] < 3:
        return None  # two classes: a wrong label has one destination, the estimate already reads it
    if len(labels) > max_samples:
        chosen = np.sort(np.random.default_rng(seed + 1).choice(len(labels), size=max_samples, replace=False))
        return label_noise.estimate_concentrated_noise(probs[chosen], labels[chosen], temperature)
    return label_noise.estimate_concentrated_noise(probs, labels, temperature)


def content_vectors(ctx, contents: list[str]) -> np.ndarray:
    """Unit embeddings of `contents`. When they are every embedded content in order (every class kept) and
    approximate search is in use, the shared float16 matrix itself (`ctx.unit_matrix`): its k-NN graph is the
    one `outliers` and `near_duplicates` read, where a float32 copy (5 GB at 10⁶ × 1280) would build an index and
    a graph of its own. Below the exact-search limit, the float32 vectors as before (same probe inputs)."""
    from auditor.similarity.neighbours import EXACT_LIMIT

    if len(contents) > EXACT_LIMIT and contents == ctx.embedded_shas:
        return ctx.unit_matrix
    return ctx.unit_embeddings(contents)


def compute_label_analysis(ctx) -> LabelAnalysis:
    import time

    config = ctx.config
    if not ctx.has_embeddings:
        return _skipped("no embeddings (run with a backbone)")
    units: dict[tuple[str, str], list[int]] = {}
    for position in ctx.usable_positions:
        sha = ctx.encoded.record_sha[position]
        if sha in ctx.encoded.embeddings:
            units.setdefault((sha, ctx.records[position].label), []).append(position)
    counts: dict[str, int] = {}
    for _sha, label in units:
        counts[label] = counts.get(label, 0) + 1
    classes = sorted(c for c, n in counts.items() if n >= MIN_IMAGES_PER_CLASS)
    excluded = {c: n for c, n in sorted(counts.items()) if n < MIN_IMAGES_PER_CLASS}
    if len(classes) < 2:
        return _skipped(f"fewer than 2 classes with {MIN_IMAGES_PER_CLASS} or more images", classes, excluded)
    kept = [(key, positions) for key, positions in units.items() if key[1] in classes]
    unit_shas = [sha for (sha, _label), _ in kept]
    label_names = [label for (_sha, label), _ in kept]
    unit_labels = np.array([classes.index(label) for label in label_names])
    content_index: dict[str, int] = {}
    for sha in unit_shas:
        content_index.setdefault(sha, len(content_index))
    content_row = np.array([content_index[sha] for sha in unit_shas])
    contents = list(content_index)
    from auditor.similarity.neighbours import EXACT_LIMIT

    if len(contents) > EXACT_LIMIT and contents != ctx.embedded_shas:
        # Some contents left out (a class too small, …) at scale: the kept ones are read as rows of the shared
        # matrix, with its one k-NN graph (a neighbour in a left-out class counts as carrying another label), not
        # as a float32 copy of every kept vector (5 GB at 10⁶) with an index and a graph of their own.
        row_of = ctx.embedded_row
        content_row = np.array([row_of[sha] for sha in unit_shas])
        contents = ctx.embedded_shas
    vectors = content_vectors(ctx, contents)
    folds = int(min(config.label_folds, np.bincount(unit_labels).min()))
    seed = config.seed if config.seed is not None else 0
    started = time.perf_counter()
    features = probe_features(vectors, seed)
    # One unit per content (no content under two labels) in content order: the features as they are, no copy.
    one_per_content = len(content_row) == len(features) and bool((content_row == np.arange(len(features))).all())
    if not one_per_content:
        features = features.for_samples(content_row) if isinstance(features, ProbeFeatures) else features[content_row]
    probs, probe_c, fit_images = out_of_fold_probabilities(features, unit_labels, content_row, folds, seed)
    probe_seconds = time.perf_counter() - started
    started = time.perf_counter()
    noise = fit_noise(probs, unit_labels, seed)
    low, high = noise.interval
    wrong = label_noise.mislabel_probability(probs, unit_labels, noise)
    wrong_range = tuple(label_noise.mislabel_probability(probs, unit_labels,
                                                         label_noise.at_rate(probs, unit_labels, noise, rate))
                        for rate in (low, high))
    wrong_at_top = wrong_range[1]
    noise_seconds = time.perf_counter() - started
    accuracy = float((probs.argmax(axis=1) == unit_labels).mean())
    true_accuracy = label_noise.expected_accuracy(probs, unit_labels, noise, wrong)
    started = time.perf_counter()
    concentrated = fit_concentrated_noise(probs, unit_labels, seed, noise.temperature)
    concentrated_seconds = time.perf_counter() - started
    supported, reason = support(noise, true_accuracy, config.label_min_probe_accuracy, concentrated)
    chance = chance_test(probs, unit_labels)
    reported = noise.interval
    if not supported:
        # Confusion may be all of what looks like noise (down to 0), and a probe that learns the noise hides it
        # (up to every label the probe disagrees with): the interval widens to both.
        reported = (0.0, max(high, 1.0 - accuracy, concentrated.interval[1] if concentrated is not None else 0.0))
        disagrees = (probs.argmax(axis=1) != unit_labels).astype(float)
        wrong_range = (np.zeros_like(wrong), np.maximum(wrong_range[1], disagrees))
    elif concentrated is not None and concentrated.interval[1] > high:
        # Supported, but read as if wrong labels went to similar classes (as people's do) the data allow more than
        # the estimate's top, by less than what contradicts it: the top reaches that reading too, here and in every
        # split's share and accuracy ceiling. Human errors concentrated between two classes are partly learnt by
        # the probe as its own confusion, so the spread-out model reads them low: flips of 2 % to the nearest class
        # on native photos were read 0.96–1.20 % [0.44, 1.72], "supported"; 25 000 Fashion-MNIST images, whose own
        # errors nobody counted, 0.0 % [0, 0.03] with a ceiling of 100.0 % (docs/labels.md, "Label issues").
        reported = (low, float(concentrated.interval[1]))
        wrong_range = (wrong_range[0], label_noise.mislabel_probability(
            probs, unit_labels, label_noise.at_rate(probs, unit_labels, noise, reported[1])))
    labels_of_content = labels_by_content(content_row, label_names, len(contents))
    # The neighbours' majority is named for the units that may be findings: probably wrong, or ranked by P(wrong)
    # within 3 × the count at the top of the interval (strong evidence re-ranks them with the neighbours' votes).
    candidates = np.maximum(wrong, wrong_at_top) >= MISLABEL_PROBABILITY
    candidates[np.argsort(-wrong, kind="stable")[:3 * int(round(high * len(wrong)))]] = True
    # The neighbours of the shared float16 matrix when the contents are its rows: below the exact-search limit the
    # same exact graph the duplicate candidates and the outliers read, not an all-pairs search of its own.
    neighbour_vectors = ctx.unit_matrix if contents == ctx.embedded_shas else vectors
    agreement, majority = neighbour_label_agreement(neighbour_vectors, content_row, label_names, labels_of_content,
                                                    config.label_neighbours, majority_for=candidates)
    neighbours_k = min(config.label_neighbours, len(contents) - 1)
    strong = (strong_evidence(wrong, noise.rate, neighbour_likelihood_ratio(agreement, wrong, neighbours_k), low)
              if supported else np.zeros(len(wrong), dtype=bool))
    from auditor.similarity.neighbours import search_quality

    # Exact, or the approximate index's recall measured against exact search on a sample (reported).
    neighbour_search = search_quality(vectors, max(1, min(config.label_neighbours, len(contents) - 1))).to_dict()
    return LabelAnalysis(
        classes=classes, excluded_classes=excluded, unit_shas=unit_shas, unit_labels=unit_labels,
        unit_positions=[positions for _key, positions in kept], probs=probs, folds=folds, noise=noise,
        noise_interval=reported,
        wrong_probability=wrong, wrong_probability_range=wrong_range, wrong_probability_at_top=wrong_at_top,
        strong_mask=strong, suggested=label_noise.likeliest_true_class(probs, unit_labels, noise),
        neighbour_agreement=agreement, neighbour_majority=majority,
        neighbours_k=neighbours_k, supported=supported, reason=reason, concentrated=concentrated,
        beats_chance=chance["p_value"] < CHANCE_ALPHA,
        stats={"probe_accuracy": accuracy, "probe_accuracy_true_labels": true_accuracy, "probe_c": probe_c,
               "probe_chance_accuracy": chance["chance_accuracy"], "probe_chance_p_value": chance["p_value"],
               "probe_dims": int(features.shape[1]), "probe_fit_images": fit_images, "probe_seconds": probe_seconds,
               "noise_seconds": noise_seconds, "concentrated_noise_seconds": concentrated_seconds,
               "neighbour_search": neighbour_search},
    )


def label_noise_by_split(ctx) -> dict[str, dict]:
    """Per split: images judged; how many are probably mislabelled (and with strong evidence); the estimated
    share of wrong labels, the split's own rate (`split_rates`), with an interval spanning its own and the sum
    of each image's probability of a wrong label at the ends of the dataset's interval; and, only when the
    estimate is supported, the accuracy ceiling that puts on the split (the check's summary prints the held-out
    splits')."""
    analysis = analyse(ctx)
    own_rates = split_rates(ctx, analysis)
    wrong_low, wrong_high = analysis.wrong_probability_range
    unit, split_code, label_code = judged_records(ctx, analysis)
    columns = ctx.columns
    # Summed by np.bincount, which adds each record's value to its bin in record order, as the loop it replaced did
    # (a Python step per record took ≈ 2 s at 10⁶): the same sums, bit for bit.
    per_unit = [np.ones(len(analysis.unit_positions)), analysis.issues, analysis.strong, analysis.wrong_probability,
                wrong_low, wrong_high]
    sums = np.stack([np.bincount(split_code, weights=np.asarray(values, dtype=np.float64)[unit],
                                 minlength=len(columns.splits)) for values in per_unit], axis=1)
    totals = {columns.splits[code]: sums[code] for code in np.unique(split_code).tolist()}
    cell_of = split_code * len(columns.classes) + label_code
    cells = len(columns.splits) * len(columns.classes)
    images_in = np.bincount(cell_of, minlength=cells)
    flagged_in = np.bincount(cell_of, weights=np.asarray(analysis.issues, dtype=np.float64)[unit], minlength=cells)
    wrong_in = np.bincount(cell_of, weights=np.asarray(analysis.wrong_probability, dtype=np.float64)[unit],
                           minlength=cells)
    per_class: dict[str, dict[str, dict]] = {}
    for cell in np.flatnonzero(images_in).tolist():
        split, label = columns.splits[cell // len(columns.classes)], columns.classes[cell % len(columns.classes)]
        per_class.setdefault(split, {})[label] = {"images": int(images_in[cell]), "probably_wrong": int(flagged_in[cell]),
                                                  "estimated_wrong": float(wrong_in[cell])}
    result = {}
    for split in ctx.index.splits:
        images, flagged, strong, expected, expected_low, expected_high = totals.get(split, np.zeros(6))
        images = int(images)
        share = expected / images if images else None
        interval = [round(100 * expected_low / images, 2), round(100 * expected_high / images, 2)] if images else None
        own = own_rates.get(split)
        if own is not None and interval is not None:
            share = own.rate
            interval = [round(float(min(interval[0], 100 * own.interval[0])), 2),
                        round(float(max(interval[1], 100 * own.interval[1])), 2)]
        result[split] = {
            "images": images,
            "probably_wrong": int(flagged),
            "percent": percent(int(flagged), images),
            "strong_evidence": int(strong),
            "estimated_percent": round(100 * share, 2) if share is not None else None,
            "estimated_percent_interval": interval,
            "supported": analysis.supported,
            "accuracy_ceiling": round(1.0 - share, 4) if analysis.supported and share is not None else None,
            "accuracy_ceiling_interval": ([round(1 - interval[1] / 100, 4), round(1 - interval[0] / 100, 4)]
                                          if analysis.supported and interval else None),
            "per_class": {label: {**cell, "estimated_wrong": round(cell["estimated_wrong"], 1)}
                          for label, cell in sorted(per_class.get(split, {}).items())},
        }
    return result


def judged_records(ctx, analysis: LabelAnalysis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit, split code, label code) of every record the analysis judged (`unit_positions` flattened, units in
    order): codes into the record columns' `splits` and `classes`."""
    from itertools import chain

    lengths = np.fromiter(map(len, analysis.unit_positions), dtype=np.int64, count=len(analysis.unit_positions))
    positions = np.fromiter(chain.from_iterable(analysis.unit_positions), dtype=np.int64, count=int(lengths.sum()))
    columns = ctx.columns
    return (np.repeat(np.arange(len(lengths)), lengths), columns.split[positions].astype(np.int64),
            columns.label[positions].astype(np.int64))


def split_rates(ctx, analysis: LabelAnalysis) -> dict[str, label_noise.NoiseEstimate]:
    """Each split's own share of wrong labels: the noise model fitted on the split's images alone, the probe's
    calibration held at the dataset's (`label_noise.estimate_rate_at_temperature`); an image in several splits
    counts in each. On at most NOISE_FIT_MAX_SAMPLES images a split (a seeded subsample), as the dataset's rate.
    Empty where the analysis has no noise estimate."""
    if analysis.noise is None or not len(analysis.unit_labels):
        return {}
    unit, split_code, _label_code = judged_records(ctx, analysis)
    columns = ctx.columns
    members: dict[str, np.ndarray] = {}  # each split's units, ascending; the splits as first met in unit order
    pairs = np.unique(split_code * len(analysis.unit_positions) + unit)
    for code in split_code[np.sort(np.unique(split_code, return_index=True)[1])].tolist():
        in_split = pairs[pairs // len(analysis.unit_positions) == code]
        members[columns.splits[code]] = in_split % len(analysis.unit_positions)
    rng = np.random.default_rng(0)
    out = {}
    for split, units in members.items():
        units = np.asarray(units)
        if len(units) > NOISE_FIT_MAX_SAMPLES:
            units = np.sort(rng.choice(units, NOISE_FIT_MAX_SAMPLES, replace=False))
        out[split] = label_noise.estimate_rate_at_temperature(
            analysis.probs[units], analysis.unit_labels[units], analysis.noise.temperature, analysis.noise.n_classes)
    return out


def held_out_label_noise(ctx) -> dict[str, dict]:
    """For each held-out split (val, test, …): the share of its images whose label is probably wrong, the
    estimated share with its interval, and the accuracy ceiling (None when the estimate is not supported)."""
    by_split = label_noise_by_split(ctx)
    keys = ("images", "probably_wrong", "percent", "estimated_percent", "estimated_percent_interval", "supported",
            "accuracy_ceiling")
    return {s: {k: by_split[s][k] for k in keys} for s in ctx.index.held_out_splits if s in by_split}


def class_pair_noise(analysis: LabelAnalysis) -> list[dict]:
    """Expected wrong labels per (given, probably true) class pair, from each image's probability of a wrong
    label shared among the other classes by the probe's probabilities."""
    counts = analysis.expected_pair_counts
    label_counts = np.bincount(analysis.unit_labels, minlength=len(analysis.classes))
    pairs = []
    for i, given in enumerate(analysis.classes):
        for j, true in enumerate(analysis.classes):
            estimated = float(counts[i, j])
            if i != j and estimated >= 0.5:
                pairs.append({"given": given, "probably": true, "estimated_images": round(estimated, 1),
                              "share_of_given_percent": round(100 * estimated / max(1, label_counts[i]), 2)})
    pairs.sort(key=lambda p: (-p["estimated_images"], p["given"], p["probably"]))
    return pairs[:MAX_SHOWN_PAIRS]
