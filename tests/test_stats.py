"""auditor.stats: multiple testing, permutation and two-sample tests, robust z, bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from auditor import stats


def test_holm_adjusts_step_down_and_keeps_order():
    adjusted = stats.holm([0.01, 0.04, 0.03])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06])
    assert stats.holm([0.5]).tolist() == [0.5]
    assert stats.holm([0.6, 0.9]).max() == 1.0


def test_bonferroni_min_doubles_the_smaller_p_value():
    assert stats.bonferroni_min(0.004, 0.3) == pytest.approx(0.008)
    assert stats.bonferroni_min(0.8, 0.9) == 1.0
    assert stats.bonferroni_min(None, 0.02) == pytest.approx(0.02)
    assert stats.bonferroni_min(None, None) is None


def test_permutations_make_significance_reachable_after_correction():
    for alpha, tests in [(0.01, 1), (0.05, 1), (0.01, 4), (0.01, 20)]:
        n = stats.permutations_for(alpha, tests, cap=100_000)
        assert 2 / (n + 1) < alpha / tests  # Bonferroni over two tests of 'min p' = 1/(n+1)


def test_rbf_kernel_uses_the_median_heuristic():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 5)).astype(np.float32)
    kernel, sigma = stats.rbf_kernel_median(z)
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    median = np.median(d2[np.triu_indices(30, 1)])
    assert sigma == pytest.approx(np.sqrt(median / 2), rel=1e-4)
    np.testing.assert_allclose(kernel, np.exp(-d2 / median), atol=1e-5)


def test_mmd_detects_a_mean_shift_and_not_a_resample():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(60, 16)), rng.normal(size=(40, 16))
    same = stats.mmd_test(x, y, 499, seed=0)
    moved = stats.mmd_test(x, y + 0.6, 499, seed=0)
    assert same["p_value"] > 0.05
    assert moved["p_value"] == pytest.approx(1 / 500)
    assert moved["mmd2"] > same["mmd2"]


def test_mmd_p_values_are_calibrated_under_the_null():
    """Rejection rate at 0.1 over 200 null draws stays near 0.1 (binomial 99.9 % bound ≈ 0.18)."""
    rng = np.random.default_rng(2)
    rejections = 0
    for draw in range(200):
        pooled = rng.normal(size=(40, 8))
        rejections += stats.mmd_test(pooled[:25], pooled[25:], 99, seed=draw)["p_value"] < 0.1
    assert rejections / 200 <= 0.18


def test_mmd_permutations_within_groups_ignore_a_different_group_mix():
    """Two well-separated classes, mixed 50/50 in x and 20/80 in y, same distribution within each class:
    plain permutations call that a shift, permutations within classes do not."""
    rng = np.random.default_rng(5)
    centre = np.r_[np.full(8, 3.0), np.zeros(8)]
    x = np.vstack([rng.normal(size=(30, 16)), rng.normal(size=(30, 16)) + centre])
    y = np.vstack([rng.normal(size=(8, 16)), rng.normal(size=(32, 16)) + centre])
    groups = np.r_[np.zeros(30), np.ones(30), np.zeros(8), np.ones(32)].astype(int)
    assert stats.mmd_test(x, y, 499, seed=0)["p_value"] < 0.01
    assert stats.mmd_test(x, y, 499, seed=0, groups=groups)["p_value"] > 0.05
    # … and a real shift inside a class is still found
    y_shifted = y + np.r_[np.zeros(8), np.full(8, 0.8)]
    assert stats.mmd_test(x, y_shifted, 499, seed=0, groups=groups)["p_value"] < 0.01


def test_domain_classifier_separates_shifted_gaussians_only():
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(80, 40))
    same = stats.domain_classifier_test(reference, rng.normal(size=(40, 40)), 49, seed=0, want_scores=True)
    moved = stats.domain_classifier_test(reference, rng.normal(size=(40, 40)) + 0.5, 49, seed=0, want_scores=True)
    assert moved.auc > 0.9 and moved.p_value == pytest.approx(1 / 50)
    assert same.p_value > 0.05 and same.auc < 0.65
    assert same.permutations == moved.permutations == 49  # every permutation runs: they are fitted together
    assert moved.held_out_scores.shape == (40,) and moved.held_out_scores.mean() > same.held_out_scores.mean()


def test_ridge_test_scores_what_cross_validation_of_a_ridge_classifier_scores():
    """The observed AUC is scikit-learn's cross_val_score of a ridge classifier on the same folds (mean of fold
    ROC-AUCs), ties in the decision values included."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import PredefinedSplit, cross_val_score

    rng = np.random.default_rng(1)
    features = np.round(rng.normal(size=(90, 6)), 1)
    labels = (features[:, 0] + rng.normal(size=90) > 0.8).astype(int)
    fold_of = np.r_[np.flatnonzero(labels == 0) % 4, np.flatnonzero(labels == 1) % 4][np.argsort(
        np.r_[np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)])]
    auc, p_value, permutations = stats.ridge_permutation_test(features, labels, fold_of, 0, seed=0)
    expected = cross_val_score(RidgeClassifier(alpha=stats.RIDGE_ALPHA), features, labels,
                               cv=PredefinedSplit(fold_of), scoring="roc_auc").mean()
    assert auc == pytest.approx(expected, abs=1e-12) and p_value is None and permutations == 0


