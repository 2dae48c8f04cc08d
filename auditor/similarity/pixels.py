"""Pixel-level evidence from each image's 32×32 grey thumbnail (the image pHash is computed from).

- Dihedral perceptual hashes: pHash and dHash of the thumbnail turned by 0/90/180/270 degrees, each
  also mirrored (8 variants), so a rotated or mirrored copy still hashes close to its source.
- Aligned correlation: the Pearson correlation of two thumbnails after the best small shift and zoom,
  so a copy cropped a little, moved by a pixel or two, re-encoded or recoloured still correlates
  almost perfectly with its source, while a different photo of a similar scene does not.
  `screened_correlation` computes it only where a 16×16 version of the same search (8× cheaper)
  says it can be high: blurring raises correlation, so the coarse value bounds the fine one from above
  in practice (measured on 32 px photos: no pair below 0.70 coarse reached 0.66 fine).
- Block descriptors: standardised 8×8 block means, unit vectors, for finding pixel-alike candidates
  under every rotation and mirroring with a FAISS search (the embedding misses some rotated copies); as is and
  mirrored each dataset image is found by its own descriptor and those of five crops of it (`crop_descriptors`),
  as a same-shot copy is often a crop of its source.

Pure numpy on arrays; the thumbnails come from `ImageScan.grey32`.
"""

from __future__ import annotations

import base64
import functools
import math

import numpy as np

from auditor.parallel import run_blocks

SIDE = 32
# (rotation quarter-turns, mirrored) for the 8 dihedral variants; index 0 is the image itself.
DIHEDRAL = [(k, m) for m in (False, True) for k in range(4)]


def decode_grey32(encoded: str | None) -> np.ndarray | None:
    if not encoded:
        return None
    data = np.frombuffer(base64.b64decode(encoded), dtype=np.uint8)
    return data.reshape(SIDE, SIDE) if data.size == SIDE * SIDE else None


def encode_grey32(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.uint8).tobytes()).decode("ascii")


def dihedral(thumbs: np.ndarray, variant: int) -> np.ndarray:
    """(N, S, S) thumbnails under one of the 8 dihedral variants."""
    turns, mirrored = DIHEDRAL[variant]
    out = np.flip(thumbs, axis=2) if mirrored else thumbs
    return np.rot90(out, k=turns, axes=(1, 2))


def _dct_matrix(n: int) -> np.ndarray:
    """The unnormalised DCT-II matrix scipy.fftpack.dct uses (so the hashes equal imagehash's)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


_DCT8 = _dct_matrix(SIDE)[:8]


PHASH_BLOCK = 1_024  # thumbnails whose float64 DCT temporaries are held at once (8 MB)


def phash_codes(thumbs: np.ndarray) -> np.ndarray:
    """pHash (as imagehash computes it on a 32×32 grey image) of each thumbnail: (N, 8) uint8 codes. A block of
    PHASH_BLOCK thumbnails at a time: the float64 copy is 8 KB a thumbnail, and a caller's chunk of 32 768 on each
    of two threads held 0.67 GB of temporaries at the duplicate decision's peak (memray, 2·10⁵ 32 px crops)."""
    out = np.empty((len(thumbs), 8), dtype=np.uint8)
    for start in range(0, len(thumbs), PHASH_BLOCK):
        x = thumbs[start:start + PHASH_BLOCK].astype(np.float64)
        low = (_DCT8 @ x @ _DCT8.T).reshape(len(x), 64)  # two matrix products: 4× faster than a 3-operand einsum
        out[start:start + len(x)] = np.packbits(low > np.median(low, axis=1, keepdims=True), axis=1)
    return out


