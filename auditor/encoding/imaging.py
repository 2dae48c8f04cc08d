"""Safe image loading and everything computed from one decode: content hashes, the 32×32 grey thumbnail
(the duplicate decision's pixel tier and perceptual hashes are computed from it), image properties, and the
resized array the backbone needs.

Broken files never raise: `scan_bytes` returns an ImageScan whose `problems` say what is wrong, and
the audit goes on without that image.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import sys
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# The pixel limit is auditor's own `max_pixels` (default 100 MP), checked on every image right after its
# header is read and before any pixel is decoded. Pillow's global limit (89.5 MP: a warning, an error at
# twice that) would refuse images the user allowed, and turning its warning into an error needs
# warnings.catch_warnings, which is not thread-safe in the decode threads.
Image.MAX_IMAGE_PIXELS = None
# A damaged file is reported as a finding; Pillow's own log lines and warnings about it ("Corrupt EXIF
# data", "More samples per pixel than can be decoded") would only be noise on stderr. Set once, at import
# (a filter installed per call would need catch_warnings, which threads cannot share).
logging.getLogger("PIL").addHandler(logging.NullHandler())
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")

# Bump when anything this module computes changes, so cached scans are recomputed.
SCAN_VERSION = 4  # 3: large JPEGs decoded in draft mode (DCT scaling); 4: the 32×32 grey thumbnail kept (grey32)
THUMB_SIDE = 256  # hashes and properties are computed on a copy this size: cheap, and stable under resizes
UNUSUAL_MODES = {"CMYK": "CMYK", "I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit", "I": "32-bit integer",
                 "F": "32-bit float", "LA": "grey with alpha", "PA": "palette with alpha", "1": "1-bit"}
FORMAT_EXTENSIONS = {
    "JPEG": {".jpg", ".jpeg", ".jpe", ".jfif"}, "PNG": {".png"}, "GIF": {".gif"}, "BMP": {".bmp", ".dib"},
    "WEBP": {".webp"}, "TIFF": {".tif", ".tiff"}, "PPM": {".ppm", ".pgm", ".pbm", ".pnm"}, "ICO": {".ico"},
    "MPO": {".jpg", ".jpeg", ".mpo"}, "JPEG2000": {".jp2", ".j2k", ".jpx"}, "TGA": {".tga"},
}


@dataclass(frozen=True)
class Problem:
    kind: str
    severity: str  # "error" (image unusable) | "warning" | "info"
    message: str


_NAME_SETS: dict[tuple[str, ...], tuple[str, ...]] = {}  # one shared tuple per distinct set of property names


class Properties(Mapping):
    """A scan's image properties (brightness, contrast, …, JPEG quality, camera model): a read-only mapping whose
    names are one tuple shared by every scan with the same names, its values a tuple. Held once per content, 10⁶
    at scale: 50 000 cached scans of 32 px crops hold 748 → 628 bytes a scan with it (tracemalloc)."""

    __slots__ = ("_names", "_values")

    def __init__(self, items: Mapping[str, Any] | None = None):
        items = dict(items or {})
        names = tuple(items)
        shared = _NAME_SETS.get(names)
        if shared is None:
            shared = _NAME_SETS.setdefault(names, tuple(sys.intern(name) for name in names))
        self._names, self._values = shared, tuple(items.values())

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[self._names.index(name)]
        except ValueError:
            raise KeyError(name) from None

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"Properties({dict(self)!r})"

    def __reduce__(self):  # pickled (worker processes) and deep-copied as the plain dict it reads as
        return Properties, (dict(self),)


@dataclass(slots=True)  # no per-scan __dict__ (10⁶ scans)
class ImageScan:
    """What one decode tells about one file content. Keyed by sha256; paths live elsewhere."""

    sha256: str
    file_size: int
    problems: list[Problem] = field(default_factory=list)
    format: str | None = None
    mode: str | None = None
    width: int | None = None
    height: int | None = None
    frames: int = 1
    pixel_hash: str | None = None
    grey32: str | None = None  # the 32×32 grey thumbnail (base64): the pixel tier's and the hash codes' input
    properties: Mapping[str, Any] = field(default_factory=Properties)

    def __post_init__(self):
        if not isinstance(self.properties, Properties):
            self.properties = Properties(self.properties)

    @property
    def usable(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    @property
    def is_grey(self) -> bool:
        """No colour: a grey file, or grey pixels stored as colour (image_properties' channel spread)."""
        return bool(self.properties.get("greyscale_as_rgb")) or self.mode in ("1", "L", "LA", "I", "I;16", "F")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["properties"] = dict(self.properties)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ImageScan":
        """A cached scan. Held once per content (10⁶ at scale), so the strings every scan repeats (property
        names, format, mode) are shared, not one copy per scan as json.loads makes them."""
        problems = [Problem(**p) for p in data.pop("problems", [])]
        for legacy in LEGACY_FIELDS:
            data.pop(legacy, None)
        for name in ("format", "mode"):
            if data.get(name) is not None:
                data[name] = sys.intern(data[name])
        data["properties"] = Properties(data.get("properties"))
        return cls(problems=problems, **data)


# Fields older versions stored in a scan and nothing reads (the pHash/dHash hex strings: the duplicate decision
# computes its hash codes from grey32 under all 8 rotations itself): skipped when a cached scan is read.
LEGACY_FIELDS = ("phash", "dhash", "phash_mirror", "dhash_mirror")


@dataclass(frozen=True)
class ScanLimits:
    max_pixels: int = 100_000_000
    min_side: int = 32
    max_aspect_ratio: float = 8.0


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def scan_bytes(data: bytes, limits: ScanLimits, embed_size: int | None = None,
               sha256: str | None = None) -> tuple[ImageScan, np.ndarray | None]:
    """Decode once; return the scan and, if `embed_size` is given and the image is usable, the
    RGB uint8 array resized (squashed, bilinear, as Keras' image_dataset_from_directory does) for the backbone.
    `sha256`: the bytes' digest where the caller has it (the scan keeps that string: one per content, 10⁶ scans)."""
    scan = ImageScan(sha256=sha256 or sha256_hex(data), file_size=len(data))
    if not data:
        scan.problems.append(Problem("zero_byte", "error", "file is empty (0 bytes)"))
        return scan, None
    try:
        return _scan(data, scan, limits, embed_size)
    except Exception as exc:  # a damaged file can make Pillow raise at any step (frame count, alpha, EXIF, …)
        scan.problems.append(Problem(_damage_kind(exc), "error", f"cannot decode: {_short(exc)}"))
        return scan, None


def _scan(data: bytes, scan: ImageScan, limits: ScanLimits, embed_size: int | None) -> tuple[ImageScan, np.ndarray | None]:
    image = _open(data, scan, limits)
    if image is None:
        return scan, None
    stored_size = image.size
    # Everything below needs at most THUMB_SIDE (hashes, properties) or the backbone's input size: a large
    # JPEG is decoded at 1/2, 1/4 or 1/8 scale straight from its DCT coefficients (several times faster).
    drafted = _draft(image, max(THUMB_SIDE, embed_size or 0))
    try:
        rgb = _decode_rgb(image, scan)
    except Exception as exc:  # Pillow raises many types for damaged files; all mean "unusable"
        scan.problems.append(Problem(_damage_kind(exc), "error", f"cannot decode: {_short(exc)}"))
        return scan, None
    scan.width, scan.height = _full_size(stored_size, rgb.size) if drafted else rgb.size
    _shape_problems(scan, limits)
    scan.pixel_hash = hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()
    thumb = _thumbnail(rgb, THUMB_SIDE)
    scan.grey32 = grey_thumbnail(thumb)
    scan.properties = Properties(image_properties(thumb, image, scan))
    embed_array = None
    if embed_size is not None:
        embed_array = np.asarray(
            rgb.resize((embed_size, embed_size), Image.Resampling.BILINEAR, reducing_gap=3.0), dtype=np.uint8
        )
    return scan, embed_array


def _draft(image: Image.Image, side: int) -> bool:
    """Ask a JPEG for a DCT-scaled decode whose both sides stay at least `side` (Pillow picks 1/2, 1/4 or 1/8,
    or nothing when the image is smaller than twice that). True when the decode will be reduced."""
    if image.format != "JPEG" or min(image.size) < 2 * side:
        return False
    before = image.size
    image.draft("RGB", (side, side))
    return image.size != before


def _full_size(stored: tuple[int, int], decoded: tuple[int, int]) -> tuple[int, int]:
    """The image's full size after EXIF rotation, from its stored size and the (reduced, rotated) decode."""
    rotated = (decoded[0] > decoded[1]) != (stored[0] > stored[1]) and decoded[0] != decoded[1]
    return (stored[1], stored[0]) if rotated else stored


def decode_for_embedding(data: bytes, size: int) -> Image.Image | None:
    """The RGB image the backbone sees (EXIF-rotated, alpha on white), or None if undecodable."""
    scan = ImageScan(sha256="", file_size=len(data))
    image = _open(data, scan, ScanLimits(max_pixels=10**12))
    if image is None:
        return None
    try:
        return _decode_rgb(image, scan)
    except Exception:
        return None


def _open(data: bytes, scan: ImageScan, limits: ScanLimits) -> Image.Image | None:
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only: the size check below precedes any decoding
    except Image.DecompressionBombError as exc:  # only if someone restored Pillow's own limit
        scan.problems.append(Problem("decompression_bomb", "error", f"refused to decode: {_short(exc)}"))
        return None
    except UnidentifiedImageError:
        scan.problems.append(Problem("not_an_image", "error", f"not an image file ({_sniff(data)})"))
        return None
    except Exception as exc:
        scan.problems.append(Problem(_damage_kind(exc), "error", f"cannot open: {_short(exc)}"))
        return None
    scan.format = image.format
    scan.mode = image.mode
    scan.width, scan.height = image.size
    if image.size[0] * image.size[1] > limits.max_pixels:
        scan.problems.append(
            Problem(
                "decompression_bomb",
                "error",
                f"{image.size[0]}×{image.size[1]} = {image.size[0] * image.size[1] / 1e6:.0f} MP exceeds the limit "
                f"of {limits.max_pixels / 1e6:.0f} MP; not decoded",
            )
        )
        return None
    scan.frames = int(getattr(image, "n_frames", 1) or 1)  # after the size check: a TIFF seeks every frame
    if image.mode in UNUSUAL_MODES:
        scan.problems.append(Problem("unusual_mode", "warning", f"colour mode {image.mode} ({UNUSUAL_MODES[image.mode]})"))
    elif image.mode == "P" and "transparency" in image.info:
        scan.problems.append(Problem("unusual_mode", "warning", "palette image with transparency"))
    elif image.mode == "RGBA":
        alpha = image.getchannel("A") if image.mode == "RGBA" else None
        if alpha is not None and alpha.getextrema()[0] < 255:
            scan.problems.append(Problem("unusual_mode", "info", "RGBA image with transparent pixels"))
    if scan.frames > 1:
        scan.problems.append(Problem("animated", "info", f"{scan.frames} frames; only the first is audited"))
    return image


def _decode_rgb(image: Image.Image, scan: ImageScan) -> Image.Image:
    image.load()  # raises on truncated or corrupt data
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:
        scan.problems.append(Problem("bad_exif", "info", "EXIF orientation unreadable; used the stored orientation"))
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        high = float(array.max()) or 1.0
        image = Image.fromarray(np.clip(array / high * 255.0, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


def _shape_problems(scan: ImageScan, limits: ScanLimits) -> None:
    w, h = scan.width or 0, scan.height or 0
    if min(w, h) < limits.min_side:
        scan.problems.append(Problem("tiny", "warning", f"only {w}×{h} pixels (below {limits.min_side} px)"))
    if min(w, h) > 0 and max(w, h) / min(w, h) > limits.max_aspect_ratio:
        scan.problems.append(
            Problem("extreme_aspect_ratio", "warning", f"aspect ratio {max(w, h) / min(w, h):.1f}:1 ({w}×{h})")
        )


def _thumbnail(image: Image.Image, side: int) -> Image.Image:
    """At most `side` pixels on the longer side (a new image; the original is left alone)."""
    scale = side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def grey_thumbnail(thumb: Image.Image) -> str:
    """The 32×32 grey thumbnail, base64: what imagehash's pHash resizes an image to (grey, Lanczos), so the
    duplicate decision's hash codes (`similarity.pixels.phash_codes`) are imagehash's, and its pixel tier's input."""
    pixels = np.asarray(thumb.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.uint8)
    return base64.b64encode(np.ascontiguousarray(pixels).tobytes()).decode("ascii")


def image_properties(thumb: Image.Image, original: Image.Image, scan: ImageScan) -> dict[str, Any]:
    """Content-free properties, for drift and shortcut checks: computed now so no check re-reads a file."""
    rgb = np.asarray(thumb, dtype=np.float32)
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    laplacian = grey[1:-1, 1:-1] * -4 + grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    histogram = np.bincount(grey.astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    p = histogram[histogram > 0] / histogram.sum()
    channel_spread = channel_spread_of(rgb)
    return {
        "brightness": round(float(grey.mean()), 3),
        "contrast": round(float(grey.std()), 3),
        "sharpness": round(float(laplacian.var()) if laplacian.size else 0.0, 3),
        "colourfulness": round(
            float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())), 3
        ),
        "entropy": round(float(-(p * np.log2(p)).sum()), 4),
        "greyscale_as_rgb": bool(channel_spread < 1.0),
        "jpeg_quality": estimate_jpeg_quality(original),
        "camera_model": _camera_model(original),
    }


def channel_spread_of(rgb: np.ndarray) -> float:
    """Mean absolute difference of each channel from the pixel's channel mean (float32 H×W×3): below 1, a grey image
    stored as RGB. np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean(), bit for bit (tested), with the mean over
    the 3 channels written out: numpy's reduction over so short a last axis took 0.9 ms of a photo's ≈ 6 ms scan."""
    channel_mean = (rgb[..., 0] + rgb[..., 1] + rgb[..., 2]) / np.float32(3)
    return float(np.abs(rgb - channel_mean[..., None]).mean())


def estimate_jpeg_quality(image: Image.Image) -> int | None:
    """Estimate the libjpeg quality (1–100) from the luminance quantisation table; None if not a JPEG."""
    tables = getattr(image, "quantization", None)
    if not tables or 0 not in tables:
        return None
    # The standard libjpeg luminance table, in the zig-zag order Pillow returns tables in.
    standard = [16, 11, 12, 14, 12, 10, 16, 14, 13, 14, 18, 17, 16, 19, 24, 40, 26, 24, 22, 22, 24, 49, 35, 37, 29,
                40, 58, 51, 61, 60, 57, 51, 56, 55, 64, 72, 92, 78, 64, 68, 87, 69, 55, 56, 80, 109, 81, 87, 95, 98,
                103, 104, 103, 62, 77, 113, 121, 112, 100, 120, 92, 101, 103, 99]
    table = list(tables[0])
    if len(table) != 64:
        return None
    scale = 100.0 * sum(table) / sum(standard)
    quality = (200.0 - scale) / 2.0 if scale <= 100 else 5000.0 / scale
    return int(min(100, max(1, round(quality))))


def _camera_model(image: Image.Image) -> str | None:
    try:
        model = image.getexif().get(0x0110)
    except Exception:
        return None
    return str(model).strip()[:64] if model else None


def _sniff(data: bytes) -> str:
    head = data[:64].lstrip()
    if head.startswith((b"<!DOCTYPE", b"<html", b"<HTML")):
        return "looks like HTML"
    if head.startswith(b"%PDF"):
        return "looks like a PDF"
    if head.startswith(b"PK\x03\x04"):
        return "looks like a ZIP archive"
    try:
        data[:512].decode("utf-8")
        return "looks like text"
    except UnicodeDecodeError:
        return "unrecognised binary data"


def _damage_kind(exc: BaseException) -> str:
    return "truncated" if "truncat" in str(exc).lower() else "corrupt"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
