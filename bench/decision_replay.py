"""Dump the near-duplicate decision's inputs from a real audit, and re-run the decision on them.

    python bench/decision_replay.py dump DATASET_DIR --out inputs.pkl [--manifest M.csv] [--seed S]
                                         [--cache-dir DIR] [--truth row.truth.json]
    python bench/decision_replay.py replay inputs.pkl [inputs.pkl …]

`similarity.engine.decide` is a pure function of arrays (unit embeddings, grey thumbnails, which images are in
train and which held out, the calibration copies' embeddings and thumbnails). An audit builds them once, from its
cache; dumping them lets a change to the rule choice or its estimates be measured on many rows × calibration seeds
in seconds each, without an audit each (bench_truth.py's rows: 1–5 s a row). `dump` runs the audit in-process
(`auditor.api.audit`, EfficientNet-Lite0 offline, only the duplicate checks) and pickles the inputs with each
node's path and, given a bench_truth truth file, the planted pairs. `replay` re-runs the decision with the code as
it is now and prints the rule, the leak estimate and, where the truth is known, the leak recall and precision.

The leak flags here are the held-out images with an *accepted pair* to a train image; the audit's `leakage` check
reads the duplicate graph, which also splits chained components into cliques, so these flags are a superset of the
audit's: on bench_truth.py's 16 rows at seeds 0 and 2 always a superset, recall equal or 0.01 higher, precision
equal or up to 0.02 lower (0.08 on the 25-image set: one extra flag of 13).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def dump(dataset_dir: Path, out: Path, manifest: Path | None = None, seed: int = 0, cache_dir: Path | None = None,
         truth: Path | None = None) -> dict:
    """Audit `dataset_dir` (duplicate checks only) and pickle the decision's inputs to `out`; returns the dump."""
    from auditor import api

    settings = {"backbone": "efficientnet-lite0", "offline": True, "seed": seed}
    if manifest is not None:
        settings["manifest"] = str(manifest)
    if cache_dir is not None:
        settings["cache_dir"] = str(cache_dir)
    report = api.audit(dataset_dir, checks=["exact_duplicates", "near_duplicates", "leakage"], progress=False,
                       **settings)
    ctx = report._context
    inputs = ctx._decision_inputs()
    paths = [str(ctx.records[ctx.positions_by_sha[sha][0]].path) for sha in ctx.unique_shas]
    leakage = next(c for c in report.to_dict()["checks"] if c["id"] == "leakage")
    known = json.loads(truth.read_text()) if truth is not None else {}
    payload = {"inputs": inputs, "paths": paths, "seed": seed, "leaked": sorted(known.get("leaked", [])),
               "pairs": known.get("pairs", []), "audit_leaks": sorted(audit_leak_paths(leakage))}
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as handle:
        pickle.dump(payload, handle)
    return payload


def audit_leak_paths(leakage: dict) -> set[str]:
    """Held-out members of the `leakage` findings (the paths the audit calls leaked)."""
    return {member["path"] for finding in leakage.get("findings", [])
            for member in finding.get("evidence", {}).get("members", []) if member["split"] != "train"}


@dataclass
class Replayed:
    rule: str
    flagged: set[str]  # held-out images with an accepted pair to a train image
    recall: float | None  # against the dump's truth, when it has one
    precision: float | None
    estimated_recall: float | None
    estimated_precision: float | None


def replay(payload: dict) -> Replayed:
    """The decision re-run on the dumped inputs, and its leak flags."""
    from auditor.similarity.engine import decide

    inputs, paths = payload["inputs"], payload["paths"]
    decision = decide(**inputs, memo=None)
    reference, held_out = inputs["reference"], inputs["held_out"]
    flagged: set[str] = set()
    if reference is not None and held_out is not None:
        only_held_out = held_out & ~reference
        pairs, accepted = decision.pairs, decision.accepted
        for a, b in zip(pairs.query[accepted], pairs.target[accepted]):
            for leak, partner in ((a, b), (b, a)):
                if only_held_out[leak] and reference[partner]:
                    flagged.add(paths[leak])
    leaked = set(payload.get("leaked", []))
    recall = len(flagged & leaked) / len(leaked) if leaked else None
    precision = len(flagged & leaked) / len(flagged) if leaked and flagged else None
    leak = decision.leak
    return Replayed(rule=str(decision.rule), flagged=flagged, recall=recall, precision=precision,
                    estimated_recall=None if leak is None else leak.recall,
                    estimated_precision=None if leak is None else leak.precision)


def _fmt(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    taking = commands.add_parser("dump", help="audit a dataset and pickle the decision's inputs")
    taking.add_argument("dataset_dir", type=Path)
    taking.add_argument("--out", type=Path, required=True)
    taking.add_argument("--manifest", type=Path, default=None)
    taking.add_argument("--seed", type=int, default=0, help="the audit's --seed: which images are copied")
    taking.add_argument("--cache-dir", type=Path, default=None)
    taking.add_argument("--truth", type=Path, default=None, help="a bench_truth.py row's .truth.json")
    again = commands.add_parser("replay", help="re-run the decision on dumped inputs")
    again.add_argument("dumps", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "dump":
        payload = dump(args.dataset_dir, args.out, args.manifest, args.seed, args.cache_dir, args.truth)
        print(f"{args.out}: {len(payload['paths'])} images, {len(payload['audit_leaks'])} leaks flagged by the audit")
        return
    print("| dump | rule | flagged | leak recall / precision | estimated recall / precision |")
    print("|---|---|---|---|---|")
    for path in args.dumps:
        with path.open("rb") as handle:
            result = replay(pickle.load(handle))
        print(f"| {path.name} | {result.rule} | {len(result.flagged)} | {_fmt(result.recall)} / "
              f"{_fmt(result.precision)} | {_fmt(result.estimated_recall)} / {_fmt(result.estimated_precision)} |")


if __name__ == "__main__":
    main()
