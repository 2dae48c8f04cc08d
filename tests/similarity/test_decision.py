"""The per-dataset rule and its estimates, on synthetic evidence whose truth is known (fake pairs only:
this tests the search for thresholds and the arithmetic of the estimates, not the evidence itself)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from auditor.similarity import decision
from auditor.similarity.decision import (Calibrator, CopySample, Rule, choose_rule, clustered_jeffreys,
                                         hash_reliability, jeffreys)
from auditor.similarity.evidence import Pairs


def make_pairs(query, target, scaled, corr, hash_match=None) -> Pairs:
    query, target = np.asarray(query, dtype=np.int64), np.asarray(target, dtype=np.int64)
    n = len(query)
    return Pairs(query=query, target=target, rank=np.zeros(n, np.int64), cosine=np.asarray(scaled, np.float32),
                 scaled=np.asarray(scaled, np.float32), correlation=np.asarray(corr, np.float32),
                 variant=np.zeros(n, np.int64),
                 hash_match=np.zeros(n, bool) if hash_match is None else np.asarray(hash_match, bool),
                 phash_distance=np.full(n, 99), dhash_distance=np.full(n, 99))


def world(seed=0, n=400, dup_pairs=40, copies=300, useless_pixels=False, dup_scaled=(0.55, 0.95),
          dup_corr=(0.88, 1.0), copy_scaled=(0.5, 0.95), copy_corr=(0.87, 1.0)):
    """n images; the first 2·dup_pairs form duplicate pairs (2i, 2i+1). Duplicates: scaled 0.55–0.95,
    correlation 0.88–1.0 (by default); other candidate pairs: scaled −0.1–0.5, correlation 0.2–0.86; each copy
    with its source: scaled 0.5–0.95, correlation 0.87–1.0 (by default)."""
    rng = np.random.default_rng(seed)
    q, t, s, c = [], [], [], []
    for i in range(dup_pairs):
        q.append(2 * i); t.append(2 * i + 1)
        s.append(rng.uniform(*dup_scaled)); c.append(rng.uniform(*dup_corr))
    for i in range(n):
        for j in rng.choice(n, 3, replace=False):
            if j != i and not (i < 2 * dup_pairs and j == (i ^ 1)):
                q.append(min(i, j)); t.append(max(i, j))
                s.append(rng.uniform(-0.1, 0.5)); c.append(rng.uniform(0.2, 0.86))
    if useless_pixels:
        c = list(rng.uniform(0.2, 1.0, len(c)))
    dataset = make_pairs(q, t, s, c)
    source = rng.choice(n, copies)
    cq, ct, cs, cc = [], [], [], []
    for k, src in enumerate(source):
        cq.append(k); ct.append(src); cs.append(rng.uniform(*copy_scaled)); cc.append(rng.uniform(*copy_corr))
        for j in rng.choice(n, 3, replace=False):
            if j != src:
                cq.append(k); ct.append(j); cs.append(rng.uniform(-0.1, 0.5)); cc.append(rng.uniform(0.2, 0.86))
    if useless_pixels:
        cc = list(rng.uniform(0.2, 1.0, len(cc)))
    kinds = ["same_shot" if k % 2 else "rotate" for k in range(copies)]
    return dataset, n, CopySample(source=source, kind=kinds, pairs=make_pairs(cq, ct, cs, cc))


def test_chosen_rule_separates_and_its_estimates_match_the_truth():
    dataset, n, copies = world()
    calibrator = Calibrator(dataset, n, copies)
    choice = choose_rule(calibrator, has_embeddings=True)
    rule = choice.rule  # either tier separates here: correlation 0.86 | 0.87, scaled 0.5 | 0.55
    assert (rule.min_scaled is not None and 0.5 < rule.min_scaled <= 0.55) or (0.85 < rule.min_correlation <= 0.87)
    flagged = set(dataset.query[rule.passes(dataset)]) | set(dataset.target[rule.passes(dataset)])
    assert flagged == set(range(80))  # every duplicate, nothing else
    est = choice.near
    assert est.recall == pytest.approx(1.0, abs=0.02)
    assert est.precision == pytest.approx(1.0, abs=0.05)
    assert est.duplicate_share == pytest.approx(80 / n, abs=0.02)
    low, high = est.recall_interval
    assert low <= est.recall <= high
    assert set(choice.per_kind_recall) == {"same_shot", "rotate"}


def test_a_useless_tier_is_switched_off_and_the_report_says_so():
    dataset, n, copies = world(useless_pixels=True)
    choice = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True)
    assert choice.rule.min_correlation is None
    assert choice.tiers["pixels"]["used"] is False and "switched off" in choice.tiers["pixels"]["note"]
    assert choice.tiers["embedding"]["used"] is True


def test_no_clamp_a_low_threshold_is_chosen_when_the_data_support_it():
    dataset, n, copies = world(useless_pixels=True)
    # Shift every scaled cosine down by 0.4: the separating threshold moves with it.
    for pairs in (dataset, copies.pairs):
        pairs.scaled = pairs.scaled - 0.4
    choice = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True)
    assert choice.rule.min_scaled is not None and 0.1 < choice.rule.min_scaled <= 0.15


def test_matches_with_the_sources_own_duplicates_are_not_false_matches():
    dataset, n, copies = world(seed=1)
    rule = Rule(0.52, None)
    before = Calibrator(dataset, n, copies).estimate(rule)
    # Each copy of a source 2i now also passes with 2i+1, the source's real duplicate (aligned correlation 0.97).
    extra_q, extra_t = [], []
    for k, src in enumerate(copies.source):
        if src < 80:
            extra_q.append(k); extra_t.append(src ^ 1)
    dataset.correlation[:40] = 0.97
    more = make_pairs(np.r_[copies.pairs.query, extra_q], np.r_[copies.pairs.target, extra_t],
                      np.r_[copies.pairs.scaled, np.full(len(extra_q), 0.9)],
                      np.r_[copies.pairs.correlation, np.full(len(extra_q), 0.97)])
    after = Calibrator(dataset, n, CopySample(copies.source, copies.kind, more)).estimate(rule)
    assert after.false_match_rate == pytest.approx(before.false_match_rate)


def world_with_copies_finding_their_sources_duplicates(seed: int, dup_scaled=(0.9, 0.95), dup_corr=(0.88, 0.92)):
    """world() with 10 duplicate pairs that align below EXCUSE_CORRELATION (0.88–0.92 by default, like same-shot
    leaks of photos) and whose embeddings agree (scaled 0.90–0.95), and every copy of a duplicate's source also
    matching that duplicate (a copy of one image of a pair is a duplicate of both)."""
    dataset, n, copies = world(seed=seed, dup_pairs=10)
    rng = np.random.default_rng(seed + 100)
    dataset.scaled[:10] = rng.uniform(*dup_scaled, 10)
    dataset.correlation[:10] = rng.uniform(*dup_corr, 10)
    extra_q = [k for k, src in enumerate(copies.source) if src < 20]
    extra_t = [copies.source[k] ^ 1 for k in extra_q]
    more = make_pairs(np.r_[copies.pairs.query, extra_q], np.r_[copies.pairs.target, extra_t],
                      np.r_[copies.pairs.scaled, rng.uniform(0.6, 0.9, len(extra_q))],
                      np.r_[copies.pairs.correlation, rng.uniform(0.85, 0.92, len(extra_q))])
    return dataset, n, CopySample(copies.source, copies.kind, more), len(extra_q)


def test_matches_with_a_partner_close_to_the_source_on_both_tiers_are_excused_from_the_start():
    """Same-shot duplicates align below EXCUSE_CORRELATION; close on both tiers at once, they are still the
    source's duplicates, and a copy matching them is no false match, whatever the rule."""
    dataset, n, copies, extra = world_with_copies_finding_their_sources_duplicates(seed=4)
    both = Calibrator(dataset, n, copies)
    dataset, n, copies, _ = world_with_copies_finding_their_sources_duplicates(seed=4, dup_scaled=(0.1, 0.3))
    one_tier = Calibrator(dataset, n, copies)  # the same matches, the source's partner close on the pixel tier only
    assert int(both.excused.sum()) - int(one_tier.excused.sum()) == extra > 0
    dataset, n, copies, _ = world_with_copies_finding_their_sources_duplicates(seed=4, dup_corr=(0.7, 0.84))
    assert int(Calibrator(dataset, n, copies).excused.sum()) == int(one_tier.excused.sum())  # embedding only


def test_a_partner_aligning_only_rotated_or_with_embeddings_apart_is_not_near_identical():
    """Low-detail images (one edge between two flat tones) align at 0.95–0.99 with unrelated ones once turned:
    a copy matching such a partner of its source counts as a false match, so the rule cannot look precise by it."""
    pairs = make_pairs([0, 0, 0, 0, 1], [1, 2, 3, 4, 2], scaled=[0.3, 0.3, -0.4, 0.0, 0.6], corr=[0.97] * 4 + [0.93])
    pairs.variant[:] = [0, 1, 4, 4, 0]  # as is, rotated 90°, mirrored, mirrored, as is
    assert decision.near_identical(pairs, np.arange(5)).tolist() == [True, False, False, True, False]
    # In the calibrator: every copy of a source whose near-partner is rotated matches that partner.
    dataset, n, copies, extra = world_with_copies_finding_their_sources_duplicates(seed=4, dup_scaled=(0.1, 0.3),
                                                                                   dup_corr=(0.96, 0.99))
    as_is = Calibrator(dataset, n, copies)
    dataset.variant[:10] = 1  # the same partners, aligned only rotated
    turned = Calibrator(dataset, n, copies)
    assert int(as_is.excused.sum()) - int(turned.excused.sum()) == extra > 0
    dataset.variant[:10] = 0
    dataset.scaled[:10] = -0.2  # as is, but the embeddings call them different
    assert int(Calibrator(dataset, n, copies).excused.sum()) == int(turned.excused.sum())


