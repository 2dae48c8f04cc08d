"""Tiny photos (32 px JPEGs, as in CIFAR-like sets) with planted same-shot leaks, audited end to end with the
real offline EfficientNet-Lite0 on real image files: the leaks are found, nothing else is, the audit embeds
at a smaller input (as it does above FULL_SIZE_UP_TO images) and says so, and it reports recall and precision
with intervals."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from auditor.similarity import input_size
from tests.e2e.cli_helpers import SAMPLES, check, run_cli

pytestmark = pytest.mark.slow


def tiny(image: Image.Image, side: int = 32) -> bytes:
    image = image.convert("RGB")
    s = min(image.size)
    left, top = (image.width - s) // 2, (image.height - s) // 2
    small = image.crop((left, top, left + s, top + s)).resize((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=75)
    return buffer.getvalue()


def same_shot(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The same shot post-processed differently: 10 % crop at an offset, colour and contrast changed."""
    image = image.convert("RGB")
    w, h = image.size
    dx, dy = int(rng.integers(0, w // 10)), int(rng.integers(0, h // 10))
    image = image.crop((dx, dy, dx + int(w * 0.9), dy + int(h * 0.9)))
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
    return ImageEnhance.Contrast(image).enhance(rng.uniform(0.85, 1.15))


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    photos = sorted(p for p in SAMPLES.rglob("*.jpg") if p.stat().st_size > 2000)
    usable = []
    for path in photos:
        try:
            usable.append(Image.open(path).convert("RGB"))
        except OSError:
            continue  # the samples' deliberately broken file
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    train, held = usable[:60], usable[60:75]
    leaks = []
    for i, image in enumerate(train):
        (root / "train" / "x").mkdir(parents=True, exist_ok=True)
        (root / "train" / "x" / f"t{i:03d}.jpg").write_bytes(tiny(image))
    (root / "val" / "x").mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(held):
        (root / "val" / "x" / f"v{i:03d}.jpg").write_bytes(tiny(image))
    for i in range(6):
        copy = same_shot(train[i * 7], rng)
        if i == 2:
            copy = ImageOps.mirror(copy)
        (root / "val" / "x" / f"leak{i}.jpg").write_bytes(tiny(copy))
        leaks.append(f"val/x/leak{i}.jpg")
    out = tmp_path_factory.mktemp("out")
    # As a dataset above FULL_SIZE_UP_TO images would be: the small-input path (a dataset this size is embedded at
    # full size; tests/similarity/test_input_size.py).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(input_size, "FULL_SIZE_UP_TO", 50)
        result = run_cli("duplicates", root, "--offline", "--backbone", "efficientnet-lite0",
                         "--cache-dir", tmp_path_factory.mktemp("cache"), "-q", out=out)
    return result, set(leaks)


def test_planted_tiny_leaks_are_found_and_nothing_else(audited):
    result, leaks = audited
    leakage = check(result.report, "leakage")
    flagged = {m["path"] for f in leakage["findings"] for m in f["evidence"]["members"] if m["split"] != "train"}
    assert len(flagged & leaks) >= 5  # of 6
    assert flagged <= leaks


def test_groups_hold_only_duplicates_of_each_other(audited):
    result, _ = audited
    for finding in check(result.report, "near_duplicates")["findings"]:
        assert len(finding["paths"]) == 2


def test_small_images_are_embedded_at_a_smaller_input_and_the_report_says_why(audited):
    result, _ = audited
    assert result.report["backbone"]["input_size"] == 96
    assert any("Embedding input: 96 px" in note and "small" in note for note in result.report["notes"])


def test_recall_and_precision_come_with_intervals(audited):
    result, _ = audited
    near = check(result.report, "near_duplicates")["metrics"]
    quality = check(result.report, "leakage")["metrics"]["detection_quality"]
    assert quality["recall_interval"][0] <= quality["recall"] <= quality["recall_interval"][1]
    assert quality["precision_interval"][0] <= quality["precision"] <= quality["precision_interval"][1]
    assert set(near["tiers"]) == {"embedding", "pixels", "hash"}
    assert all("reliable" in tier for tier in near["tiers"].values())
