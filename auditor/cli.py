"""Command line: parse flags → resolve settings → run → render → exit code. No computation here.

Exit codes: 0 no check failed · 1 a check failed under the policy · 2 usage, dataset or internal error.
Every option is declared once in `cli_options`; each command takes the groups it needs, and every
command resolves its settings the same way (defaults < settings file < flags given).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

from auditor.cli_options import GROUPS, Flags, Opt, takes
from auditor.errors import AuditorError, ConfigError

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
FINETUNE_ONLY_CHECKS = ("leakage", "label_conflicts", "split_shift", "reference_finetune", "gap_attribution")
DUPLICATE_CHECKS = ("exact_duplicates", "near_duplicates", "leakage", "label_conflicts")
# Flags that name AuditConfig keys as they are; the others are translated in `config_values`.
CONFIG_KEYS = (*GROUPS["dataset"], *GROUPS["outside_root"], *GROUPS["sources"], *GROUPS["embedding"],
               *GROUPS["duplicates"])

app = typer.Typer(
    name="auditor",
    help="Audit an image-classification dataset before training on it.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

AUDIT_GROUPS = ("dataset", "outside_root", "sources", "settings", "embedding", "duplicates", "finetune_switch", "finetune", "report", "gate")


@app.command("audit")
@takes(*AUDIT_GROUPS)
def audit_command(flags: Flags) -> int:
    """Run the whole audit: terminal report on stdout, JSON report in --out."""
    return _guarded(lambda: _audit(flags))


@app.command("duplicates")
@takes("dataset", "outside_root", "settings", "embedding", "duplicates", "report", "gate")
def duplicates_command(flags: Flags) -> int:
    """Only the duplicate checks: exact_duplicates, near_duplicates, leakage, label_conflicts."""
    return _guarded(lambda: _audit(flags, fixed_checks=DUPLICATE_CHECKS))


@app.command("finetune")
@takes("dataset", "outside_root", "settings", "embedding", "duplicates", "finetune", "report", "gate")
def finetune_command(flags: Flags) -> int:
    """The reference fine-tune and the gap attribution only (with the leakage, conflict and shift evidence they read)."""
    return _guarded(lambda: _audit(flags, fixed_checks=FINETUNE_ONLY_CHECKS, finetune=True))


@app.command("embed")
@takes("dataset", "outside_root", "settings", "embedding", "quiet")
def embed_command(flags: Flags) -> int:
    """Hash, scan and embed every image into the cache (warms it for later audits)."""

    def work() -> int:
        from auditor.runner import prepare

        config = _settings(flags).config
        _require_writable(config, datasets=_audited_folders(flags, config))
        ctx = prepare(flags.dataset_dir, config, _progress(flags.quiet))
        stats = ctx.encoded.stats
        print(
            f"{len(ctx.records)} files, {int(stats['unique_images'])} unique contents; "
            f"embeddings: {int(stats['embeddings_cached'])} cached, {int(stats['embeddings_computed'])} computed "
            f"with {ctx.backbone.name} ({ctx.backbone.weights}); cache: {config.cache_dir}"
        )
        return EXIT_OK

    return _guarded(work)


@app.command("manifest")
@takes("dataset", "outside_root", "settings",
       extra={"output": Opt(Path, typer.Option(..., "--output", "-o", help="Where to write the CSV."))})
def manifest_command(flags: Flags) -> int:
    """Write the resolved path,label,split table (for example the exact split Keras makes)."""

    def work() -> int:
        from auditor.index.dataset import load_dataset, write_manifest

        config = _settings(flags).config
        _require_writable(config, manifest_file=flags.output, datasets=_audited_folders(flags, config))
        index = load_dataset(flags.dataset_dir, config)
        left_out = write_manifest(index, flags.output)
        counts = ", ".join(f"{s} {info['images']}" for s, info in index.summary()["splits"].items())
        _stderr(f"wrote {len(index.records) - len(left_out)} rows ({counts}) to {flags.output}")
        if left_out:
            _stderr(f"warning: left out {len(left_out)} file(s) whose name is not UTF-8 (a CSV cannot hold it), "
                    f"e.g. {left_out[0]}; rename them to list them")
        return EXIT_OK

    return _guarded(work)


SPLIT_OPTIONS = {
    "output": Opt(Path, typer.Option(..., "--output", "-o", help="Where to write the CSV (path,label,split,group,reason).")),
    "fractions": Opt(Optional[str], typer.Option(
        None, "--fractions", help="New splits and their shares, e.g. train=0.8,val=0.2 or train=0.7,val=0.2,test=0.1 "
                                  "(default: --keep-existing when the dataset has splits, else train=0.8,val=0.2).")),
    "keep_existing": Opt(bool, typer.Option(
        False, "--keep-existing", help="Keep today's splits; move as few images as possible to remove every leak.")),
    "group_by": Opt(Optional[str], typer.Option(
        None, "--group-by", help="Also keep together images sharing this: 'source' or a manifest column.")),
    "dedupe": Opt(bool, typer.Option(False, "--dedupe", help="Keep one image per duplicate group (in train); exclude the copies.")),
    "drop_suspect_labels": Opt(bool, typer.Option(
        False, "--drop-suspect-labels", help="Exclude images label_issues flags with strong evidence.")),
    "materialize": Opt(Optional[Path], typer.Option(
        None, "--materialize", help="Lay the split out as DEST/<split>/<class>/… (hard links; copies where links are "
                                    "impossible). DEST must be new or empty.")),
    "overwrite": Opt(bool, typer.Option(False, "--overwrite", help="Replace a DEST an earlier --materialize wrote.")),
    "copy": Opt(bool, typer.Option(False, "--copy", help="Copy files into DEST instead of hard-linking them.")),
    "split_format": Opt(str, typer.Option(
        "terminal", "--format", help="Comma list of: terminal, json, markdown, html (files beside the CSV, same name).")),
}


@app.command("split")
@takes("dataset", "sources", "settings", "embedding", "duplicates", "quiet", extra=SPLIT_OPTIONS)
def split_command(flags: Flags) -> int:
    """Write a leak-free split: every duplicate group in one split, stratified by class, conflicts and broken
    files excluded with a reason (nothing in DIR is changed)."""

    def work() -> int:
        from auditor.fix.command import SplitOptions, run_split
        from auditor.fix.items import parse_fractions

        options = SplitOptions(
            output=flags.output, fractions=parse_fractions(flags.fractions) if flags.fractions else None,
            keep_existing=flags.keep_existing, seed=flags.seed, group_by=flags.group_by, dedupe=flags.dedupe,
            drop_suspect_labels=flags.drop_suspect_labels, materialize=flags.materialize, overwrite=flags.overwrite,
            copy=flags.copy, formats=tuple(f.strip().lower() for f in flags.split_format.split(",") if f.strip()))
        outcome = run_split(flags.dataset_dir, _settings(flags).config, options, _progress(flags.quiet))
        if outcome.text:
            sys.stdout.write(outcome.text)
        for path in outcome.written:
            _stderr(f"written: {path}")
        return outcome.exit_code

    return _guarded(work)


# ---------------------------------------------------------------------------------------------
# The audit commands
# ---------------------------------------------------------------------------------------------


def _audit(flags: Flags, fixed_checks: tuple[str, ...] | None = None, finetune: bool = False) -> int:
    from auditor.formats.write import output_folder, parse_formats

    formats = parse_formats(flags.format)
    check_ids = _check_ids(flags, fixed_checks)  # a typo is an error now, not after the embedding
    settings = _settings(flags, finetune=finetune)
    config = settings.config
    baseline_path = flags.values.get("baseline") or settings.baseline
    update_baseline = flags.values.get("update_baseline", False)
    if update_baseline and baseline_path is None:
        raise ConfigError("--update-baseline needs a file", "Pass --baseline FILE (or set baseline in [tool.auditor]).")
    out_folder = flags.out or _default_out(flags.dataset_dir, config.manifest)
    _require_writable(config, baseline_file=baseline_path if update_baseline else None,
                      datasets=_audited_folders(flags, config), out=out_folder)
    with output_folder(out_folder) as out:
        report = _audit_into(out, flags, formats, config, check_ids, baseline_path, update_baseline)
    if report.failed and not flags.exit_zero:
        return EXIT_FAILED
    return EXIT_ERROR if report.errored else EXIT_OK


def _audit_into(out: Path, flags: Flags, formats: list[str], config, check_ids: list[str] | None,
                baseline_path: Path | None, update_baseline: bool):
    """Audit, then print and write the report into `out`; returns the report."""
    from auditor.formats.write import write_reports
    from auditor.runner import audit

    baseline_ids = None
    if baseline_path is not None and not update_baseline:
        from auditor.gate.baseline import load_baseline

        baseline_ids = load_baseline(baseline_path)
    report, ctx = audit(flags.dataset_dir, config, _progress(flags.quiet), check_ids,
                        against=flags.values.get("against"), baseline_ids=baseline_ids)
    if update_baseline:
        _update_baseline(report, baseline_path)
    if "terminal" in formats:
        from auditor.formats.terminal import build_renderable

        _stdout_console().print(build_renderable(report))
    for path in write_reports(report, out, formats, ctx):
        _stderr(f"report written to {path}")
    return report


def _check_ids(flags: Flags, fixed: tuple[str, ...] | None) -> list[str] | None:
    from auditor.checks import parse_check_ids

    return list(fixed) if fixed is not None else parse_check_ids(flags.values.get("checks"))


def _update_baseline(report, path: Path) -> None:
    from auditor.gate.baseline import accept_findings, write_baseline

    write_baseline(report, path)
    recorded = {f.id for c in report.checks for f in c.findings}
    accept_findings(report.checks, lambda f: "baseline" if f.id in recorded else None)
    _stderr(f"baseline written to {path} ({len(recorded)} findings)")


# ---------------------------------------------------------------------------------------------
# Flags → settings
# ---------------------------------------------------------------------------------------------


def config_values(flags: Flags) -> tuple[dict, dict]:
    """The AuditConfig values the user typed, and the fine-tune fields typed (flag names)."""
    given = flags.given()
    values = {key: given[key] for key in CONFIG_KEYS if key in given}
    if "no_cache" in values:
        values["use_cache"] = not values.pop("no_cache")
    finetune_fields = {key: given[key] for key in GROUPS["finetune"] if key in given}
    return values, finetune_fields


def _settings(flags: Flags, finetune: bool = False):
    """Resolve the run's settings: defaults < settings file < the flags given."""
    from auditor.settings import resolve

    values, finetune_fields = config_values(flags)
    switched_on = finetune or bool(flags.values.get("finetune"))
    if finetune_fields or switched_on:
        values["finetune"] = finetune_fields or True
    settings = resolve(flags.dataset_dir, values, flags.values.get("config_file"), flags.values.get("policy"))
    if finetune_fields and not switched_on and not _file_enables_finetune(flags):
        names = ", ".join("--" + k.replace("_", "-") for k in finetune_fields)
        raise ConfigError(f"{names} only apply to the fine-tune", "Add --finetune, or use `auditor finetune DIR`.")
    return settings


