"""A hand-made report over a few generated images, with the file name every HTML report must survive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from auditor.report import CheckResult, Finding, Report, Severity, Status

EVIL_NAME = "<img src=x onerror=alert(1)>.jpg"
EVIL_LABEL = "<script>alert(2)</script>"


def _photo(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((200, 150), Image.Resampling.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG")
    return path


def build_report(root: Path) -> tuple[Report, dict[str, Path]]:
    files = {
        f"val/ants/{EVIL_NAME}": _photo(root / "val" / "ants" / EVIL_NAME, 1),
        "train/ants/a1.jpg": _photo(root / "train" / "ants" / "a1.jpg", 1),
        "train/bees/b1.jpg": _photo(root / "train" / "bees" / "b1.jpg", 2),
        "train/bees/b2.jpg": _photo(root / "train" / "bees" / "b2.jpg", 3),
    }
    leak = Finding(
        id="leakage:group:0123456789abcdef", severity=Severity.ERROR,
        message=f"the same image is in train and val: val/ants/{EVIL_NAME}, train/ants/a1.jpg",
        paths=[f"val/ants/{EVIL_NAME}", "train/ants/a1.jpg"],
        evidence={"members": [{"path": f"val/ants/{EVIL_NAME}", "split": "val", "label": "ants"},
                              {"path": "train/ants/a1.jpg", "split": "train", "label": "ants"}],
                  "pairs": [{"a": f"val/ants/{EVIL_NAME}", "b": "train/ants/a1.jpg", "kinds": ["bytes"]}]},
    )
    accepted = Finding(
        id="near_duplicates:group:fedcba9876543210", severity=Severity.WARNING,
        message="2 near-identical images (cosine up to 0.991): train/bees/b1.jpg, train/bees/b2.jpg",
        paths=["train/bees/b1.jpg", "train/bees/b2.jpg"],
        evidence={"members": [{"path": "train/bees/b1.jpg", "split": "train", "label": EVIL_LABEL},
                              {"path": "train/bees/b2.jpg", "split": "train", "label": "bees"}],
                  "pairs": [{"a": "train/bees/b1.jpg", "b": "train/bees/b2.jpg", "kinds": ["embedding"],
                             "cosine": 0.991, "phash_distance": 4}],
                  "max_cosine": 0.991, "accepted": "baseline"},
    )
    checks = [
        CheckResult("leakage", Status.FAIL, f"50.0 % of val images (1 of 2) have a duplicate in train (policy: fail above 0 %)",
                    metrics={"per_split": {"val": {"images": 2, "leaked": 1, "percent": 50.0}}}, findings=[leak]),
        CheckResult("near_duplicates", Status.PASS, "1 group — all 1 accepted (baseline), none new",
                    metrics={"groups": 1}, findings=[accepted]),
        CheckResult("class_balance", Status.PASS, "2 classes",
                    metrics={"per_split": {"train": {"images": 3, "classes": {"ants": 1, EVIL_LABEL: 2}},
                                           "val": {"images": 1, "classes": {"ants": 1, EVIL_LABEL: 0}}}}),
        CheckResult("split_shift", Status.WARN, "val differs from train (domain AUC 0.71)",
                    metrics={"reference_finetune": {"history": {"accuracy": [0.6, 0.8, 0.9], "val_accuracy": [0.55, 0.7, 0.72],
                                                                "loss": [0.9, 0.5, 0.3], "val_loss": [1.0, 0.8, 0.75]}},
                             "gap_attribution": {"leakage": 0.05, "shift": 0.1, EVIL_LABEL: -0.02}}),
        CheckResult("integrity", Status.SKIPPED, "skipped"),
    ]
    report = Report(tool_version="0.1.0",
                    dataset={"root": str(root), "layout": "splits",
                             "splits": {"train": {"images": 3, "classes": {"ants": 1, "bees": 2}},
                                        "val": {"images": 1, "classes": {"ants": 1}}}},
                    backbone={"name": "efficientnet-lite0"}, checks=checks, notes=[f"note about {EVIL_NAME}"],
                    timings={"total": 1.5})
    return report, files


@pytest.fixture
def sample(tmp_path):
    report, files = build_report(tmp_path / "data")
    return report, files


def projection_for(files: dict[str, Path]) -> dict:
    rng = np.random.default_rng(0)
    return {"x": rng.normal(size=40).round(3).tolist(), "y": rng.normal(size=40).round(3).tolist(),
            "split": ["train"] * 30 + ["val"] * 10, "splits": ["train", "val"],
            "explained_variance_ratio": [0.3, 0.2], "points": 40, "total": 40}


def properties_for() -> dict:
    rng = np.random.default_rng(1)
    return {split: {"brightness": rng.normal(120, 20, 50).tolist(), "contrast": rng.normal(50, 5, 50).tolist()}
            for split in ("train", "val")}