def dhash_codes(thumbs: np.ndarray) -> np.ndarray:
    """dHash of each thumbnail (as imagehash computes it on a 32×32 grey image: a Lanczos resize to 9×8, then
    which neighbour is brighter): (N, 8) uint8 codes. The resize is Pillow's, reproduced on the whole batch
    (`lanczos_9x8`): one PIL call per thumbnail and variant cost 23 µs, 9 × 10⁶ of them at 10⁶ images."""
    small = lanczos_9x8(np.asarray(thumbs, dtype=np.uint8)).astype(np.int16)
    return np.packbits(small[:, :, 1:] > small[:, :, :-1], axis=2).reshape(len(thumbs), 8)


_PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point precision for 8-bit images (libImaging/Resample.c)


def _lanczos(x: np.ndarray) -> np.ndarray:
    """Pillow's Lanczos-3 filter: sinc(x)·sinc(x/3) on [-3, 3)."""
    def sinc(v):
        safe = np.where(v == 0.0, 1.0, v * np.pi)
        return np.where(v == 0.0, 1.0, np.sin(safe) / safe)

    return np.where((-3.0 <= x) & (x < 3.0), sinc(x) * sinc(x / 3), 0.0)


@functools.lru_cache(maxsize=8)
def _resample_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) int64 fixed-point Lanczos weights, computed as Pillow's precompute_coeffs and
    normalize_coeffs_8bpc compute them (the same doubles in the same order, then rounded half away from 0)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    weights = np.zeros((out_size, in_size), dtype=np.float64)  # integers, float64 for the products
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        k = [float(_lanczos(np.float64((x - center + 0.5) * (1.0 / filterscale)))) for x in range(xmin, xmax)]
        total = 0.0
        for w in k:  # summed in order, as Pillow does
            total += w
        k = [w / total if total != 0.0 else w for w in k]
        weights[xx, xmin:xmax] = [int(-0.5 + w * (1 << _PRECISION_BITS)) if w < 0
                                  else int(0.5 + w * (1 << _PRECISION_BITS)) for w in k]
    return weights


def _clip8(acc: np.ndarray) -> np.ndarray:
    return np.clip(acc >> _PRECISION_BITS, 0, 255)


def lanczos_9x8(thumbs: np.ndarray) -> np.ndarray:
    """Pillow's `Image.resize((9, 8), LANCZOS)` of (N, S, S) uint8 grey images, bit for bit: the horizontal
    pass first, rounded and clipped to 8 bits, then the vertical pass (tested against Pillow)."""
    n, height, width = thumbs.shape
    horizontal, vertical = _resample_weights(width, 9), _resample_weights(height, 8)
    half = 1 << (_PRECISION_BITS - 1)
    out = np.empty((n, 8, 9), dtype=np.uint8)
    for start in range(0, n, 1024):  # temporaries that stay in cache
        part = thumbs[start:start + 1024]
        m = len(part)
        # Integer sums in float64 matrix products are exact (|sum| < 2³⁶ ≪ 2⁵³); one 2-D product per pass.
        rows = _clip8((part.reshape(m * height, width).astype(np.float64) @ horizontal.T).astype(np.int64) + half)
        columns = rows.reshape(m, height, 9).transpose(0, 2, 1).reshape(m * 9, height).astype(np.float64)
        out[start:start + m] = _clip8((columns @ vertical.T).astype(np.int64) + half).reshape(m, 9, 8).transpose(0, 2, 1)
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Hamming distance of two (N, 8) uint8 code arrays, int64. numpy ≥ 2 counts the bits of each 64-bit
    word at once (the dHash filter of the 10⁶-image hash search: 11 M rows; ≈ 24× faster than unpacking bits)."""
    a, b = np.ascontiguousarray(a, dtype=np.uint8), np.ascontiguousarray(b, dtype=np.uint8)
    if hasattr(np, "bitwise_count") and a.ndim == 2 and a.shape[1] == 8:
        return np.bitwise_count(a.view(np.uint64) ^ b.view(np.uint64)).reshape(-1).astype(np.int64)
    return np.unpackbits(np.bitwise_xor(a, b), axis=1).sum(axis=1).astype(np.int64)


def _zoom_weights(side: int, factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear centre zoom by `factor` along one axis: output pixel i = (1 - w[i])·x[lo[i]] + w[i]·x[hi[i]]."""
    coords = (np.arange(side) + 0.5 - side / 2) / factor + side / 2 - 0.5
    lo = np.clip(np.floor(coords).astype(int), 0, side - 1)
    hi = np.clip(lo + 1, 0, side - 1)
    return lo, hi, np.clip(coords - lo, 0, 1)