def test_a_partner_aligning_rotated_almost_perfectly_with_matching_hashes_is_near_identical():
    """A rotated copy of a photo aligns with it at 1.000 and their perceptual hashes match under the rotation: the
    calibration copies of the photo matching it are no false matches (counted as such, in 25-image sets they made
    the pixel tier look noisy and the rule left out the rotated copies). The rotated look-alikes of low-detail tiles
    align at 0.976–0.988 with scaled cosines at or below 0: still not near-identical."""
    pairs = make_pairs([0] * 6, [1, 2, 3, 4, 5, 6], scaled=[0.3, 0.3, 0.3, -0.4, 0.3, 0.0],
                       corr=[0.995, 0.995, 0.985, 0.995, 1.0, 0.988], hash_match=[True, False, True, True, True, True])
    pairs.variant[:] = [2, 2, 1, 3, 6, 1]  # rotated (180°, 180°, 90°, 270°, a mirrored rotation, 90°)
    assert decision.near_identical(pairs, np.arange(6)).tolist() == [True, False, False, False, True, False]
    assert decision.EXCUSE_ROTATED_CORRELATION >= 0.99
    # In the calibrator: the source's partners aligned rotated at ≥ 0.995 with matching hashes excuse the copies'
    # matches as the same partners aligned as is do; without the hashes' agreement they do not.
    dataset, n, copies, extra = world_with_copies_finding_their_sources_duplicates(seed=4, dup_scaled=(0.1, 0.3),
                                                                                   dup_corr=(0.995, 1.0))
    as_is = int(Calibrator(dataset, n, copies).excused.sum())
    dataset.variant[:10] = 2
    dataset.hash_match[:10] = True
    assert int(Calibrator(dataset, n, copies).excused.sum()) == as_is
    dataset.hash_match[:10] = False
    assert as_is - int(Calibrator(dataset, n, copies).excused.sum()) == extra > 0


def test_the_same_picture_by_raw_evidence_is_near_identical_whatever_the_scaled_cosine():
    """Where a picture is stored many times its scaled cosines collapse (its 10th neighbour is a copy), about half
    below 0: a pair that is the same picture by its raw evidence (evidence.same_picture) is still near-identical;
    one aligned as well without that, or rotated, is not."""
    pairs = make_pairs([0, 0, 0], [1, 2, 3], scaled=[-0.4, -0.4, -0.4], corr=[0.97, 0.97, 0.97],
                       hash_match=[True, True, True])
    pairs.variant[:] = [0, 0, 1]  # as is, as is, rotated 90°
    assert decision.near_identical(pairs, np.arange(3)).tolist() == [False, False, False]  # not measured
    pairs.same_picture = np.array([True, False, False])
    assert decision.near_identical(pairs, np.arange(3)).tolist() == [True, False, False]


def test_a_copy_matching_a_near_identical_partner_of_its_source_is_found_as_with_the_source():
    """Copies of a picture stored many times often have only its other copies as candidates, not the source: a
    match with a near-identical partner of the source finds the copy (20 clips × 30 frames: 556 of 1 500 copies had
    their source as a candidate, and no rule looked as if it found half the copies)."""
    dataset = make_pairs([0, 2], [1, 3], scaled=[-0.2, -0.2], corr=[0.99, 0.80], hash_match=[True, True])
    dataset.same_picture = np.array([True, False])
    copy_pairs = make_pairs([0, 1], [1, 3], scaled=[0.0, 0.0], corr=[0.9, 0.9])  # copy 0 of 0 → 1; copy 1 of 2 → 3
    calibrator = Calibrator(dataset, 4, CopySample(np.array([0, 2]), ["resize", "resize"], copy_pairs))
    assert calibrator.pos_rows.query.tolist() == [0]  # node 1 is near-identical to source 0; node 3 is not to 2
    assert calibrator.null.query.tolist() == [1]
    judged = calibrator.evaluate(Rule(min_scaled=None, min_correlation=0.85))
    assert judged["pos_pass"].tolist() == [True, False] and judged["null_hits"].tolist() == [False, True]


def test_a_copy_whose_source_is_a_candidate_is_judged_on_its_source_only():
    """Only a copy crowded out of its source's company is found through a near-identical partner: where the source is
    a candidate, a rule that misses it does not find the copy through the partner."""
    dataset = make_pairs([0], [1], scaled=[-0.2], corr=[0.99], hash_match=[True])
    dataset.same_picture = np.array([True])
    copy_pairs = make_pairs([0, 0], [0, 1], scaled=[0.0, 0.0], corr=[0.80, 0.90])  # copy 0 of 0: its source, a partner
    calibrator = Calibrator(dataset, 2, CopySample(np.array([0]), ["resize"], copy_pairs))
    assert calibrator.pos_rows.target.tolist() == [0] and calibrator.excused.tolist() == [True]
    assert not calibrator.evaluate(Rule(min_scaled=None, min_correlation=0.85))["pos_pass"].any()


def test_precision_never_counts_more_false_flags_than_images_without_a_duplicate():
    """Precision is π·R/F, but a flag is false only on one of the 1 − π images without a duplicate: where every
    image has one and every image is flagged, the precision is 1 whatever the copies' recall."""
    assert decision._precision(1.0, 0.56, 1.0) == 1.0
    assert decision._precision(0.9, 0.5, 1.0) == pytest.approx(0.9)  # at least 1 − 0.1 / 1
    assert decision._precision(0.1, 0.9, 0.1) == pytest.approx(0.9)  # F < 1 − π: π·R/F as before
    assert decision._precision(0.3, 0.2, 0.12) == pytest.approx(0.5)


def test_matches_with_a_duplicate_the_decision_finds_are_excused_whatever_the_rule_judged():
    # The duplicates align poorly (0.70–0.84): only the first choice's acceptance can excuse their matches.
    dataset, n, copies, extra = world_with_copies_finding_their_sources_duplicates(seed=4, dup_corr=(0.7, 0.84))
    calibrator = Calibrator(dataset, n, copies)
    assert calibrator.excusing(np.zeros(len(dataset), bool)) is calibrator  # nothing new excused: same object
    widened = calibrator.excusing(Rule(0.9, None).passes(dataset))  # the 10 duplicate pairs
    assert int(widened.excused.sum() - calibrator.excused.sum()) == extra
    for rule in (Rule(0.9, None), Rule(0.55, 0.85), Rule(None, 0.8)):  # one fixed set, however loose the rule
        assert widened.evaluate(rule)["null_hits"].sum() <= calibrator.evaluate(rule)["null_hits"].sum()
        assert (widened.excused == calibrator.excusing(Rule(0.9, None).passes(dataset)).excused).all()


def test_copies_finding_their_sources_duplicate_do_not_make_the_duplicate_share_vanish():
    """Before, each such match counted as a false match at every rule accepting it, the duplicate share was read
    as 0 and every rule's precision estimated at 0.00, while the rule found 16 of the 20 images with a duplicate."""
    dataset, n, copies, _extra = world_with_copies_finding_their_sources_duplicates(seed=4)
    choice = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True)
    assert choice.pi[0] == pytest.approx(20 / n, abs=0.015)
    assert choice.near.precision > 0.9
    accepted = choice.rule.passes(dataset)
    assert set(dataset.query[accepted]) | set(dataset.target[accepted]) == set(range(20))


def test_flagging_everything_does_not_look_precise():
    """With the duplicate share measured at the best-separating rule, a rule flagging every image is not
    mistaken for one that finds duplicates everywhere."""
    dataset, n, copies = world()
    calibrator = Calibrator(dataset, n, copies)
    pi = choose_rule(calibrator, has_embeddings=True).pi
    assert pi[0] == pytest.approx(80 / n, abs=0.03) and pi[1] <= pi[0] <= pi[2]
    loose = calibrator.estimate(Rule(-1.0, None), pi)
    assert loose.flagged == n
    assert loose.precision < 0.3


def test_hash_tier_counts_alone_only_when_other_tiers_confirm_it():
    pairs = make_pairs([0, 1, 2, 3], [1, 2, 3, 4], [0.9, 0.1, 0.1, 0.1], [0.99, 0.3, 0.3, 0.3], [True] * 4)
    verdict = hash_reliability(pairs, Rule(0.5, 0.9).passes(pairs))
    assert verdict["reliable"] is False and verdict["confirmed"] == 1 and "collide" in verdict["note"]
    assert hash_reliability(pairs, np.ones(4, bool))["reliable"] is True


def test_without_copies_defaults_are_used_and_quality_is_not_claimed():
    dataset, n, copies = world()
    empty = CopySample(source=np.zeros(0, np.int64), kind=[], pairs=make_pairs([], [], [], []))
    choice = choose_rule(Calibrator(dataset, n, empty), has_embeddings=True)
    assert "no calibration copies" in choice.reason
    assert choice.near.as_dict()["recall"] is None and choice.near.precision is None


def test_jeffreys_interval():
    low, high = jeffreys(5, 100)
    assert 0.015 < low < 0.05 < high < 0.11
    assert jeffreys(0, 50)[0] == 0.0 and jeffreys(50, 50)[1] == 1.0


def test_copies_of_one_source_failing_together_widen_the_interval_to_one_draw_per_source():
    source = np.repeat(np.arange(100), 5)
    passed = ~np.isin(source, np.arange(8))  # 8 hard sources: all 5 of their copies missed
    low, high, n_eff = clustered_jeffreys(passed, source)
    independent = jeffreys(460, 500)
    assert low < independent[0] and high > independent[1]  # the old interval, as if 500 draws, was too narrow
    assert n_eff == pytest.approx(100)  # 100 sources that agree within: worth 100 draws, not 500
    assert (low, high) == pytest.approx(jeffreys(92, 100))


def test_copies_failing_independently_keep_the_plain_interval():
    source = np.repeat(np.arange(100), 5)
    passed = np.ones(500, bool)
    passed[np.arange(40) * 5] = False  # 40 sources with one miss each: no more alike than chance
    low, high, n_eff = clustered_jeffreys(passed, source)
    assert n_eff == pytest.approx(500) and (low, high) == pytest.approx(jeffreys(460, 500))  # never narrower
    # One copy per source: nothing is clustered.
    assert clustered_jeffreys(passed, np.arange(500))[:2] == pytest.approx(jeffreys(460, 500))


