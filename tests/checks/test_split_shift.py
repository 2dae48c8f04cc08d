"""Tests for the `split_shift` check.

Fast tests: the statistical helpers on numpy data. Slow tests: real photos (hymenoptera), real
EfficientNet-Lite0 embeddings, a planted shift (held-out images downscaled, brightened, blurred) that must
be found, and random re-splits of the same photos that must not be flagged.
"""

from __future__ import annotations

import numpy as np
import pytest

from auditor.checks import split_shift as ss
from auditor.config import Policy
from auditor.encoding.imaging import ImageScan
from tests.checks import shift_data

# ------------------------------------------------------------------------------------------------
# Pure helpers


def test_change_phrase_and_drift_sentence_read_like_the_issue():
    assert ss.change_phrase(2.3, "larger", "smaller") == "2.3× larger"
    assert ss.change_phrase(0.82, "brighter", "darker") == "18 % darker"
    assert ss.change_phrase(0.4, "larger", "smaller") == "2.5× smaller"
    assert ss.change_phrase(1.01, "larger", "smaller") is None
    drifts = {
        "pixels": {"test": "ks", "effect": 2.0, "ratio": 2.3},
        "brightness": {"test": "ks", "effect": 0.5, "ratio": 0.82},
    }
    assert ss.drift_sentence("validation", "training", drifts) == (
        "validation images are 2.3× larger and 18 % darker than training images"
    )
    with_format = {**drifts, "format": {"test": "chi2", "effect": 0.9, "category": "PNG",
                                        "held_out_share": 0.92, "reference_share": 0.03}}
    assert ss.drift_sentence("val", "train", with_format).endswith("; 92 % of val images are PNG (train: 3 %)")
    reshaped = {**drifts, "jpeg_quality": {"test": "ks", "effect": 3.0, "ratio": 1.01}}
    assert ss.drift_sentence("val", "train", reshaped) == (
        "val images are 2.3× larger and 18 % darker than train images; their JPEG quality is distributed differently")
    assert ss.drift_sentence("val", "train", {"jpeg_quality": reshaped["jpeg_quality"]}) == (
        "val images differ from train images in JPEG quality")


def _scan(i: int, width: int, brightness: float, fmt: str = "JPEG") -> ImageScan:
    return ImageScan(sha256=f"{i:064x}", file_size=width * 300, format=fmt, mode="RGB", width=width,
                     height=width * 3 // 4, properties={"brightness": brightness, "contrast": 40.0,
                                                       "sharpness": 100.0, "colourfulness": 30.0,
                                                       "jpeg_quality": 90})


def test_an_auc_far_below_chance_is_explained_not_printed_bare():
    """Held-out images that are copies of training ones drive the cross-validated AUC far below 0.5."""
    from auditor.checks import CHECKS
    from tests.checks.synthetic_audit import synthetic_context

    def summary(copies: bool) -> tuple[float, str]:
        rng = np.random.default_rng(0)
        train = rng.normal(size=(40, 64))
        held_out = train[:20] if copies else rng.normal(size=(20, 64))
        items = [{"path": f"train/{'ab'[i % 2]}/{i}.jpg", "label": "ab"[i % 2], "vector": v} for i, v in enumerate(train)]
        items += [{"path": f"val/{'ab'[i % 2]}/{i}.jpg", "label": "ab"[i % 2], "split": "val", "vector": v}
                  for i, v in enumerate(held_out)]
        result = CHECKS["split_shift"].run(synthetic_context(items))
        return result.metrics["per_split"]["val"]["domain_classifier"]["auc"], result.summary

    auc, text = summary(copies=True)
    assert auc < ss.BELOW_CHANCE_AUC and ss.BELOW_CHANCE_NOTE in text
    auc, text = summary(copies=False)
    assert auc >= ss.BELOW_CHANCE_AUC and "below chance" not in text


