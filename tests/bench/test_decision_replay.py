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
    from decision_replay import dump, replay

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
