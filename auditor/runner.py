"""Run an audit: index → encode → checks → Report. A crashing check becomes an `error` result."""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from auditor import __version__
from auditor.backbones.keras_import import COMPILED_MODELS, keep_compiled_models_in
from auditor.backbones.registry import Backbone, resolve_backbone
from auditor.gate.baseline import accept_findings, apply_statuses
from auditor.encoding.cache import Cache
from auditor.checks import CHECKS
from auditor.checks.base import Check, Evidence
from auditor.config import PRECISIONS, AuditConfig
from auditor.context import AuditContext, scan_limits
from auditor.index.dataset import DatasetIndex, load_dataset
from auditor.encoding.encode import encode_dataset
from auditor.engines import resolve_engine
from auditor.engines.device import CPU_ONLY, batch_size_for, precision_for
from auditor.errors import AuditorError, ConfigError
from auditor.progress import Progress, SilentProgress
from auditor.report import CheckResult, Finding, Report, Status, merge_same_id


def _bound_memory_at_scale(images: int) -> bool:
    """From memory.MAP_LARGE_BLOCKS_FROM images on, large blocks are mapped on their own and given back when freed
    (memory.map_large_blocks; freed, they stayed resident: the whole audit of 10⁶ images peaked 0.09 GiB higher,
    the decision's stage 0.3 GiB). The setting is the process's, so in the Python API it stays for the rest of the
    caller's process. Below, memory is no limit and the extra CPU (8–11 %) is not spent. Whether it was set."""
    from auditor import memory

    return images >= memory.MAP_LARGE_BLOCKS_FROM and memory.map_large_blocks()


def prepare(dataset_dir: Path, config: AuditConfig, progress: Progress | None = None,
            embed: bool = True, against: Path | None = None, index: DatasetIndex | None = None) -> AuditContext:
    """Index and encode the dataset (hashes, scans, embeddings), using the cache.
    With `against`, the dataset is audited as incoming images merged into that existing dataset.
    With `index`, that index is audited as it is (the Python API's Keras objects); nothing is walked."""
    if index is not None:
        if against is not None:
            raise ConfigError("against cannot be combined with a ready-made index",
                              "Audit the incoming images with auditor.audit(DIR, against=EXISTING).")
    elif against is not None:
        from auditor.index.merged import load_merged

        index = load_merged(Path(dataset_dir), Path(against), config)
    else:
        index = load_dataset(Path(dataset_dir), config)
    _bound_memory_at_scale(len(index.records))
    cache = Cache(config.cache_dir if config.use_cache else None)
    engine = resolve_engine(config.engine, config.workers)
    # Batch size and precision `auto` suit the devices the embedding runs on (engines/device.py).
    devices = engine.devices() if embed and (config.precision == "auto" or config.batch_size is None) else CPU_ONLY
    precision = precision_for(devices, config.precision)
    backbone = (resolve_backbone(config.backbone, config.weights, config.offline, precision,
                                 cache_dir=config.cache_dir if config.use_cache else None) if embed else None)
    if backbone is not None:
        # under JAX, compiled models are kept in the cache folder (not with --no-cache)
        keep_compiled_models_in(str(Path(config.cache_dir) / COMPILED_MODELS) if config.use_cache else None)
        _set_input_size(backbone, index, config)
    feature_maps = None
    if config.finetune is not None and backbone is not None:
        # The fine-tune's frozen base: its maps are computed in the embedding pass and cached beside it.
        from auditor.encoding.feature_maps import FeatureMapStore

        feature_maps = FeatureMapStore(config.cache_dir if config.use_cache else None, backbone.feature_map_key)
    encoded = encode_dataset(
        index,
        cache,
        backbone,
        scan_limits(config),
        max_file_bytes=int(config.max_file_mb * 2**20),
        batch_size=batch_size_for(devices, config.batch_size),
        workers=config.workers,
        progress=progress or SilentProgress(),
        feature_maps=feature_maps,
        engine=engine,
        # `auto` may follow the precision the cache holds these images in (another machine's); not for the fine-tune,
        # whose feature-map store is keyed by the precision chosen above.
        other_precisions=(tuple(p for p in PRECISIONS if p not in ("auto", precision))
                          if config.precision == "auto" and feature_maps is None else ()),
    )
    # Per-image work after the encode phase (the calibration copies) runs where the engine says: the local engine's
    # decoding workers (threads, or processes when a GPU embeds); a cluster engine's threads on this machine.
    return AuditContext(index=index, config=config, encoded=encoded, backbone=backbone, cache=cache,
                        pool=engine.pool(embeds=backbone is not None))


