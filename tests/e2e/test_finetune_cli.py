"""`audit --finetune` and `auditor finetune` on real photos with planted leaks: the JSON the issue asks for,
the feature maps cached once, `--history` parsed, and both checks skipped without the flag."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from tests.e2e.cli_helpers import SHARED_DATASETS, check, run_cli

pytestmark = pytest.mark.slow

PLUMBING = ("--epochs", "3", "--patience", "2", "--dense-units", "32", "--learning-rate", "1e-3",
            "--bootstrap", "500", "--calibration-images", "8", "--backbone", "efficientnet-lite0", "-q")
USER_LOG = """Epoch 1/3
12/12 [==============================] - 20s 2s/step - loss: 1.2 - acc: 0.61 - val_loss: 0.9 - val_acc: 0.70
Epoch 2/3
12/12 [==============================] - 19s 2s/step - loss: 0.4 - acc: 0.95 - val_loss: 0.8 - val_acc: 0.78
this line - loss: is cut
Epoch 3/3
12/12 [==============================] - 19s 2s/step - loss: 0.1 - acc: 0.99 - val_loss: 0.85 - val_acc: 0.81
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    source = SHARED_DATASETS / "hymenoptera_data"
    if not source.is_dir():
        pytest.skip(f"real photos not found at {source}")
    root = tmp_path_factory.mktemp("ft") / "data"
    for split, count in (("train", 16), ("val", 8)):
        for label in ("ants", "bees"):
            (root / split / label).mkdir(parents=True)
            for photo in sorted((source / split / label).glob("*.jpg"))[:count]:
                shutil.copy(photo, root / split / label / photo.name)
    # Planted: three train ants, half-size re-encoded, in val (leaks) and one train bee filed as an ant in val.
    for photo in sorted((root / "train" / "ants").glob("*.jpg"))[:3]:
        image = Image.open(photo).convert("RGB")
        image.resize((image.width // 2, image.height // 2)).save(root / "val" / "ants" / f"leak_{photo.name}", quality=85)
    bee = sorted((root / "train" / "bees").glob("*.jpg"))[0]
    shutil.copy(bee, root / "val" / "ants" / f"conflict_{bee.name}")
    log = root.parent / "fit.log"
    log.write_text(USER_LOG)
    return root, log


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory):
    root, log = dataset
    cache = tmp_path_factory.mktemp("cache")
    first = run_cli("audit", root, "--finetune", "--history", log, "--cache-dir", cache, "--exit-zero", *PLUMBING,
                    out=tmp_path_factory.mktemp("o1"))
    second = run_cli("finetune", root, "--cache-dir", cache, "--exit-zero", "--no-counterfactual", *PLUMBING,
                     out=tmp_path_factory.mktemp("o2"))
    return first, second


def test_reference_finetune_json(runs):
    first, _ = runs
    assert first.exit_code == 0, first.stderr
    ref = check(first.report, "reference_finetune")
    assert ref["status"] == "pass"
    m = ref["metrics"]
    assert m["backbone"]["name"] == "efficientnet-lite0" and m["backbone"]["is_reference_base"] is False
    assert "NOT the reference's ResNet50" in m["backbone"]["note"]
    assert m["hyperparameters"]["learning_rate"] == 1e-3 and m["hyperparameters"]["dense_units"] == 32
    assert m["hyperparameters"]["l2"] == 0.003 and m["hyperparameters"]["dropout"] == 0.5
    assert m["split"] == {**m["split"], "val_split": "val", "made_by_auditor": False, "train_images": 32,
                          "val_images": 20}
    epochs = m["final"]["epochs_run"]
    assert 1 <= epochs <= 3 and all(len(m["curves"][k]) == epochs for k in ("loss", "acc", "val_loss", "val_acc"))
    assert m["feature_maps"]["shape"] == [7, 7, 1280] and m["feature_maps"]["computed"] == 51


def test_user_history_is_parsed_into_the_report(runs):
    user = check(runs[0].report, "reference_finetune")["metrics"]["user_history"]
    assert user["acc"] == [0.61, 0.95, 0.99] and user["val_acc"] == [0.70, 0.78, 0.81]
    assert user["loss"] == [1.2, 0.4, 0.1] and user["val_loss"] == [0.9, 0.8, 0.85]
    assert user["malformed_lines"] == 1
    assert user["comparison"]["user_gap_points"] == pytest.approx(18.0)


def test_gap_attribution_json(runs):
    gap = check(runs[0].report, "gap_attribution")
    assert gap["status"] in ("pass", "warn")
    m = gap["metrics"]
    for key in ("train_accuracy", "val_accuracy", "val_accuracy_leaked", "val_accuracy_clean", "leakage_inflation",
                "counterfactual_train_accuracy", "counterfactual_val_accuracy"):
        assert isinstance(m[key], float), key
    low, high = m["val_accuracy_clean_ci"]
    assert low <= m["val_accuracy_clean"] <= high
    assert m["leakage"]["with_train_duplicate"] == 4
    assert m["label_conflicts"]["val_images_with_conflicting_train_duplicate"] == 1
    assert m["label_conflicts"]["val_accuracy_ceiling"] == pytest.approx(0.95)
    assert m["leakage_inflation"] == pytest.approx(m["val_accuracy"] - m["val_accuracy_clean"], abs=1e-3)
    points = m["decomposition"]["points"]
    assert sum(points.values()) == pytest.approx(m["gap_points"], abs=0.05)
    cf = m["counterfactual"]
    assert cf["ran"] and cf["dropped"]["val"] == 4 and cf["val_images"] == 16
    assert cf["fixes"].endswith("--keep-existing --dedupe") and cf["excluded_by_kind"]["duplicate"] >= 3
    assert m["verdict"].startswith("Train accuracy") and "Leakage: 4 of 20" in m["verdict"]
    # split_shift publishes its per-image domain scores, so accuracy by shift quintile is available.
    shift = m["shift"]
    assert shift["available"] is True, shift
    assert shift["images_scored"] == 16 and len(shift["by_quintile"]) == 5


def test_second_run_reuses_every_feature_map_and_skips_the_counterfactual_when_asked(runs):
    _, second = runs
    assert second.exit_code == 0, second.stderr
    ref = check(second.report, "reference_finetune")
    assert ref["metrics"]["feature_maps"]["computed"] == 0 and ref["metrics"]["feature_maps"]["cached"] == 51
    assert "Feature maps (fine-tune): 51 reused, 0 computed." in second.report["notes"]
    ids = {c["id"] for c in second.report["checks"]}
    assert {"reference_finetune", "gap_attribution", "leakage"} <= ids and "integrity" not in ids
    gap = check(second.report, "gap_attribution")["metrics"]
    assert gap["counterfactual"]["ran"] is False and gap["counterfactual_val_accuracy"] is None
    # Same seed, same cached maps: the same reference run.
    assert ref["metrics"]["curves"]["val_loss"] == pytest.approx(
        check(runs[0].report, "reference_finetune")["metrics"]["curves"]["val_loss"], rel=1e-3)


def test_without_finetune_both_checks_are_skipped_and_no_maps_are_made(dataset, tmp_path):
    root, log = dataset
    result = run_cli("audit", root, "--cache-dir", tmp_path / "c", "--exit-zero", "--calibration-images", "4",
                     "--backbone", "efficientnet-lite0", "-q", "--checks", "leakage,reference_finetune,gap_attribution",
                     out=tmp_path / "o")
    for check_id in ("reference_finetune", "gap_attribution"):
        assert check(result.report, check_id)["status"] == "skipped"
        assert "--finetune" in check(result.report, check_id)["summary"]
    assert not (tmp_path / "c" / "feature_maps").exists()
    refused = run_cli("audit", root, "--history", log, "--cache-dir", tmp_path / "c", "-q")
    assert refused.exit_code == 2 and "--finetune" in refused.stderr


def test_missing_history_file_is_a_clean_error(dataset, tmp_path):
    root, _ = dataset
    result = run_cli("finetune", root, "--history", tmp_path / "nope.log", "--cache-dir", tmp_path / "c", *PLUMBING)
    assert result.exit_code == 2 and "nope.log" in result.stderr and "Tip:" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "c").exists(), "refused before any work"