def _zoom(thumbs: np.ndarray, factor: float, crop: slice = slice(None)) -> np.ndarray:
    """Centre zoom by `factor` ≥ 1 (bilinear), same size: what a crop of 1 - 1/factor looks like. `crop`: the
    rows and columns of the result wanted (only those are computed, each as in the whole result)."""
    if factor == 1.0:
        return thumbs[:, crop, crop]
    lo, hi, w = (v[crop] for v in _zoom_weights(thumbs.shape[1], factor))
    rows = thumbs[:, lo, :] * (1 - w)[None, :, None] + thumbs[:, hi, :] * w[None, :, None]
    return rows[:, :, lo] * (1 - w)[None, None, :] + rows[:, :, hi] * w[None, None, :]


def _windows(thumbs: np.ndarray, inner: int, margin: int, max_shift: int) -> np.ndarray:
    """Standardised (inner × inner) windows at every shift of ±max_shift around the centre: (N, P, inner²)."""
    from numpy.lib.stride_tricks import sliding_window_view

    lo, hi = margin - max_shift, margin + max_shift + 1
    views = sliding_window_view(thumbs, (inner, inner), axis=(1, 2))[:, lo:hi, lo:hi]
    n, py, px_, _, _ = views.shape
    flat = np.empty((n, py * px_, inner * inner), dtype=views.dtype)
    np.copyto(flat.reshape(views.shape), views)  # one copy; then in place (the same numbers, less memory traffic)
    flat -= flat.mean(axis=2, keepdims=True)
    flat /= np.maximum(_norm(flat, axis=2), 1e-6)
    return flat


def _norm(x: np.ndarray, axis: int) -> np.ndarray:
    """np.linalg.norm(x, axis=axis, keepdims=True) of a real array, computed as it computes it (the same bits)
    without its complex conjugate, a full copy of x."""
    return np.sqrt(np.add.reduce(x * x, axis=axis, keepdims=True))


FLAT = 1e-2  # a template whose centred pixels have a smaller norm is flat (rounding noise only): it matches nothing


def _standardised(centre: np.ndarray) -> np.ndarray:
    """Rows minus their mean, scaled to unit norm; flat rows become zeros."""
    centre = centre - centre.mean(axis=1, keepdims=True)
    norm = _norm(centre, axis=1)
    return np.where(norm < FLAT, 0.0, centre / np.maximum(norm, FLAT)).astype(np.float32)


def _templates(thumbs: np.ndarray, zooms: tuple[float, ...], inner: int, margin: int) -> np.ndarray:
    """Standardised centre windows of the thumbnails zoomed by each factor: (N, Z, inner²)."""
    out = []
    for zoom in zooms:
        # Only the centre is computed: the whole zoomed thumbnail was 44 % more work, all cropped away.
        out.append(_standardised(_zoom(thumbs, zoom, slice(margin, margin + inner)).reshape(len(thumbs), -1)))
    return np.stack(out, axis=1)


