"""`auditor split` end to end on real photos with planted leaks, a label conflict, a broken file and a stray
file: the CSV lists every input once, the materialized folder is hard links in DEST/<split>/<class>/, the
dataset is unchanged byte for byte, and an audit of the materialized folder passes `leakage` and
`label_conflicts` (with --fractions and with --keep-existing)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from auditor.fix.split_csv import read_split_csv
from tests.e2e.cli_helpers import SHARED_DATASETS, check, run_cli

pytestmark = pytest.mark.slow

PLUMBING = ("--offline", "--backbone", "efficientnet-lite0", "--calibration-images", "12", "-q")


def snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    # AUDITOR_SHARED_DATASETS: where the shared photos are when the checkout is not beside them (a git worktree).
    source = Path(os.environ.get("AUDITOR_SHARED_DATASETS", SHARED_DATASETS)) / "hymenoptera_data"
    if not source.is_dir():
        pytest.skip(f"real photos not found at {source}")
    root = tmp_path_factory.mktemp("split") / "data"
    for split, count in (("train", 12), ("val", 5)):
        for label in ("ants", "bees"):
            (root / split / label).mkdir(parents=True)
            for photo in sorted((source / split / label).glob("*.jpg"))[:count]:
                shutil.copy(photo, root / split / label / photo.name)
    ants = sorted((root / "train" / "ants").glob("*.jpg"))
    bees = sorted((root / "train" / "bees").glob("*.jpg"))
    leaks = []
    for photo in ants[:3]:  # half size, re-encoded
        image = Image.open(photo).convert("RGB")
        image.resize((image.width // 2, image.height // 2)).save(root / "val" / "ants" / f"leak_{photo.name}", quality=85)
        leaks.append(f"val/ants/leak_{photo.name}")
    image = Image.open(bees[0]).convert("RGB")  # mirrored
    image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "val" / "bees" / f"mirror_{bees[0].name}", quality=90)
    leaks.append(f"val/bees/mirror_{bees[0].name}")
    shutil.copy(ants[5], root / "val" / "bees" / f"conflict_{ants[5].name}")  # one ant filed as a bee in val
    (root / "train" / "ants" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole JPEG")
    (root / "val" / "stray.jpg").write_bytes(ants[0].read_bytes())  # no class folder
    return root, leaks, f"train/ants/{ants[5].name}", f"val/bees/conflict_{ants[5].name}"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("split-cache")


def split_and_reaudit(root: Path, cache: Path, work: Path, *mode: str):
    before = snapshot(root)
    csv_path, dest = work / "split.csv", work / "materialized"
    result = run_cli("split", root, "-o", csv_path, "--materialize", dest, "--format", "terminal,json,html",
                     "--cache-dir", cache, *PLUMBING, *mode)
    assert result.exit_code == 0, result.stderr
    assert snapshot(root) == before
    audit = run_cli("audit", dest, "--checks", "exact_duplicates,near_duplicates,leakage,label_conflicts",
                    "--cache-dir", cache, "--exit-zero", "--format", "json", *PLUMBING, out=work / "reaudit")
    assert audit.exit_code == 0, audit.stderr
    stats = json.loads(csv_path.with_suffix(".json").read_text())
    return result, read_split_csv(csv_path), stats, dest, audit.report


@pytest.mark.parametrize("mode", [("--fractions", "train=0.75,val=0.25", "--seed", "3"), ("--keep-existing",)],
                         ids=["fractions", "keep-existing"])
def test_split_materialize_reaudit(planted, cache, tmp_path, mode):
    root, leaks, conflict_train, conflict_val = planted
    result, rows, stats, dest, reaudit = split_and_reaudit(root, cache, tmp_path, *mode)
    # Every input file exactly once: the 44 images plus the stray file.
    inputs = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert sorted(r.path for r in rows) == inputs
    by_path = {r.path: r for r in rows}
    assert by_path["train/ants/broken.jpg"].split is None and by_path["train/ants/broken.jpg"].reason.startswith("broken:")
    assert by_path["val/stray.jpg"].split is None and by_path["val/stray.jpg"].reason.startswith("not_indexed:")
    for path in (conflict_train, conflict_val):
        assert by_path[path].split is None and by_path[path].reason.startswith("label_conflict:")
    # The planted leaks were known before and are gone after.
    assert stats["before"]["leaks"]["per_split"]["val"]["leaked"] >= len(leaks)
    assert stats["before"]["conflicts"]["groups"] >= 1
    assert stats["after"]["leaks"]["leaked_images"] == 0 and stats["after"]["conflicts"]["groups"] == 0
    for leak in leaks:
        group = by_path[leak].group
        assert group and len({r.split for r in rows if r.group == group}) == 1
    # The materialized folder: hard links in the Keras layout, one per kept row.
    kept = [r for r in rows if r.split]
    assert stats["materialized"]["files"] == len(kept) and stats["materialized"]["hard_links"] == len(kept)
    some = next(r for r in kept if r.path.startswith("train/bees/"))
    assert (dest / some.split / "bees" / Path(some.path).name).stat().st_ino == (root / some.path).stat().st_ino
    assert sorted(p.name for p in (dest / "train").iterdir()) == ["ants", "bees"]
    # The audit of the materialized split passes leakage and label_conflicts.
    assert check(reaudit, "leakage")["status"] == "pass", check(reaudit, "leakage")["summary"]
    assert check(reaudit, "label_conflicts")["status"] == "pass"
    assert "held-out images with a train duplicate" in result.stdout
    if mode[0] == "--fractions":
        assert stats["targets"]["per_split"]["val"]["images"] in (9, 10)  # 25 % of 38 kept images
        assert not (root.parent / "split.csv").exists()
    else:
        assert stats["moved"]["total"] >= 1 and all(r.split in ("train", "val") for r in kept)


def test_refuses_to_write_into_the_dataset(planted, cache, tmp_path):
    root, *_ = planted
    before = snapshot(root)
    result = run_cli("split", root, "-o", root / "split.csv", "--cache-dir", cache, *PLUMBING)
    assert result.exit_code == 2 and "inside the dataset" in result.stderr
    result = run_cli("split", root, "-o", tmp_path / "s.csv", "--materialize", root / "val" / "out", "--cache-dir",
                     cache, *PLUMBING)
    assert result.exit_code == 2 and "inside the dataset" in result.stderr
    result = run_cli("split", root, "-o", tmp_path / "s.csv", "--fractions", "train=0.9", "--cache-dir", cache, *PLUMBING)
    assert result.exit_code == 2 and "two or more splits" in result.stderr
    assert snapshot(root) == before
