"""Dump the near-duplicate decision's inputs from a real audit, and re-run the decision on them.

    python bench/decision_replay.py dump DATASET_DIR --out inputs.pkl [--manifest M.csv] [--seed S]
                                         [--cache-dir DIR] [--truth row.truth.json]
    python bench/decision_replay.py replay inputs.pkl [inputs.pkl …]
    python bench/decision_replay.py share inputs.pkl [inputs.pkl …]

`similarity.engine.decide` is a pure function of arrays (unit embeddings, grey thumbnails, which images are in
train and which held out, the calibration copies' embeddings and thumbnails). An audit builds them once, from its
cache; dumping them lets a change to the rule choice or its estimates be measured on many rows × calibration seeds
in seconds each, without an audit each (bench_truth.py's rows: 1–5 s a row). `dump` runs the audit in-process
(`auditor.api.audit`, EfficientNet-Lite0 offline, only the duplicate checks) and pickles the inputs with each
node's path and, given a bench_truth truth file, the planted pairs. `replay` re-runs the decision with the code as
it is now and prints the rule, the leak estimate and, where the truth is known, the leak recall and precision.

`share` measures how the copies read π, the share of images with a duplicate, against the dumps' planted truth:
at each clean rule of the decision (finding half the copies or more with the fewest falsely matching), the reading
(F − N)/(R·(1 − N)) divided by the true share (images in a planted pair over all images), pooled over the dumps by
the share of copies the rule finds. The stricter the rule, the more easily it finds the copies against real
same-shot leaks, so the lower the reading: README, "π read at the clean rules finding most copies". The rules are
those of the decision's final choice (the copies' matches with its first choice's duplicates excused).

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


RECALL_BANDS = (0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 1.0001)


@dataclass
class ShareReadings:
    true_share: float  # images in a planted pair, over all images
    read: tuple[float, float, float] | None  # the π the decision used (estimate, low, high)
    read_from: str | None
    readings: list[tuple[float, float]]  # (copies found, π read) at each clean rule


def share_readings(payload: dict) -> ShareReadings:
    """The decision re-run on the dumped inputs, and the copies' reading of π at each of its clean rules."""
    from auditor.similarity.engine import decide

    decision = decide(**payload["inputs"], memo=None)
    choice = decision.choice
    position = {path: node for node, path in enumerate(payload["paths"])}
    in_pair = {position[path] for pair in payload.get("pairs", []) for path in pair if path in position}
    readings = []
    if choice.calibrator is not None and choice.rules:
        readings = [(recall, value) for value, recall, _flagged, _rule in choice.calibrator.clean_rules(choice.rules)]
    return ShareReadings(true_share=len(in_pair) / len(payload["paths"]), read=choice.pi, read_from=choice.pi_source,
                         readings=readings)


def ratio_bands(measured: list[ShareReadings], bands=RECALL_BANDS) -> list[tuple[float, float, int, float, float]]:
    """Pooled over the dumps with a planted pair: per band of copies found [low, high), the readings' count and the
    median and 10th percentile of reading / true share."""
    import numpy as np

    pooled = [(recall, value / m.true_share) for m in measured if m.true_share > 0 for recall, value in m.readings]
    rows = []
    for low, high in zip(bands[:-1], bands[1:]):
        ratios = [ratio for recall, ratio in pooled if low <= recall < high]
        if ratios:
            rows.append((low, min(high, 1.0), len(ratios), float(np.median(ratios)), float(np.quantile(ratios, 0.1))))
    return rows


def print_share_tables(dumps: list[Path]) -> None:
    """Each dump's true and read share, then the readings pooled by the copies found (markdown tables)."""
    measured = []
    print("| dump | true share | π read [interval] | from | clean rules |")
    print("|---|---|---|---|---|")
    for path in dumps:
        with path.open("rb") as handle:
            result = share_readings(pickle.load(handle))
        measured.append(result)
        read = "–" if result.read is None else f"{result.read[0]:.3f} [{result.read[1]:.3f}, {result.read[2]:.3f}]"
        print(f"| {path.name} | {result.true_share:.3f} | {read} | {result.read_from or '–'} | {len(result.readings)} |")
    print("\n| copies found by the clean rule | readings | reading / true share: median | 10th percentile |")
    print("|---|---|---|---|")
    for low, high, count, median, tenth in ratio_bands(measured):
        print(f"| {low:.2f}–{high:.2f} | {count} | {median:.2f} | {tenth:.2f} |")


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
    share = commands.add_parser("share", help="the copies' reading of π at each clean rule against the planted truth")
    share.add_argument("dumps", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "share":
        print_share_tables(args.dumps)
        return
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
