"""The bundled demo: the audit finds every planted problem (samples/planted.json) and nothing else.

Runs the real CLI with the real offline EfficientNet-Lite0 ImageNet backbone on the real sample photos.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.cli_helpers import SAMPLES, check, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def planted() -> dict:
    return json.loads((SAMPLES / "planted.json").read_text())


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("out")
    first = run_cli("audit", SAMPLES, "--offline", "--backbone", "efficientnet-lite0", "--cache-dir", cache, "-q", out=out)
    second = run_cli("audit", SAMPLES, "--offline", "--backbone", "efficientnet-lite0", "--cache-dir", cache, "-q",
                     out=tmp_path_factory.mktemp("out2"))
    return first, second


def _group_paths(result: dict) -> list[frozenset]:
    return [frozenset(f["paths"]) for f in result["findings"]]


def test_exit_code_is_1_because_planted_leaks_fail_the_policy(demo):
    first, _ = demo
    assert first.exit_code == 1, first.stderr
    assert "audit FAILED" in first.stdout
    assert "Traceback" not in first.stdout + first.stderr


def test_every_planted_leak_is_found_and_nothing_else(demo, planted):
    leakage = check(demo[0].report, "leakage")
    expected = {frozenset([leak["held_out"], leak["train"]]) for leak in planted["leakage"]}
    assert set(_group_paths(leakage)) == expected
    assert leakage["status"] == "fail"
    assert leakage["metrics"]["per_split"]["val"]["leaked"] == len(expected)


def test_near_duplicates_are_exactly_the_planted_transformed_copies(demo, planted):
    near = check(demo[0].report, "near_duplicates")
    expected = {frozenset([leak["held_out"], leak["train"]]) for leak in planted["leakage"]}
    assert set(_group_paths(near)) == expected
    quality = near["metrics"]["detection_quality"]
    assert quality["calibration_copies"] > 0 and 0.0 <= quality["recall"] <= 1.0
    low, high = quality["recall_interval"]
    assert low <= quality["recall"] <= high
    for name in ("same_shot", "rotate", "grey", "resize", "mirror_reencode"):
        assert name in quality["per_transform"]
    leak_quality = check(demo[0].report, "leakage")["metrics"]["detection_quality"]
    assert leak_quality["precision_interval"][0] <= leak_quality["precision"] <= leak_quality["precision_interval"][1]


def test_exact_duplicates_are_the_planted_copies(demo, planted):
    exact = check(demo[0].report, "exact_duplicates")
    expected = {frozenset(pair) for pair in planted["exact_duplicates"] + planted["label_conflicts"]}
    assert set(_group_paths(exact)) == expected


def test_the_planted_label_conflict_is_found(demo, planted):
    conflicts = check(demo[0].report, "label_conflicts")
    assert set(_group_paths(conflicts)) == {frozenset(pair) for pair in planted["label_conflicts"]}
    assert conflicts["findings"][0]["evidence"]["labels"] == ["ants", "bees"]


def test_only_the_planted_broken_file_is_an_integrity_problem(demo, planted):
    integrity = check(demo[0].report, "integrity")
    serious = [f for f in integrity["findings"] if f["severity"] != "info"]
    assert [f["paths"] for f in serious] == [[path] for path in planted["broken"]]
    assert serious[0]["evidence"]["kind"] == "truncated"


def test_the_under_represented_class_is_reported(demo, planted):
    balance = check(demo[0].report, "class_balance")
    flagged = {f["evidence"]["class"] for f in balance["findings"]}
    assert flagged == {planted["under_represented"]}
    assert balance["metrics"]["per_split"]["train"]["imbalance_ratio"] > 5


def test_second_run_reuses_every_embedding_and_gives_the_same_findings(demo):
    first, second = demo
    notes = " ".join(second.report["notes"])
    assert " 0 computed" in notes
    assert "check results reused" in notes  # nothing changed, so no statistic is recomputed either
    ids = lambda report: sorted(f["id"] for c in report["checks"] for f in c["findings"])  # noqa: E731
    assert ids(first.report) == ids(second.report)


def test_json_report_follows_schema_version_1(demo):
    report = demo[0].report
    assert report["schema_version"] == 1
    assert report["tool"]["name"] == "auditor"
    assert set(report["dataset"]) >= {"root", "layout", "splits"}
    assert report["dataset"]["splits"]["train"]["classes"]["dogs"] == 4
    assert report["backbone"]["name"] == "efficientnet-lite0"
    assert "imagenet" in report["backbone"]["weights"]
    assert report["backbone"]["graph"] == "bn-folded"  # the BatchNorms folded into the convolutions
    for c in report["checks"]:
        assert c["status"] in {"pass", "warn", "fail", "error", "skipped"}
        for f in c["findings"]:
            assert set(f) == {"id", "severity", "message", "paths", "evidence"}
            assert all(not p.startswith("/") for p in f["paths"])
    all_ids = [f["id"] for c in report["checks"] for f in c["findings"]]
    assert len(all_ids) == len(set(all_ids))


@pytest.mark.parametrize("check_id", ["split_shift", "shortcuts", "label_issues", "outliers", "image_quality"])
def test_no_other_check_flags_anything_in_the_demo(demo, check_id):
    """The demo's other problems are none: its val split is a random draw from the same photos."""
    result = check(demo[0].report, check_id)
    assert result["status"] == "pass", result["summary"]
    assert [f["message"] for f in result["findings"] if f["severity"] != "info"] == []
