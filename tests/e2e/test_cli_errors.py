"""Bad input gets one line and a tip (exit 2) or a finding, never a traceback; the dataset is never touched."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.e2e.cli_helpers import SAMPLES, check, run_cli

pytestmark = pytest.mark.slow


def _assert_clean_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: "), result.stderr
    assert any(line.startswith("Tip: ") for line in lines), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for needle in needles:
        assert needle in result.stderr


def _photo(path: Path, seed: int, size=(96, 80), fmt: str = "JPEG") -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
    image = Image.fromarray(base).resize(size, Image.Resampling.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


def test_resnet50_without_weights_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    result = run_cli("audit", SAMPLES, "--backbone", "resnet50", "--offline", "--cache-dir", tmp_path / "c", "-q")
    _assert_clean_error(result, "ResNet50", "--weights PATH")


def test_auto_backbone_falls_back_to_offline_weights_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    small = tmp_path / "data"
    for i in range(4):
        _photo(small / "train" / ("a" if i % 2 else "b") / f"{i}.jpg", i)
        _photo(small / "val" / ("a" if i % 2 else "b") / f"v{i}.jpg", 100 + i)
    result = run_cli("audit", small, "--offline", "--cache-dir", tmp_path / "c", "-q", "--calibration-images", "2",
                     out=tmp_path / "out")
    assert result.exit_code in (0, 1), result.stderr
    backbone = result.report["backbone"]
    assert backbone["name"] == "efficientnet-lite0"
    assert "ResNet50" in backbone["note"] and "--offline" in backbone["note"]
    assert "efficientnet-lite0" in result.stdout


def _snapshot(root: Path) -> dict[str, tuple]:
    state = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else None
            state[str(path.relative_to(root))] = (info.st_mode, info.st_size, info.st_mtime_ns, digest)
    return state


def test_broken_and_odd_files_are_findings_and_the_audit_goes_on(tmp_path):
    data = tmp_path / "data"
    good = [_photo(data / "train" / "cats" / f"c{i}.jpg", i) for i in range(3)]
    good += [_photo(data / "val" / "cats" / f"v{i}.jpg", 50 + i) for i in range(2)]
    _photo(data / "train" / "dogs" / "d0.jpg", 90)
    (data / "train" / "dogs" / "zero.jpg").write_bytes(b"")
    whole = good[0].read_bytes()
    (data / "train" / "dogs" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    (data / "train" / "dogs" / "notes.jpg").write_text("this is not a picture")
    _photo(data / "train" / "dogs" / "really_png.jpg", 7, fmt="PNG")
    Image.new("1", (30000, 30000)).save(data / "train" / "dogs" / "bomb.png")
    os.symlink(data / "train", data / "train" / "dogs" / "loop")
    (data / "stray.jpg").write_bytes(whole)
    before = _snapshot(data)

    result = run_cli("audit", data, "--backbone", "efficientnet-lite0", "--cache-dir", tmp_path / "c", "-q",
                     "--calibration-images", "2", out=tmp_path / "out")

    assert result.exit_code in (0, 1), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    kinds = {f["paths"][0]: f["evidence"]["kind"] for f in check(result.report, "integrity")["findings"]}
    assert kinds["train/dogs/zero.jpg"] == "zero_byte"
    assert kinds["train/dogs/truncated.jpg"] == "truncated"
    assert kinds["train/dogs/notes.jpg"] == "not_an_image"
    assert kinds["train/dogs/really_png.jpg"] == "extension_mismatch"
    assert kinds["train/dogs/bomb.png"] == "decompression_bomb"
    assert kinds["train/dogs/loop"] == "symlink_loop"
    assert kinds["stray.jpg"] == "loose_file"
    assert result.report["dataset"]["splits"]["train"]["images"] == 9
    assert check(result.report, "integrity")["metrics"]["usable_images"] == 7
    assert _snapshot(data) == before, "the audit must not write into, move or delete anything in the dataset"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_a_finding(tmp_path):
    data = tmp_path / "data"
    _photo(data / "a" / "1.jpg", 1)
    locked = _photo(data / "a" / "2.jpg", 2)
    locked.chmod(0)
    result = run_cli("audit", data, "--backbone", "efficientnet-lite0", "--cache-dir", tmp_path / "c", "-q",
                     out=tmp_path / "out")
    kinds = {f["paths"][0]: f["evidence"]["kind"] for f in check(result.report, "integrity")["findings"]}
    assert kinds["a/2.jpg"] == "unreadable"


def test_finding_ids_survive_renames_and_reordering(tmp_path):
    copy = tmp_path / "samples"
    shutil.copytree(SAMPLES, copy)
    common = ("--backbone", "efficientnet-lite0", "--cache-dir", tmp_path / "c", "-q", "--exit-zero")
    before = run_cli("audit", copy, *common, out=tmp_path / "o1")
    leak_ids = sorted(f["id"] for f in check(before.report, "leakage")["findings"])
    # Rename one member of every leak, and a whole class folder of the held-out split.
    for finding in check(before.report, "leakage")["findings"]:
        held_out = next(p for p in finding["paths"] if p.startswith("val/"))
        (copy / held_out).rename((copy / held_out).with_name("renamed_" + Path(held_out).name))
    (copy / "val" / "cats").rename(copy / "val" / "cats_renamed")
    after = run_cli("audit", copy, *common, out=tmp_path / "o2")
    assert after.exit_code == 0
    assert sorted(f["id"] for f in check(after.report, "leakage")["findings"]) == leak_ids


def test_exit_zero_and_json_only(tmp_path):
    result = run_cli("audit", SAMPLES, "--backbone", "efficientnet-lite0", "--cache-dir", tmp_path / "c", "-q",
                     "--exit-zero", "--format", "json", out=tmp_path / "out")
    assert result.exit_code == 0
    assert result.stdout.strip() == ""
    assert result.report["schema_version"] == 1


def test_manifest_command_writes_the_resolved_split(tmp_path):
    output = tmp_path / "split.csv"
    result = run_cli("manifest", SAMPLES, "-o", output)
    assert result.exit_code == 0, result.stderr
    lines = output.read_text().splitlines()
    assert lines[0] == "path,label,split"
    assert "train/dogs/" in output.read_text() and len(lines) == 1 + 135
    audited = run_cli("audit", SAMPLES, "--manifest", output, "--backbone", "efficientnet-lite0",
                      "--cache-dir", tmp_path / "c", "-q", out=tmp_path / "out")
    assert audited.report["dataset"]["layout"] == "manifest"
    assert check(audited.report, "leakage")["metrics"]["per_split"]["val"]["leaked"] == 4
