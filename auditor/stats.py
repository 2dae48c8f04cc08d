"""Shared statistics: pure functions on arrays, used by several checks (none imports another check's helpers).

Multiple testing (Holm, Bonferroni), permutation tests with Besag–Clifford early stopping (scikit-learn's
permutation_test_score underneath: any estimator, e.g. `shortcuts`' tree), two-sample tests on embeddings (a ridge
domain classifier's ROC-AUC with every permutation fitted at once, and an MMD test), robust z-scores, and
bootstrap intervals.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

# The domain classifier (PCA → ridge classifier) and its permutation test; logistic regression for the per-image
# probabilities (`want_scores`).
PCA_COMPONENTS = 32  # at most; also at most a fifth of the images, so small tests are not overfit
RIDGE_ALPHA = 1.0  # L2 strength of the domain test's ridge classifier, on whitened PCA components
LOGREG_C = 0.5  # inverse L2 strength of the logistic regression behind the per-image probabilities
CV_FOLDS = 5
MIN_CLASSIFIER_PERMUTATIONS = 999  # fitted together, they are cheap: never fewer, so p is resolved finely
PERMUTATION_BLOCK = 256  # permuted label columns fitted together (bounds the target matrix: rows × 257 floats)
STOP_AFTER_EXCEEDANCES = 10  # Besag–Clifford: stop permuting once this many permuted scores beat the observed one


def holm(p_values: list[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (family-wise error control), in the input order."""
    p = np.asarray(p_values, dtype=float)
    m = p.size
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(np.argsort(p, kind="stable")):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def bonferroni_min(*p_values: float | None) -> float | None:
    """One p-value for 'any of these tests is significant': m × the smallest, at most 1."""
    present = [p for p in p_values if p is not None]
    return min(1.0, len(present) * min(present)) if present else None


def permutations_for(alpha: float, tests: int, cap: int) -> int:
    """n with smallest reachable p-value 1/(n+1) ≤ alpha / (4 × tests): after Bonferroni over two tests and a
    correction over `tests`, p < alpha stays reachable with a 2× margin (at least 99, at most `cap`)."""
    needed = math.ceil(4 * tests / alpha) - 1 if alpha > 0 else cap
    return int(min(cap, max(99, needed)))


def rbf_kernel_median(z: np.ndarray) -> tuple[np.ndarray, float]:
    """RBF kernel matrix (float32) with the median-heuristic bandwidth: sigma² = median pairwise squared distance / 2."""
    z = np.asarray(z, dtype=np.float32)
    squared = np.einsum("ij,ij->i", z, z)
    distances = squared[:, None] + squared[None, :] - 2.0 * (z @ z.T)
    np.maximum(distances, 0.0, out=distances)
    upper = distances[np.triu_indices(len(z), k=1)]
    median = float(np.median(upper)) if upper.size else 0.0
    if median <= 0:
        median = float(upper[upper > 0].mean()) if np.any(upper > 0) else 1.0
    distances *= -1.0 / median  # exp(-d² / (2 sigma²)) with 2 sigma² = median d²
    np.exp(distances, out=distances)
    return distances, math.sqrt(median / 2.0)


def mmd_test(x: np.ndarray, y: np.ndarray, n_permutations: int, seed: int, batch: int = 128,
             groups: np.ndarray | None = None) -> dict[str, Any]:
    """Unbiased MMD² between samples x and y (RBF, median heuristic) with a permutation p-value.

    `groups` (one integer per row of x then y, e.g. the class) restricts the permutations to rows of
    the same group, as scikit-learn's permutation_test_score(groups=…) does. Each permutation costs one
    kernel-matrix product with a batch of assignment vectors, so thousands of permutations take well
    under a second at a few hundred images per side.
    """
    m, n = len(x), len(y)
    kernel, bandwidth = rbf_kernel_median(np.vstack([x, y]))
    np.fill_diagonal(kernel, 0.0)
    row_sums = kernel.sum(axis=1, dtype=np.float64)
    total = float(row_sums.sum())

    def statistics(assign: np.ndarray) -> np.ndarray:
        """assign: (m+n, P) 0/1 float32, m ones per column (the x sample) → MMD² per column."""
        within_x = np.einsum("ip,ip->p", assign, kernel @ assign, dtype=np.float64)
        x_to_all = row_sums @ assign
        between = x_to_all - within_x
        within_y = total - 2.0 * x_to_all + within_x
        return within_x / (m * (m - 1)) + within_y / (n * (n - 1)) - 2.0 * between / (m * n)

    observed_assign = np.zeros((m + n, 1), dtype=np.float32)
    observed_assign[:m] = 1.0
    observed = float(statistics(observed_assign)[0])
    # Rows sorted by group, shuffled inside it: in each group, the first (its count of x rows) become x.
    groups = np.zeros(m + n, dtype=int) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    sorted_groups = np.sort(groups)
    group_start = np.searchsorted(sorted_groups, np.arange(groups.max() + 1))
    x_per_group = np.bincount(groups[:m], minlength=groups.max() + 1)
    is_x_in_order = ((np.arange(m + n) - group_start[sorted_groups]) < x_per_group[sorted_groups]).astype(np.float32)
    rng = np.random.default_rng(seed)
    exceed = done = 0
    while done < n_permutations:
        size = min(batch, n_permutations - done)
        order = np.argsort(rng.random((m + n, size)) + groups[:, None], axis=0)
        assign = np.zeros((m + n, size), dtype=np.float32)
        np.put_along_axis(assign, order, np.repeat(is_x_in_order[:, None], size, axis=1), axis=0)
        exceed += int(np.sum(statistics(assign) >= observed - 1e-12))
        done += size
    return {
        "mmd2": round(observed, 6),
        "p_value": float(f"{(exceed + 1) / (done + 1):.4g}"),
        "bandwidth": round(bandwidth, 4),
        "permutations": done,
    }