def aligned_correlation(a: np.ndarray, b: np.ndarray, max_shift: int = 3,
                        zooms: tuple[float, ...] = (1.0, 1.1, 1.2), margin: int = 4, chunk: int = 256) -> np.ndarray:
    """Best Pearson correlation of the centre of one thumbnail with the other over shifts and zooms.

    a, b: (N, S, S) grey thumbnails of N candidate pairs. The centre (S - 2·margin)² window of one image
    (zoomed by each factor: a crop of up to ~17 % taken at another offset) is compared with the other's
    windows shifted by up to `max_shift` pixels each way, both ways round. Returns (N,) correlations in
    [-1, 1]: close to 1 for copies, lower for different photos of similar scenes."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    best = np.full(len(a), -1.0, dtype=np.float32)
    inner = a.shape[1] - 2 * margin if len(a) else 0
    larger = tuple(z for z in zooms if z != 1.0)
    for start in range(0, len(a), chunk):
        pa, pb = a[start : start + chunk], b[start : start + chunk]
        wa, wb = _windows(pa, inner, margin, max_shift), _windows(pb, inner, margin, max_shift)
        ta = _templates(pa, zooms, inner, margin)
        scores = np.matmul(ta, wb.transpose(0, 2, 1)).max(axis=(1, 2))
        if larger:
            tb = _templates(pb, larger, inner, margin)
            scores = np.maximum(scores, np.matmul(tb, wa.transpose(0, 2, 1)).max(axis=(1, 2)))
        best[start : start + chunk] = scores
    return best


SCREEN = 0.70  # coarse (16×16) correlation below which the full 32×32 search is skipped
DESCRIPTOR_SIDE = 8


def _unit_centred(x: np.ndarray) -> np.ndarray:
    """Rows minus their mean, scaled to unit length (a flat row stays near zero)."""
    x = x - x.mean(axis=1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def block_descriptors(thumbs: np.ndarray, side: int = DESCRIPTOR_SIDE) -> np.ndarray:
    """(N, side²) unit vectors: each thumbnail's side×side block means, standardised."""
    x = np.asarray(thumbs, dtype=np.float32)
    n, s, _ = x.shape
    f = s // side
    return _unit_centred(x.reshape(n, side, f, side, f).mean(axis=(2, 4)).reshape(n, side * side))


# A same-shot copy is often its source cropped by 5–20 % at some offset, squared back to size: its block means are
# those of that crop of the source, shifted by up to a block and zoomed. So each image is also described by crops
# keeping CROP_KEEP of each side, at the centre and in the four corners. Measured on 50 399 32 px tiles with 342
# planted same-shot copies (bench_truth.py --tiles, 2 %; 30 never candidates with the plain descriptor): indexing
# the five crops beside it and ranking images by their best one recovered 19 of the 30 at the same three pixel
# candidates an image (the four edge midpoints as well: 22; the centre crop alone: 9; blurring the thumbnails or
# low DCT coefficients instead: none).
CROP_KEEP = 0.85
CROP_OFFSETS = ((0.5, 0.5), (0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0))  # (across, down) as a share of the slack
DESCRIPTORS_PER_IMAGE = 1 + len(CROP_OFFSETS)


@functools.lru_cache(maxsize=16)
def _crop_blocks(side: int, blocks: int, keep: float, offset: float) -> np.ndarray:
    """(blocks, side) float32: row i averages pixels over the i-th of `blocks` equal parts of the span keeping
    `keep` of the side, starting at `offset` of the slack (area weights, fractions at the ends)."""
    length = side * keep
    edges = (side - length) * offset + length * np.arange(blocks + 1) / blocks
    pixels = np.arange(side)
    overlap = (np.minimum(edges[1:, None], pixels[None, :] + 1) - np.maximum(edges[:-1, None], pixels[None, :]))
    return (np.clip(overlap, 0.0, None) / (length / blocks)).astype(np.float32)


def crop_descriptors(thumbs: np.ndarray, side: int = DESCRIPTOR_SIDE) -> np.ndarray:
    """(N, DESCRIPTORS_PER_IMAGE · side²): each thumbnail's block descriptor, then those of its CROP_OFFSETS crops
    (block means over the crop's area), each a unit vector."""
    x = np.asarray(thumbs, dtype=np.float32)
    n, s, _ = x.shape
    out = [block_descriptors(thumbs, side)]
    for across, down in CROP_OFFSETS:
        rows, columns = _crop_blocks(s, side, CROP_KEEP, down), _crop_blocks(s, side, CROP_KEEP, across)
        means = rows @ (x.reshape(n * s, s) @ columns.T).reshape(n, s, side)  # (n, side, side)
        out.append(_unit_centred(means.reshape(n, side * side)))
    return np.concatenate(out, axis=1)


