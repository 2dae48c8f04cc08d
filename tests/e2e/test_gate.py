"""The CI gate end to end, on real photos with the real offline backbone:

a clean merge passes (exit 0); a merge that brings a leak fails (exit 1) with the leak in JSON, Markdown
and JUnit; the baselined leak passes, also after renaming; a bad config exits 2 naming the key.
Existing images come from the cache: a merge embeds only the incoming images.
"""

from __future__ import annotations

import io
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.cli_helpers import check, run_cli

pytestmark = pytest.mark.slow

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
PHOTOS = SHARED / "hymenoptera_data"
LEAK_NAME = "<img src=x onerror=alert(1)>.jpg"


def _take(split: str, label: str, start: int, count: int) -> list[Path]:
    return sorted((PHOTOS / split / label).glob("*.jpg"))[start : start + count]


def _copy(files: list[Path], destination: Path) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, destination / f.name)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if not PHOTOS.is_dir():
        pytest.skip(f"real photos not found at {PHOTOS}")
    root = tmp_path_factory.mktemp("gate")
    existing, clean, leaky = root / "existing", root / "clean", root / "leaky"
    for label in ("ants", "bees"):
        _copy(_take("train", label, 0, 12), existing / "train" / label)
        _copy(_take("val", label, 0, 4), existing / "val" / label)
        _copy(_take("train", label, 12, 2), clean / "train" / label)
        _copy(_take("val", label, 4, 1), clean / "val" / label)
    shutil.copytree(clean, leaky)
    # The leak: an existing training photo, re-encoded, filed as incoming validation data under a hostile name.
    source = _take("train", "ants", 0, 1)[0]
    buffer = io.BytesIO()
    Image.open(source).convert("RGB").save(buffer, format="JPEG", quality=85)
    (leaky / "val" / "ants" / LEAK_NAME).write_bytes(buffer.getvalue())
    cache = root / "cache"
    common = ("--offline", "--backbone", "efficientnet-lite0", "--cache-dir", str(cache), "--calibration-images", "5",
              "-q", "--format", "json,markdown,junit,html")
    first = run_cli("audit", existing, *common, "--exit-zero", out=root / "out-existing")
    assert first.exit_code == 0, first.stderr
    return {"root": root, "existing": existing, "clean": clean, "leaky": leaky, "common": common,
            "first": first}


def _leak_findings(report: dict) -> list[dict]:
    return [f for f in check(report, "leakage")["findings"] if "accepted" not in f["evidence"]]


def test_a_clean_merge_passes_and_embeds_only_the_incoming_images(world):
    out = world["root"] / "out-clean"
    result = run_cli("audit", world["clean"], "--against", world["existing"], *world["common"], out=out)
    assert result.exit_code == 0, (result.stdout[-3000:], result.stderr)
    merge = check(result.report, "merge")
    assert merge["metrics"]["incoming_images"] == 6 and merge["metrics"]["existing_images"] == 32
    assert merge["metrics"]["embeddings_computed"] == 6  # existing images and calibration copies: cache
    assert merge["metrics"]["incoming_held_out_leaking_into_existing_train"] == 0
    assert _leak_findings(result.report) == []
    assert "audit PASSED" in (out / "report.md").read_text()