def test_clustered_interval_lies_between_the_plain_and_the_one_draw_per_source_interval():
    rng = np.random.default_rng(2)
    for _ in range(200):
        sizes = rng.integers(1, 8, rng.integers(2, 60))
        source = np.repeat(np.arange(len(sizes)), sizes)
        passed = rng.random(len(source)) < np.repeat(rng.beta(rng.uniform(0.2, 5), rng.uniform(0.2, 5), len(sizes)), sizes)
        total, share = len(source), passed.mean()
        low, high, n_eff = clustered_jeffreys(passed, source)
        fewest = total ** 2 / (sizes ** 2).sum()  # every source's copies agreeing
        assert fewest - 1e-9 <= n_eff <= total + 1e-9
        plain = jeffreys(int(passed.sum()), total)
        widest = jeffreys(share * fewest, fewest)
        assert widest[0] - 1e-9 <= low <= plain[0] + 1e-9 and plain[1] - 1e-9 <= high <= widest[1] + 1e-9
        assert low <= share <= high


def test_where_every_copy_passes_the_interval_is_the_per_source_one():
    source = np.repeat(np.arange(100), 5)
    low, high, n_eff = clustered_jeffreys(np.ones(500, bool), source)
    assert n_eff == pytest.approx(100) and (low, high) == pytest.approx(jeffreys(100, 100))
    assert clustered_jeffreys(np.zeros(500, bool), source)[1] == pytest.approx(jeffreys(0, 100)[1])
    assert clustered_jeffreys(np.zeros(0, bool), np.zeros(0, int)) == (0.0, 1.0, 0.0)


def test_clustered_interval_covers_where_sources_differ_in_difficulty():
    """Sources of varied difficulty (per-source recall ~ Beta(2, 0.4), mean 0.83), 100 sources × 5 copies: the
    plain interval covers the true recall far less often than 95 %, the clustered one about as often."""
    rng = np.random.default_rng(0)
    source = np.repeat(np.arange(100), 5)
    truth = 2 / 2.4
    plain = clustered = 0
    trials = 300
    for _ in range(trials):
        passed = rng.random(500) < np.repeat(rng.beta(2, 0.4, 100), 5)
        low, high = jeffreys(int(passed.sum()), 500)
        plain += low <= truth <= high
        low, high, _n = clustered_jeffreys(passed, source)
        clustered += low <= truth <= high
    assert plain / trials < 0.85
    assert clustered / trials >= 0.9


def test_calibrator_intervals_count_each_source_once_where_its_copies_agree(monkeypatch):
    dataset, n, _copies = world()
    # 60 sources × 5 copies; every copy of 6 sources is unrecognisable (its source scores like any other image).
    rng = np.random.default_rng(1)
    source = np.repeat(rng.choice(n, 60, replace=False), 5)
    hard = np.isin(source, source[::5][:6])
    cq, ct, cs = [], [], []
    for k, src in enumerate(source):
        cq.append(k); ct.append(src); cs.append(0.1 if hard[k] else rng.uniform(0.8, 0.95))
        for j in rng.choice(np.setdiff1d(np.arange(n), [src]), 3, replace=False):
            cq.append(k); ct.append(j); cs.append(rng.uniform(-0.1, 0.5))
    copies = CopySample(source=source, kind=["same_shot"] * len(source),
                        pairs=make_pairs(cq, ct, cs, rng.uniform(0.2, 0.8, len(cq))))
    calibrator = Calibrator(dataset, n, copies)
    rule = Rule(0.52, None)
    est = calibrator.estimate(rule)
    assert est.recall == pytest.approx(0.9)
    assert est.recall_interval == pytest.approx(jeffreys(54, 60))  # one draw per source, not 300
    assert est.recall_interval[0] < jeffreys(270, 300)[0]
    assert est.effective_copies == pytest.approx(60)
    assert est.as_dict()["recall_effective_copies"] == 60.0
    assert calibrator.per_kind_interval(rule)["same_shot"] == [round(v, 3) for v in jeffreys(54, 60)]
    rules = [Rule(round(float(s), 2), None) for s in np.arange(0.5, 0.96, 0.02)]
    pi, _, _ = calibrator.duplicate_share(rules)
    clustered = calibrator.estimate(rule, pi)
    monkeypatch.setattr(decision, "clustered_jeffreys",
                        lambda passed, cluster, level=0.95: clustered_jeffreys(passed, np.arange(len(passed)), level))
    plain_calibrator = Calibrator(dataset, n, copies)
    plain_pi, _, _ = plain_calibrator.duplicate_share(rules)
    plain = plain_calibrator.estimate(rule, plain_pi)
    assert pi[0] == plain_pi[0] and clustered.precision == plain.precision and clustered.recall == plain.recall
    assert pi[1] <= plain_pi[1] and pi[2] >= plain_pi[2] and pi[2] - pi[1] > plain_pi[2] - plain_pi[1]
    assert clustered.precision_interval[0] <= plain.precision_interval[0]
    assert clustered.precision_interval[1] >= plain.precision_interval[1]


def test_a_dataset_without_duplicates_gets_a_quiet_rule_not_a_loose_one():
    dataset, n, copies = world(dup_pairs=0)
    choice = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True)
    assert "almost no duplicates" in choice.reason
    assert choice.near.flagged == 0  # the other-image evidence stays below both tiers' thresholds
    assert choice.near.recall >= 0.8


def noise_world(seed=0, n=300, copies=200):
    """Every image a look-alike of every other on both tiers (random noise to an ImageNet backbone): candidate
    pairs, copies with their source and copies with three other images all at scaled 0.4–0.99, correlation
    0.2–1.0, so at any threshold a copy matches another image more often than its source (none of those is a
    candidate partner of the source, which would excuse the match)."""
    rng = np.random.default_rng(seed)
    q = np.repeat(np.arange(n), 3)
    t = (q + rng.integers(10, n - 10, len(q))) % n  # no image paired with the copies' other images below
    dataset = make_pairs(np.minimum(q, t), np.maximum(q, t), rng.uniform(0.4, 0.99, len(q)),
                         rng.uniform(0.2, 1.0, len(q)))
    source = rng.choice(n, copies)
    cq = np.repeat(np.arange(copies), 4)
    ct = np.stack([source, (source + 1) % n, (source + 2) % n, (source + 3) % n], axis=1).ravel()
    pairs = make_pairs(cq, ct, rng.uniform(0.4, 0.99, len(cq)), rng.uniform(0.2, 1.0, len(cq)))
    return dataset, n, CopySample(source=source, kind=["same_shot"] * copies, pairs=pairs)


def test_a_rule_tells_copies_apart_only_where_it_finds_more_with_their_source_than_with_other_images():
    dataset, n, copies = world()
    calibrator = Calibrator(dataset, n, copies)
    assert calibrator.tells_apart(Rule(0.52, None))  # finds most copies, none with another image
    assert not calibrator.tells_apart(Rule(-1.0, None))  # every copy found, and every copy matches another image
    assert not Calibrator(*noise_world()).tells_apart(Rule(0.7, None))


def test_where_no_rule_tells_copies_from_look_alikes_nothing_is_flagged_and_the_reason_says_why():
    dataset, n, copies = noise_world()
    choice = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True)
    assert choice.near.flagged == 0 and not choice.rule.passes(dataset).any()
    assert choice.reason == decision.NO_RULE_TELLS_APART
    assert choice.near.precision is None


def test_a_users_threshold_is_kept_where_it_does_not_tell_copies_apart():
    dataset, n, copies = noise_world()
    choice = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True, fixed_cosine=0.7)
    assert choice.rule.min_cosine == 0.7 and choice.near.flagged > 0


@pytest.mark.parametrize("seed", [0, 3])
def test_among_rules_with_near_equal_f1_the_one_finding_most_copies_net_of_false_matches_is_chosen(seed):
    from auditor.similarity.decision import F1_TIE, _f1

    dataset, n, copies = world(seed=seed)
    # Copies a little harder than the dataset's duplicates: the estimated F1 is flat near its top.
    rng = np.random.default_rng(seed)
    own = copies.pairs.target == copies.source[copies.pairs.query]
    copies.pairs.correlation[own] = rng.uniform(0.80, 1.0, own.sum()).astype(np.float32)
    copies.pairs.scaled[own] = rng.uniform(0.3, 0.95, own.sum()).astype(np.float32)
    calibrator = Calibrator(dataset, n, copies)
    choice = choose_rule(calibrator, has_embeddings=True)
    table = [(rule, calibrator.estimate(rule, choice.pi, intervals=False)) for rule in choice.rules]
    _top_rule, top = max(table, key=lambda item: (round(_f1(item[1]), 4), item[1].recall))
    assert _f1(choice.near) >= _f1(top) - F1_TIE
    tied = [est for _rule, est in table if _f1(est) >= _f1(top) - F1_TIE]
    assert len({round(est.recall, 6) for est in tied}) > 1  # a flat top: rules of different recall within the tie
    # The plateau's best net of false matches (before any both-tiers clause, which only adds); here, where the copies
    # show no false match, that is its sensitive end, not its strict one.
    chosen = calibrator.estimate(dataclasses.replace(choice.rule, joint_scaled=None, joint_correlation=None),
                                 choice.pi, intervals=False)
    net = max(round(est.recall - est.false_match_rate, 4) for est in tied)
    assert round(chosen.recall - chosen.false_match_rate, 4) == net
    assert chosen.recall == max(est.recall for est in tied)
    assert round(choice.near.recall, 6) >= round(chosen.recall, 6)