PARALLEL_ROWS = 2_000  # rows from which a permutation test's refits run on every core


def sequential_permutation_test(estimator, features: np.ndarray, labels: np.ndarray, cv, scoring: str,
                                max_permutations: int, seed: int, stop_after: int = STOP_AFTER_EXCEEDANCES,
                                groups: np.ndarray | None = None) -> tuple[float, float, int]:
    """(observed score, p-value, permutations run) with scikit-learn's permutation_test_score, in chunks.

    Besag–Clifford sequential stopping: once `stop_after` permuted scores reach the observed one the
    p-value is clearly large (p = stop_after / permutations so far) and permuting stops, so an
    unshifted split costs a few dozen refits; a shifted one runs all `max_permutations`.
    """
    import joblib
    import sklearn
    from sklearn.model_selection import permutation_test_score
    from threadpoolctl import threadpool_limits

    from auditor.parallel import thread_count

    done = exceed = 0
    observed = float("nan")
    chunk, chunk_index = 2 * stop_after - 1, 0
    jobs = thread_count() if len(labels) >= PARALLEL_ROWS else 1
    # Thousands of tiny fits: one BLAS thread each is several times faster than threads fighting for the
    # cores, and the inputs were checked once already (finite floats, fixed parameters).
    # From PARALLEL_ROWS rows the refits of a chunk run on every core as threads: liblinear fits without the GIL,
    # and threads share the features (processes would copy them); scikit-learn draws the permutations up front,
    # so the scores are those of one thread (tested). Smaller fits take milliseconds and lose more to the
    # threads' hand-offs than they gain (measured, 200 permutations: 4 000 rows 3.6 → 2.6 s on two threads;
    # 1 100 rows 1.93 → 2.02 s, 330 rows 0.52 → 0.68 s).
    with threadpool_limits(limits=1, user_api="blas"), joblib.parallel_backend("threading"), \
            sklearn.config_context(assume_finite=True, skip_parameter_validation=True), warnings.catch_warnings():
        # `groups` is meant for the permutations only: the folds stay stratified on the labels.
        warnings.filterwarnings("ignore", message="The groups parameter is ignored by")
        while done < max_permutations:
            size = min(chunk, max_permutations - done)
            observed, permuted, _ = permutation_test_score(
                estimator, features, labels, groups=groups, cv=cv, scoring=lean_scorer(scoring),
                n_permutations=size, random_state=seed + 7919 * chunk_index, n_jobs=jobs,
            )
            for score in permuted:
                done += 1
                exceed += int(score >= observed)
                if exceed >= stop_after:
                    return float(observed), exceed / done, done
            chunk, chunk_index = next_chunk(done, exceed, stop_after), chunk_index + 1
    return float(observed), (exceed + 1) / (done + 1), done


def next_chunk(done: int, exceed: int, stop_after: int) -> int:
    """How many permutations to run next. Each chunk also refits the observed score once, so chunks
    should not be tiny; but when the exceedances so far say the stopping rule is near (p clearly large),
    run about what it still needs (with a margin) instead of tripling, which wasted most of a 57-chunk
    on unshifted data. Otherwise grow threefold, towards the cap."""
    if exceed:
        rate = exceed / done
        needed = math.ceil(1.5 * (stop_after - exceed) / rate)
        if needed < 2 * done:
            return max(stop_after, needed)
    return 3 * done


