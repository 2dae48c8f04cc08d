"""near_duplicates at scale: the candidate search reads the context's shared float16 matrix and reports its recall."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.checks.duplicates import NEAR_CHECK
from tests.checks import synthetic_audit


def synthetic_context(items, **config):
    """synthetic_audit's context, with a backbone that says its input size (calibration asks; it makes no copies)."""
    ctx = synthetic_audit.synthetic_context(items, **config)
    ctx.backbone = type("Backbone", (), {"input_size": 224, "dim": 48, "cache_key": "test", "name": "test"})()
    return ctx


def _items(n: int, seed: int = 0) -> list[dict]:
    """n images in 20 clusters of embeddings, two classes, train/val; every 50th a near copy of the one before."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, 48))
    items = []
    for i in range(n):
        vector = centres[i % 20] + 0.6 * rng.standard_normal(48)
        if i % 50 == 1:
            vector = items[-1]["vector"] + 0.01 * rng.standard_normal(48)
        items.append({"path": f"{'val' if i % 5 == 0 else 'train'}/{'ab'[i % 2]}/{i:05d}.jpg", "label": "ab"[i % 2],
                      "split": "val" if i % 5 == 0 else "train", "vector": vector})
    return items


def test_below_the_exact_limit_the_candidate_search_is_reported_exact():
    result = NEAR_CHECK.run(synthetic_context(_items(120)))
    assert result.metrics["search"] == {"kind": "cosine_knn", "method": "exact (every pair: matrix products)", "n": 120,
                                        "exact": True, "k": 10}
    assert "approximate search" not in result.summary


@pytest.fixture
def approximate_search(monkeypatch):
    from auditor.similarity import neighbours

    monkeypatch.setattr(neighbours, "EXACT_LIMIT", 300)
    monkeypatch.setattr(neighbours, "RECALL_QUERIES", 120)


def test_above_the_exact_limit_the_candidate_search_recall_is_measured_and_reported(approximate_search):
    ctx = synthetic_context(_items(900))
    result = NEAR_CHECK.run(ctx)
    search = result.metrics["search"]
    assert search["exact"] is False and search["queries_measured"] == 120 and search["k"] == 10
    assert 0.5 < search["recall"] <= 1.0 and search["recall_interval"][0] <= search["recall"] <= search["recall_interval"][1]
    assert f"recall@10 {search['recall']:.3f} against exact search on 120 sampled images" in result.summary
    assert ctx.search_quality["embeddings"] == search


def test_the_decision_reads_the_shared_float16_matrix_and_its_k_nn_graph(approximate_search):
    from auditor.similarity import neighbours

    ctx = synthetic_context(_items(900))
    decision = ctx.duplicate_decision
    assert decision.data.unit is ctx.unit_matrix and decision.data.unit.dtype == np.float16
    graph = neighbours._index_for(ctx.unit_matrix).self_graph
    assert graph is not None  # the candidates came from the graph every other check shares
    # Cosines on the pairs are exact (float32 over the stored rows), not rounded to float16.
    pairs = decision.pairs
    rows = neighbours._f32(ctx.unit_matrix)
    expected = np.einsum("ij,ij->i", rows[pairs.query], rows[pairs.target])
    assert pairs.cosine.dtype == np.float32 and np.allclose(pairs.cosine, expected, atol=1e-6)
    # The planted near copies are candidates.
    planted = {(i - 1, i) for i in range(1, 900, 50)}
    found = set(zip(pairs.query.tolist(), pairs.target.tolist())) | set(zip(pairs.target.tolist(), pairs.query.tolist()))
    assert planted <= found


def chain_items(with_c: bool = True) -> list[dict]:
    """Three images 14° and 12.5° apart in embedding space (cosines 0.970 and 0.976), the outer two 26.6° apart
    (0.894): at a raw cosine of 0.95 A≈B and B≈C are accepted, A≉C, so one pair cannot join the group."""
    def direction(angle_deg: float) -> np.ndarray:
        v = np.zeros(48)
        v[0], v[1] = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
        return v

    rng = np.random.default_rng(0)
    items = [{"path": f"train/a/{name}.jpg", "label": "a", "vector": direction(angle)}
             for name, angle in (("A", 0.0), ("B", 14.04), ("C", 26.57)) if with_c or name != "C"]
    return items + [{"path": f"train/b/{i:03d}.jpg", "label": "b", "vector": rng.standard_normal(48)}
                    for i in range(30)]


def test_a_chain_of_look_alikes_is_counted_and_listed_not_grouped():
    result = NEAR_CHECK.run(synthetic_context(chain_items(), min_cosine=0.95, min_correlation=0.9999))
    chained = result.metrics["chained"]
    assert result.metrics["groups"] == 1 and result.metrics["images_in_groups"] == 2
    assert chained["pairs"] == 1 and chained["images"] == 2 and chained["share_of_accepted_images"] == round(2 / 3, 4)
    assert len(chained["examples"]) == 1 and "train/a/B.jpg" in chained["examples"][0]
    assert "1 accepted pair (2 images) in no group" in result.summary


def test_a_chained_component_beyond_the_budget_of_judged_pairs_is_split_on_measured_pairs_and_said(monkeypatch):
    from auditor.similarity import groups

    # A, B, C: the chain is judged on demand (A, C measured: not duplicates) within the default budget …
    result = NEAR_CHECK.run(synthetic_context(chain_items(), min_cosine=0.95, min_correlation=0.9999))
    split = result.metrics["chained"]["split"]
    assert split["chained_components"] == 1 and split["pairs_judged_on_demand"] == 1
    assert split["components_split_on_measured_pairs_only"] == 0 and "already measured" not in result.summary
    # … and with no budget left it is split on its two accepted pairs only, and the summary says so.
    monkeypatch.setattr(groups, "MIN_JUDGED_PAIRS", 0)
    monkeypatch.setattr(groups, "JUDGED_PAIRS_PER_IMAGE", 0)
    result = NEAR_CHECK.run(synthetic_context(chain_items(), min_cosine=0.95, min_correlation=0.9999))
    split = result.metrics["chained"]["split"]
    assert split["pairs_judged_on_demand"] == 0 and split["pairs_budget"] == 0
    assert split["components_split_on_measured_pairs_only"] == 1 and split["images_in_them"] == 3
    assert result.metrics["groups"] == 1 and result.metrics["images_in_groups"] == 2  # still no chained group
    assert "1 chained component (3 images) split on the pairs already measured only" in result.summary


def test_without_chains_nothing_is_said_about_them():
    result = NEAR_CHECK.run(synthetic_context(chain_items(with_c=False), min_cosine=0.95, min_correlation=0.9999))
    assert result.metrics["groups"] == 1
    assert result.metrics["chained"]["pairs"] == 0 and "in no group" not in result.summary


def test_a_leaked_image_in_a_chain_of_look_alikes_is_named_beside_the_leak_estimate(monkeypatch):
    from auditor.checks.leakage import CHECK as LEAKAGE

    items = chain_items()
    items[1] = {**items[1], "path": "val/a/B.jpg", "split": "val"}  # B, between A and C, is held out
    items += [{"path": f"val/b/{i:03d}.jpg", "label": "b", "split": "val", "vector": np.eye(48)[10 + i]}
              for i in range(5)]
    result = LEAKAGE.run(synthetic_context(items, min_cosine=0.95, min_correlation=0.9999))
    assert result.metrics["per_split"]["val"]["leaked"] == 1
    assert result.metrics["chained_leaked_images"] == 1
    assert "1 of the leaked images also match images outside their group" in result.summary
    # No precision is estimated here (fixed thresholds, no copies), so none is said to be too high …
    assert result.metrics["detection_quality"]["precision"] is None and "may be too high" not in result.summary
    clean = LEAKAGE.run(synthetic_context([{**i, "split": "val", "path": "val/a/B.jpg"} if i["path"].endswith("/B.jpg")
                                           else i for i in chain_items(with_c=False)], min_cosine=0.95,
                                          min_correlation=0.9999))
    assert clean.metrics["chained_leaked_images"] == 0 and "outside their group" not in clean.summary
    # … where one is, the chained leaks say it may be too high.
    from auditor.checks import leakage

    estimated = leakage.detection_quality

    def with_precision(ctx, estimate):
        return {**estimated(ctx, estimate), "precision": 0.9, "precision_interval": [0.8, 1.0]}

    monkeypatch.setattr(leakage, "detection_quality", with_precision)
    result = LEAKAGE.run(synthetic_context(items, min_cosine=0.95, min_correlation=0.9999))
    assert "precision 90% [80%, 100%]" in result.summary
    assert "chained pairs), so the precision estimate may be too high" in result.summary


def test_on_small_images_above_the_exact_pixel_limit_the_pixel_search_recall_is_reported(monkeypatch):
    from auditor.similarity import evidence

    items = [dict(item, width=32, height=32) for item in _items(120)]
    result = NEAR_CHECK.run(synthetic_context(items))
    assert result.metrics["pixel_search"] is None and "pixel-alike" not in result.summary  # exact below the limit
    monkeypatch.setattr(evidence, "EXACT_PIXEL_SEARCH", 60)
    monkeypatch.setattr(evidence, "PIXEL_NPROBE", 10_000)  # every cell searched: both recalls near 1
    result = NEAR_CHECK.run(synthetic_context(items))
    pixels = result.metrics["pixel_search"]
    assert pixels["kind"] == "pixel_knn" and pixels["exact"] is False and pixels["queries_measured"] == 120
    frames = pixels["whole_frames"]
    assert frames["k"] == 1 and frames["parameters"]["rows_per_image"] == 1
    assert pixels["recall"] >= 0.95 and frames["recall"] >= 0.95
    assert (f"pixel-alike candidates by approximate search (recall@3 {pixels['recall']:.3f}, under rotations "
            f"recall@1 {frames['recall']:.3f} against exact search on 120 sampled images)") in result.summary


def test_above_the_approximate_hash_limit_the_hash_search_recall_and_its_tuning_are_reported(monkeypatch):
    from auditor.similarity import neighbours

    items = _items(120)
    for i in range(1, 120, 3):  # every third image has the pixels (so the hash codes) of the one before
        items[i]["hashes_of"] = items[i - 1]["path"]
    monkeypatch.setattr(neighbours, "HAMMING_APPROXIMATE_FROM", 60)
    monkeypatch.setattr(neighbours, "HAMMING_EXACT_LIMIT", 50)  # multi-index tables, not a flat search
    monkeypatch.setattr(neighbours, "HAMMING_QUALITY_SAMPLE", 500)  # fewer than the 960 probes: the index searches
    result = NEAR_CHECK.run(synthetic_context(items))
    hashes = result.metrics["hash_search"]
    assert hashes["kind"] == "hamming_nearest" and hashes["exact"] is False and hashes["queries_measured"] == 500
    parameters = hashes["parameters"]
    assert hashes["method"].startswith("approximate: multi-index hashing") and parameters["flips"] >= 0
    assert hashes["recall"] is not None and parameters["probes_with_matches"] > 0
    assert 0 < parameters["matches_found"] <= 1 and parameters["recall_up_to_ties"] >= neighbours.TARGET_RECALL
    assert f"hash candidates by approximate search (recall {hashes['recall']:.3f}" in result.summary
    assert f"{parameters['matches_found']:.3f} of all their matches)" in result.summary


def test_both_summaries_say_where_look_alikes_crowded_the_reading_to_stricter_rules(monkeypatch):
    from auditor.checks import duplicates, leakage
    from auditor.checks.leakage import CHECK as LEAKAGE

    items = chain_items()
    items[1] = {**items[1], "path": "val/a/B.jpg", "split": "val"}
    plain = LEAKAGE.run(synthetic_context(items, min_cosine=0.95, min_correlation=0.9999))
    assert "look-alikes crowd" not in plain.summary
    for module in (leakage, duplicates):
        estimated = module.detection_quality
        monkeypatch.setattr(module, "detection_quality",
                            lambda ctx, estimate, estimated=estimated: {**estimated(ctx, estimate),
                                                                        "duplicate_share_recall_floor": 0.35})
    crowded = LEAKAGE.run(synthetic_context(items, min_cosine=0.95, min_correlation=0.9999))
    assert "look-alikes crowd this dataset" in crowded.summary and "finding 35% of them" in crowded.summary
    near = NEAR_CHECK.run(synthetic_context(items, min_cosine=0.95, min_correlation=0.9999))
    assert near.metrics["groups"] >= 1 and "look-alikes crowd this dataset" in near.summary