def _set_input_size(backbone: Backbone, index: DatasetIndex, config: AuditConfig) -> None:
    """Small images get a smaller backbone input (similarity/input_size.py); the report says which and why.
    Only EfficientNet-Lite0 takes other sizes; the fine-tune keeps the reference 224 px maps."""
    from auditor.similarity.input_size import choose_input_size, header_sides

    if backbone.name != "efficientnet-lite0" or config.finetune is not None:
        return
    if config.embedding_input_size is not None:
        backbone.input_size = config.embedding_input_size
        index.notes.append(f"Embedding input: {backbone.input_size} px, as set (embedding_input_size).")
        return
    # Each record's location text, not a Path per record (10⁶ of them): only a sample is read.
    size, why = choose_input_size(header_sides([r.location for r in index.records], config.seed or 0),
                                  backbone.input_size, _images_deciding_size(index))
    backbone.input_size = size
    index.notes.append(f"Embedding input: {why}.")


def _images_deciding_size(index: DatasetIndex) -> int:
    """How many images the input size is chosen for: in a merge audit the existing dataset's (its own audit chose
    the size its cached embeddings have, and a gate must not re-embed it at another); else all of them."""
    from auditor.index.merged import EXISTING, MergedIndex

    if isinstance(index, MergedIndex):
        return len(index.positions(EXISTING))
    return len(index.records)


