"""`auditor split DIR -o split.csv …`: the command's body, independent of the CLI's option parsing.

`run_split(dataset_dir, config, options)` indexes and encodes the dataset (the cache makes a second run
cheap), turns the audit into Items, plans the split, writes the CSV (+ JSON / Markdown / HTML beside it,
same stem), optionally materializes it, and returns the statistics, the terminal text and an exit code.
Nothing is written into the dataset: the CSV, the reports and DEST may not lie inside it.

Exit code 0; 1 when the split is written but an audit of it may still find a leak (the verification did not
settle, fix.verify); usage and dataset errors are raised as AuditorError (the CLI's exit code 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from auditor.errors import ConfigError
from auditor.fix.items import SplitRequest

FORMATS = ("terminal", "json", "markdown", "html")
REPORT_SUFFIX = {"json": ".json", "markdown": ".md", "html": ".html"}
DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.2}
EXIT_OK, EXIT_FAILED = 0, 1


@dataclass(frozen=True)
class SplitOptions:
    output: Path  # the CSV
    fractions: dict[str, float] | None = None  # None: keep-existing when asked, else the default below
    keep_existing: bool = False
    seed: int | None = None  # None: the config's seed, else 0
    group_by: str | None = None  # "source" or a manifest column
    dedupe: bool = False
    drop_suspect_labels: bool = False
    materialize: Path | None = None
    overwrite: bool = False  # replace a DEST an earlier --materialize wrote
    copy: bool = False  # copies instead of hard links
    formats: tuple[str, ...] = ("terminal",)


@dataclass
class SplitOutcome:
    stats: dict
    exit_code: int
    text: str  # the terminal rendering ("" unless "terminal" was asked for)
    written: list[Path] = field(default_factory=list)


def report_paths(options: SplitOptions) -> dict[str, Path]:
    output = Path(options.output)
    paths = {fmt: output.with_suffix(suffix) for fmt, suffix in REPORT_SUFFIX.items() if fmt in options.formats}
    for fmt, path in paths.items():
        if path == output:
            raise ConfigError(f"the {fmt} report would overwrite the CSV {str(output)!r}",
                              "Name the CSV with a .csv suffix, e.g. -o split.csv.")
    return paths


def _refuse_inside(path: Path, dataset_dir: Path, what: str) -> None:
    from auditor.atomic import refuse_inside

    refuse_inside(path, [dataset_dir], what, "Write it next to the dataset instead, e.g. -o split.csv in another folder.")


def validate(dataset_dir: Path, options: SplitOptions) -> None:
    """Everything that can be refused before the (long) encoding."""
    unknown = [f for f in options.formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown format(s) for split: {', '.join(unknown)}", f"Use a comma list of {', '.join(FORMATS)}.")
    if options.keep_existing and options.fractions:
        raise ConfigError("--keep-existing and --fractions exclude each other",
                          "Keep today's splits (--keep-existing) or make new ones (--fractions), not both.")
    _refuse_inside(options.output, dataset_dir, "the CSV")
    for path in report_paths(options).values():
        _refuse_inside(path, dataset_dir, "the report")
    if options.materialize is not None:
        from auditor.fix.materialize import check_destination

        check_destination(options.materialize, dataset_dir, [], options.overwrite)


def run_split(dataset_dir: Path, config, options: SplitOptions, progress=None, ctx=None) -> SplitOutcome:
    """Plan and write the split. `ctx`: an audit context already prepared (tests, or a caller that audited)."""
    from auditor.atomic import atomic_write_text
    from auditor.fix.render import render_html, render_json, render_markdown, render_text
    from auditor.fix.split_csv import write_split_csv
    from auditor.fix.stats import split_statistics
    from auditor.fix.verify import verified_plan

    validate(dataset_dir, options)
    if ctx is None:
        from auditor.runner import prepare

        ctx = prepare(Path(dataset_dir), config, progress)
    notes: list[str] = []
    fractions = options.fractions
    keep_existing = options.keep_existing
    if not keep_existing and fractions is None:
        splits = sorted({r.split for r in ctx.records})
        if len(splits) >= 2:
            keep_existing = True
            notes.append(f"mode keep-existing: the dataset has splits {', '.join(splits)} (pass --fractions to make new ones)")
        else:
            fractions = dict(DEFAULT_FRACTIONS)
            notes.append("mode fractions train=0.8,val=0.2: the dataset has one split (pass --fractions to choose)")
    seed = options.seed if options.seed is not None else (config.seed if config.seed is not None else 0)
    request = SplitRequest(fractions=None if keep_existing else fractions, seed=seed, dedupe=options.dedupe,
                           notes=tuple(notes))
    plan, _notes, verification = verified_plan(ctx, request, options.group_by, options.drop_suspect_labels)
    stats = split_statistics(plan)
    stats["duplicate_decision"] = duplicate_decision(ctx)
    stats["verification"] = verification
    if not verification["clean"]:
        last = verification["rounds"][-1]
        stats["warnings"].insert(0, f"an audit of this split (its own rule: {last['rule']}) still links "
                                    f"{last['images_in_them']} images across splits or labels after "
                                    f"{len(verification['rounds'])} rounds; look at those groups before training")
    stats["dataset"] = str(dataset_dir)
    stats["csv"] = str(options.output)
    rows = write_split_csv(plan, options.output)
    written = [Path(options.output)]
    if options.materialize is not None:
        stats["materialized"] = _materialize(ctx, plan, options)
    # Written, but a re-audit may find a leak, or a split is left empty.
    exit_code = EXIT_OK if verification["clean"] and not stats["empty_splits"] else EXIT_FAILED
    after = stats["after"]
    if after["leaks"]["groups_spanning_splits"] or after["conflicts"]["groups"]:  # impossible by construction
        stats["warnings"].insert(0, "internal error: the written split still has a leak or a conflict; please report it")
        exit_code = EXIT_FAILED
    for fmt, path in report_paths(options).items():
        render = {"json": render_json, "markdown": render_markdown}.get(fmt)
        atomic_write_text(path, render(stats) if render else render_html(stats, rows))
        written.append(path)
    text = render_text(stats) if "terminal" in options.formats else ""
    return SplitOutcome(stats=stats, exit_code=exit_code, text=text, written=written)


def duplicate_decision(ctx) -> dict:
    """The rule the duplicate groups were found at (chosen on this dataset, or given): a rule chosen afresh on
    the written split's images can differ, which is why the plan is verified as its re-audit decides."""
    from auditor.similarity.describe import decision_text

    config, rule = ctx.config, ctx.duplicate_decision.rule
    return {"rule": decision_text(ctx), "min_scaled_cosine": rule.min_scaled, "min_cosine": rule.min_cosine,
            "min_correlation": rule.min_correlation, "joint_min_scaled_cosine": rule.joint_scaled,
            "joint_min_correlation": rule.joint_correlation, "pixel_min_scaled_cosine": rule.pixel_min_scaled,
            "hash_alone": rule.hash_alone,
            "max_phash_distance": config.max_phash_distance, "max_dhash_distance": config.max_dhash_distance,
            "chosen_by": "the user" if config.min_cosine is not None and config.min_correlation is not None
            else "the audit, on this dataset"}


def _materialize(ctx, plan, options: SplitOptions) -> dict:
    from auditor.fix.materialize import Entry, materialize

    abspath = {r.path: r.abspath for r in ctx.records}
    entries = [Entry(source=abspath[item.path], path=item.path, split=placement.split, label=item.label)
               for item, placement in plan.rows() if placement.split is not None]
    result = materialize(entries, ctx.index.root, options.materialize, overwrite=options.overwrite, copy=options.copy,
                         about={"csv": str(options.output), "mode": "keep-existing" if plan.request.keep_existing
                                else "fractions", "seed": plan.request.seed})
    return result.summary()
