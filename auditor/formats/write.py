"""Write a report in the requested formats to a folder (atomically, one file per format).

Shared by the command line and the Python API, so both write the same files the same way.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from auditor.errors import ConfigError

FORMATS = ("terminal", "json", "html", "markdown", "junit")
FILE_NAMES = {"json": "report.json", "markdown": "report.md", "junit": "report.junit.xml", "html": "report.html"}


def parse_formats(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """A comma list (or a list) of format names, checked."""
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = [f.strip().lower() for f in items if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ConfigError(f"unknown format(s): {', '.join(unknown) or '(none)'}", f"Use a comma list of {', '.join(FORMATS)}.")
    return formats


def prepare_output_dir(out: Path) -> Path:
    """Create the report folder now, before any work, so a bad --out fails in a second, not after the audit."""
    out = Path(out).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"--out {str(out)!r} is a file, not a folder", "Pass a folder for the reports.") from None
    except NotADirectoryError:
        raise ConfigError(f"--out {str(out)!r} lies below a file", "Pass a folder for the reports.") from None
    except OSError as exc:
        raise ConfigError(f"cannot create the report folder {str(out)!r}: {exc.strerror or exc}",
                          "Pass a writable folder with --out.") from None
    if not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is not a folder", "Pass a folder for the reports.")
    return out


@contextmanager
def output_folder(out: Path) -> Iterator[Path]:
    """`prepare_output_dir`, and when the work inside fails before anything is written there (a dataset that does
    not exist, a bad manifest), the folders this call created are removed again if still empty: a failed audit
    leaves no empty `reports/<name>` behind. Folders that existed before, or hold anything, are never touched."""
    out = Path(out).expanduser()
    created = []  # the folder and the parents it lacks, deepest first
    for folder in (out, *out.parents):
        if os.path.lexists(folder):
            break
        created.append(folder)
    folder = prepare_output_dir(out)
    try:
        yield folder
    except BaseException:
        for path in created:
            try:
                path.rmdir()  # only an empty folder; anything written there stays
            except OSError:
                break
        raise


def write_reports(report, out: Path, formats: list[str], ctx=None) -> list[Path]:
    """Write every file format in `formats` (terminal is not a file) to `out`; returns the paths written.
    `ctx` (the audit context) lets the HTML show thumbnails, the embedding map and property histograms."""
    from auditor.atomic import atomic_write_text

    renderers = {"json": _json, "markdown": _markdown, "junit": _junit, "html": lambda r: html_page(r, ctx)}
    written = []
    for name in ("json", "markdown", "junit", "html"):
        if name in formats:
            destination = Path(out) / FILE_NAMES[name]
            atomic_write_text(destination, renderers[name](report))
            written.append(destination)
    return written


def _json(report) -> str:
    from auditor.formats.json_report import render_json

    return render_json(report)


def _markdown(report) -> str:
    from auditor.formats.markdown import render_markdown

    return render_markdown(report)


def _junit(report) -> str:
    from auditor.formats.junit import render_junit

    return render_junit(report)


def html_page(report, ctx=None) -> str:
    """The HTML report as one page; with the audit context, with thumbnails, the embedding map and histograms."""
    from auditor.formats.html import render_html
    from auditor.formats.visuals import Thumbnails, embedding_projection, property_samples, thumbnails_for

    thumbnails = thumbnails_for(report, ctx) if ctx is not None else Thumbnails()
    projection = embedding_projection(ctx) if ctx is not None else None
    properties = property_samples(ctx) if ctx is not None else None
    return render_html(report, thumbnails, projection, properties)
