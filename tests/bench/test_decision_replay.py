"""bench/decision_replay.py: the decision re-run on dumped inputs is the audit's own decision."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "datasets"
sys.path.insert(0, str(REPO / "bench"))


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "hymenoptera_data").is_dir(), reason="needs ../shared/datasets")
def test_replaying_a_dump_gives_the_audits_decision_and_its_leaks(tmp_path):
    import truth_data as td
    from decision_replay import dump, replay, share_readings

    pool = tmp_path / "pool"
    rows, leaked, pairs = td.tiny_set(SHARED, pool, seed=0)  # 10 photos, 12 copies of them in val, 3 others
    manifest = tmp_path / "rows.csv"
    td.write_manifest(manifest, rows)
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"leaked": sorted(leaked), "pairs": pairs}))
    payload = dump(pool, tmp_path / "inputs.pkl", manifest=manifest, cache_dir=tmp_path / "cache", truth=truth)
    with (tmp_path / "inputs.pkl").open("rb") as handle:
        assert pickle.load(handle)["paths"] == payload["paths"]
    assert len(payload["paths"]) == 25 and payload["inputs"]["copy_source"].size > 0
    result = replay(payload)
    assert set(payload["audit_leaks"]) <= result.flagged  # the audit's leaks are accepted held-out × train pairs
    assert result.flagged <= leaked | {p for p in payload["paths"] if p.startswith("val/")}
    assert result.recall == len(result.flagged & leaked) / len(leaked) and result.recall >= 0.9
    assert result.estimated_recall is not None and 0.0 <= result.estimated_recall <= 1.0
    shares = share_readings(payload)  # 12 copies of 10 photos: 22 of the 25 images are in a planted pair
    assert shares.true_share == pytest.approx(len({p for pair in pairs for p in pair}) / 25) and shares.true_share > 0.5
    assert shares.readings and all(0.5 <= recall <= 1.0 and 0.0 <= value <= 1.0 for recall, value in shares.readings)
    assert shares.read is not None and shares.read[1] <= shares.read[0] <= shares.read[2]


def test_readings_of_the_share_are_pooled_by_the_copies_found_against_the_truth():
    from decision_replay import ShareReadings, ratio_bands

    measured = [ShareReadings(true_share=0.1, read=(0.08, 0.05, 0.1), read_from="the calibration copies",
                              readings=[(0.52, 0.06), (0.56, 0.07), (0.95, 0.1), (0.97, 0.11)]),
                ShareReadings(true_share=0.2, read=None, read_from=None, readings=[(0.51, 0.1), (0.99, 0.2)]),
                ShareReadings(true_share=0.0, read=None, read_from=None, readings=[(0.6, 0.05)])]  # no truth: left out
    rows = ratio_bands(measured)
    assert [(low, high, count) for low, high, count, _median, _tenth in rows] == [(0.5, 0.55, 2), (0.55, 0.6, 1),
                                                                                   (0.9, 1.0, 3)]
    assert rows[0][3] == pytest.approx(0.55)  # the median of 0.6 and 0.5
    assert rows[2][3] == pytest.approx(1.0) and rows[2][4] <= rows[2][3]