def test_ridge_permutations_keep_each_folds_and_groups_counts(monkeypatch):
    """Every permuted labelling shuffles labels within a fold (and group): each fold keeps its counts, so its AUC
    is defined, and with groups a different group mix is not permuted away."""
    rng = np.random.default_rng(2)
    features = rng.normal(size=(60, 4))
    labels = np.r_[np.zeros(40, int), np.ones(20, int)]
    fold_of = np.arange(60) % 3
    groups = (np.arange(60) // 7) % 2
    seen = []
    from sklearn import linear_model

    real_fit = linear_model.Ridge.fit
    monkeypatch.setattr(linear_model.Ridge, "fit", lambda self, x, y: seen.append(y.copy()) or real_fit(self, x, y))
    stats.ridge_permutation_test(features, labels, fold_of, 300, seed=0, groups=groups)
    permuted = [y for y in seen if y.shape[1] > 1]
    assert sum(y.shape[1] for y in permuted) == 300 * 3  # 300 permutations, each fitted in the 3 folds
    train_rows = {f: np.flatnonzero(fold_of != f) for f in range(3)}
    for y, fold in zip(permuted, [0, 1, 2] * len(permuted)):
        rows = train_rows[fold]
        for f in range(3):
            for g in range(2):
                in_cell = (fold_of[rows] == f) & (groups[rows] == g)
                if in_cell.any():  # the cell's count of ones, in every permuted column
                    assert (y[in_cell].sum(axis=0) == labels[rows][in_cell].sum()).all()
    assert any((y[:, 0] != labels[train_rows[0]]).any() for y in permuted[:1])  # it did permute


def test_ridge_permutation_p_values_are_uniform_without_a_shift():
    """No shift: p < 0.1 in about a tenth of draws, never far more (a valid test); a shift: always small."""
    rng = np.random.default_rng(7)
    null = [stats.domain_classifier_test(rng.normal(size=(50, 16)), rng.normal(size=(20, 16)), 99, seed=i).p_value
            for i in range(120)]
    assert 0.03 <= np.mean(np.array(null) < 0.1) <= 0.18
    shifted = [stats.domain_classifier_test(rng.normal(size=(50, 16)), rng.normal(size=(20, 16)) + 0.6, 99,
                                            seed=i).p_value for i in range(5)]
    assert max(shifted) == pytest.approx(0.01)


def test_lean_scorers_give_scikit_learns_values():
    """The permutation tests' scorers skip scikit-learn's input checks, not its arithmetic (ties included)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    rng = np.random.default_rng(0)
    features = np.round(rng.normal(size=(60, 3)), 1)  # rounded: tied decision values
    binary = (features[:, 0] + rng.normal(size=60) > 0).astype(int)
    decision = LogisticRegression().fit(features, binary).decision_function(features)
    assert stats.rank_auc(binary, decision) == pytest.approx(roc_auc_score(binary, decision))
    tied = np.r_[np.zeros(5), np.ones(5)]
    assert stats.rank_auc(tied.astype(int), np.r_[0, 1, 1, 2, 2, 1, 2, 2, 3, 3.0]) == pytest.approx(
        roc_auc_score(tied, np.r_[0, 1, 1, 2, 2, 1, 2, 2, 3, 3.0]))
    # column by column, as the domain test scores its permuted labellings
    columns = np.column_stack([binary, binary[::-1], np.sort(binary)])
    scores = np.column_stack([decision, -decision, decision])
    np.testing.assert_allclose(stats.rank_auc(columns, scores),
                               [roc_auc_score(columns[:, c], scores[:, c]) for c in range(3)])
    three = rng.integers(0, 3, 60)
    model3 = LogisticRegression().fit(features, three)
    assert stats.lean_scorer("balanced_accuracy")(model3, features, three) == pytest.approx(
        balanced_accuracy_score(three, model3.predict(features)))
    assert stats.lean_scorer("accuracy") == "accuracy"


def test_next_chunk_runs_what_the_stopping_rule_still_needs_when_it_is_near():
    # 19 permutations, 9 beat the observed score (p ≈ ½): one more exceedance is due soon, so a short chunk
    assert stats.next_chunk(19, 9, 10) == 10
    # none beat it yet (a shift): grow threefold towards the cap
    assert stats.next_chunk(19, 0, 10) == 57
    # a few did (p ≈ 0.1): the rule is far, keep growing
    assert stats.next_chunk(19, 2, 10) == 57


def test_robust_z_uses_median_and_mad():
    z, median, scale = stats.robust_z(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    assert median == 3.0 and scale == pytest.approx(1.4826)
    assert z[-1] == pytest.approx(97 / 1.4826)
    assert z[2] == 0.0


def test_robust_z_floors_the_scale_of_a_near_constant_quantity():
    z, _median, scale = stats.robust_z(np.array([5.0] * 20 + [5.2]), min_scale=0.1)
    assert scale == 0.1 and z[-1] == pytest.approx(2.0)
    empty, median, _ = stats.robust_z(np.array([]))
    assert empty.size == 0 and np.isnan(median)


@pytest.mark.slow  # seconds: run by `make test`, not the edit-test loop
@pytest.mark.parametrize("groups", [False, True])
def test_permutation_refits_on_threads_give_the_scores_of_one_thread(monkeypatch, groups):
    """The refits of each chunk run on every core; the permutations are drawn up front, so the observed score,
    the p-value and the number of permutations run are exactly those of one thread."""
    from auditor import parallel

    rng = np.random.default_rng(4)
    reference, held_out = rng.normal(size=(80, 12)), rng.normal(size=(70, 12)) + 0.25
    monkeypatch.setattr(stats, "PARALLEL_ROWS", 100)  # these 150 rows on threads too
    classes = rng.integers(0, 3, 150) if groups else None

    def run():
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold

        features = np.vstack([reference, held_out])
        labels = np.r_[np.zeros(80, int), np.ones(70, int)]
        return stats.sequential_permutation_test(LogisticRegression(solver="liblinear"), features, labels,
                                                 StratifiedKFold(5, shuffle=True, random_state=3), "roc_auc", 99,
                                                 seed=3, groups=classes)

    monkeypatch.setattr(parallel, "THREADS", 1)
    one = run()
    import sklearn.model_selection

    jobs = []
    real = sklearn.model_selection.permutation_test_score
    monkeypatch.setattr(sklearn.model_selection, "permutation_test_score",
                        lambda *args, **kwargs: jobs.append(kwargs["n_jobs"]) or real(*args, **kwargs))
    monkeypatch.setattr(parallel, "THREADS", 3)
    assert run() == one
    assert one[2] > 10 and set(jobs) == {3}  # it did permute, on three threads
