"""Tests for the `shortcuts` check and `--source-depth`.

The check reads only cached scans, so most tests here index and scan real photos (hymenoptera) without
a backbone; one CLI test runs the real audit with the offline backbone and the shared embedding cache.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from auditor.checks import shortcuts as sc
from auditor.config import AuditConfig
from auditor.index.dataset import load_dataset
from auditor.errors import ConfigError
from tests.checks import shift_data

# ------------------------------------------------------------------------------------------------
# Pure helpers


def test_lift_is_zero_at_chance_and_one_when_perfect():
    assert sc.lift_over_chance(0.5, 2) == pytest.approx(0.0)
    assert sc.lift_over_chance(1.0, 4) == pytest.approx(1.0)
    assert sc.lift_over_chance(0.4, 4) == pytest.approx(0.2)


def test_category_sentence_names_the_value_that_tells_classes_apart():
    labels = ["bees"] * 100 + ["ants"] * 100
    values = ["PNG"] * 92 + ["JPEG"] * 8 + ["PNG"] * 3 + ["JPEG"] * 97
    test = sc.association(labels, values)
    assert test["p_value"] < 1e-10 and test["cramers_v"] > 0.8
    assert sc.category_sentence("format", test) in {
        "92 % of 'bees' are PNG, 3 % of 'ants'", "97 % of 'ants' are JPEG, 8 % of 'bees'"}
    none = sc.association(labels, ["(none)"] * 150 + ["Canon"] * 50)
    assert sc.category_sentence("camera_model", none) == "100 % of 'bees' have no EXIF camera model, 50 % of 'ants'"
    assert sc.association(labels, ["JPEG"] * 200) is None  # one value: nothing to test


def test_continuous_sentence_formats_units():
    labels = ["ants"] * 3 + ["bees"] * 3
    sizes = [81_920, 82_000, 79_000, 1_300_000, 1_250_000, 1_200_000]
    assert sc.continuous_sentence("file_size", labels, sizes) == (
        "median file size is 1.2 MB for 'bees' vs 80 kB for 'ants'")
    assert sc.continuous_sentence("jpeg_quality", labels, [75, 75, 75, None, None, None]) == (
        "100 % of 'bees' have no jpeg quality")


def test_binned_makes_quantile_categories_and_keeps_missing_apart():
    binned = sc._binned([1.0, 2.0, 3.0, 4.0, 5.0, None, 6.0, 7.0, 8.0, 9.0, 10.0])
    assert binned[5] == sc.NONE
    assert len(set(binned) - {sc.NONE}) == sc.QUANTILE_BINS


def test_config_bounds_for_the_new_keys():
    with pytest.raises(ConfigError, match="source_depth"):
        AuditConfig(source_depth=-1)
    with pytest.raises(ConfigError, match="source_depth cannot be combined with a manifest"):
        AuditConfig(source_depth=1, manifest=Path("m.csv"))
    from auditor.config import Policy

    with pytest.raises(ConfigError, match="policy.min_domain_auc"):
        AuditConfig(policy=Policy(min_domain_auc=0.4))
    with pytest.raises(ConfigError, match="policy.min_shortcut_lift"):
        AuditConfig(policy=Policy(min_shortcut_lift=1.5))
    with pytest.raises(ConfigError, match="policy.min_drift_effect"):
        AuditConfig(policy=Policy(min_drift_effect=-1))


# ------------------------------------------------------------------------------------------------
# Real photos


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    return shift_data.image_pool(tmp_path_factory)


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory, pool):
    return shift_data.pool_root(tmp_path_factory)


def _scan_only(root: Path, cache: Path, **config):
    """Index and scan (no backbone): everything the shortcuts check reads."""
    from auditor.runner import prepare

    return prepare(root, AuditConfig(cache_dir=cache, **config), embed=False)


def _build(root: Path, layout: dict[str, dict[str, list[tuple[Path, str | None]]]], convert=None) -> Path:
    """layout: split → class → [(source photo, sub-folder or None)]; `convert(photo, destination_stem)` may re-encode."""
    for split, classes in layout.items():
        for label, items in classes.items():
            for photo, folder in items:
                target_dir = root / split / label / (folder or "")
                target_dir.mkdir(parents=True, exist_ok=True)
                if convert is None:
                    shutil.copyfile(photo, target_dir / photo.name)
                else:
                    convert(photo, target_dir / photo.stem, label)
    return root


def _photos(pool_dir: Path, pool: dict, label: str) -> list[Path]:
    return [pool_dir / p for p in pool[label]["original"]]


def test_source_depth_reads_the_folders_below_the_class_folder(tmp_path, pool_dir, pool):
    ants, bees = _photos(pool_dir, pool, "ants"), _photos(pool_dir, pool, "bees")
    root = _build(tmp_path / "data", {
        "train": {"ants": [(ants[0], "siteA/cam1"), (ants[1], "siteB"), (ants[2], None)]},
        "val": {"bees": [(bees[0], "siteA/cam2")]},
    })
    sources = {r.path: r.source for r in load_dataset(root, AuditConfig(source_depth=1)).records}
    assert sources == {
        f"train/ants/siteA/cam1/{ants[0].name}": "siteA",
        f"train/ants/siteB/{ants[1].name}": "siteB",
        f"train/ants/{ants[2].name}": None,
        f"val/bees/siteA/cam2/{bees[0].name}": "siteA",
    }
    deeper = {r.path: r.source for r in load_dataset(root, AuditConfig(source_depth=2)).records}
    assert deeper[f"train/ants/siteA/cam1/{ants[0].name}"] == "siteA/cam1"
    assert deeper[f"train/ants/siteB/{ants[1].name}"] == "siteB"
    assert all(r.source is None for r in load_dataset(root, AuditConfig()).records)
    flat = _build(tmp_path / "flat", {"ants": {"siteA": [(ants[3], "day1")]}})  # DIR/ants/siteA/day1/…
    records = load_dataset(flat, AuditConfig(source_depth=1, layout="classes")).records
    assert [(r.label, r.source) for r in records] == [("ants", "siteA")]


@pytest.mark.slow
def test_random_split_of_real_photos_has_no_shortcut(tmp_path, pool_dir, pool):
    ants, bees = _photos(pool_dir, pool, "ants"), _photos(pool_dir, pool, "bees")
    root = _build(tmp_path / "data", {"train": {"ants": [(p, None) for p in ants[20:]],
                                                "bees": [(p, None) for p in bees[20:]]},
                                      "val": {"ants": [(p, None) for p in ants[:20]],
                                              "bees": [(p, None) for p in bees[:20]]}})
    result = sc.CHECK.run(_scan_only(root, tmp_path / "cache"))
    assert result.status.value == "pass", result.summary
    assert result.metrics["model"]["p_value"] >= 0.01
    assert not result.metrics["shortcut"] and not result.findings
    assert "source unknown" in result.summary


def _png_bees_jpeg_ants(photo: Path, stem: Path, label: str) -> None:
    from PIL import Image

    with Image.open(photo) as image:
        image = image.convert("RGB")
        image.thumbnail((192, 192))
        if label == "bees":
            image.save(stem.with_suffix(".png"))
        else:
            image.save(stem.with_suffix(".jpg"), quality=85)


@pytest.mark.slow
def test_format_shortcut_is_found_and_explained(tmp_path, pool_dir, pool):
    ants, bees = _photos(pool_dir, pool, "ants"), _photos(pool_dir, pool, "bees")
    root = _build(tmp_path / "data", {"train": {"ants": [(p, None) for p in ants[:30]],
                                                "bees": [(p, None) for p in bees[:30]]}},
                  convert=_png_bees_jpeg_ants)
    result = sc.CHECK.run(_scan_only(root, tmp_path / "cache"))
    model = result.metrics["model"]
    assert result.status.value == "warn", result.summary
    assert model["balanced_accuracy"] >= 0.95 and model["p_value"] < 0.01 and model["lift"] >= 0.9
    assert "format" in result.metrics["properties_with_signal"]
    assert result.metrics["properties"]["format"]["cramers_v"] == pytest.approx(1.0)
    finding = result.findings[0]
    assert finding.id.startswith("shortcuts:label_from_properties")
    assert ("100 % of 'bees' are PNG, 0 % of 'ants'" in finding.message
            or "100 % of 'ants' are JPEG, 0 % of 'bees'" in finding.message)
    assert result.summary.startswith("file properties alone predict the label in train with balanced accuracy 1.00")


def _sourced(pool_dir: Path, pool: dict, seed: int, skewed: bool) -> dict:
    """Two sites. skewed: ants mostly from siteA, bees mostly from siteB, val from siteA only.
    Otherwise every photo gets a random site, in train and val alike."""
    rng = random.Random(seed)
    ants, bees = _photos(pool_dir, pool, "ants"), _photos(pool_dir, pool, "bees")
    if not skewed:
        site = lambda: rng.choice(["siteA", "siteB"])  # noqa: E731
        return {"train": {"ants": [(p, site()) for p in ants[20:]], "bees": [(p, site()) for p in bees[20:]]},
                "val": {"ants": [(p, site()) for p in ants[:20]], "bees": [(p, site()) for p in bees[:20]]}}
    return {"train": {"ants": [(p, "siteA") for p in ants[20:52]] + [(p, "siteB") for p in ants[52:]],
                      "bees": [(p, "siteB") for p in bees[20:52]] + [(p, "siteA") for p in bees[52:]]},
            "val": {"ants": [(p, "siteA") for p in ants[:20]], "bees": [(p, "siteA") for p in bees[:20]]}}


@pytest.mark.slow
def test_source_tied_to_class_and_single_source_split_are_reported(tmp_path, pool_dir, pool):
    root = _build(tmp_path / "data", _sourced(pool_dir, pool, 0, skewed=True))
    result = sc.CHECK.run(_scan_only(root, tmp_path / "cache", source_depth=1))
    sources = result.metrics["sources"]
    assert result.status.value == "warn"
    assert sources["source_by_class"]["siteA"] == {"ants": 52, "bees": 28}
    assert sources["split_composition"]["val"] == {"siteA": 40}
    assert sources["source_vs_class"]["cramers_v"] > 0.3 and sources["source_vs_class"]["p_value"] < 0.01
    kinds = {f.id.split(":")[1] for f in result.findings}
    assert {"source_predicts_class", "single_source_split", "label_from_properties"} <= kinds
    assert result.metrics["properties_with_signal"][0] == "source"
    single = next(f for f in result.findings if f.id.startswith("shortcuts:single_source_split"))
    assert single.message == "val is drawn from one source only ('siteA'), while train has 2: its accuracy says " \
                             "little about the other sources"
    assert "80 % of 'ants' come from source 'siteA', 20 % of 'bees'" in result.summary


@pytest.mark.slow
def test_sources_assigned_at_random_raise_nothing(tmp_path, pool_dir, pool):
    root = _build(tmp_path / "data", _sourced(pool_dir, pool, 1, skewed=False))
    result = sc.CHECK.run(_scan_only(root, tmp_path / "cache", source_depth=1))
    assert result.metrics["source_known"]
    assert result.status.value == "pass", result.summary
    assert result.metrics["sources"]["source_vs_class"]["p_value"] >= 0.01
    assert not result.findings


@pytest.mark.slow
def test_cli_passes_source_depth_and_reports_both_checks(tmp_path, tmp_path_factory, pool_dir, pool):
    from tests.e2e.cli_helpers import run_cli

    root = _build(tmp_path / "data", _sourced(pool_dir, pool, 0, skewed=True))
    out = tmp_path / "out"
    result = run_cli("audit", root, "--offline", "--backbone", "efficientnet-lite0", "--cache-dir",
                     shift_data.shared_cache(tmp_path_factory), "--checks", "split_shift,shortcuts",
                     "--source-depth", "1", "-q", "--format", "terminal,json", out=out)
    assert result.exit_code == 0, result.stdout + result.stderr  # warnings do not fail the gate
    checks = {c["id"]: c for c in result.report["checks"]}
    assert checks["shortcuts"]["status"] == "warn" and checks["shortcuts"]["metrics"]["source_known"]
    assert checks["split_shift"]["status"] == "pass", checks["split_shift"]["summary"]
    split = checks["split_shift"]["metrics"]["per_split"]["val"]
    assert 0.0 <= split["domain_classifier"]["auc"] <= 1.0 and split["mmd"]["permutations"] >= 999
    json.dumps(checks)  # plain JSON all the way down
    assert "val is drawn from one source only" in result.stdout
    assert np.isfinite(checks["shortcuts"]["metrics"]["model"]["balanced_accuracy"])
