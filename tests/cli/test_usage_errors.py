"""Usage and dataset errors found before any image is decoded: one line, a tip, exit code 2 (fast)."""

from __future__ import annotations

from tests.e2e.cli_helpers import SAMPLES, run_cli
from tests.e2e.test_cli_errors import _assert_clean_error, _photo


def test_missing_directory(tmp_path):
    _assert_clean_error(run_cli("audit", tmp_path / "nope", "--cache-dir", tmp_path / "c"), "does not exist")


def test_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    _assert_clean_error(run_cli("audit", tmp_path / "empty", "--cache-dir", tmp_path / "c"), "no images found")


def test_a_file_instead_of_a_directory(tmp_path):
    target = _photo(tmp_path / "one.jpg", 1)
    _assert_clean_error(run_cli("audit", target, "--cache-dir", tmp_path / "c"), "not a directory")


def test_manifest_without_required_columns(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,class\na.jpg,cat\n")
    _assert_clean_error(run_cli("audit", tmp_path, "--manifest", manifest, "--cache-dir", tmp_path / "c"), "lacks column")


def test_bad_option_values_name_the_key(tmp_path):
    _assert_clean_error(run_cli("audit", SAMPLES, "--min-cosine", "1.5", "--cache-dir", tmp_path / "c"), "min_cosine")
    _assert_clean_error(run_cli("audit", SAMPLES, "--format", "pdf", "--cache-dir", tmp_path / "c"), "pdf")
    # a negative seed made NumPy raise mid-audit ("internal error"); one past scikit-learn's range would have too
    _assert_clean_error(run_cli("audit", SAMPLES, "--seed", "-5", "--cache-dir", tmp_path / "c"), "seed must be in")
    _assert_clean_error(run_cli("audit", SAMPLES, "--seed", str(2**32), "--cache-dir", tmp_path / "c"), "seed must be in")
    _assert_clean_error(run_cli("audit", SAMPLES, "--finetune-seed", "-1", "--cache-dir", tmp_path / "c"),
                        "finetune.seed must be in")


def test_a_missing_existing_dataset_is_named_as_such(tmp_path):
    # --against takes a folder or a manifest CSV: "dataset directory 'existing.csv' does not exist" misled
    result = run_cli("audit", SAMPLES, "--against", tmp_path / "existing.csv", "--cache-dir", tmp_path / "c")
    _assert_clean_error(result, "the existing dataset")
    assert "manifest CSV" in result.stderr + result.stdout


def test_validation_split_on_a_split_layout_is_refused(tmp_path):
    _assert_clean_error(
        run_cli("audit", SAMPLES, "--validation-split", "0.2", "--seed", "1", "--cache-dir", tmp_path / "c"),
        "split folders",
    )


def test_an_unknown_check_id_is_refused_before_any_work(tmp_path):
    result = run_cli("audit", SAMPLES, "--checks", "leakage,leakag", "--cache-dir", tmp_path / "c", "-q")
    _assert_clean_error(result, "unknown check id(s): leakag")
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())  # nothing was embedded


def test_a_failed_audit_leaves_no_empty_report_folder_behind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out is reports/<dataset> below the working folder
    _assert_clean_error(run_cli("audit", tmp_path / "nope", "--cache-dir", tmp_path / "c"), "does not exist")
    assert not (tmp_path / "reports").exists()
    _assert_clean_error(run_cli("audit", tmp_path / "nope", "--cache-dir", tmp_path / "c", "--out", tmp_path / "a" / "b"),
                        "does not exist")
    assert not (tmp_path / "a").exists()


def test_a_failed_audit_leaves_folders_that_existed_and_what_they_hold(tmp_path):
    kept = tmp_path / "kept"
    (kept / "old").mkdir(parents=True)
    _assert_clean_error(run_cli("audit", tmp_path / "nope", "--cache-dir", tmp_path / "c", "--out", kept), "does not exist")
    assert (kept / "old").is_dir()
    _assert_clean_error(run_cli("audit", tmp_path / "nope", "--cache-dir", tmp_path / "c", "--out", kept / "new"),
                        "does not exist")
    assert sorted(p.name for p in kept.iterdir()) == ["old"]