@pytest.mark.parametrize("seed", [0, 4])
def test_a_rule_finding_one_copy_more_for_many_false_matches_is_not_preferred(seed, monkeypatch):
    """A 60-image set, two thirds of it duplicates (like a small set of photos and their copies): loosening the
    embedding tier from 0.5 to 0.45 finds one more of the 125 copies while eight copies start matching another
    image. The estimated F1 hardly notices (nearly every flagged
    image is a duplicate either way), so within F1_TIE the rule is chosen by the copies found net of those matched
    falsely, not by the copies found: the most sensitive rule flagged unrelated photos of the 25-image sets."""
    from auditor.similarity.decision import F1_TIE, _f1

    dataset, n, copies = world(seed=seed, n=60, dup_pairs=20, copies=125, useless_pixels=True, copy_scaled=(0.6, 0.95))
    duplicate = (dataset.target == dataset.query + 1) & (dataset.query % 2 == 0) & (dataset.query < 40)
    dataset.scaled[~duplicate] = np.minimum(dataset.scaled[~duplicate], 0.3)
    cp = copies.pairs
    own = np.flatnonzero(cp.target == copies.source[cp.query])
    other = np.setdiff1d(np.arange(len(cp.scaled)), own)
    cp.scaled[other] = np.minimum(cp.scaled[other], 0.3)
    cp.scaled[own[0]] = 0.45  # found only at 0.45 …
    cp.scaled[own[1:4]] = 0.5
    falsely = np.arange(4, 12)  # … where these copies match another image
    copies = CopySample(copies.source, copies.kind, make_pairs(
        np.r_[cp.query, falsely], np.r_[cp.target, (copies.source[falsely] + 2) % n],
        np.r_[cp.scaled, np.full(len(falsely), 0.45)], np.r_[cp.correlation, np.full(len(falsely), 0.3)]))
    monkeypatch.setattr(decision, "scaled_grid", lambda _calibrator: np.array([0.3, 0.45, 0.5, 0.6, 0.7]))
    calibrator = Calibrator(dataset, n, copies)
    choice = choose_rule(calibrator, has_embeddings=True)
    loose = calibrator.estimate(Rule(0.45, None), choice.pi, intervals=False)
    assert loose.recall > choice.near.recall and _f1(loose) >= choice.f1 - F1_TIE  # tied, and finds more copies
    assert loose.false_match_rate > 10 * choice.near.false_match_rate
    assert choice.rule.min_scaled == 0.5 and choice.rule.min_correlation is None
    flagged = set(dataset.query[choice.rule.passes(dataset)]) | set(dataset.target[choice.rule.passes(dataset)])
    assert flagged == set(range(40))  # every duplicate, nothing else


def calibrator_with_lookalikes(count: int) -> tuple[Calibrator, int]:
    """world(), where the first `count` copies also align perfectly with a look-alike (another image) at every rule."""
    dataset, n, copies = world()
    cp = copies.pairs
    lookalikes = [(k, (int(copies.source[k]) + 7) % n) for k in range(count)]
    extra = make_pairs([k for k, _j in lookalikes], [j for _k, j in lookalikes], [0.99] * count, [0.99] * count)
    both = make_pairs(np.r_[cp.query, extra.query], np.r_[cp.target, extra.target], np.r_[cp.scaled, extra.scaled],
                      np.r_[cp.correlation, extra.correlation])
    return Calibrator(dataset, n, CopySample(copies.source, copies.kind, both)), n


def test_the_duplicate_share_is_read_where_copies_match_other_images_least_even_if_none_is_clean():
    """Every rule lets a few copies match some other image (here 6 copies align perfectly with a look-alike):
    π is still read where false matches are fewest, not across loose rules where they swamp the flags."""
    calibrator, n = calibrator_with_lookalikes(6)
    choice = choose_rule(calibrator, has_embeddings=True)
    null_hits = {rule: int(calibrator.evaluate(rule)["null_hits"].sum()) for rule in choice.rules
                 if calibrator.evaluate(rule)["pos_pass"].mean() >= 0.5}
    assert min(null_hits.values()) == 6  # no rule is clean
    assert null_hits[choice.reference_rule] == 6  # π read where false matches are fewest
    assert choice.pi[0] == pytest.approx(80 / n, abs=0.03)
    assert calibrator.estimate(Rule(-1.0, None), choice.pi).precision < 0.3  # flagging everything looks imprecise


def test_where_most_copies_match_another_image_the_intervals_still_hold_their_values():
    """A third of the copies align perfectly with a look-alike at every rule: π (read with that false-match rate
    taken out) and every precision must lie inside their own intervals. The interval once ignored the false-match
    rate, and a 60 000-image audit printed a leak precision of 8 % "[32 %, 57 %]"."""
    calibrator, _n = calibrator_with_lookalikes(100)
    choice = choose_rule(calibrator, has_embeddings=True)
    assert choice.pi[1] <= choice.pi[0] <= choice.pi[2]
    for rule in choice.rules:
        est = calibrator.estimate(rule, choice.pi)
        if est.precision is not None:
            assert est.precision_interval[0] <= est.precision <= est.precision_interval[1]


def harder_duplicates_world(seed=0, n=400, dup_pairs=40, copies=400):
    """The copies are easier to find than the dataset's real duplicates: 9 in 10 copies have scaled cosines
    0.8–0.95 (1 in 10, like rotated copies, 0.55–0.6), while half the real duplicate pairs have only 0.6–0.75.
    Other candidate pairs: −0.1–0.5. The pixel tier sees nothing (correlations 0.2–0.8 everywhere)."""
    rng = np.random.default_rng(seed)
    q, t, s = [], [], []
    for i in range(dup_pairs):
        q.append(2 * i); t.append(2 * i + 1)
        s.append(rng.uniform(0.8, 0.95) if i % 2 else rng.uniform(0.6, 0.75))
    for i in range(n):
        for j in rng.choice(n, 3, replace=False):
            if j != i and not (i < 2 * dup_pairs and j == (i ^ 1)):
                q.append(min(i, j)); t.append(max(i, j)); s.append(rng.uniform(-0.1, 0.5))
    dataset = make_pairs(q, t, s, rng.uniform(0.2, 0.8, len(q)))
    source = rng.choice(n, copies)
    cq, ct, cs = [], [], []
    for k, src in enumerate(source):
        cq.append(k); ct.append(src); cs.append(rng.uniform(0.55, 0.6) if k % 10 == 0 else rng.uniform(0.8, 0.95))
        for j in rng.choice(n, 3, replace=False):
            if j != src:
                cq.append(k); ct.append(j); cs.append(rng.uniform(-0.1, 0.5))
    pairs = make_pairs(cq, ct, cs, rng.uniform(0.2, 0.8, len(cq)))
    return dataset, n, CopySample(source=source, kind=["same_shot"] * copies, pairs=pairs)


def test_recall_on_the_datasets_own_duplicates_widens_the_interval_where_copies_are_easier():
    dataset, n, copies = harder_duplicates_world()
    calibrator = Calibrator(dataset, n, copies)
    rules = [Rule(round(float(s), 2), None) for s in np.arange(0.5, 0.96, 0.01)]
    strict = Rule(0.78, None)
    passed = strict.passes(dataset)
    flagged = set(dataset.query[passed]) | set(dataset.target[passed])
    truth = len(flagged & set(range(80))) / 80  # 0.5: the easy half of the real duplicates
    pi, _reference, _source = calibrator.duplicate_share(rules)
    plain = calibrator.estimate(strict, pi)
    assert plain.recall == pytest.approx(0.9, abs=0.04)
    assert not plain.recall_interval[0] <= truth  # the copies alone claim far more than is found
    dataset_recall = calibrator.dataset_recall(strict, rules)
    assert dataset_recall[0] == pytest.approx(truth, abs=0.08)
    assert dataset_recall[1] <= dataset_recall[0] <= dataset_recall[2]
    est = plain.with_dataset_recall(dataset_recall)
    assert est.recall == plain.recall  # the point estimate is still the copies'
    assert est.recall_interval[0] <= truth <= est.recall_interval[1]
    reported = est.as_dict()
    assert reported["recall_interval_copies"] == [round(v, 3) for v in plain.recall_interval]
    assert reported["recall_on_dataset"] == round(dataset_recall[0], 3)
    assert reported["recall_on_dataset_images"] == dataset_recall[3] > 0  # the images the reference rule flags
    # The two recalls disagree on more than MIN_DATASET_RECALL_IMAGES images: the copies do not describe this
    # dataset, and the precision they would give (π·R/F) is not claimed; on fewer images it is.
    assert dataset_recall[3] >= decision.MIN_DATASET_RECALL_IMAGES and plain.precision is not None
    assert est.precision is None and est.precision_interval is None
    assert reported["precision_note"] == decision.PRECISION_RECALLS_DISAGREE
    few = plain.with_dataset_recall((*dataset_recall[:3], decision.MIN_DATASET_RECALL_IMAGES - 1))
    assert few.precision == plain.precision and few.precision_note is None
    # Both causes make π·R/F too high, never too low: an estimate of 0 stands.
    nil = dataclasses.replace(plain, precision=0.0, precision_interval=(0.0, 0.4)).with_dataset_recall(dataset_recall)
    assert nil.precision == 0.0 and nil.precision_interval == (0.0, 0.4) and nil.precision_note is None


def test_where_copies_are_like_the_duplicates_both_recalls_agree():
    dataset, n, copies = world()
    choice = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True)
    near = choice.near
    assert near.dataset_recall is not None
    assert near.dataset_recall[0] == pytest.approx(near.recall, abs=0.05)
    assert near.recall_interval[0] <= near.recall <= near.recall_interval[1]
    assert near.recall_interval[1] - near.recall_interval[0] < 0.2
    assert near.precision is not None and near.precision_note is None  # nothing withheld where they agree


def easy_copies_world(seed=0):
    """Copies easier to find than the dataset's duplicates in both tiers: 1 000 images, 60 duplicate pairs with
    scaled cosine 0.35–0.95 and correlation 0.80–1.0, drawn independently (each tier misses its own); copies with
    their source: scaled 0.5–0.98, correlation 0.75–1.0."""
    return world(seed, n=1000, dup_pairs=60, copies=300, dup_scaled=(0.35, 0.95), dup_corr=(0.80, 1.0),
                 copy_scaled=(0.5, 0.98), copy_corr=(0.75, 1.0))


def test_the_duplicate_share_is_read_from_the_two_tiers_where_copies_are_easier_than_the_duplicates():
    # 120 of 1 000 images have a duplicate. Read from the copies (found more easily than the duplicates at strict
    # rules) π came out at 0.105 and the rule found 104 of the 120; from the two tiers, 0.124 and 114.
    dataset, n, copies = easy_copies_world(seed=0)
    choice = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True)
    assert choice.pi[0] == pytest.approx(0.12, abs=0.01)
    assert choice.pi[1] <= 0.12 <= choice.pi[2]
    accepted = choice.rule.passes(dataset)
    found = (set(dataset.query[accepted]) | set(dataset.target[accepted]))
    assert len(found & set(range(120))) >= 110 and not found - set(range(120))
    clean = [c[3] for c in choice.calibrator.clean_rules(choice.rules)]
    reading = choice.calibrator.two_tier_share(clean)
    assert reading is not None and reading[1] == choice.reference_rule  # π was read from the tiers