def _file_enables_finetune(flags: Flags) -> bool:
    from auditor.settings import resolve

    bare = resolve(flags.dataset_dir, {}, flags.values.get("config_file"), flags.values.get("policy"))
    return bare.config.finetune is not None


def _require_writable(config, manifest_file: Path | None = None, baseline_file: Path | None = None,
                      datasets: list[Path] | None = None, out: Path | None = None) -> None:
    """Check every place the command will write, before any work: a bad path must not cost an audit. Nothing
    may be written inside the `datasets` (the audited folder, and --against's)."""
    from auditor.atomic import refuse_inside, require_writable_folder

    datasets = datasets or []
    if out is not None:
        refuse_inside(out, datasets, "the report folder",
                      "Pass --out with a folder outside the dataset, e.g. --out ../reports.")
    if config.use_cache and manifest_file is None:
        refuse_inside(config.cache_dir, datasets, "the cache folder",
                      "Pass --cache-dir with a folder outside the dataset (or --no-cache).")
        require_writable_folder(config.cache_dir, "cache folder", "--cache-dir (or --no-cache)")
    for path, what, flag in ((manifest_file, "the manifest", "--output"), (baseline_file, "the baseline", "--baseline")):
        if path is not None:
            refuse_inside(path, datasets, what, f"Pass {flag} with a file outside the dataset.")
    for path, flag in ((manifest_file, "--output"), (baseline_file, "--baseline")):
        if path is not None:
            if Path(path).is_dir():
                raise ConfigError(f"{str(path)!r} is a folder; {flag} expects a file", f"Pass a file name with {flag}.")
            require_writable_folder(Path(path).expanduser().parent, "folder", flag)