def lean_scorer(scoring: str) -> str | Callable:
    """scikit-learn's scorer of that name, without its per-call input validation: the permutation test
    scores thousands of folds of inputs checked once, and that validation (type_of_target, check_array)
    cost more than the fits. Same value as scikit-learn's (tested); other names are passed through (the domain
    test's ROC-AUC is `rank_auc`, in `ridge_permutation_test`)."""
    if scoring == "balanced_accuracy":
        def balanced_accuracy(estimator, features: np.ndarray, labels: np.ndarray) -> float:
            predicted = estimator.predict(features)
            return float(np.mean([np.mean(predicted[labels == c] == c) for c in np.unique(labels)]))
        return balanced_accuracy
    return scoring


def rank_auc(labels: np.ndarray, scores: np.ndarray) -> float | np.ndarray:
    """Binary ROC-AUC as the Mann–Whitney U with average ranks for ties — what roc_auc_score computes; column by
    column where labels (0/1) and scores are 2-D (rows × columns)."""
    from scipy.stats import rankdata

    positive = np.asarray(labels) == 1
    n_positive = positive.sum(axis=0)
    n_negative = len(positive) - n_positive
    ranks = rankdata(scores, axis=0)
    auc = ((ranks * positive).sum(axis=0) - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)
    return float(auc) if np.ndim(auc) == 0 else auc


@dataclass
class DomainTest:
    auc: float | None
    p_value: float | None
    permutations: int
    components: int
    folds: int
    held_out_scores: np.ndarray | None  # out-of-fold P(held-out | image) for the held-out rows
    transform: Callable[[np.ndarray], np.ndarray] | None  # unit embeddings → the classifier's P(held-out)

    def metrics(self, max_permutations: int) -> dict[str, Any]:
        return {
            "auc": None if self.auc is None else round(self.auc, 4),
            "p_value": None if self.p_value is None else float(f"{self.p_value:.4g}"),
            "permutations": self.permutations,
            "max_permutations": max_permutations,
            "cv_folds": self.folds,
            "pca_components": self.components,
            "classifier": "ridge",
            "ridge_alpha": RIDGE_ALPHA,
        }