def halve(thumbs: np.ndarray) -> np.ndarray:
    """2×2 block means: (N, S, S) → (N, S/2, S/2) float32."""
    x = np.asarray(thumbs, dtype=np.float32)
    n, s, _ = x.shape
    return x.reshape(n, s // 2, 2, s // 2, 2).mean(axis=(2, 4))


def screened_correlation(a: np.ndarray, b: np.ndarray, screen: float = SCREEN) -> np.ndarray:
    """`aligned_correlation` where it can matter, the coarse value elsewhere (always below `screen`).

    The coarse pass runs the same shift-and-zoom search on 16×16 halves (±2 px, a quarter of the pixels,
    half the shifts); pairs reaching `screen` there get the full 32×32 search."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if not len(a):
        return np.zeros(0, dtype=np.float32)
    coarse = aligned_correlation(halve(a), halve(b), max_shift=2, margin=2)
    fine = coarse >= screen
    out = np.minimum(coarse, np.float32(screen - 1e-3))
    if fine.any():
        out[fine] = aligned_correlation(a[fine], b[fine])
    return out


# Many pairs and variants at once ----------------------------------------------------------------------------
# A thumbnail takes part in many evaluations: a query in each of its ~5 candidate pairs, under 2 to 8 variants,
# and a target of others' pairs. `variant_correlations` computes `screened_correlation` for all of them with
# three rearrangements of the same arithmetic, each measured on the candidate pairs of 60 000 32 px crops:
# - features once per distinct (thumbnail, variant) of a block of evaluations, gathered per evaluation;
# - no standardised windows: a template has mean 0, so its dot product with a raw window (pixels minus the
#   image's mean) divided by the window's centred norm is the correlation; the norms of all shifted windows
#   come from integral images of the integer pixels (exact sums), the zoom from two matrix products;
# - one matrix product per run of evaluations that share their first image, on one BLAS thread per core.
# The scores equal `aligned_correlation`'s to within float32 rounding (≤ 4e-5, tested); together 3.9× less CPU
# than standardised windows and einsum (226 → 58 µs per full-size evaluation, 17.4 → 11.3 µs per coarse one).
# Since the forty-fourth session the forward search multiplies the second image's row bands by the first's template
# bands instead of making the second image's shifted windows (`_block_scores`): per evaluation, in CPU, on the candidate
# pairs of 50 000 32 px tiles 28.6 → 21.4 µs, 25 000 Fashion-MNIST images 36.4 → 22.8, 3 000 native photos 19.0 → 15.3.
# Memory per evaluation, by the arrays' sizes in `_block_scores`: at most ≈ 35 KB coarse and ≈ 210 KB full-size, where
# each evaluation has a first image of its own (its template bands and windows); ≈ 5 and ≈ 25 KB where they share it.
COARSE_BLOCK = 1024  # evaluations whose coarse features are held at once
FINE_BLOCK = 256  # … full-size features


def distinct_thumbnails(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inverse, unique): thumbs == unique[inverse], identical thumbnails once."""
    flat = np.ascontiguousarray(thumbs).reshape(len(thumbs), -1)
    if not len(flat):
        return np.zeros(0, dtype=np.int64), thumbs[:0]
    keys = flat.view(np.dtype((np.void, flat.shape[1] * flat.itemsize)))[:, 0]
    _keys, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64), np.asarray(thumbs)[first]


def _raw_windows(images: np.ndarray, inner: int, margin: int, max_shift: int) -> np.ndarray:
    """The (inner × inner) windows at every shift of ±max_shift around the centre, as they are: (N, P, inner²)."""
    from numpy.lib.stride_tricks import sliding_window_view

    lo, hi = margin - max_shift, margin + max_shift + 1
    views = sliding_window_view(images, (inner, inner), axis=(1, 2))[:, lo:hi, lo:hi]
    out = np.empty((len(images), (hi - lo) ** 2, inner * inner), dtype=np.float32)
    np.copyto(out.reshape(views.shape), views)
    return out