def test_single_split_dataset_gets_a_made_split_and_resnet50_plumbing(dataset, tmp_path):
    root, _ = dataset
    pool = tmp_path / "pool"
    for label in ("ants", "bees"):
        (pool / label).mkdir(parents=True)
        for photo in sorted((root / "train" / label).glob("*.jpg"))[:10]:
            shutil.copy(photo, pool / label / photo.name)
    result = run_cli("finetune", pool, "--backbone", "resnet50", "--weights", "none", "--cache-dir", tmp_path / "c",
                     "--epochs", "2", "--dense-units", "8", "--learning-rate", "1e-3", "--bootstrap", "200",
                     "--exit-zero", "-q", out=tmp_path / "o")
    assert result.exit_code == 0, result.stderr
    m = check(result.report, "reference_finetune")["metrics"]
    assert m["feature_maps"]["shape"] == [7, 7, 2048]
    assert m["split"]["made_by_auditor"] and m["split"]["train_images"] == 16 and m["split"]["val_images"] == 4
    assert "RANDOM weights" in m["backbone"]["note"]
    gap = check(result.report, "gap_attribution")["metrics"]
    assert gap["shift"]["available"] is False and "made by auditor" in gap["shift"]["reason"]


def test_augmentation_runs_the_base_in_the_loop(dataset, tmp_path):
    root, _ = dataset
    result = run_cli("audit", root, "--finetune", "--augment", "--epochs", "1", "--dense-units", "8",
                     "--learning-rate", "1e-3", "--checks", "reference_finetune", "--cache-dir", tmp_path / "c",
                     "--backbone", "efficientnet-lite0", "--calibration-images", "0", "--exit-zero", "-q",
                     out=tmp_path / "o")
    assert result.exit_code == 0, result.stderr
    m = check(result.report, "reference_finetune")["metrics"]
    assert m["hyperparameters"]["augment"] is True and m["final"]["epochs_run"] == 1
    assert 0.0 <= m["final"]["train_accuracy"] <= 1.0
