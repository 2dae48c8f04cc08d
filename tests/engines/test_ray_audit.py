"""`audit DIR --engine ray` on a local Ray (2 CPUs) reaches the local engine's verdicts: the same statuses
and finding ids, the same embeddings (within float rounding); a second run computes no embedding.

The dataset is a part of samples/ that keeps every planted problem (a leak, an exact copy, a label
conflict, a broken file, an under-represented class), so the findings compared are not empty."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.cli_helpers import SAMPLES, run_cli

pytestmark = pytest.mark.slow

PER_FOLDER = 5  # unplanted photos kept per class folder


def planted_subset(destination: Path) -> Path:
    planted = json.loads((SAMPLES / "planted.json").read_text())
    keep = {leak[side] for leak in planted["leakage"] for side in ("held_out", "train")}
    keep |= {path for group in planted["exact_duplicates"] + planted["label_conflicts"] for path in group}
    keep |= set(planted["broken"])
    for folder in sorted(p for p in SAMPLES.glob("*/*") if p.is_dir()):
        photos = sorted(p for p in folder.iterdir() if p.is_file())
        keep |= {p.relative_to(SAMPLES).as_posix() for p in photos[:PER_FOLDER]}
    for relpath in sorted(keep):
        (destination / relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLES / relpath, destination / relpath)
    return destination


def verdicts(report: dict) -> dict[str, tuple[str, list[str]]]:
    return {c["id"]: (c["status"], sorted(f["id"] for f in c["findings"])) for c in report["checks"]}


def vectors(cache: Path) -> dict[str, np.ndarray]:
    """The dataset embeddings each engine stored (float16 unit rows in the embedding store), as unit vectors."""
    from auditor.encoding.cache import Cache

    with sqlite3.connect(cache / "cache.sqlite3") as db:
        rows = db.execute("SELECT model, sha256 FROM embedding_rows").fetchall()
    (model,) = {model for model, _sha in rows}
    store = Cache(cache).embedding_store(model)
    shas = [sha for _model, sha in rows]
    store.load(shas)
    return {sha: np.asarray(row, np.float32) for sha, row in zip(shas, store.unit_rows(shas, compact=False))}


@pytest.fixture(scope="module")
def runs(ray_session, tmp_path_factory):
    data = planted_subset(tmp_path_factory.mktemp("data"))
    common = ("--offline", "--backbone", "efficientnet-lite0", "--calibration-images", "8", "--workers", "2", "-q")
    caches = {name: tmp_path_factory.mktemp(f"cache-{name}") for name in ("local", "ray")}
    local = run_cli("audit", data, *common, "--cache-dir", caches["local"], out=tmp_path_factory.mktemp("local"))
    ray = run_cli("audit", data, *common, "--engine", "ray", "--cache-dir", caches["ray"], out=tmp_path_factory.mktemp("ray"))
    again = run_cli("audit", data, *common, "--engine", "ray", "--cache-dir", caches["ray"], out=tmp_path_factory.mktemp("again"))
    return local, ray, again, caches


def test_the_ray_engine_reaches_the_local_engines_verdicts(runs):
    local, ray, _, _ = runs
    assert local.exit_code == ray.exit_code == 1, ray.stderr  # the planted problems fail the policy
    assert verdicts(ray.report) == verdicts(local.report)
    found = {check: ids for check, (_, ids) in verdicts(local.report).items() if ids}
    assert {"leakage", "exact_duplicates", "label_conflicts", "integrity"} <= set(found)
    assert "Traceback" not in ray.stdout + ray.stderr


def test_both_engines_store_the_same_embeddings(runs):
    _, _, _, caches = runs
    local, ray = vectors(caches["local"]), vectors(caches["ray"])
    assert local.keys() == ray.keys() and len(local) > 30
    worst = max(float(np.abs(local[sha] - ray[sha]).max()) for sha in local)
    # Stored as float16 unit vectors: engines that agree within float32 rounding agree within one float16 step.
    assert worst < 1e-3, worst


def cache_counts(report: dict) -> tuple[int, int]:
    """(embeddings reused, embeddings computed) as the report's notes state them."""
    note = next(n for n in report["notes"] if n.startswith("Cache:"))
    reused, computed = re.match(r"Cache: (\d+) embeddings reused, (\d+) computed", note).groups()
    return int(reused), int(computed)


def test_a_second_ray_run_computes_no_embedding(runs):
    local, ray, again, _ = runs
    assert cache_counts(ray.report) == cache_counts(local.report)
    reused, computed = cache_counts(ray.report)
    assert reused == 0 and computed > 30
    assert cache_counts(again.report) == (computed, 0)
    assert verdicts(again.report) == verdicts(ray.report)