def test_a_merge_that_brings_a_leak_fails_with_the_leak_in_every_format(world):
    out = world["root"] / "out-leaky"
    result = run_cli("audit", world["leaky"], "--against", world["existing"], *world["common"], out=out)
    assert result.exit_code == 1, (result.stdout[-3000:], result.stderr)
    leaks = _leak_findings(result.report)
    assert len(leaks) == 1
    leaked_path = f"incoming/val/ants/{LEAK_NAME}"
    assert leaked_path in leaks[0]["paths"]
    assert any(p.startswith("existing/train/ants/") for p in leaks[0]["paths"])
    assert check(result.report, "leakage")["status"] == "fail"
    merge = check(result.report, "merge")["metrics"]
    assert merge["incoming_held_out_leaking_into_existing_train"] == 1
    assert merge["incoming_duplicating_existing"] == 1
    markdown = (out / "report.md").read_text()
    assert "audit FAILED" in markdown and "| `leakage` | ❌ fail |" in markdown and leaks[0]["id"] in markdown
    assert "<img src=x" not in markdown
    suite = ET.parse(out / "report.junit.xml").getroot().find("testsuite")
    failure = next(c for c in suite.findall("testcase") if c.get("name") == "leakage").find("failure")
    assert failure is not None and leaks[0]["id"] in failure.text and LEAK_NAME in failure.text
    html = (out / "report.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;.jpg" in html
    assert 'class="thumb"' in html
    world["leak_id"] = leaks[0]["id"]


def test_a_baselined_leak_passes_even_after_renaming(world):
    baseline = world["root"] / "auditor-baseline.json"
    written = run_cli("audit", world["leaky"], "--against", world["existing"], *world["common"],
                      "--baseline", baseline, "--update-baseline", out=world["root"] / "out-update")
    assert written.exit_code == 0, written.stderr
    ids = {e["id"] for e in json.loads(baseline.read_text())["findings"]}
    assert any(i.startswith("leakage:group:") for i in ids)
    renamed = world["root"] / "leaky-renamed"
    shutil.copytree(world["leaky"], renamed)
    (renamed / "val" / "ants" / LEAK_NAME).rename(renamed / "val" / "ants" / "zz_renamed.jpg")
    result = run_cli("audit", renamed, "--against", world["existing"], *world["common"], "--baseline", baseline,
                     out=world["root"] / "out-baselined")
    assert result.exit_code == 0, (result.stdout[-3000:], result.stderr)
    leakage = check(result.report, "leakage")
    assert leakage["status"] == "pass" and leakage["metrics"]["gate"]["accepted"] >= 1
    assert leakage["metrics"]["gate"]["new"] == 0
    # …but a stricter policy for a *new* problem still fails: near-duplicates made blocking, no baseline.
    strict = run_cli("audit", renamed, "--against", world["existing"], *world["common"],
                     "--policy", "near_duplicates.on_warn=fail", out=world["root"] / "out-strict")
    assert strict.exit_code == 1
    assert check(strict.report, "near_duplicates")["status"] == "fail"


def test_a_merge_extends_the_existing_audits_kept_neighbour_graph(world, tmp_path, monkeypatch):
    """The existing audit kept its exact k-NN graph in the cache; a merge audit searches only its new rows, and its
    checks say what a merge audit without the kept graph says."""
    import auditor.similarity.neighbours as neighbour_search
    from auditor.similarity.graph_store import GraphStore

    monkeypatch.setattr(neighbour_search, "_exact_graphs", {})
    assert list((world["root"] / "cache" / "knn-graphs").glob("*/graph-*.npz"))  # kept by the existing audit
    incoming = tmp_path / "incoming"
    shutil.copytree(world["clean"], incoming)
    _copy(_take("train", "bees", 20, 1), incoming / "train" / "bees")  # a merge no other test ran (no cached results)
    without = tmp_path / "cache-without-graphs"
    shutil.copytree(world["root"] / "cache", without, ignore=shutil.ignore_patterns("knn-graphs"))
    used = []
    original = GraphStore.load

    def load(self, x, k):
        graph = original(self, x, k)
        used.append((self.loaded_from, self.extended_rows, len(x)))
        return graph

    monkeypatch.setattr(GraphStore, "load", load)
    common = list(world["common"])
    with_graph = run_cli("audit", incoming, "--against", world["existing"], *common, out=tmp_path / "out-with")
    assert with_graph.exit_code == 0, with_graph.stderr
    assert len(used) == 1 and used[0][0] is not None and 1 <= used[0][1] <= 7 and used[0][2] == 39
    common[common.index("--cache-dir") + 1] = str(without)
    monkeypatch.setattr(neighbour_search, "_exact_graphs", {})  # as another process would start
    plain = run_cli("audit", incoming, "--against", world["existing"], *common, out=tmp_path / "out-without")
    assert used[1][0] is None  # nothing kept there: searched whole
    for check_id in ("near_duplicates", "leakage", "outliers", "merge"):
        assert check(with_graph.report, check_id)["findings"] == check(plain.report, check_id)["findings"]
        assert check(with_graph.report, check_id)["summary"] == check(plain.report, check_id)["summary"]


def test_a_bad_config_exits_2_naming_the_key(world, tmp_path):
    dataset = tmp_path / "data"
    shutil.copytree(world["clean"], dataset)
    (dataset / "auditor.toml").write_text("[policy.leakage]\nmax_precent = 0\n")
    result = run_cli("audit", dataset, "--against", world["existing"], *world["common"], out=tmp_path / "out")
    assert result.exit_code == 2
    assert "policy.leakage.max_precent" in result.stderr and "Tip:" in result.stderr
    assert "Traceback" not in result.stderr
    bad_value = tmp_path / "bad.toml"
    bad_value.write_text("[policy.leakage]\nmax_percent = 150\n")
    result = run_cli("audit", dataset, "--config", bad_value, *world["common"], out=tmp_path / "out")
    assert result.exit_code == 2 and "policy.leakage.max_percent must be in [0.0, 100.0]" in result.stderr


BLOCK_TENSORFLOW = """
import sys

class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("this run must not start TensorFlow: " + name)

sys.meta_path.insert(0, NoTensorFlow())
from auditor.cli import app_main
sys.argv = ["auditor", *sys.argv[1:]]
app_main()
"""


def test_a_small_merge_embeds_its_new_images_without_starting_tensorflow(tmp_path):
    """The first float32 audit converts the backbone for LiteRT once, keeps the copy in the cache and embeds with
    it; a gate's few new images are then embedded by it in a process where importing TensorFlow fails, with the
    vectors the Keras model would give."""
    import subprocess
    import sys

    import numpy as np

    from auditor.backbones import lite

    if not lite.runtime_available():
        pytest.skip("ai-edge-litert is not installed here")
    if not PHOTOS.is_dir():
        pytest.skip(f"real photos not found at {PHOTOS}")
    existing, incoming, cache = tmp_path / "existing", tmp_path / "incoming", tmp_path / "cache"
    for label in ("ants", "bees"):
        _copy(_take("train", label, 0, 8), existing / "train" / label)
        _copy(_take("val", label, 0, 3), existing / "val" / label)
        _copy(_take("train", label, 8, 2), incoming / "train" / label)
    common = ("--offline", "--backbone", "efficientnet-lite0", "--precision", "float32", "--cache-dir", str(cache),
              "--calibration-images", "5", "-q", "--format", "json")
    first = run_cli("audit", existing, *common, "--exit-zero", out=tmp_path / "out-first")
    assert first.exit_code == 0, first.stderr
    assert list((cache / lite.LITE_DIRECTORY).glob("*.tflite")) and first.report["backbone"]["runtime"] == "litert"
    script = tmp_path / "no_tensorflow.py"
    script.write_text(BLOCK_TENSORFLOW)
    gate = subprocess.run([sys.executable, str(script), "audit", str(incoming), "--against", str(existing), *common,
                           "--out", str(tmp_path / "out-gate")], capture_output=True, text=True, timeout=300)
    assert gate.returncode == 0, gate.stderr
    assert gate.stderr.strip() == f"report written to {tmp_path / 'out-gate' / 'report.json'}"  # nothing else
    report = json.loads((tmp_path / "out-gate" / "report.json").read_text())
    assert report["backbone"]["runtime"] == "litert" and report["backbone"]["precision"] == "float32"
    assert check(report, "merge")["metrics"]["embeddings_computed"] == 4

    from auditor.backbones.registry import resolve_backbone
    from auditor.config import AuditConfig
    from auditor.encoding.cache import Cache
    from auditor.encoding.encode import encode_dataset, load_embeddings
    from auditor.encoding.imaging import ScanLimits
    from auditor.index.dataset import load_dataset

    keras_side = resolve_backbone("efficientnet-lite0", None, True, "float32")  # the Keras model, no cache
    fresh = encode_dataset(load_dataset(incoming, AuditConfig()), Cache(None), keras_side, ScanLimits(), 1 << 30)
    assert keras_side.keras_built and len(fresh.embeddings) == 4
    stored = load_embeddings(Cache(cache), keras_side, list(fresh.embeddings))
    for sha, expected in fresh.embeddings.items():
        got = np.asarray(stored[sha], dtype=np.float64)
        assert float(got @ expected / np.linalg.norm(got) / np.linalg.norm(expected)) > 0.99999