def test_without_rules_using_both_tiers_the_share_is_read_from_the_copies():
    dataset, n, copies = world()
    calibrator = Calibrator(dataset, n, copies)
    embedding_only = [Rule(round(float(v), 2), None) for v in np.arange(0.5, 0.96, 0.05)]
    assert calibrator.two_tier_share(embedding_only) is None
    pi, reference, source = calibrator.duplicate_share(embedding_only)
    assert reference in embedding_only and pi[0] == pytest.approx(80 / n, abs=0.02)
    assert source == decision.SHARE_FROM_COPIES


def test_too_few_duplicates_seen_by_both_tiers_give_no_two_tier_reading():
    # 20 images with a duplicate, all found by both tiers: below MIN_RECAPTURED a handful of look-alikes in one
    # tier would move the reading by a third, so the copies' reading is used.
    dataset, n, copies = world(dup_pairs=10)
    calibrator = Calibrator(dataset, n, copies)
    both = [Rule(0.52, 0.87), Rule(0.6, 0.9)]
    assert decision.MIN_RECAPTURED > 20 and calibrator.two_tier_share(both) is None
    dataset, n, copies = world(dup_pairs=40)
    reading = Calibrator(dataset, n, copies).two_tier_share(both)
    assert reading is not None and reading[0][0] == pytest.approx(80 / n, abs=0.01)


def test_chapman_counts_what_two_independent_looks_see():
    # 1 000 things, two looks finding 30 % and 60 % independently: about 180 found by both.
    rng = np.random.default_rng(1)
    first, second = rng.random(1000) < 0.3, rng.random(1000) < 0.6
    value, low, high = decision.chapman(int(first.sum()), int(second.sum()), int((first & second).sum()))
    assert low <= 1000 <= high and value == pytest.approx(1000, rel=0.1)
    assert decision.chapman(10, 10, 10) == (10.0, 10, 10.0)  # every one seen twice: no more than were seen


def test_the_estimate_says_what_the_duplicate_share_was_read_from_and_its_interval():
    dataset, n, copies = easy_copies_world(seed=0)
    near = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True).near.as_dict()
    assert near["duplicate_share_read_from"] == decision.SHARE_FROM_TIERS
    low, high = near["estimated_duplicate_share_interval"]
    assert low <= near["estimated_duplicate_share"] <= high
    dataset, n, copies = world(dup_pairs=10)  # too few seen by both tiers
    near = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True).near.as_dict()
    assert near["duplicate_share_read_from"] == decision.SHARE_FROM_COPIES


def test_the_second_choice_never_reads_a_lower_duplicate_share_than_the_first():
    # Excusing matches can only lower the copies' false-match rate at each rule; a lower π after it would come
    # from reading it among other (stricter) rules. The floor is the first choice's π; a lower floor changes nothing.
    dataset, n, copies = world()
    calibrator = Calibrator(dataset, n, copies)
    plain = decision._choose_rule(calibrator, True, None, None)
    high = dataclasses.replace(plain, pi=(0.5, 0.4, 0.6), reference_rule=Rule(0.9, 0.99), pi_source="the first")
    floored = decision._choose_rule(calibrator, True, None, None, floor=high)
    assert floored.pi == (0.5, 0.4, 0.6) and floored.reference_rule == Rule(0.9, 0.99)
    assert floored.near.duplicate_share_source == "the first"  # the report names where the π it uses came from
    low = dataclasses.replace(plain, pi=(0.0, 0.0, 0.0))
    assert decision._choose_rule(calibrator, True, None, None, floor=low).pi == plain.pi


def with_falsely_matching_sources(dataset: Pairs, n: int, copies: CopySample, matches: list[tuple[float, float]],
                                  per_source: int = 5, seed: int = 7) -> CopySample:
    """`copies` plus, for each (scaled, correlation) in `matches`, `per_source` copies of one new source (found
    with their source at scaled 0.9, correlation 0.97) that also match one other image with that evidence — an
    image that is no candidate of the source, so nothing excuses the match."""
    rng = np.random.default_rng(seed)
    candidates = set(zip(dataset.query.tolist(), dataset.target.tolist()))
    q, t, s, c = [copies.pairs.query], [copies.pairs.target], [copies.pairs.scaled], [copies.pairs.correlation]
    source, kind, k = list(copies.source), list(copies.kind), len(copies.source)
    for scaled, correlation in matches:
        src = int(rng.integers(300, n))  # no image with a duplicate
        other = next(j for j in rng.permutation(n) if j != src and (min(src, j), max(src, j)) not in candidates)
        for _ in range(per_source):
            q.append([k, k]); t.append([src, other]); s.append([0.9, scaled]); c.append([0.97, correlation])
            source.append(src); kind.append("same_shot"); k += 1
    pairs = make_pairs(np.concatenate(q), np.concatenate(t), np.concatenate(s), np.concatenate(c))
    return CopySample(source=np.asarray(source), kind=kind, pairs=pairs)


def test_near_clean_rules_are_those_not_shown_noisier_than_the_cleanest():
    rules = [Rule(0.5 + i / 100, None) for i in range(6)]
    # The Poisson 95 % upper bound of 0 is 3.7, of 2 is 7.2: within it, a rule is not shown to be noisier.
    assert decision._near_clean([(0, rules[0]), (3, rules[1]), (4, rules[2])]) == rules[:2]
    assert decision._near_clean([(2, rules[0]), (7, rules[1]), (8, rules[2])]) == rules[:2]
    assert decision._near_clean([]) == []


def test_near_clean_rules_count_a_sources_falsely_matching_copies_once():
    dataset, n, copies = world()
    calibrator = Calibrator(dataset, n, copies)
    loose, strict = Rule(0.55, None), Rule(0.6, None)
    assert calibrator.evaluate(loose)["null_hits"].sum() == calibrator.evaluate(strict)["null_hits"].sum() == 0
    # Five copies of one source match another image at scaled 0.58: five copies, one source.
    noisy = Calibrator(dataset, n, with_falsely_matching_sources(dataset, n, copies, [(0.58, 0.5)]))
    assert noisy.evaluate(loose)["null_hits"].sum() == 5 and noisy.evaluate(strict)["null_hits"].sum() == 0
    near = noisy.near_clean_rules([loose, strict])
    assert loose in near and strict in near  # one source is within the noise of none
    assert [c[3] for c in noisy.clean_rules([loose, strict])] == [strict]
    # Five sources, one copy each, at the same evidence: five draws, more than none can explain.
    spread = Calibrator(dataset, n, with_falsely_matching_sources(dataset, n, copies, [(0.58, 0.5)] * 5,
                                                                  per_source=1))
    assert spread.near_clean_rules([loose, strict]) == [strict]


def lookalike_world(seed=0):
    """easy_copies_world with 150 look-alike pairs that the embedding tier scores like duplicates (scaled
    0.6–0.95) but whose thumbnails do not align (correlation 0.3–0.8)."""
    dataset, n, copies = easy_copies_world(seed)
    rng = np.random.default_rng(seed + 50)
    a = rng.choice(np.arange(120, n), 150, replace=False)
    b = np.array([rng.choice(np.arange(120, n)) for _ in a])
    keep = a != b
    look = make_pairs(np.minimum(a, b)[keep], np.maximum(a, b)[keep], rng.uniform(0.6, 0.95, keep.sum()),
                      rng.uniform(0.3, 0.8, keep.sum()))
    merged = make_pairs(np.r_[dataset.query, look.query], np.r_[dataset.target, look.target],
                        np.r_[dataset.scaled, look.scaled], np.r_[dataset.correlation, look.correlation])
    return merged, n, copies


def test_a_two_tier_reading_whose_overlap_contradicts_the_copies_is_left_out(monkeypatch):
    # The pixel tier finds 0.9 of the copies at 0.775 but confirms only a third of the embedding tier's flags:
    # those are look-alikes, and counting them as duplicates the other tier missed inflates π.
    dataset, n, copies = lookalike_world()
    rule = Rule(0.6, 0.775)
    calibrator = Calibrator(dataset, n, copies)
    assert calibrator._copies_found(Rule(None, 0.775)) > 0.85
    assert calibrator._recapture(rule) is None
    monkeypatch.setattr(decision, "RECAPTURE_CONSISTENCY", 0.0)
    inflated = Calibrator(dataset, n, copies)._recapture(rule)
    assert inflated is not None and inflated[0] > 1.5 * 120  # 120 images have a duplicate


def test_where_the_cleanest_rules_cannot_read_the_share_the_near_clean_ones_do():
    # The copies of one source match another image at every rule, those of another at the looser ones: the
    # cleanest rules are strict, where the pixel tier finds under half the copies alone (no two-tier reading),
    # and the copies there (easier to find than the duplicates) understate π. The looser rules are as clean
    # within the noise of a single source and read π from the tiers.
    dataset, n, copies = easy_copies_world(seed=0)
    noisy = with_falsely_matching_sources(dataset, n, copies, [(0.99, 0.99), (0.6, 0.9)])
    choice = choose_rule(Calibrator(dataset, n, noisy), has_embeddings=True)
    calibrator = choice.calibrator
    assert calibrator.two_tier_share([c[3] for c in calibrator.clean_rules(choice.rules)]) is None
    assert choice.pi_source == decision.SHARE_FROM_TIERS
    assert choice.pi[0] == pytest.approx(120 / n, abs=0.015)
    assert choice.pi[1] <= 120 / n <= choice.pi[2]