def domain_classifier_test(reference: np.ndarray, held_out: np.ndarray, max_permutations: int, seed: int,
                           want_scores: bool = False, groups: np.ndarray | None = None) -> DomainTest:
    """Can a linear classifier tell held-out rows from reference rows? CV ROC-AUC + permutation p
    (`max_permutations=0`: the AUC only, p_value None; `groups`: permute only within groups, e.g. classes).

    PCA is fitted on the pooled rows without the split labels, so it may sit outside the folds
    without leaking them; whitening makes one regularisation fit every embedding. The test's classifier is a
    ridge classifier (`ridge_permutation_test`: every permutation's fits in one solve per fold); the per-image
    probabilities (`want_scores`) come from a logistic regression on the same components and folds.
    """
    from sklearn.decomposition import PCA
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    pooled = np.vstack([reference, held_out]).astype(np.float32)
    labels = np.r_[np.zeros(len(reference), dtype=int), np.ones(len(held_out), dtype=int)]
    components = int(max(2, min(PCA_COMPONENTS, len(pooled) // 5, pooled.shape[1])))
    pca = PCA(n_components=components, whiten=True, random_state=seed).fit(pooled)
    features = pca.transform(pooled)
    folds = int(min(CV_FOLDS, len(reference), len(held_out)))
    fold_of = np.empty(len(labels), dtype=int)
    for fold, (_, test) in enumerate(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
                                     .split(features, labels)):
        fold_of[test] = fold
    auc, p_value, permutations = ridge_permutation_test(features, labels, fold_of, max_permutations, seed, groups)
    scores = transform = None
    if want_scores:
        import sklearn
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import PredefinedSplit, cross_val_predict

        with threadpool_limits(limits=1, user_api="blas"), \
                sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            model = LogisticRegression(C=LOGREG_C, solver="liblinear", max_iter=2000)
            scores = cross_val_predict(model, features, labels, cv=PredefinedSplit(fold_of),
                                       method="predict_proba")[len(reference):, 1]
            final = LogisticRegression(C=LOGREG_C, solver="liblinear", max_iter=2000).fit(features, labels)

        def transform(unit: np.ndarray) -> np.ndarray:
            return final.predict_proba(pca.transform(unit))[:, 1]

    return DomainTest(auc, p_value, permutations, components, folds, scores, transform)


def ridge_permutation_test(features: np.ndarray, labels: np.ndarray, fold_of: np.ndarray, max_permutations: int,
                           seed: int, groups: np.ndarray | None = None) -> tuple[float, float | None, int]:
    """(cross-validated ROC-AUC, permutation p-value or None, permutations run) of a ridge classifier telling
    labels 1 from 0 (binary; `fold_of`: each row's test fold, every fold holding both labels).

    A ridge fit is linear in its targets, so one multi-target fit per fold (scikit-learn's `Ridge`) scores the
    observed labels and a block of permuted ones together: all `max_permutations` run (999 on 120 rows: 0.09 s;
    on 4 000 rows: 0.6 s, one thread), where a refit per permutation took ≈ 10 ms and needed early stopping.
    The permutations shuffle labels within each fold (and within each group, where `groups` is given: e.g.
    classes), so every permuted labelling keeps each fold's counts and its AUC is defined: a permutation test
    conditional on the folds, valid because the folds were drawn from the label counts alone. AUC is the mean
    over folds, as `cross_val_score` computes it."""
    import sklearn
    from sklearn.linear_model import Ridge
    from threadpoolctl import threadpool_limits

    labels = np.asarray(labels).astype(np.float64)
    cell = fold_of if groups is None else fold_of * (int(np.max(groups)) + 1) + np.asarray(groups)
    rows_by_cell = np.argsort(cell, kind="stable")
    rng = np.random.default_rng(seed)
    folds = [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in np.unique(fold_of)]

    def fold_mean_auc(targets: np.ndarray) -> np.ndarray:
        """Per column of 0/1 targets (rows × columns): the mean over folds of the held-out fold's AUC."""
        total = np.zeros(targets.shape[1])
        for train, test in folds:
            predicted = Ridge(alpha=RIDGE_ALPHA).fit(features[train], targets[train]).predict(features[test])
            total += rank_auc(targets[test], predicted.reshape(len(test), -1))
        return total / len(folds)

    # Small products: BLAS threads hand off more than they gain; the inputs were checked once (finite floats).
    with threadpool_limits(limits=1, user_api="blas"), \
            sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        observed = float(fold_mean_auc(labels[:, None])[0])
        if max_permutations <= 0:
            return observed, None, 0
        exceed = done = 0
        while done < max_permutations:
            size = min(PERMUTATION_BLOCK, max_permutations - done)
            # Rows sorted by cell, shuffled inside it: each cell's labels land on the same cell's rows.
            order = np.argsort(cell[:, None] + rng.random((len(labels), size)), axis=0)
            permuted = np.empty((len(labels), size))
            permuted[rows_by_cell] = labels[order]
            exceed += int(np.sum(fold_mean_auc(permuted) >= observed - 1e-12))
            done += size
    return observed, (exceed + 1) / (done + 1), done


# Robust scale

MAD_TO_SIGMA = 1.4826  # MAD × this estimates σ for normal data


def robust_z(values: np.ndarray, min_scale: float = 1e-9) -> tuple[np.ndarray, float, float]:
    """(z, median, scale): z = (x − median) / max(1.4826·MAD, min_scale). Robust to the outliers it is
    meant to find (Iglewicz & Hoaglin's modified z-score; |z| > 3.5 is their usual cut-off)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return values.copy(), float("nan"), float("nan")
    median = float(np.median(values))
    scale = max(MAD_TO_SIGMA * float(np.median(np.abs(values - median))), min_scale)
    return (values - median) / scale, median, scale


# Bootstrap intervals


def bootstrap_mean_ci(values: np.ndarray, resamples: int, seed: int, level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval of the mean of 0/1 (or real) values; None when there are none."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 500):  # bounded memory for large held-out sets
        stop = min(resamples, start + 500)
        means[start:stop] = values[rng.integers(0, values.size, (stop - start, values.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    return [float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))]


def inflation_ci(correct: np.ndarray, clean: np.ndarray, resamples: int, seed: int,
                 level: float = 0.95) -> list[float] | None:
    """Bootstrap interval of (accuracy on all) − (accuracy on the clean part), resampling held-out images."""
    correct = np.asarray(correct, dtype=float)
    clean = np.asarray(clean, dtype=bool)
    if correct.size == 0 or not clean.any() or clean.all():
        return None
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, resamples, 500):
        idx = rng.integers(0, correct.size, (min(500, resamples - start), correct.size))
        c, k = correct[idx], clean[idx]
        kept = k.sum(axis=1)
        ok = kept > 0
        diffs.append((c.mean(axis=1) - (c * k).sum(axis=1) / np.maximum(kept, 1))[ok])
    diffs = np.concatenate(diffs)
    tail = (1.0 - level) / 2.0
    return [float(np.quantile(diffs, tail)), float(np.quantile(diffs, 1.0 - tail))]
