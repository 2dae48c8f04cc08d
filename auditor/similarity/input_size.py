"""Which input size the backbone gets: small images are not blown up 7× by default.

A 32 px photo upscaled to 224 px costs the backbone (224/96)² ≈ 5.4× the compute of a 96 px input and,
measured on cats/dogs squared down to 32 px with planted same-shot leaks (bench/bench_truth.py), brings
only a little better duplicate evidence: there the aligned pixel correlation carries the decision and the
embedding mostly proposes candidates. So in a large dataset images whose typical longer side is at most
SMALL_SIDE px are embedded at SMALL_INPUT px; everything else at the backbone's own size. The report says which
size ran and why.

Except where the compute is small anyway: a dataset of at most FULL_SIZE_UP_TO images is embedded at the
backbone's own size whatever its images' size. At 96 px the label probe on 32 px photos reaches only 76–78 % of
the true labels, below the 80 % where `label_issues`' evidence ends, so that check could say nothing; at 224 px
it reaches 82 % and the estimate is supported (bench/bench_label_issues.py), and the 32 px duplicate rows of
bench/bench_truth.py do as well or better (leak recall 0.85 / 0.89 / 0.93 at 2 / 10 / 30 % against 0.80 / 0.90 /
0.90). 20 000 images at 224 px take ≈ 4 minutes of embedding on two cores; above that, speed wins. In a merge
audit the existing dataset's own size decides, so the gate embeds at the size the existing audit cached.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SMALL_SIDE = 64
SMALL_INPUT = 96
FULL_SIZE_UP_TO = 20_000  # images; datasets this small are embedded at the backbone's own size (see above)
SAMPLE = 64  # image headers read to judge the typical size


def header_sides(paths: list[Path | str], seed: int = 0, max_bytes: int = 64 * 2**20) -> list[int]:
    """Longer sides of a seeded sample of the files, from their headers only (no decoding). Files are read
    like every other read (regular files only, never blocking: a FIFO here must not hang the audit)."""
    import io

    from PIL import Image

    from auditor.encoding.reading import read_file

    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(paths), size=min(SAMPLE, len(paths)), replace=False) if paths else []
    sides = []
    for i in chosen:
        data, _problem = read_file(paths[int(i)], max_bytes)
        if not data:
            continue  # unreadable files are the integrity check's business
        try:
            with Image.open(io.BytesIO(data)) as image:
                sides.append(max(image.size))
        except Exception:
            continue
    return sides


def are_small(sides: list[int]) -> bool:
    """Whether images with these longer sides are small: typical (median) longer side at most SMALL_SIDE px.
    The duplicate search also looks for pixel-alike candidates then (similarity/evidence.py)."""
    return bool(len(sides)) and float(np.median(sides)) <= SMALL_SIDE


def choose_input_size(sides: list[int], default: int, images: int | None = None) -> tuple[int, str]:
    """(input size, why) for a dataset of `images` images (None: not known) with these longer sides."""
    if not sides:
        return default, f"{default} px, the backbone's own input size"
    median = float(np.median(sides))
    if are_small(sides) and default > SMALL_INPUT and images is not None and images <= FULL_SIZE_UP_TO:
        return default, (f"{default} px, the backbone's own input size, although the images are small (median "
                         f"longer side {median:.0f} px): a dataset of at most {FULL_SIZE_UP_TO} images is embedded "
                         f"at full size, which gives the label analysis the evidence it lacks at {SMALL_INPUT} px "
                         f"(bench/bench_label_issues.py), for {(default / SMALL_INPUT) ** 2:.1f}× the compute")
    if are_small(sides) and default > SMALL_INPUT:
        return SMALL_INPUT, (f"{SMALL_INPUT} px instead of {default} px: the images are small (median longer side "
                             f"{median:.0f} px), and a larger input would cost {(default / SMALL_INPUT) ** 2:.1f}× "
                             "the compute without better duplicate evidence (bench/bench_truth.py)")
    return default, f"{default} px, the backbone's own input size (median longer side {median:.0f} px)"