def test_where_copies_match_other_images_more_often_than_images_are_flagged_precision_is_not_claimed():
    # 400 images, one duplicate pair (2 images flagged); each copy also matches another image as well as its
    # source (copies of crops of one photo matching the photo's other crops): the copies' false-match rate (all of
    # them) exceeds any flag rate, π reads 0 even at the top of its interval, and "precision 0 % [0 %, 0 %]" would be
    # a claim the copies cannot support.
    dataset, n, copies = world(dup_pairs=1)
    rng = np.random.default_rng(3)
    others = np.array([(src + 1 + rng.integers(n - 1)) % n for src in copies.source])
    crowded = make_pairs(np.r_[copies.pairs.query, np.arange(len(others))], np.r_[copies.pairs.target, others],
                         np.r_[copies.pairs.scaled, np.full(len(others), 0.96)],
                         np.r_[copies.pairs.correlation, np.full(len(others), 0.99)])
    calibrator = Calibrator(dataset, n, CopySample(copies.source, copies.kind, crowded))
    rules = [Rule(0.52, 0.87), Rule(0.6, 0.9)]
    pi, _rule, source = calibrator.duplicate_share(rules)
    assert pi[2] == 0 and source == decision.SHARE_FROM_COPIES
    est = calibrator.estimate(Rule(0.52, 0.87), pi, pi_source=source)
    assert est.flagged == 2 and est.precision is None and est.precision_interval is None
    assert est.precision_note == decision.PRECISION_UNSUPPORTED
    assert est.as_dict()["precision_note"] == decision.PRECISION_UNSUPPORTED
    # Where no rule found half the copies (π read nowhere: (0, 0, 0) without a source), the note says that instead.
    unread = calibrator.estimate(Rule(0.52, 0.87), (0.0, 0.0, 0.0), pi_source=None)
    assert unread.precision is None and unread.precision_note == decision.PRECISION_NO_REFERENCE
    # A rule judged on its own flags (no π given: each tier alone, for the report's tiers) gets no note.
    assert calibrator.estimate(Rule(0.52, 0.87)).precision_note is None
    # Where π has room above 0, precision is estimated as before and no note is given.
    dataset, n, copies = world()
    fine = Calibrator(dataset, n, copies)
    pi, _rule, source = fine.duplicate_share(rules)
    est = fine.estimate(Rule(0.52, 0.87), pi, pi_source=source)
    assert est.precision is not None and est.precision_note is None



def two_tier_lookalike_world(seed=0, n=1000, dup_pairs=60, copies=300):
    """Each tier alone has a few look-alikes (1 in 10 other pairs, high on one tier only: scaled 0.45–0.58 with
    correlation 0.2–0.8, or correlation 0.86–0.92 with scaled −0.1–0.3); each duplicate is fairly high on a tier
    (scaled 0.35–0.55, correlation 0.885–0.92) for a third of them, high (scaled 0.6–0.95, correlation 0.93–1.0)
    otherwise, independently, so a ninth are only fairly high on both; copies are made like the duplicates, and
    their other candidates like the other pairs."""
    rng = np.random.default_rng(seed)

    def duplicate_evidence(count):  # each tier fair for a third, independently: a ninth fair on both
        fair_scaled, fair_corr = rng.random(count) < 1 / 3, rng.random(count) < 1 / 3
        return (np.where(fair_scaled, rng.uniform(0.35, 0.55, count), rng.uniform(0.6, 0.95, count)),
                np.where(fair_corr, rng.uniform(0.885, 0.92, count), rng.uniform(0.93, 1.0, count)))

    q, t = list(range(0, 2 * dup_pairs, 2)), list(range(1, 2 * dup_pairs, 2))
    s, c = (list(v) for v in duplicate_evidence(dup_pairs))
    for i in range(2 * dup_pairs, n):
        j = int(rng.integers(2 * dup_pairs, n))
        if j == i:
            continue
        q.append(min(i, j)); t.append(max(i, j))
        kind = rng.random()
        if kind < 0.05:
            s.append(rng.uniform(0.45, 0.58)); c.append(rng.uniform(0.2, 0.8))
        elif kind < 0.1:
            s.append(rng.uniform(-0.1, 0.3)); c.append(rng.uniform(0.86, 0.92))
        else:
            s.append(rng.uniform(-0.1, 0.4)); c.append(rng.uniform(0.2, 0.8))
    dataset = make_pairs(q, t, s, c)
    source = rng.choice(n, copies)
    copy_scaled, copy_corr = duplicate_evidence(copies)
    cq, ct, cs, cc = list(range(copies)), list(source), list(copy_scaled), list(copy_corr)
    for k, src in enumerate(source):
        j = int(rng.integers(n))
        if j != src:  # a copy's other candidates are like the dataset's: some look alike on one tier
            kind = rng.random()
            cq.append(k); ct.append(j)
            cs.append(rng.uniform(0.45, 0.58) if kind < 0.05 else rng.uniform(-0.1, 0.3 if kind < 0.1 else 0.4))
            cc.append(rng.uniform(0.86, 0.92) if 0.05 <= kind < 0.1 else rng.uniform(0.2, 0.8))
    kinds = ["same_shot"] * copies
    return dataset, n, CopySample(source=source, kind=kinds, pairs=make_pairs(cq, ct, cs, cc))


def test_rule_with_a_both_tiers_clause_accepts_pairs_fairly_high_on_both():
    pairs = make_pairs([0, 1, 2, 3], [4, 5, 6, 7], [0.9, 0.5, 0.5, 0.3], [0.5, 0.95, 0.88, 0.88])
    plain = Rule(0.8, 0.9)
    joint = Rule(0.8, 0.9, joint_scaled=0.45, joint_correlation=0.87)
    assert plain.passes(pairs).tolist() == [True, True, False, False]
    assert joint.passes(pairs).tolist() == [True, True, True, False]
    assert joint.joint_passes(pairs).tolist() == [False, True, True, False]
    assert not plain.has_joint and joint.has_joint


def test_a_both_tiers_clause_is_added_where_duplicates_come_fairly_close_on_both():
    dataset, n, copies = two_tier_lookalike_world()
    choice = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True)
    rule = choice.rule
    assert rule.has_joint and rule.joint_scaled < rule.min_scaled and rule.joint_correlation < rule.min_correlation
    accepted = rule.passes(dataset)
    found = set(dataset.query[accepted]) | set(dataset.target[accepted])
    without = dataclasses.replace(rule, joint_scaled=None, joint_correlation=None).passes(dataset)
    found_without = set(dataset.query[without]) | set(dataset.target[without])
    duplicates = set(range(120))
    added = found - found_without
    assert len(added) >= 8 and added <= duplicates  # the ninth fairly high on both, and no look-alike
    assert choice.near.recall > 0.9


def test_no_both_tiers_clause_where_it_would_only_add_false_matches():
    # world(): either tier alone separates the duplicates; pairs fairly high on both are not there to find.
    dataset, n, copies = world()
    assert not choose_rule(Calibrator(dataset, n, copies), has_embeddings=True).rule.has_joint
    # With a tier switched off there is no clause either.
    dataset, n, copies = world(useless_pixels=True)
    assert not choose_rule(Calibrator(dataset, n, copies), has_embeddings=True).rule.has_joint


def test_without_a_two_tier_reading_the_copies_are_read_again_at_the_near_clean_rules():
    # Embedding-only rules (no two-tier reading). The copies of one source match another image at every rule, those
    # of another at scaled 0.6 and below: the cleanest rules are stricter, where the copies (found more easily than
    # the duplicates) read π low; the near-clean ones read it nearer the truth, and the higher reading is kept.
    dataset, n, copies = easy_copies_world(seed=0)
    noisy = with_falsely_matching_sources(dataset, n, copies, [(0.99, 0.99), (0.6, 0.9)])
    calibrator = Calibrator(dataset, n, noisy)
    rules = [Rule(round(float(v), 2), None) for v in np.arange(0.4, 0.96, 0.02)]
    clean = calibrator.clean_rules(rules)
    assert all(c[3].min_scaled > 0.6 for c in clean)
    from_clean, _rule = calibrator._copies_share(clean)
    pi, rule, source = calibrator.duplicate_share(rules)
    assert source == decision.SHARE_FROM_COPIES and rule in calibrator.near_clean_rules(rules)
    assert any(r.min_scaled <= 0.6 for r in calibrator.near_clean_rules(rules))  # looser rules were read too
    assert from_clean[0] < pi[0] and abs(pi[0] - 120 / n) < abs(from_clean[0] - 120 / n)
    assert pi[1] <= from_clean[1] and pi[2] >= from_clean[2]  # the interval spans both readings


def world_of_duplicates_close_on_both_tiers(seed=0):
    """world() whose 10 duplicate pairs each tier alone only half-recognises (scaled 0.5–0.7, correlation
    0.86–0.90) while the copies are easy (scaled 0.75–0.95, correlation 0.93–1.0): strict rules find the copies,
    not the duplicates, as with same-shot leaks of photos; too few for a two-tier reading (under 30 images)."""
    return world(seed=seed, dup_pairs=10, dup_scaled=(0.5, 0.7), dup_corr=(0.86, 0.9), copy_scaled=(0.75, 0.95),
                 copy_corr=(0.93, 1.0))


def test_the_share_of_images_with_a_duplicate_is_floored_by_the_both_tiers_reading(monkeypatch):
    dataset, n, copies = world_of_duplicates_close_on_both_tiers()
    calibrator = Calibrator(dataset, n, copies)
    rules = [Rule(s, c) for s in (None, 0.5, 0.6, 0.7, 0.8) for c in (None, 0.86, 0.9, 0.95) if s or c]
    pi, rule, source = calibrator.duplicate_share(rules)
    assert source == decision.SHARE_FROM_COPIES and rule.has_joint and rule.min_scaled is None
    assert pi[0] == pytest.approx(20 / n, abs=0.015) and pi[1] <= pi[0] <= pi[2]
    monkeypatch.setattr(Calibrator, "_both_tiers_share", lambda self, rules: None)
    assert Calibrator(dataset, n, copies).duplicate_share(rules)[0][0] < 0.5 * 20 / n  # the strict rules' reading


def test_no_both_tiers_reading_where_a_tier_is_not_judged_or_it_misses_the_copies():
    dataset, n, copies = world_of_duplicates_close_on_both_tiers()
    calibrator = Calibrator(dataset, n, copies)
    assert calibrator._both_tiers_share([Rule(None, 0.9), Rule(None, 0.95)]) is None  # no embeddings
    assert calibrator._both_tiers_share([Rule(0.6, None)]) is None  # no pixel tier
    dataset, n, copies = world(seed=1, copy_scaled=(0.0, 0.3))  # copies far apart in the embedding
    assert Calibrator(dataset, n, copies)._both_tiers_share([Rule(0.6, 0.9)]) is None