def run_checks(ctx: AuditContext, check_ids: list[str] | None = None) -> list[CheckResult]:
    """Compute each check's evidence (or reuse it from the cache), then judge it by the policy."""
    unknown = [c for c in (check_ids or []) if c not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown check id(s): {', '.join(unknown)}", f"Known checks: {', '.join(CHECKS)}.")
    from auditor.encoding import result_cache

    base_key = result_cache.inputs_key(ctx) if ctx.config.use_cache else None
    merging = getattr(ctx.index, "origins", None) is not None
    results = []
    for check in _checks_to_run(merging):
        if check_ids and check.id not in check_ids and check.id != "merge":
            continue
        started = time.perf_counter()
        if merging and check.id in WHOLE_DATASET_TESTS:
            result = CheckResult(id=check.id, status=Status.SKIPPED, summary=MERGE_SKIP)
        else:
            result = _judged(ctx, check, _evidence(ctx, check, base_key))
        ctx.check_seconds[check.id] = time.perf_counter() - started
        apply_statuses(result, ctx.config.policy.statuses)
        results.append(result)
    return results


# In a merge audit these whole-dataset tests are not re-run over the union: the `merge` check compares the
# incoming images with the existing ones instead (the existing dataset's own audit judged its distribution).
WHOLE_DATASET_TESTS = ("split_shift", "shortcuts", "label_issues")
MERGE_SKIP = ("merge audit: the incoming images are compared with the existing ones in `merge` (shift, property "
              "drift, labels against their nearest existing images); the existing dataset's own audit tested the rest")


def _checks_to_run(merging: bool) -> list[Check]:
    if not merging:
        return list(CHECKS.values())
    from auditor.gate.merge import CHECK as MERGE_CHECK

    return [*CHECKS.values(), MERGE_CHECK]


def _evidence(ctx: AuditContext, check: Check, base_key: str | None) -> Evidence | CheckResult:
    """The check's evidence: from the cache when this code, these inputs and settings computed it before."""
    from auditor.encoding import result_cache
    from auditor.formats.json_report import plain

    key = result_cache.evidence_key(base_key, check, ctx.config.policy) if base_key else None
    cached = ctx.cache.get_check_result(key, check.id) if key else None
    if cached is not None:
        ctx.reused_checks.append(check.id)
        return Evidence.from_dict(cached)
    try:
        evidence = check.compute(ctx)
    except AuditorError:
        raise
    except Exception as exc:  # one broken check must not hide the others' results
        return crashed(check.id, exc)
    evidence.findings = merge_same_id(evidence.findings)
    if key:
        ctx.cache.put_check_result(key, check.id, plain(evidence.to_dict()))
    return evidence


def _judged(ctx: AuditContext, check: Check, evidence: Evidence | CheckResult) -> CheckResult:
    if isinstance(evidence, CheckResult):  # it crashed
        return evidence
    try:
        return check.result(evidence, ctx.config.policy)
    except Exception as exc:
        return crashed(check.id, exc)


def crashed(check_id: str, exc: Exception) -> CheckResult:
    """A check that raised: an `error` result naming the exception and where it came from."""
    last = traceback.extract_tb(exc.__traceback__)[-1]
    return CheckResult(id=check_id, status=Status.ERROR,
                       summary=f"check crashed: {type(exc).__name__}: {exc} ({Path(last.filename).name}:{last.lineno})")


def audit(dataset_dir: Path, config: AuditConfig, progress: Progress | None = None,
          check_ids: list[str] | None = None, against: Path | None = None,
          baseline_ids: set[str] | None = None, index: DatasetIndex | None = None) -> tuple[Report, AuditContext]:
    """The whole audit. `against`: audit dataset_dir as incoming images merged into that dataset.
    `baseline_ids`: findings accepted already; only other findings can fail the gate.
    `index`: audit this index instead of walking dataset_dir (see `prepare`)."""
    started = time.perf_counter()
    ctx = prepare(dataset_dir, config, progress, against=against, index=index)
    encoded_at = time.perf_counter()
    checks = run_checks(ctx, check_ids)
    _accept(checks, baseline_ids or set(), merging=against is not None)
    finished = time.perf_counter()
    report = build_report(ctx, checks)
    report.timings = {
        "encode": encoded_at - started,
        "checks": finished - encoded_at,
        "total": finished - started,
        **{k: v for k, v in ctx.encoded.stats.items() if k.endswith("_s")},
        **{f"check:{k}": v for k, v in ctx.check_seconds.items()},
    }
    return report, ctx


def build_report(ctx: AuditContext, checks: list[CheckResult]) -> Report:
    backbone: Backbone | None = ctx.backbone
    stats = ctx.encoded.stats
    notes = list(ctx.index.notes)
    if backbone is not None:
        notes.insert(0, f"Backbone: {backbone.name} ({backbone.weights}). {backbone.note}")
    notes.append(
        f"Cache: {int(stats.get('embeddings_cached', 0))} embeddings reused, "
        f"{int(stats.get('embeddings_computed', 0))} computed; {int(stats.get('scans_cached', 0))} of "
        f"{int(stats.get('unique_images', 0))} image scans reused"
        + (f"; {len(ctx.reused_checks)} check results reused (the dataset and settings are unchanged)."
           if ctx.reused_checks else ".")
    )
    if ctx.encoded.feature_maps is not None:
        notes.append(f"Feature maps (fine-tune): {int(stats.get('feature_maps_cached', 0))} reused, "
                     f"{int(stats.get('feature_maps_computed', 0))} computed.")
    return Report(
        tool_version=__version__,
        dataset=ctx.index.summary(),
        backbone=described_backbone(backbone, stats),
        checks=checks,
        notes=notes,
    )


def described_backbone(backbone: Backbone | None, stats: dict) -> dict:
    """The report's `backbone`. Its `runtime` names what embedded this run's new images, so it is None where the run
    embedded nothing (every embedding and feature map came from the cache): "keras" there was a guess."""
    if backbone is None:
        return {"name": None, "note": "no embeddings computed"}
    described = backbone.describe()
    if not stats.get("embeddings_computed") and not stats.get("feature_maps_computed"):
        described["runtime"] = None
    return described


def _accept(checks: list[CheckResult], baseline_ids: set[str], merging: bool) -> None:
    """Findings in the baseline, or (when merging) among existing images only, cannot fail the gate."""
    from auditor.gate.merge import is_existing_only

    def reason_for(finding: Finding) -> str | None:
        if finding.id in baseline_ids:
            return "baseline"
        if merging and is_existing_only(finding):
            return "existing"
        return None

    if baseline_ids or merging:
        accept_findings(checks, reason_for)