def _box_sums(values: np.ndarray, inner: int, lo: int, shifts: int) -> np.ndarray:
    """Sums of `values` over the inner × inner windows at offsets lo … lo + shifts - 1 on both axes (integral
    image): (N, shifts, shifts), exact for integers."""
    span = shifts - 1 + inner
    total = np.zeros((len(values), span + 1, span + 1), dtype=values.dtype)
    np.cumsum(values[:, lo:lo + span, lo:lo + span], axis=1, out=total[:, 1:, 1:])
    np.cumsum(total[:, 1:, 1:], axis=2, out=total[:, 1:, 1:])
    return total[:, inner:, inner:] - total[:, :-inner, inner:] - total[:, inner:, :-inner] + total[:, :-inner, :-inner]


def _inverse_window_norms(pixels: np.ndarray, scale: int, inner: int, margin: int, max_shift: int) -> np.ndarray:
    """1 / ‖window − its mean‖ of every shifted window of images whose values are `pixels` / `scale` (`pixels`:
    integers, so the sums are exact and a flat window, 0 here, is told from a faint one): (N, P) float32."""
    lo, shifts, size = margin - max_shift, 2 * max_shift + 1, inner * inner
    values = pixels.astype(np.int32)  # Σx² over a window of 8-bit pixels (or 2×2 sums of them) fits
    total = _box_sums(values, inner, lo, shifts).reshape(len(values), -1).astype(np.int64)
    squares = _box_sums(values * values, inner, lo, shifts).reshape(len(values), -1).astype(np.int64)
    spread = squares * size - total * total  # size · Σ(x − mean)², in pixel units²·scale²
    return np.where(spread == 0, 0.0, scale * np.sqrt(size / np.maximum(spread, 1))).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _zoom_matrix(side: int, factor: float, margin: int, inner: int) -> np.ndarray:
    """(inner, side) float32: the rows margin … margin + inner of `_zoom` along one axis, as a matrix."""
    lo, hi, w = _zoom_weights(side, factor)
    matrix = np.zeros((side, side), dtype=np.float64)
    np.add.at(matrix, (np.arange(side), lo), 1 - w)
    np.add.at(matrix, (np.arange(side), hi), w)
    return matrix[margin:margin + inner].astype(np.float32)


def _matrix_templates(images: np.ndarray, zooms: tuple[float, ...], inner: int, margin: int) -> np.ndarray:
    """`_templates`, the zoom as two matrix products: (N, Z, inner²)."""
    n, side, _ = images.shape
    out = []
    for zoom in zooms:
        if zoom == 1.0:
            centre = images[:, margin:margin + inner, margin:margin + inner]
        else:
            m = _zoom_matrix(side, zoom, margin, inner)
            centre = m @ (images.reshape(n * side, side) @ m.T).reshape(n, side, inner)
        out.append(_standardised(centre.reshape(n, -1)))
    return np.stack(out, axis=1)


def _template_bands(templates: np.ndarray, shifts: int) -> np.ndarray:
    """(N, Z, inner²) templates → (N, Z·shifts, inner·width) band matrices, width = inner + shifts − 1: row
    z·shifts + dx holds template z placed dx columns right within rows `width` wide, zeros elsewhere, so that the dot
    product of an image's row band (`_row_bands`) with it is the template's correlation at horizontal shift dx."""
    n, zooms, size = templates.shape
    inner = math.isqrt(size)
    width = inner + shifts - 1
    placed = templates.reshape(n, zooms, inner, inner)
    out = np.zeros((n, zooms, shifts, inner, width), dtype=np.float32)
    for dx in range(shifts):
        out[:, :, dx, :, dx:dx + inner] = placed
    return out.reshape(n, zooms * shifts, inner * width)


