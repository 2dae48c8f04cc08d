"""`reference_finetune`: the reference head trained on the audit's frozen base, with its curves, and the
user's own training log (`--history`) beside it. Runs only when the fine-tune is requested."""

from __future__ import annotations

import dataclasses
from typing import Any

from auditor.context import AuditContext
from auditor.checks.base import Check, Evidence, Verdict, skipped
from auditor.config import Policy
from auditor.report import Status

CHECK_ID = "reference_finetune"
NOT_REQUESTED = "not requested: run `audit DIR --finetune` or `auditor finetune DIR`"


def hyperparameters(options, seed: int) -> dict[str, Any]:
    values = dataclasses.asdict(options)
    values.pop("history", None)
    values["seed"] = seed
    values.update(optimizer="adam", loss="categorical_crossentropy", early_stopping=options.stop_on,
                  architecture="Flatten → 2 × [Dense(units, no bias, L2) → BatchNorm → ReLU → Dropout] "
                               "→ Dense(classes, no bias) → BatchNorm → softmax")
    return values


def backbone_note(ctx: AuditContext) -> str:
    backbone = ctx.backbone
    if backbone.name == "resnet50" and backbone.weights != "random":
        return "the reference's base: ResNet50 with ImageNet weights, frozen"
    if backbone.name == "resnet50":
        return "ResNet50 with RANDOM weights (--weights none): the numbers mean nothing beyond testing"
    return (f"NOT the reference's ResNet50: ResNet50's ImageNet weights were not used, so the head sits on the "
            f"audit's backbone, {backbone.name} ({backbone.weights}); its numbers are comparable in kind, not in value")


def user_history_metrics(ctx: AuditContext, reference) -> dict[str, Any] | None:
    options = ctx.config.finetune
    if options is None or options.history is None:
        return None
    from auditor.finetune.history import History, read_history

    # Resolved settings hold the run parsed (settings.merge_finetune); a bare path still works.
    history = options.history if isinstance(options.history, History) else read_history(options.history)
    parsed = history.to_dict()
    last_acc, last_val = history.last("acc"), history.last("val_acc")
    best_epoch = reference.run.best_epoch - 1
    ref_history = reference.run.history
    ref_fit_acc = ref_history["acc"][best_epoch] if ref_history["acc"] else None
    ref_fit_val = ref_history["val_acc"][best_epoch] if ref_history["val_acc"] else None
    parsed["comparison"] = {
        "user_final_acc": last_acc,
        "user_final_val_acc": last_val,
        "user_best_val_acc": history.best("val_acc"),
        "user_gap_points": round(100 * (last_acc - last_val), 2) if last_acc is not None and last_val is not None else None,
        "reference_fit_acc": ref_fit_acc,
        "reference_fit_val_acc": ref_fit_val,
        "reference_fit_gap_points": round(100 * (ref_fit_acc - ref_fit_val), 2)
        if ref_fit_acc is not None and ref_fit_val is not None else None,
        "note": "both gaps use the accuracies Keras logs during fit (training accuracy with dropout active), "
                "the reference's at its restored best epoch",
    }
    return parsed


def compute(ctx: AuditContext) -> Evidence:
    if ctx.config.finetune is None:
        return skipped(NOT_REQUESTED)
    reference = ctx.reference_run
    plan, head, store = reference.plan, reference.run, ctx.encoded.feature_maps
    stats = ctx.encoded.stats
    metrics: dict[str, Any] = {
        "backbone": {**ctx.backbone.describe(), "is_reference_base": ctx.backbone.name == "resnet50"
                     and ctx.backbone.weights != "random", "note": backbone_note(ctx)},
        "hyperparameters": hyperparameters(reference.options, reference.seed),
        "split": {"train_split": "train" if not plan.made else "made", "val_split": plan.val_split,
                  "made_by_auditor": plan.made, "note": plan.note, "train_images": len(plan.train),
                  "val_images": len(plan.val), "classes": plan.classes, "excluded": plan.excluded},
        "curves": head.history,
        "final": head.summary(),
        "feature_maps": {"shape": list(reference.feature_map_shape), "dtype": "float16",
                         "cached": int(stats.get("feature_maps_cached", 0)),
                         "computed": int(stats.get("feature_maps_computed", 0)),
                         "folder": str(store.folder) if ctx.config.use_cache else None},
    }
    user = user_history_metrics(ctx, reference)
    if user is not None:
        metrics["user_history"] = user
    final = head.summary()
    summary = (
        f"reference head on {ctx.backbone.name}: train {final['train_accuracy']:.1%}, validation "
        f"{final['val_accuracy']:.1%} (gap {final['gap_points']:.1f} points) on {len(plan.train)} / {len(plan.val)} "
        f"images after {head.epochs_run} epochs (best {head.best_epoch}"
        + (", stopped early" if head.stopped_early else f", the {reference.options.epochs}-epoch limit")
        + f"); {head.seconds_per_epoch_per_1000:.1f} s per epoch per 1 000 images"
    )
    if plan.made:
        summary += "; held-out split made by auditor (stratified, seeded)"
    if not metrics["backbone"]["is_reference_base"]:
        summary += f"; base is {ctx.backbone.name}, not ResNet50"
    if user is not None:
        c = user["comparison"]
        if c["user_final_acc"] is not None and c["user_final_val_acc"] is not None:
            summary += (f"; your run ({user['epochs']} epochs): train {c['user_final_acc']:.1%}, validation "
                        f"{c['user_final_val_acc']:.1%}")
        else:
            summary += f"; your log ({user['source']}): {user['epochs']} epochs read"
        if user["malformed_lines"]:
            summary += f" ({user['malformed_lines']} malformed lines skipped)"
    return Evidence(summary=summary, metrics=metrics)


def judge(evidence: Evidence, policy: Policy) -> Verdict:
    """The reference run informs; the gap it measures is judged by gap_attribution."""
    return Verdict(Status.PASS)


CHECK = Check(CHECK_ID, compute, judge)
