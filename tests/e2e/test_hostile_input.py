"""Hostile and odd input: every case is a named finding or a one-line error with a tip (exit 2); nothing
hangs, nothing in the dataset changes. The fast tests need no backbone; the corpus test runs the real CLI."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import auditor.runner as runner_module
from tests.e2e.cli_helpers import REPO, SAMPLES, check, run_cli


def _assert_clean_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: ") and lines[1].startswith("Tip: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr and "internal error" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the audit starts: these errors must come before any work."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("the audit started although an output is unusable")

    monkeypatch.setattr(runner_module, "prepare", refuse)


def test_out_that_is_a_file_or_below_one_is_refused_before_any_work(tmp_path, no_work):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    common = ("audit", SAMPLES, "--cache-dir", tmp_path / "c", "-q", "--offline")
    _assert_clean_error(run_cli(*common, "--out", taken), "is a file", "--out")
    _assert_clean_error(run_cli(*common, "--out", taken / "reports"), "lies below", "--out")
    _assert_clean_error(run_cli("audit", SAMPLES, "--cache-dir", taken, "-q"), "cache folder", "--cache-dir")


def test_a_pixel_threshold_below_the_coarse_screen_is_refused_with_a_tip(tmp_path, no_work):
    # Under the screen the pixel scores are the coarse 16×16 search's, not full-size correlations: a threshold
    # there would judge pairs by numbers that are not what it says.
    from auditor.config import LOWEST_MIN_CORRELATION
    from auditor.similarity.pixels import SCREEN

    assert LOWEST_MIN_CORRELATION >= SCREEN + 0.05
    _assert_clean_error(run_cli("audit", SAMPLES, "--min-correlation", "0.6", "--cache-dir", tmp_path / "c"),
                        "min_correlation must be in [0.75, 1.0]", "leave min_correlation unset")


def test_a_setting_of_the_wrong_type_is_refused_naming_the_key(tmp_path, no_work):
    config = tmp_path / "auditor.toml"
    config.write_text('workers = "two"\n')
    _assert_clean_error(run_cli("audit", SAMPLES, "--config", config, "--cache-dir", tmp_path / "c"),
                        "workers must be a whole number")
    config.write_text("[finetune]\nepochs = 0\n")
    _assert_clean_error(run_cli("audit", SAMPLES, "--config", config, "--cache-dir", tmp_path / "c"),
                        "finetune.epochs must be in")


# The hostile corpus: everything at once, through the real command in a child process --------------------

RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
TENSORFLOW_NOISE = ("cudart", "oneDNN", "absl::InitializeLog", "cpu_feature_guard", "I0000", "E0000", "W0000")
CONTROL_NAMES = ["\x1b[2J.jpg", "\x1b]0;owned\x07.jpg", "a\rb.jpg", "a\nb.jpg"]


def _photo(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize((96, 80), Image.Resampling.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG")
    return path


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG header claiming width×height pixels, with no pixel data."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def _hostile_corpus(base: Path) -> Path:
    data = base / "data"
    for i in range(4):  # capitalised split folders: still train and val (item 15)
        _photo(data / "Train" / "cats" / f"c{i}.jpg", i)
        _photo(data / "Train" / "dogs" / f"d{i}.jpg", 10 + i)
        _photo(data / "Val" / "cats" / f"vc{i}.jpg", 20 + i)
        _photo(data / "Val" / "dogs" / f"vd{i}.jpg", 30 + i)
    cats, dogs = data / "Train" / "cats", data / "Train" / "dogs"
    _photo(Path(os.fsdecode(os.fsencode(cats) + b"/bad\xffname.jpg")), 40)  # item 1
    os.mkfifo(cats / "fifo.jpg")  # item 2
    os.symlink("/dev/urandom", cats / "x.jpg")  # item 3
    os.symlink(data, dogs / "rootlink")  # item 4: every val image into train, before
    os.symlink("/etc", dogs / "etclink")
    for n, name in enumerate(CONTROL_NAMES):  # item 6
        _photo(data / "Val" / "cats" / name, 50 + n)
    (cats / "huge.png").write_bytes(_png_claiming(10_000, 9_200))  # item 8: 92 MP, allowed below
    (data / "Train" / "birds").mkdir()  # item 10
    _photo(base / "outside.jpg", 60)
    return data


def _snapshot(root: Path) -> dict:
    """Every entry's type, size, mtime, link target and content hash (FIFOs and devices are not read)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root), followlinks=False):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            target = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
            digest = None
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
            state[path] = (info.st_mode, info.st_size, info.st_mtime_ns, target, digest)
    return state