def _row_bands(images: np.ndarray, lo: int, inner: int, shifts: int) -> np.ndarray:
    """(N, shifts, inner·width) read-only view: band dy is rows lo + dy … lo + dy + inner − 1 of the images' searched
    region (columns lo … lo + width − 1), flattened — consecutive bands overlap in memory, so nothing is copied."""
    from numpy.lib.stride_tricks import as_strided

    width = inner + shifts - 1
    region = np.ascontiguousarray(images[:, lo:lo + width, lo:lo + width])
    return as_strided(region, shape=(len(region), shifts, inner * width), strides=region.strides, writeable=False)


def _block_scores(a_turned: np.ndarray, a_of: np.ndarray, b_images: np.ndarray, b_of: np.ndarray,
                  fine: bool, zooms: tuple[float, ...] = (1.0, 1.1, 1.2)) -> np.ndarray:
    """`aligned_correlation(a_turned[a_of], b_images[b_of])` (fine: 32×32, else the coarse 16×16 search of
    `screened_correlation`) of uint8 thumbnails: templates, their bands and a's windows once per distinct image.

    Forward (a's templates over b's shifted windows): b's windows are not made. Each of a's templates is laid, at
    every horizontal shift, into a band matrix (`_template_bands`) once per distinct image, and b's row bands
    (`_row_bands`: a view) times it give every (vertical, horizontal) shift at once: b gives 20 KB a comparison (its
    row bands, gathered) where its 49 shifted windows were 113 KB, written and read again by a product with 3
    columns. Same scores within float32 rounding (tested); measured on the candidate pairs of 50 000 32 px tiles:
    1.4× less CPU on full-size comparisons, 2.1× on coarse ones (with `_sums_2x2` as strided adds)."""
    if fine:
        margin, max_shift, scale = 4, 3, 1
        ints_a, ints_b = np.asarray(a_turned), np.asarray(b_images)
    else:
        margin, max_shift, scale = 2, 2, 4  # 2×2 means: the integer sums of 4 pixels, over 4
        ints_a, ints_b = _sums_2x2(a_turned), _sums_2x2(b_images)
    xa, xb = ints_a.astype(np.float32) / scale, ints_b.astype(np.float32) / scale
    inner = xa.shape[1] - 2 * margin
    size, shifts = inner * inner, 2 * max_shift + 1
    larger = tuple(z for z in zooms if z != 1.0)
    centred = lambda x: x - x.mean(axis=(1, 2), keepdims=True)
    a_bands = _template_bands(_matrix_templates(xa, zooms, inner, margin), shifts)
    b_rows = _row_bands(centred(xb), margin - max_shift, inner, shifts)
    a_windows = _raw_windows(centred(xa), inner, margin, max_shift) if larger else None
    b_templates = _matrix_templates(xb, larger, inner, margin)[b_of] if larger else None
    count, length = len(a_of), b_rows.shape[2]
    forward = np.empty((count, shifts, len(zooms), shifts), dtype=np.float32)  # (dy, zoom, dx) of each evaluation
    backward = np.empty((count, len(larger), shifts * shifts), dtype=np.float32)  # b's zoomed templates over a's windows
    runs = np.flatnonzero(np.r_[True, a_of[1:] != a_of[:-1]]) if count else np.zeros(0, dtype=np.int64)
    for start, end, a in zip(runs.tolist(), np.r_[runs[1:], count].tolist(), a_of[runs].tolist()):
        np.matmul(b_rows[b_of[start:end]].reshape(-1, length), a_bands[a].T,
                  out=forward[start:end].reshape(-1, len(zooms) * shifts))
        if larger:
            np.matmul(b_templates[start:end].reshape(-1, size), a_windows[a].T,
                      out=backward[start:end].reshape(-1, shifts * shifts))
    forward *= _inverse_window_norms(ints_b, scale, inner, margin, max_shift).reshape(-1, shifts, 1, shifts)[b_of]
    best = forward.max(axis=(1, 2, 3))
    if larger:
        backward *= _inverse_window_norms(ints_a, scale, inner, margin, max_shift)[a_of][:, None, :]
        best = np.maximum(best, backward.max(axis=(1, 2)))
    return best