def test_property_drift_flags_what_moved_and_nothing_else():
    rng = np.random.default_rng(4)
    reference = [_scan(i, int(rng.integers(400, 600)), float(rng.normal(110, 20))) for i in range(200)]
    same = [_scan(i, int(rng.integers(400, 600)), float(rng.normal(110, 20))) for i in range(100)]
    moved = [_scan(i, int(rng.integers(900, 1300)), float(rng.normal(90, 20)), "PNG" if i % 2 else "JPEG")
             for i in range(100)]
    policy = Policy(alpha=0.01, min_drift_effect=0.2, min_cramers_v=0.1)
    quiet = ss.property_drift(reference, same)
    assert not any(ss.drifts(r, policy) for r in quiet.values())
    loud = ss.property_drift(reference, moved)
    drifting = {name for name, r in loud.items() if ss.drifts(r, policy)}
    assert {"pixels", "width", "file_size", "brightness", "format"} <= drifting
    assert not ss.drifts(loud["contrast"], policy) and not ss.drifts(loud["aspect_ratio"], policy)  # unchanged or immaterial
    assert drifting - {"brightness"} <= {n for n, r in loud.items() if ss.drifts(r, Policy(min_drift_effect=0.2, alpha=0.01,
                                                                                            min_cramers_v=0.1))}
    strict = Policy(alpha=0.01, min_drift_effect=50.0, min_cramers_v=0.99)  # the judge follows the policy
    assert not any(ss.drifts(r, strict) for r in loud.values())
    assert loud["brightness"]["ratio"] == pytest.approx(90 / 110, abs=0.05)
    assert loud["format"]["category"] in {"PNG", "JPEG"} and loud["format"]["effect"] > 0.4
    sentence = ss.drift_sentence("val", "train", {n: loud[n] for n in drifting})
    assert sentence.startswith("val images are ") and " larger" in sentence and "darker than train images" in sentence
    assert "wider" not in sentence  # width and height are covered by 'larger' (pixels)


# ------------------------------------------------------------------------------------------------
# Real photos, real embeddings


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    return shift_data.image_pool(tmp_path_factory)


@pytest.fixture(scope="module")
def audit_manifest(tmp_path_factory, pool):
    """Build the context for a manifest over the pool (embeddings from the shared session cache)."""
    from auditor.config import AuditConfig
    from auditor.runner import prepare

    cache = shift_data.shared_cache(tmp_path_factory)
    root = shift_data.pool_root(tmp_path_factory)
    folder = tmp_path_factory.mktemp("manifests")

    def build(name: str, rows):
        manifest = shift_data.write_manifest(folder / f"{name}.csv", rows)
        config = AuditConfig(backbone="efficientnet-lite0", cache_dir=cache, offline=True, manifest=manifest)
        return prepare(root, config)

    return build


@pytest.mark.slow
def test_planted_shift_fails_with_evidence(audit_manifest, pool):
    ctx = audit_manifest("planted", shift_data.planted_rows(pool))
    result = ss.CHECK.run(ctx)
    val = result.metrics["per_split"]["val"]
    assert result.status.value == "fail", result.summary
    assert val["domain_classifier"]["auc"] >= 0.9
    assert val["p_value"] < 0.01 and val["mmd"]["p_value"] < 0.01
    assert all(c["shifted"] for c in val["per_class"].values())
    drifting = {name for name, d in val["property_drift"].items() if d["drifts"]}
    assert {"pixels", "brightness", "file_size"} <= drifting
    assert val["property_drift"]["pixels"]["ratio"] == pytest.approx(0.25, abs=0.03)
    assert val["property_drift"]["brightness"]["ratio"] == pytest.approx(1.5, abs=0.1)
    assert "val images are 3.9× smaller" in result.summary and "× blurrier" in result.summary
    assert any(f.message.startswith("val images are 49 % brighter than train images") for f in result.findings)
    least = next(f for f in result.findings if f.id.startswith("split_shift:least_like_train"))
    assert all(path.startswith("shifted/") for path in least.paths)
    assert least.evidence["scores"][0]["score"] >= least.evidence["scores"][-1]["score"]
    assert result.findings[0].severity.value == "error"
    assert "(policy: fail when p < 0.01 and AUC ≥ 0.6" in result.summary


@pytest.mark.slow
def test_shift_in_one_class_is_found_in_that_class(audit_manifest, pool):
    ctx = audit_manifest("bees_only", shift_data.planted_rows(pool, shifted_classes=("bees",)))
    result = ss.CHECK.run(ctx)
    per_class = result.metrics["per_split"]["val"]["per_class"]
    assert per_class["bees"]["shifted"] and not per_class["ants"]["shifted"], per_class
    assert per_class["bees"]["p_value_holm"] < 0.01 and per_class["bees"]["domain_classifier"]["auc"] >= 0.9
    assert per_class["ants"]["domain_classifier"]["auc"] < 0.75
    assert result.status.value in {"fail", "warn"}
    assert any(f.id.startswith("split_shift:class_shift") and f.evidence["class"] == "bees" for f in result.findings)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_random_resplits_of_the_same_photos_are_not_flagged(audit_manifest, pool, seed):
    ctx = audit_manifest(f"resplit{seed}", shift_data.random_split_rows(pool, seed))
    result = ss.CHECK.run(ctx)
    val = result.metrics["per_split"]["val"]
    assert result.status.value == "pass", result.summary
    assert val["p_value"] >= 0.01 and val["domain_classifier"]["auc"] < 0.6
    assert not any(f.severity.value != "info" for f in result.findings)
    assert result.metrics["seconds"] < 30
