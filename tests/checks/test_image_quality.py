"""Tests for the `image_quality` check.

Fast: the rules on in-memory property tables, and on real photos decoded without a backbone (the check
reads only the properties the encode phase computes while hashing). Slow: the planted real-photo dataset
shared with the label_issues and outliers tests.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from auditor.checks import image_quality as iq
from auditor.report import Severity, Status
from tests.checks import planted_photos
from tests.checks.synthetic_audit import synthetic_context

# ------------------------------------------------------------------------------------------------
# The rules on in-memory property tables


def _normal_items(n: int = 200, seed: int = 0, brightness: float = 120.0) -> list[dict]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        contrast = float(rng.normal(50, 8))
        props = {"brightness": float(np.clip(rng.normal(brightness, 12), 1, 254)), "contrast": contrast,
                 "sharpness": float(contrast ** 2 * np.exp(rng.normal(np.log(0.2), 0.4))),
                 "entropy": float(np.clip(rng.normal(7.3, 0.25), 0, 8)), "colourfulness": float(rng.lognormal(3.6, 0.4))}
        landscape = rng.random() < 0.7
        width, height = (500, 375) if landscape else (375, 500)
        items.append({"path": f"train/c/{i}.jpg", "label": "c", "properties": props,
                      "width": width + int(rng.integers(-40, 40)), "height": height})
    return items


PLANTED = {
    "dark": {"properties": {"brightness": 12.0, "contrast": 8.0, "sharpness": 12.0}},
    "bright": {"properties": {"brightness": 245.0, "contrast": 10.0, "sharpness": 20.0}},
    "blurry": {"properties": {"sharpness": 5.0, "contrast": 50.0}},
    "low_information": {"properties": {"entropy": 0.5, "contrast": 2.0, "sharpness": 0.5}},
    "greyscale_as_rgb": {"properties": {"greyscale_as_rgb": True, "colourfulness": 0.0}},
    "odd_size": {"width": 4000, "height": 3000},
    "odd_aspect_ratio": {"width": 1500, "height": 300},
}


def test_each_planted_problem_is_flagged_with_its_kind_and_nothing_else_is():
    items = _normal_items()
    for kind, changes in PLANTED.items():
        item = {"path": f"train/c/{kind}.jpg", "label": "c", "width": 500, "height": 375,
                **{k: v for k, v in changes.items() if k != "properties"}}
        item["properties"] = changes.get("properties", {})
        items.append(item)
    # A dark backdrop with a lit subject (mean 30, highlights 120) is not "too dark".
    items.append({"path": "train/c/night_shot.jpg", "label": "c", "properties": {"brightness": 30.0, "contrast": 45.0}})
    result = iq.CHECK.run(synthetic_context(items, with_embeddings=False))
    kinds_by_path: dict[str, set[str]] = {}
    for finding in result.findings:
        kinds_by_path.setdefault(finding.paths[0], set()).add(finding.evidence["kind"])
    for kind in PLANTED:
        assert kind in kinds_by_path.get(f"train/c/{kind}.jpg", set()), (kind, kinds_by_path)
    assert set(kinds_by_path) == {f"train/c/{kind}.jpg" for kind in PLANTED}
    assert result.status == Status.WARN
    severities = [f.severity for f in result.findings]
    assert severities == sorted(severities, key=lambda s: s == Severity.INFO)  # warnings first
    warning_scores = [f.evidence["score"] for f in result.findings if f.severity == Severity.WARNING]
    assert warning_scores == sorted(warning_scores, reverse=True)
    assert {f.evidence["kind"] for f in result.findings if f.severity == Severity.INFO} == {"odd_size", "odd_aspect_ratio"}
    dark = next(f for f in result.findings if f.evidence["kind"] == "dark")
    assert set(dark.evidence) >= {"score", "robust_z", "value", "dataset_median", "absolute_condition"}
    assert "too dark" in dark.message and "train/c/dark.jpg" in dark.message
    assert result.metrics["per_split"]["train"]["per_kind"]["dark"] == 1


def test_the_message_signs_the_robust_z_like_the_value_beside_it():
    items = _normal_items()
    for kind in ("dark", "bright"):
        items.append({"path": f"train/c/{kind}.jpg", "label": "c", "width": 500, "height": 375, **PLANTED[kind]})
    result = iq.CHECK.run(synthetic_context(items, with_embeddings=False))
    by_kind = {f.evidence["kind"]: f for f in result.findings}
    bright, dark = by_kind["bright"], by_kind["dark"]
    # too bright: the shadows lie above the median, and the z the message prints is positive (the z of the
    # rule's own quantity, log(256 − shadows), is negative, and stays so in the evidence)
    assert bright.evidence["value"] > bright.evidence["dataset_median"] and bright.evidence["robust_z"] < 0
    assert f"robust z {abs(bright.evidence['robust_z']):.1f}" in bright.message
    assert dark.evidence["value"] < dark.evidence["dataset_median"]
    assert f"robust z -{abs(dark.evidence['robust_z']):.1f}" in dark.message


def test_a_clean_sample_passes():
    result = iq.CHECK.run(synthetic_context(_normal_items(seed=3), with_embeddings=False))
    assert result.status == Status.PASS and result.findings == []
    assert result.summary.startswith("no quality issue in 200 images")


def test_a_bright_dataset_does_not_flag_itself_and_a_dimmer_photo_is_not_too_dark():
    items = _normal_items(brightness=225.0, seed=1)
    items.append({"path": "train/c/dimmer.jpg", "label": "c", "properties": {"brightness": 90.0}})
    result = iq.CHECK.run(synthetic_context(items, with_embeddings=False))
    assert not [f for f in result.findings if f.evidence["kind"] in ("bright", "dark")]


def test_greyscale_is_not_an_issue_in_a_greyscale_dataset():
    items = _normal_items(50)
    for item in items[:40]:
        item["properties"] = {**item["properties"], "greyscale_as_rgb": True, "colourfulness": 0.0}
    result = iq.CHECK.run(synthetic_context(items, with_embeddings=False))
    assert not [f for f in result.findings if f.evidence["kind"] == "greyscale_as_rgb"]
    assert result.metrics["distribution"]["greyscale"]["share"] == 0.8


def test_a_true_greyscale_file_is_not_greyscale_stored_as_rgb():
    items = _normal_items(50)
    items.append({"path": "train/c/grey.png", "label": "c", "mode": "L",
                  "properties": {"greyscale_as_rgb": True, "colourfulness": 0.0}})
    result = iq.CHECK.run(synthetic_context(items, with_embeddings=False))
    assert not [f for f in result.findings if f.evidence["kind"] == "greyscale_as_rgb"]


def test_policy_can_make_image_quality_fail():
    from auditor.config import Policy

    items = _normal_items(20)
    items.append({"path": "train/c/dark.jpg", "label": "c", "properties": PLANTED["dark"]["properties"]})
    result = iq.CHECK.run(synthetic_context(items, with_embeddings=False, policy=Policy(image_quality_max_percent=1.0)))
    assert result.status == Status.FAIL


# ------------------------------------------------------------------------------------------------
# Real photos, decoded once without a backbone


@pytest.fixture(scope="module")
def real_photos(tmp_path_factory):
    planted_photos.require_datasets()
    from PIL import Image

    root = tmp_path_factory.mktemp("quality_photos")
    source = planted_photos.HYMENOPTERA / "train"
    for label in ("ants", "bees"):
        (root / "train" / label).mkdir(parents=True)
        # Photos 60–84 of each class in name order: none is dark, bright, blurry or greyscale.
        for path in planted_photos._photos(source / label)[60:85]:
            shutil.copyfile(path, root / "train" / label / path.name)
    spare = planted_photos._photos(source / "bees")[90:93]
    for kind, path in zip(("dark", "blurry", "greyscale_as_rgb"), spare):
        planted_photos._degrade(path, root / "train" / "bees" / f"{kind}_copy.jpg", kind)
    Image.new("RGB", (400, 300), (128, 128, 128)).save(root / "train" / "ants" / "blank_frame.jpg", quality=92)
    return root


def test_degraded_copies_of_real_photos_are_flagged_from_the_scan_alone(real_photos, tmp_path):
    from auditor.config import AuditConfig
    from auditor.runner import prepare

    ctx = prepare(real_photos, AuditConfig(cache_dir=tmp_path / "cache"), embed=False)
    result = iq.CHECK.run(ctx)
    kinds: dict[str, set[str]] = {}
    for f in result.findings:
        if f.severity == Severity.WARNING:
            kinds.setdefault(f.paths[0], set()).add(f.evidence["kind"])
    assert "dark" in kinds.get("train/bees/dark_copy.jpg", set())
    assert "blurry" in kinds.get("train/bees/blurry_copy.jpg", set())
    assert "greyscale_as_rgb" in kinds.get("train/bees/greyscale_as_rgb_copy.jpg", set())
    assert "low_information" in kinds.get("train/ants/blank_frame.jpg", set())
    assert set(kinds) == {"train/bees/dark_copy.jpg", "train/bees/blurry_copy.jpg",
                          "train/bees/greyscale_as_rgb_copy.jpg", "train/ants/blank_frame.jpg"}
    assert result.status == Status.WARN


# ------------------------------------------------------------------------------------------------
# The planted dataset with real embeddings (shared with the other checks' slow tests)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return planted_photos.build(tmp_path_factory)


@pytest.mark.slow
def test_planted_degraded_and_no_class_images_are_flagged(planted):
    result = iq.CHECK.run(planted_photos.fresh_context(planted))
    kinds: dict[str, set[str]] = {}
    for f in result.findings:
        if f.severity == Severity.WARNING:
            for path in f.paths:
                kinds.setdefault(path, set()).add(f.evidence["kind"])
    for kind, path in planted.degraded.items():
        assert kind in kinds.get(path, set()), (kind, path, kinds)
    assert "low_information" in kinds[planted.no_class["blank"]]
    assert "low_information" in kinds[planted.no_class["placeholder"]]
    assert "low_information" in kinds[planted.no_class["screenshot"]]
    assert "bright" in kinds[planted.no_class["placeholder"]]
    # Besides the 6 planted images, the original photos flag 2: 175998972.jpg (a small ant on an almost
    # white page: 1.9 bits of entropy) and 154124431_65460430f2.jpg (a greyscale ant photo stored as RGB).
    others = {p.rsplit("/", 1)[-1] for p in kinds} - {p.rsplit("/", 1)[-1] for p in
                                                      [*planted.degraded.values(), *planted.no_class.values()]}
    assert others <= {"175998972.jpg", "154124431_65460430f2.jpg"}