def _sums_2x2(thumbs: np.ndarray) -> np.ndarray:
    """(N, S, S) uint8 → (N, S/2, S/2) int32 sums of 2×2 blocks (4 × `halve`), as four strided adds (a reshaped
    sum over two axes took most of a coarse comparison's preparation: 14× slower on 1 000 thumbnails)."""
    x = np.asarray(thumbs)
    out = x[:, ::2, ::2].astype(np.int32)
    out += x[:, 1::2, ::2]
    out += x[:, ::2, 1::2]
    out += x[:, 1::2, 1::2]
    return out


def _evaluate(a: np.ndarray, a_id: np.ndarray, variant: np.ndarray, b: np.ndarray, b_id: np.ndarray,
              fine: bool) -> np.ndarray:
    """Aligned correlation of dihedral(a[a_id[e]], variant[e]) with b[b_id[e]] for every evaluation e, a block
    of evaluations at a time with each distinct (image, variant) and image prepared once."""
    out = np.empty(len(a_id), dtype=np.float32)
    block = FINE_BLOCK if fine else COARSE_BLOCK
    # Blocks of evaluations that share their first image and variant: each (image, variant) then appears in one
    # or two blocks, not in a block of its own per evaluation (candidate pairs come in sighting order: on 60 000
    # 32 px crops, 1.03 feature sets were prepared per evaluation in that order, 0.60 in this one). Features are
    # per image and scores per evaluation: a block changes only how many are computed at once.
    order = np.argsort(np.asarray(a_id, dtype=np.int64) * 8 + variant, kind="stable")

    def score(start: int) -> None:
        part = order[start:start + block]
        keys, a_of = np.unique(a_id[part] * 8 + variant[part], return_inverse=True)
        turned = np.empty((len(keys),) + a.shape[1:], dtype=a.dtype)
        for v in np.unique(keys % 8):
            chosen = keys % 8 == v
            turned[chosen] = dihedral(a[keys[chosen] // 8], int(v))
        b_rows, b_of = np.unique(b_id[part], return_inverse=True)
        out[part] = _block_scores(turned, a_of.reshape(-1), b[b_rows], b_of.reshape(-1), fine)

    # Blocks are independent: one per core (each block writes its own evaluations).
    run_blocks(score, range(0, len(a_id), block), threads=PIXEL_THREADS)
    return out


PIXEL_THREADS = 0  # threads comparing blocks of thumbnails; 0: parallel.THREADS, else one per available core


def variant_correlations(a: np.ndarray, b: np.ndarray, wanted: np.ndarray, screen: float = SCREEN) -> np.ndarray:
    """`screened_correlation(dihedral(a, v), b)` for every wanted (pair i, variant v): (N, 8) float32, NaN where
    not wanted. The same numbers as one call per variant, with each thumbnail's features computed once."""
    out = np.full(wanted.shape, np.nan, dtype=np.float32)
    pair, variant = np.nonzero(wanted)
    if not len(pair):
        return out
    a_inverse, a_unique = distinct_thumbnails(np.asarray(a, dtype=np.uint8))
    b_inverse, b_unique = distinct_thumbnails(np.asarray(b, dtype=np.uint8))
    a_id, b_id = a_inverse[pair], b_inverse[pair]
    coarse = _evaluate(a_unique, a_id, variant, b_unique, b_id, fine=False)
    result = np.minimum(coarse, np.float32(screen - 1e-3))
    fine = coarse >= screen
    if fine.any():
        result[fine] = _evaluate(a_unique, a_id[fine], variant[fine], b_unique, b_id[fine], fine=True)
    out[pair, variant] = result
    return out