def _audited_folders(flags: Flags, config) -> list[Path]:
    """The dataset folders a command walks for images: the dataset, and --against's when it is a folder. Nothing
    is written inside them (a report folder there would be walked as a split by the next audit). A dataset given
    by a manifest is the files it lists, which are only ever read; its root folder may hold the reports."""
    folders = [] if config.manifest is not None else [Path(flags.dataset_dir)]
    against = flags.values.get("against")
    if against is not None and Path(against).expanduser().is_dir():
        folders.append(Path(against))
    return folders


def _default_out(dataset_dir: Path, manifest: Path | None) -> Path:
    name = (manifest.stem if manifest else Path(dataset_dir).expanduser().resolve().name) or "dataset"
    return Path("reports") / name


# ---------------------------------------------------------------------------------------------
# Terminal plumbing
# ---------------------------------------------------------------------------------------------


def _progress(quiet: bool):
    from auditor.progress import SilentProgress

    if quiet:
        return SilentProgress()
    from auditor.rich_progress import RichProgress

    return RichProgress()


def _stdout_console():
    from rich.console import Console

    return Console(highlight=False)


def _stderr(message: str) -> None:
    from auditor.text import printable

    print(printable(message), file=sys.stderr)  # messages quote paths: no control character reaches the terminal


def _guarded(work: Callable[[], int]) -> int:
    """Run a command; turn errors into one line plus a tip and exit code 2 (a traceback only with AUDITOR_DEBUG=1)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return work()
    except AuditorError as exc:
        _stderr(f"error: {exc.message}")
        if exc.tip:
            _stderr(f"Tip: {exc.tip}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _stderr("interrupted: work finished before this point is kept in the cache (not with --no-cache); "
                "run again to resume")
        return EXIT_ERROR
    except Exception as exc:  # the last resort: never a traceback for users
        if os.environ.get("AUDITOR_DEBUG"):
            raise
        _stderr(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        _stderr("Tip: run again with AUDITOR_DEBUG=1 for the traceback, and report it.")
        return EXIT_ERROR


def app_main() -> None:
    """`auditor …` entry point."""
    run_as_program(app)


def audit_main() -> None:
    """`audit DIR …` entry point: the audit command on its own."""
    audit_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    audit_app.command()(audit_command)
    run_as_program(audit_app)


def _invoke(application: Callable[..., object]) -> object:
    """Run the app and return its exit code (or a SystemExit message). Usage errors (an unknown option, a value of
    the wrong type, a missing argument) are answered like every other error: one line and a tip, exit 2, not
    click's usage block with a framed message."""
    exceptions = _click_exceptions()
    try:
        result = application(standalone_mode=False) if isinstance(application, typer.Typer) else application()
    except SystemExit as done:
        return done.code
    except exceptions.ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the bare command: its help is already printed
            return exc.exit_code
        context = getattr(exc, "ctx", None)
        command = context.command_path if context is not None else "auditor"
        _stderr(f"error: {exc.format_message()}")
        _stderr(f"Tip: run '{command} --help' for its arguments and options.")
        return EXIT_ERROR
    except typer.Abort:
        _stderr("interrupted")
        return EXIT_ERROR
    return result if isinstance(result, int) else 0


def _click_exceptions():
    """The click that Typer runs on: its own copy in recent Typer versions, the click package in older ones."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def run_as_program(application: Callable[..., object]) -> None:
    """Run a Typer app as this process's program and end the process as soon as it returns.

    When a command returns, its work is durable: reports are written atomically, every cache write was committed
    in its own transaction, and worker threads were joined. What remains is the interpreter's teardown, which with
    TensorFlow loaded took 0.8–1.7 s per run (a CI merge gate's whole budget is ≈ 8 s), so the process ends with
    os._exit after flushing its output. A local Ray started here is shut down by its engine; a Ray still running
    (somebody else's) gets the normal exit."""
    from auditor import lean_imports

    lean_imports.enable()  # this process is auditor's own: its Keras and scikit-learn need no pandas or matplotlib
    code = _invoke(application)
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    code = 0 if code is None else int(code)  # type: ignore[arg-type]
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