def test_with_the_both_tiers_reading_the_rule_finds_duplicates_the_strict_rules_miss(monkeypatch):
    dataset, n, copies = world_of_duplicates_close_on_both_tiers()
    choice = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True)
    accepted = choice.rule.passes(dataset)
    assert accepted[:10].sum() >= 9 and choice.near.precision > 0.8  # the duplicate pairs are the first 10
    monkeypatch.setattr(Calibrator, "_both_tiers_share", lambda self, rules: None)
    before = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True)
    assert before.rule.passes(dataset)[:10].sum() < accepted[:10].sum()


def test_the_look_alike_check_turns_away_pairs_aligned_as_is_whose_embeddings_disagree():
    pairs = make_pairs([0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], [-0.5, -0.5, -0.5, -0.2, 0.9, -0.5],
                       [0.95, 0.95, 0.95, 0.95, 0.5, 0.85])
    pairs.variant = np.array([0, 1, 0, 4, 0, 0])  # as is, rotated 90°, as is, mirrored, …
    pairs.colour_differs = np.array([False, False, True, False, False, False])
    plain, checked = Rule(0.8, 0.9), Rule(0.8, 0.9, pixel_min_scaled=-0.3)
    assert plain.passes(pairs).tolist() == [True, True, True, True, True, False]
    # As is with the embeddings apart: turned away; rotated or grey against colour: the embeddings cannot tell.
    assert checked.passes(pairs).tolist() == [False, True, True, True, True, False]
    assert checked.pixel_passes(pairs).tolist() == [False, True, True, True, False, False]
    pairs.colour_differs = None  # greyness not known: every pair judged as both in colour
    assert checked.passes(pairs).tolist() == [False, True, False, True, True, False]


def look_alike_world(seed=0, n=600, dup_pairs=60, copies=300, look_alikes=True, copies_embed_apart=False,
                     close_share=0.5):
    """Duplicates and copies align well (correlation 0.9–1.0); half of them embed close (scaled 0.6–0.95), half no
    closer than unrelated images (−0.1–0.4), so both tiers are needed; one in 33 other pairs is a look-alike that aligns as well (0.9–1.0)
    while its embeddings disagree (scaled −0.6 to −0.3). `copies_embed_apart`: the copies' (and duplicates')
    scaled cosines reach down to −0.6 as well, as where the embeddings do not tell duplicates apart (digits)."""
    rng = np.random.default_rng(seed)
    low = -0.6 if copies_embed_apart else -0.1

    def duplicate_scaled(count):
        return np.where(rng.random(count) < close_share, rng.uniform(0.6, 0.95, count), rng.uniform(low, 0.4, count))

    q, t = list(range(0, 2 * dup_pairs, 2)), list(range(1, 2 * dup_pairs, 2))
    s, c = list(duplicate_scaled(dup_pairs)), list(rng.uniform(0.9, 1.0, dup_pairs))

    def other(count):
        alike = (rng.random(count) < 0.03) & look_alikes
        return (np.where(alike, rng.uniform(-0.6, 0.95 if copies_embed_apart else -0.3, count),
                         rng.uniform(-0.1, 0.4, count)),
                np.where(alike, rng.uniform(0.9, 1.0, count), rng.uniform(0.2, 0.8, count)))

    for i in range(2 * dup_pairs, n):
        for j in rng.choice(np.arange(2 * dup_pairs, n), 2, replace=False):
            if j != i:
                q.append(min(i, j)); t.append(max(i, j))
    os_, oc = other(len(q) - dup_pairs)
    dataset = make_pairs(q, t, s + list(os_), c + list(oc))
    source = rng.choice(n, copies)
    cq, ct = list(range(copies)), list(source)
    cs, cc = list(duplicate_scaled(copies)), list(rng.uniform(0.9, 1.0, copies))
    for k, src in enumerate(source):
        for j in rng.choice(n, 2, replace=False):
            if j != src:
                cq.append(k); ct.append(j)
    os_, oc = other(len(cq) - copies)
    return dataset, n, CopySample(source=source, kind=["same_shot"] * copies,
                                  pairs=make_pairs(cq, ct, cs + list(os_), cc + list(oc)))


def test_the_look_alike_check_is_chosen_where_look_alikes_align_but_embed_apart():
    dataset, n, copies = look_alike_world()
    choice = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True)
    rule = choice.rule
    assert rule.min_scaled is not None and rule.min_correlation is not None and rule.pixel_min_scaled is not None
    assert rule.pixel_min_scaled <= -0.1  # no duplicate turned away
    accepted = rule.passes(dataset)
    flagged = set(dataset.query[accepted]) | set(dataset.target[accepted])
    assert flagged <= set(range(120)) and len(flagged) >= 100  # duplicates only, nearly all
    without = dataclasses.replace(rule, pixel_min_scaled=None).passes(dataset)
    assert without.sum() > accepted.sum() + 15  # the look-alikes the plain rule accepted
    assert choice.tiers["pixels"]["look_alike_min_scaled"] == rule.pixel_min_scaled
    assert choice.near.precision > 0.9  # all accepted pairs are duplicates; the estimate says so, within its error


@pytest.mark.parametrize("world_options", [dict(look_alikes=False), dict(copies_embed_apart=True)])
def test_no_look_alike_check_where_it_only_costs_duplicates(world_options):
    # Without look-alikes there is nothing to turn away; where the embeddings tell duplicates from look-alikes no
    # better than chance (digits), every check loses as many duplicates as look-alikes.
    dataset, n, copies = look_alike_world(**world_options)
    choice = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True)
    assert choice.rule.pixel_min_scaled is None
    assert choice.near.recall > 0.95


def test_no_look_alike_check_where_the_embedding_tier_is_switched_off():
    # No duplicate embeds closer than unrelated images: the embedding tier is off, and its cosines are not trusted
    # to turn pairs away either, though here they would.
    dataset, n, copies = look_alike_world(close_share=0.0)
    choice = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True)
    assert choice.rule.min_scaled is None and choice.rule.min_correlation is not None
    assert choice.rule.pixel_min_scaled is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pair_index_finds_what_a_dict_of_the_pairs_finds(seed):
    # The Calibrator's lookup of (copy's source, other image) among the dataset's pairs, which was a dict of tuples.
    rng = np.random.default_rng(seed)
    query, target = rng.integers(0, 30, 200), rng.integers(0, 30, 200)  # few nodes: repeated pairs, both orders
    a, b = rng.integers(0, 35, 500), rng.integers(0, 35, 500)  # some nodes beyond the pairs' own
    lookup = {(int(q), int(t)): k for k, (q, t) in enumerate(zip(query, target))}
    want = [lookup.get((min(int(x), int(y)), max(int(x), int(y))), -1) for x, y in zip(a, b)]
    assert decision.pair_index(query, target, a, b).tolist() == want
    assert decision.pair_index(query[:0], target[:0], a, b).tolist() == [-1] * len(a)
    assert decision.pair_index(query, target, a[:0], b[:0]).tolist() == []


def test_where_the_share_read_implies_more_duplicates_than_a_rule_flags_precision_is_not_claimed():
    # world(): 80 of 400 images have a duplicate, and a rule finding most copies flags about them. A share read
    # elsewhere at 0.5 (look-alikes the copies do not match inflating it: 25 000 Fashion-MNIST images without a
    # leak read 0.565) makes π·R exceed the rule's flag rate even at the low ends: precision would be clipped to
    # "100 % [100 %, 100 %]", so it is not claimed, and the note says why.
    dataset, n, copies = world()
    calibrator = Calibrator(dataset, n, copies)
    rule = Rule(0.52, 0.87)
    flagged = calibrator.estimate(rule).flagged / n
    est = calibrator.estimate(rule, (0.5, 0.45, 0.55), pi_source=decision.SHARE_FROM_COPIES)
    assert est.recall_interval[0] * 0.45 > flagged  # the model's contradiction, at its low ends
    assert est.precision is None and est.precision_interval is None
    assert est.precision_note == decision.PRECISION_CONTRADICTED == est.as_dict()["precision_note"]
    # A share whose low end leaves room for false flags: precision is estimated (clipped at 1 where the point is
    # above), as before.
    fair = calibrator.estimate(rule, (0.5, 0.1, 0.55), pi_source=decision.SHARE_FROM_COPIES)
    assert fair.precision == 1.0 and fair.precision_note is None
    # The grid's estimates (no intervals) are not judged: the rule choice is unchanged by the note.
    assert calibrator.estimate(rule, (0.5, 0.45, 0.55), intervals=False).precision is not None


def test_the_reference_floor_is_lowered_only_where_the_copies_are_significantly_cleaner_below_it():
    # (copies' recall at a rule, sources with a falsely matching copy there). The Poisson 97.5 % upper bound of 0
    # is 3.7: 2 sources at 0.4 are within it, 12 at 0.45 are not.
    assert decision.reference_floor([(0.6, 40), (0.45, 12), (0.4, 2), (0.3, 0)]) == 0.4
    assert decision.reference_floor([(0.9, 0), (0.4, 0)]) == decision.MIN_REFERENCE_RECALL  # photos: clean at half
    assert decision.reference_floor([(0.6, 3), (0.3, 0)]) == decision.MIN_REFERENCE_RECALL  # a few: within the noise
    assert decision.reference_floor([(0.6, 9), (0.3, 5)]) == decision.MIN_REFERENCE_RECALL  # 9 ≤ bound of 5 (11.7)
    assert decision.reference_floor([(0.6, 30), (0.27, 30)]) == decision.MIN_REFERENCE_RECALL  # nothing cleaner
    assert decision.reference_floor([]) == decision.MIN_REFERENCE_RECALL


