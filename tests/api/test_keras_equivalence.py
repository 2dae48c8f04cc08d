"""The issue's "done when", as a user runs it: a notebook-style script in a fresh interpreter (`import auditor`,
Keras objects built by Keras) against the command line in another, on real photos with planted problems.

- `audit_keras(train, val)` from `image_dataset_from_directory(..., validation_split=0.2, subset="both", seed=S)`
  and `audit DIR --validation-split 0.2 --seed S --split-style keras-dataset`;
- `audit_keras(train, val)` from `ImageDataGenerator(validation_split=0.2).flow_from_directory(..., subset=...)`
  and `audit DIR --validation-split 0.2 --split-style keras-generator`;
- `auditor.audit(DIR, validation_split=0.2, seed=S)` and the same command line;

give the same statuses and finding ids (and the same summaries, findings and metrics, timings aside). The real
report's notebook view then loads in headless Chromium quietly and offline. Slow: EfficientNet-Lite0 embeds
the 38 photos once (a shared temporary cache), and every run computes its own check results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.keras_data import build_planted

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SEED = 7
COMMON = ["--backbone", "efficientnet-lite0", "--offline", "--format", "json", "-q", "--exit-zero"]

USER_SCRIPT = '''
import contextlib, io, json, sys
from pathlib import Path

import auditor

root, cache, out, seed = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
assert "tensorflow" not in sys.modules
import keras
from keras.src.legacy.preprocessing.image import ImageDataGenerator

settings = dict(backbone="efficientnet-lite0", offline=True, cache_dir=cache, progress=False)
printed = {}

def run(name, call):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        report = call()
    printed[name] = {"stdout": stdout.getvalue(), "stderr": stderr.getvalue()}
    (out / f"{name}.json").write_text(json.dumps(report.to_dict()))
    return report

train, val = keras.utils.image_dataset_from_directory(root, validation_split=0.2, subset="both", seed=seed,
                                                      image_size=(64, 64), batch_size=8)
report = run("dataset", lambda: auditor.audit_keras(train, val, seed=seed, **settings))
(out / "cell.html").write_text(report._repr_html_())

generator = ImageDataGenerator(validation_split=0.2)
train = generator.flow_from_directory(root, subset="training", target_size=(64, 64), seed=1)
val = generator.flow_from_directory(root, subset="validation", target_size=(64, 64), seed=1)
run("generator", lambda: auditor.audit_keras(train, val, **settings))

run("folder", lambda: auditor.audit(root, validation_split=0.2, seed=seed, **settings))
(out / "printed.json").write_text(json.dumps(printed))
'''


def python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    base = tmp_path_factory.mktemp("equivalence")
    root, cache = build_planted(base / "photos"), base / "cache"
    reports: dict[str, dict] = {}
    for name, flags in (("cli-dataset", ["--seed", str(SEED), "--split-style", "keras-dataset"]),
                        ("cli-generator", ["--split-style", "keras-generator"])):
        out = base / name
        python("-m", "auditor", "audit", str(root), "--validation-split", "0.2", *flags, *COMMON,
               "--cache-dir", str(cache), "--out", str(out))
        reports[name] = json.loads((out / "report.json").read_text())
    api_out = base / "api"
    api_out.mkdir()
    script = base / "user_script.py"
    script.write_text(USER_SCRIPT)
    python(str(script), str(root), str(cache), str(api_out), str(SEED))
    for name in ("dataset", "generator", "folder"):
        reports[f"api-{name}"] = json.loads((api_out / f"{name}.json").read_text())
    reports["printed"] = json.loads((api_out / "printed.json").read_text())
    reports["cell"] = (api_out / "cell.html").read_text(encoding="utf-8")
    return reports


def statuses(report: dict) -> dict[str, str]:
    return {c["id"]: c["status"] for c in report["checks"]}


def finding_ids(report: dict) -> dict[str, list[str]]:
    return {c["id"]: sorted(f["id"] for f in c["findings"]) for c in report["checks"]}


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def assert_same_report(api: dict, cli: dict) -> None:
    assert statuses(api) == statuses(cli)
    assert finding_ids(api) == finding_ids(cli)
    for ours, theirs in zip(api["checks"], cli["checks"]):
        assert ours["summary"] == theirs["summary"], ours["id"]
        assert ours["findings"] == theirs["findings"], ours["id"]
        assert without_timings(ours["metrics"]) == without_timings(theirs["metrics"]), ours["id"]
    assert api["dataset"]["splits"] == cli["dataset"]["splits"]


def test_the_planted_problems_are_found(runs):
    """The comparison is not vacuous: several checks fail or warn with findings."""
    cli = runs["cli-dataset"]
    assert statuses(cli)["label_conflicts"] == "fail" and statuses(cli)["exact_duplicates"] == "warn"
    assert sum(bool(ids) for ids in finding_ids(cli).values()) >= 5
    assert sum(len(ids) for ids in finding_ids(runs["cli-generator"]).values()) >= 10


def test_image_dataset_from_directory_equals_the_cli(runs):
    api = runs["api-dataset"]
    assert_same_report(api, runs["cli-dataset"])
    assert api["dataset"]["layout"] == "keras-objects"
    assert not any("check results reused" in n for n in api["notes"])  # computed, not replayed from the cache


def test_flow_from_directory_equals_the_cli(runs):
    api = runs["api-generator"]
    assert_same_report(api, runs["cli-generator"])
    assert not any("check results reused" in n for n in api["notes"])
    # the two styles split the folder differently, so this is a second comparison, not the first one again
    assert runs["cli-generator"]["dataset"]["splits"] != runs["cli-dataset"]["dataset"]["splits"]


def test_audit_of_the_folder_equals_the_cli(runs):
    assert_same_report(runs["api-folder"], runs["cli-dataset"])


def test_the_api_prints_nothing(runs):
    assert all(out["stdout"] == "" for out in runs["printed"].values()), runs["printed"]


def test_the_real_notebook_view_in_chromium(runs, tmp_path):
    from tests.api.test_notebook_browser import CHROMIUM, MAX_LOADS, background_pixels, load, notebook_page

    if CHROMIUM is None:
        pytest.skip("Chromium not found")
    cell = runs["cell"]
    assert cell.count("data:image/jpeg;base64,") >= 5  # thumbnails of the findings' photos, from the context
    for attempt in range(MAX_LOADS):
        messages, requests, image = load(tmp_path, notebook_page(cell), f"real-{attempt}")
        assert messages == [] and requests == []
        if background_pixels(image) > 100_000:
            break
    else:
        pytest.fail("the report was not drawn inside the frame")