def _run_audit(*args, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_HOME": str(home / "keras"), "HOME": str(home)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as when `audit` is run directly, not through make
    try:
        return subprocess.run([sys.executable, "-m", "auditor", "audit", *map(str, args)], capture_output=True,
                              env=env, cwd=home, timeout=420)
    except subprocess.TimeoutExpired:
        pytest.fail("the audit of the hostile corpus hung")


def _assert_no_raw_control_characters(out: Path, result: subprocess.CompletedProcess) -> None:
    texts = {"stdout": result.stdout, "stderr": result.stderr}
    texts.update({p.name: p.read_bytes() for p in out.iterdir()})
    assert set(texts) >= {"report.json", "report.md", "report.html", "report.junit.xml"}
    for name, raw in texts.items():
        text = raw.decode("utf-8")  # strict: a raw surrogate or a stray byte would fail here
        assert not RAW_CONTROL.search(text), (name, RAW_CONTROL.findall(text)[:5])


def _kinds(report: dict) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for finding in check(report, "integrity")["findings"]:
        for path in finding["paths"]:
            found.setdefault(path, []).append(finding["evidence"]["kind"])
    return found


@pytest.mark.slow
def test_the_hostile_corpus_gets_findings_and_clean_reports_and_is_left_unchanged(tmp_path):
    data = _hostile_corpus(tmp_path)
    settings = tmp_path / "auditor.toml"
    settings.write_text("max_pixels = 200000000\ncalibration_images = 2\n")
    before = _snapshot(data)
    out = tmp_path / "out"
    result = _run_audit(data, "--config", settings, "--cache-dir", tmp_path / "cache", "-q", "--out", out,
                        "--format", "terminal,json,html,markdown,junit", home=tmp_path)
    stderr = result.stderr.decode()
    assert result.returncode in (0, 1), stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    assert not [line for line in stderr.splitlines() if any(n in line for n in TENSORFLOW_NOISE)], stderr  # item 18
    assert (tmp_path / "cache" / "download-failures.json").is_file()  # item 19: tried once, bounded, remembered

    report = json.loads((out / "report.json").read_text())
    kinds = _kinds(report)
    bad_name = os.fsdecode(b"Train/cats/bad\xffname.jpg")
    assert kinds[bad_name] == ["non_utf8_name"]  # and audited: a usable image
    assert kinds["Train/cats/fifo.jpg"] == ["not_regular_file"]
    assert kinds["Train/cats/x.jpg"] == ["link_outside_root"]
    assert kinds["Train/dogs/etclink"] == ["link_outside_root"]
    assert kinds["Train/dogs/rootlink"] == ["symlink_loop"]
    assert kinds["Train/birds"] == ["empty_class_folder"]
    for name in CONTROL_NAMES:
        assert kinds[f"Val/cats/{name}"] == ["control_characters_in_name"]
    assert "decompression_bomb" not in kinds["Train/cats/huge.png"]  # max_pixels 200 MP honoured
    integrity = check(report, "integrity")
    assert integrity["metrics"]["unusable_files"] == 2  # the FIFO and the header-only PNG, both named
    assert int(re.search(r"(\d+) findings", integrity["summary"]).group(1)) == len(integrity["findings"])
    assert sum(integrity["metrics"]["findings_by_kind"].values()) == len(integrity["findings"])
    splits = report["dataset"]["splits"]
    assert set(splits) == {"train", "val"} and splits["train"]["images"] == 11 and splits["val"]["images"] == 12
    assert check(report, "leakage")["metrics"]["per_split"]["val"]["leaked"] == 0  # the root link leaked nothing
    assert check(report, "split_shift")["metrics"].get("reference_split") == "train"
    assert "Train/dogs/etclink/" not in (out / "report.json").read_text()  # nothing under /etc was walked

    _assert_no_raw_control_characters(out, result)
    assert "\\x1b[2J" in result.stdout.decode() or "\\x1b]0;owned" in (out / "report.html").read_text()
    assert _snapshot(data) == before, "the audit must not write into, move or delete anything in the dataset"


@pytest.mark.slow
def test_a_hostile_manifest_is_refused_row_by_row(tmp_path):
    data = _hostile_corpus(tmp_path)
    rows = ["path,label,split", "Train/cats/c0.jpg,cats,train", "Train/dogs/d0.jpg,dogs,TRAIN",
            "Val/cats/vc0.jpg,cats,val", "Val/dogs/vd0.jpg,dogs,val",
            f"{tmp_path / 'outside.jpg'},cats,train",  # line 6: absolute, outside
            "../outside.jpg,dogs,val",  # line 7: ..
            "Train/dogs/etclink/hostname,dogs,val",  # line 8: through a link out of the root
            "Val/dogs/vd1.jpg,dogs,val", "Val/dogs/vd1.jpg,dogs,val", "Val/dogs/vd1.jpg,dogs,val",  # 9; 10, 11
            "Train/cats/c1.jpg,\x1b[31mcats,train"]  # line 12: a label with an escape
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    before = _snapshot(data)
    out = tmp_path / "out"
    result = _run_audit(data, "--manifest", manifest, "--offline", "--cache-dir", tmp_path / "cache", "-q",
                        "--calibration-images", "2", "--out", out, "--format", "terminal,json,html,markdown,junit",
                        home=tmp_path)
    assert result.returncode in (0, 1), result.stderr.decode()
    report = json.loads((out / "report.json").read_text())
    kinds = _kinds(report)
    for line in (6, 7, 8):
        assert kinds[f"manifest.csv:{line}"] == ["path_outside_root"], line
    assert kinds["manifest.csv:10"] == kinds["manifest.csv:11"] == ["duplicate_manifest_row"]
    assert kinds["Train/cats/c1.jpg"] == ["control_characters_in_name"]
    audited = sum(s["images"] for s in report["dataset"]["splits"].values())
    assert audited == 6 and set(report["dataset"]["splits"]) == {"train", "val"}
    outside_mentions = [f["evidence"].get("kind", c["id"]) for c in report["checks"] for f in c["findings"]
                        if "outside.jpg" in f["message"] or "hostname" in f["message"]]
    assert outside_mentions == ["path_outside_root"] * 3  # refused rows are never audited (nor thumbnailed)
    _assert_no_raw_control_characters(out, result)
    assert _snapshot(data) == before