def lookalike_dense_world(seed=0):
    """1 000 images, 20 duplicate pairs (π 0.04) and 300 look-alike pairs among the other images, all told apart by
    the embedding alone: duplicates and the copies with their sources at scaled cosine 0.3–0.95 (a copy's recall
    is 0.5 at 0.625), look-alikes at 0.40–0.66 — for the dataset's images and for 40 of the 100 sources' copies
    (each copy its own), so the copies show false matches at every rule finding half of them, fewer than the
    dataset's images have (as on 25 000 Fashion-MNIST images)."""
    rng = np.random.default_rng(seed)
    n = 1000
    q, t, s = [], [], []
    for i in range(20):
        q.append(2 * i); t.append(2 * i + 1); s.append(rng.uniform(0.3, 0.95))
    for _ in range(300):
        a, b = rng.choice(np.arange(40, n), 2, replace=False)
        q.append(min(a, b)); t.append(max(a, b)); s.append(rng.uniform(0.40, 0.66))
    for i in range(n):
        for j in rng.choice(n, 3, replace=False):
            if j != i:
                q.append(min(i, j)); t.append(max(i, j)); s.append(rng.uniform(-0.1, 0.35))
    dataset = make_pairs(q, t, s, np.full(len(q), 0.3))
    sources = rng.choice(np.arange(40, n), 100, replace=False)
    cq, ct, cs, source = [], [], [], []
    for k in range(500):
        src = sources[k // 5]
        source.append(src)
        cq.append(k); ct.append(src); cs.append(rng.uniform(0.3, 0.95))
        if k // 5 < 40:  # a look-alike of the copy: any image but its source
            other = int(rng.choice(np.setdiff1d(np.arange(40, n), [src])))
            cq.append(k); ct.append(other); cs.append(rng.uniform(0.40, 0.66))
    copies = CopySample(source=np.asarray(source), kind=["same_shot"] * 500,
                        pairs=make_pairs(cq, ct, cs, np.full(len(cq), 0.3)))
    return dataset, n, copies


def test_where_look_alikes_crowd_every_rule_finding_half_the_copies_the_share_is_read_where_they_do_not(monkeypatch):
    dataset, n, copies = lookalike_dense_world()
    rules = [Rule(round(float(v), 3), None) for v in np.arange(0.30, 0.96, 0.01)]
    calibrator = Calibrator(dataset, n, copies)
    pi, _rule, _source = calibrator.duplicate_share(rules)
    assert calibrator.recall_floor(rules) < decision.MIN_REFERENCE_RECALL
    assert pi[0] == pytest.approx(0.04, abs=0.015) and pi[1] <= 0.04 <= pi[2]
    # The report says where π was read; where the copies are clean at half, at half.
    near = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True).near.as_dict()
    assert near["duplicate_share_recall_floor"] < decision.MIN_REFERENCE_RECALL
    clean = choose_rule(Calibrator(*world()), has_embeddings=True).near.as_dict()
    assert clean["duplicate_share_recall_floor"] == decision.MIN_REFERENCE_RECALL
    # Read only at rules finding half the copies, the look-alikes the copies understate inflate π.
    monkeypatch.setattr(decision, "REFERENCE_FLOORS", (decision.MIN_REFERENCE_RECALL,))
    inflated, _rule, _source = Calibrator(dataset, n, copies).duplicate_share(rules)
    assert inflated[0] > 0.07


def crossing_splits(n: int) -> tuple[np.ndarray, np.ndarray]:
    """world()'s duplicate pairs (2i, 2i + 1) across the splits: even nodes the reference, odd ones held out."""
    reference = np.arange(n) % 2 == 0
    return reference, ~reference


def test_the_leak_calibrator_counts_held_out_images_with_a_reference_partner():
    dataset, n, copies = world()
    reference, held_out = crossing_splits(n)
    calibrator = Calibrator(dataset, n, copies)
    rule = choose_rule(calibrator, has_embeddings=True).rule
    leak = calibrator.for_leakage(reference, held_out)
    assert set(leak.population.tolist()) == set(range(1, n, 2))
    est = leak.estimate(rule)
    assert est.flagged == 40  # the odd member of each duplicate pair, nothing else
    # A node in both splits is no held-out image: it cannot leak into itself.
    both = reference | (np.arange(n) == 1)
    assert 1 not in set(calibrator.for_leakage(both, held_out).population.tolist())


def test_the_leak_scores_are_the_leak_decisions_own_f1s_and_their_mean_with_the_whole_datasets():
    dataset, n, copies = world()
    calibrator = Calibrator(dataset, n, copies)
    rules = [Rule(s, None) for s in (0.3, 0.45, 0.55, 0.7)] + [Rule(None, c) for c in (0.8, 0.87, 0.95)]
    assert decision.leak_scores(calibrator, rules, None) is None
    reference, held_out = crossing_splits(n)
    scores = decision.leak_scores(calibrator, rules, (reference, held_out))
    leak = calibrator.for_leakage(reference, held_out)
    leak_pi = leak.duplicate_share(rules)[0]
    pi = calibrator.duplicate_share(rules)[0]
    for rule in rules:
        est = calibrator.estimate(rule, pi, intervals=False)
        leak_f1 = decision._f1(leak.estimate(rule, leak_pi, intervals=False))
        assert scores.of(rule) == pytest.approx(leak_f1)
        assert scores.joint(rule, est) == pytest.approx(np.sqrt(decision._f1(est) * leak_f1))


def test_without_leaks_among_the_held_out_images_there_are_no_leak_scores():
    dataset, n, copies = world()
    calibrator = Calibrator(dataset, n, copies)
    rules = [Rule(s, None) for s in (0.3, 0.45, 0.55, 0.7)]
    # Every duplicate pair (nodes < 80) inside the reference split: the held-out images have no reference duplicate.
    reference = np.arange(n) < 240
    assert decision.leak_scores(calibrator, rules, (reference, ~reference)) is None
    # No image only held out (all in both splits): nothing can leak.
    everything = np.ones(n, dtype=bool)
    assert decision.leak_scores(calibrator, rules, (everything, everything)) is None


def test_the_rule_is_chosen_on_leaks_too_only_where_the_whole_datasets_choice_is_clearly_worse_on_them(monkeypatch):
    dataset, n, copies = world(seed=2)
    splits = crossing_splits(n)
    plain = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True)
    # Here the duplicates are the leaks: the whole dataset's choice is as good on them as any rule.
    same = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True, splits=splits)
    assert same.rule == plain.rule and same.reason == plain.reason
    # Make the leak decision favour one embedding-only rule: every other rule's leak F1 falls far below it.
    scores = decision.leak_scores(plain.calibrator, plain.rules, splits)
    favoured = max((r for r in plain.rules if r.min_correlation is None), key=scores.of)
    assert plain.rule.min_correlation is not None  # so the whole dataset's choice is not the favoured rule
    real_of = decision.LeakScores.of

    def leak_f1_favouring_one_rule(self, rule):
        return real_of(self, rule) / (1 if rule == favoured else 4)

    monkeypatch.setattr(decision.LeakScores, "of", leak_f1_favouring_one_rule)
    both = choose_rule(Calibrator(dataset, n, copies), has_embeddings=True, splits=splits)
    assert "of the duplicates and of the leaks together" in both.reason
    assert both.rule.min_correlation is None and both.rule.min_scaled == favoured.min_scaled


def test_with_few_copies_the_leak_score_needs_a_wider_gap():
    assert decision.leak_margin(10) == pytest.approx(1 / np.sqrt(10))  # one copy of ten moves a share by 0.1
    assert decision.leak_margin(500) == pytest.approx(1 / np.sqrt(500))
    assert decision.leak_margin(100_000) == decision.LEAK_F1_MARGIN  # never finer than the F1 tie allows
    assert decision.leak_margin(0) == float("inf")


def test_a_clean_rule_flagging_every_image_reads_the_datasets_recall_as_whole():
    """Every image has a duplicate that sits far closer than the copies sit to their sources (frames of clips), and
    the copies match look-alikes up to scaled cosine 0.85, so the only clean rules are strict and find few copies.
    Such a rule flags every image — all duplicates, as it is clean — so it finds every image with a duplicate,
    whatever share of the copies it finds: the dataset's own reading of the recall is not the copies' (0.3 once
    read here, and the precision withheld as if the two disagreed)."""
    rng = np.random.default_rng(3)
    n = 200
    q, t, s = list(range(0, n, 2)), list(range(1, n, 2)), list(rng.uniform(0.95, 0.99, n // 2))
    dataset = make_pairs(q, t, s, rng.uniform(0.2, 0.5, len(q)))
    copies = 400
    source = rng.choice(n, copies)
    cq, ct, cs = [], [], []
    for k, src in enumerate(source):
        cq.append(k); ct.append(src); cs.append(rng.uniform(0.5, 0.95))
        other = (src + 2 + 2 * rng.integers(0, n // 2 - 1)) % n  # not its source's duplicate
        cq.append(k); ct.append(other); cs.append(rng.uniform(0.3, 0.85))
    calibrator = Calibrator(dataset, n, CopySample(source=source, kind=["same_shot"] * copies,
                                                   pairs=make_pairs(cq, ct, cs, rng.uniform(0.2, 0.5, len(cq)))))
    rules = [Rule(round(float(v), 2), None) for v in np.arange(0.5, 0.95, 0.01)]
    clean = calibrator.clean_rules(rules)
    reference = max(clean, key=lambda c: (c[1], -c[2]))
    assert reference[1] < 0.5 and reference[2] == n  # finds under half the copies, flags every image
    judged = Rule(0.9, None)
    estimate, low, high, images = calibrator.dataset_recall(judged, rules)
    assert images == n and estimate == 1.0 and low > 0.95 and high == 1.0


def test_a_crowd_mate_is_near_identical_however_the_two_align():
    """Frames of a clip with motion align below the excuse's correlation, or collapse in scaled cosine, yet one in the
    other's crowd of copies (crowds.crowd_backgrounds) is near-identical: a copy matching it is found, its match
    excused (6 clips × 120 frames at 32 px: 1 086 of 1 500 copies lacked their source among their candidates)."""
    pairs = make_pairs([0, 0, 0], [1, 2, 3], scaled=[-0.9, -0.9, 0.5], corr=[0.6, 0.6, 0.99])
    assert decision.near_identical(pairs, np.arange(3)).tolist() == [False, False, True]  # no crowd known
    pairs.crowd_mate = np.array([True, False, False])
    assert decision.near_identical(pairs, np.arange(3)).tolist() == [True, False, True]
    copy_pairs = make_pairs([0, 1], [1, 2], scaled=[0.0, 0.0], corr=[0.9, 0.9])  # copies of node 0 → 1 and → 2
    calibrator = Calibrator(pairs, 4, CopySample(np.array([0, 0]), ["shift", "shift"], copy_pairs))
    assert calibrator.pos_rows.query.tolist() == [0]  # found through the crowd mate; node 2 is not one
    assert calibrator.null.query.tolist() == [1]
