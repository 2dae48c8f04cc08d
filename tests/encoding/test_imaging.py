"""Unit tests for auditor/imaging.py: scan_bytes on real encoded images, good and broken."""

from __future__ import annotations

import io
import struct
import zlib

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from auditor.encoding.imaging import ImageScan, Properties, ScanLimits, estimate_jpeg_quality, scan_bytes
from auditor.similarity import pixels as px
from auditor.similarity.neighbours import hex_to_codes

LIMITS = ScanLimits()


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def smooth_image(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A photo-like RGB image: low-frequency random structure, different for every seed."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    return coarse.resize(size, Image.Resampling.BICUBIC)


def gradient_image(width: int = 128, height: int = 96) -> Image.Image:
    """Asymmetric left-to-right and top-to-bottom: its mirror image hashes differently."""
    yy, xx = np.mgrid[0:height, 0:width]
    array = np.stack([xx * 255 // width, yy * 255 // height, (xx * yy) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(array)


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width×height: cheap to make, huge if anyone decoded it."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    assert data[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def kinds(scan) -> set[str]:
    return {p.kind for p in scan.problems}


def codes(scan, mirrored: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The (pHash, dHash) codes the duplicate decision computes from a scan's grey thumbnail."""
    thumb = px.decode_grey32(scan.grey32)[None]
    thumb = np.ascontiguousarray(thumb[:, :, ::-1] if mirrored else thumb)
    return px.phash_codes(thumb), px.dhash_codes(thumb)


def hash_distance(a, b, which: int = 0) -> int:
    return int(px.hamming(codes(a)[which], codes(b)[which])[0])


# Broken files -------------------------------------------------------------------------------

def test_zero_byte_file_is_an_error_not_an_exception():
    scan, array = scan_bytes(b"", LIMITS, embed_size=224)
    assert kinds(scan) == {"zero_byte"}
    assert not scan.usable and array is None
    assert scan.file_size == 0 and scan.sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_truncated_jpeg_is_reported_truncated():
    data = encode(smooth_image(1), "JPEG", quality=90)
    scan, array = scan_bytes(data[: len(data) // 2], LIMITS, embed_size=224)
    assert "truncated" in kinds(scan)
    assert not scan.usable and array is None
    assert scan.format == "JPEG"  # the header was still readable
    assert scan.grey32 is None and scan.pixel_hash is None


@pytest.mark.parametrize(
    "data, sniffed",
    [
        (np.random.default_rng(3).integers(0, 256, 2048, dtype=np.uint8).tobytes(), "unrecognised binary data"),
        (b"label,path\ncat,a.jpg\n" * 10, "looks like text"),
        (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "looks like HTML"),
    ],
    ids=["random-bytes", "text", "html"],
)
def test_non_images_are_not_an_image(data, sniffed):
    scan, array = scan_bytes(data, LIMITS, embed_size=224)
    assert kinds(scan) == {"not_an_image"}
    assert sniffed in scan.problems[0].message
    assert not scan.usable and array is None


@pytest.mark.parametrize("width, height", [(20_000, 20_000), (5_000, 5_000)])
def test_decompression_bomb_is_refused_without_decoding(monkeypatch, width, height):
    loads = []
    original_load = ImageFile.ImageFile.load

    def counting_load(self):
        loads.append(self.size)
        return original_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    data = png_claiming_size(width, height)
    assert len(data) < 200
    scan, array = scan_bytes(data, ScanLimits(max_pixels=10_000_000), embed_size=224)
    assert kinds(scan) == {"decompression_bomb"}
    assert not scan.usable and array is None
    assert loads == []  # refused from the header alone


def test_image_just_under_the_pixel_limit_is_decoded():
    image = smooth_image(2, (100, 100))
    scan, _ = scan_bytes(encode(image, "PNG"), ScanLimits(max_pixels=10_000))
    assert scan.usable and "decompression_bomb" not in kinds(scan)
    scan, _ = scan_bytes(encode(image, "PNG"), ScanLimits(max_pixels=9_999))
    assert "decompression_bomb" in kinds(scan)


# Odd but usable images ----------------------------------------------------------------------

def test_tiny_image_is_a_warning():
    scan, array = scan_bytes(encode(smooth_image(4, (20, 24)), "PNG"), LIMITS, embed_size=64)
    assert kinds(scan) == {"tiny"}
    assert scan.usable and array.shape == (64, 64, 3)
    big, _ = scan_bytes(encode(smooth_image(4, (40, 40)), "PNG"), LIMITS)
    assert "tiny" not in kinds(big)


def test_extreme_aspect_ratio_is_a_warning():
    scan, _ = scan_bytes(encode(smooth_image(5, (900, 40)), "PNG"), LIMITS)
    assert kinds(scan) == {"extreme_aspect_ratio"}
    assert scan.usable and (scan.width, scan.height) == (900, 40)
    normal, _ = scan_bytes(encode(smooth_image(5, (300, 40)), "PNG"), LIMITS)
    assert "extreme_aspect_ratio" not in kinds(normal)


def test_cmyk_jpeg_is_flagged_and_decoded_to_rgb():
    scan, array = scan_bytes(encode(smooth_image(6).convert("CMYK"), "JPEG", quality=90), LIMITS, embed_size=32)
    assert scan.mode == "CMYK" and scan.format == "JPEG"
    assert "unusual_mode" in kinds(scan)
    assert scan.usable and array.shape == (32, 32, 3)


def test_16_bit_png_is_flagged_and_scaled_to_8_bit():
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # up to 65520
    scan, array = scan_bytes(encode(Image.fromarray(ramp), "PNG"), LIMITS, embed_size=64)
    assert scan.mode == "I;16"
    assert "unusual_mode" in kinds(scan)
    assert scan.usable
    # Scaled, not clipped: a 16-bit ramp must still span the full 8-bit range.
    assert array.min() == 0 and array.max() >= 250


def test_palette_png_with_transparency_is_flagged_and_composited_on_white():
    image = Image.new("P", (48, 48), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 24, 48))  # left half red (opaque), right half index 0 (transparent)
    scan, array = scan_bytes(encode(image, "PNG", transparency=0), LIMITS, embed_size=48)
    assert scan.mode == "P"
    assert any(p.kind == "unusual_mode" and "transparency" in p.message for p in scan.problems)
    assert scan.usable
    assert tuple(array[24, 40]) == (255, 255, 255)  # transparent → white, not black
    assert tuple(array[24, 5]) == (255, 0, 0)


def test_exif_orientation_is_applied():
    image = gradient_image(128, 96)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    data = encode(image, "JPEG", quality=95, exif=exif)
    scan, _ = scan_bytes(data, LIMITS)
    assert (scan.width, scan.height) == (96, 128)

    # The same stored pixels, rotated by hand and saved losslessly, must hash identically.
    stored = Image.open(io.BytesIO(data)).convert("RGB")
    assert stored.size == (128, 96)
    rotated, _ = scan_bytes(encode(stored.transpose(Image.Transpose.ROTATE_270), "PNG"), LIMITS)
    assert scan.grey32 == rotated.grey32
    assert scan.pixel_hash == rotated.pixel_hash
    unrotated, _ = scan_bytes(encode(stored, "PNG"), LIMITS)
    assert scan.grey32 != unrotated.grey32


# Hashes -------------------------------------------------------------------------------------

def test_identical_pixels_in_png_and_bmp_share_pixel_hash_not_sha():
    image = smooth_image(7)
    png, _ = scan_bytes(encode(image, "PNG"), LIMITS)
    bmp, _ = scan_bytes(encode(image, "BMP"), LIMITS)
    assert (png.format, bmp.format) == ("PNG", "BMP")
    assert png.pixel_hash == bmp.pixel_hash
    assert png.sha256 != bmp.sha256
    changed = np.asarray(image).copy()
    changed[0, 0, 0] ^= 1
    other, _ = scan_bytes(encode(Image.fromarray(changed), "PNG"), LIMITS)
    assert other.pixel_hash != png.pixel_hash  # one bit of one pixel is enough


def test_resized_reencoded_copy_is_close_and_unrelated_image_is_far():
    original = smooth_image(8, (320, 240))
    scan, _ = scan_bytes(encode(original, "PNG"), LIMITS)
    copy, _ = scan_bytes(encode(original.resize((200, 150), Image.Resampling.LANCZOS), "JPEG", quality=70), LIMITS)
    unrelated, _ = scan_bytes(encode(smooth_image(9, (320, 240)), "PNG"), LIMITS)
    assert scan.sha256 != copy.sha256 and scan.pixel_hash != copy.pixel_hash
    assert hash_distance(scan, copy) <= 4
    assert hash_distance(scan, copy, which=1) <= 8
    assert hash_distance(scan, unrelated) >= 16


def test_the_mirrored_thumbnail_hashes_like_the_mirrored_image():
    image = gradient_image(128, 96)  # below the thumbnail size, so no resampling is involved
    scan, _ = scan_bytes(encode(image, "PNG"), LIMITS)
    mirror, _ = scan_bytes(encode(ImageOps.mirror(image), "PNG"), LIMITS)
    for which in (0, 1):
        assert (codes(scan, mirrored=True)[which] == codes(mirror)[which]).all()
        assert (codes(mirror, mirrored=True)[which] == codes(scan)[which]).all()
    assert hash_distance(scan, mirror) >= 10  # the mirror is not simply the same hash


def hash_test_images() -> list[Image.Image]:
    rng = np.random.default_rng(11)
    return [gradient_image(128, 96), smooth_image(3, (100, 60)), smooth_image(4, (32, 32)),
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)),
            Image.new("RGB", (40, 30), (0, 0, 0)), Image.new("RGB", (40, 30), (77, 77, 77)),
            Image.new("RGB", (40, 30), (255, 255, 255))]


@pytest.mark.parametrize("index", range(7))
def test_hashes_of_the_grey_thumbnail_are_imagehash_s_bit_for_bit(index):
    # Images below the thumbnail size (no resampling before hashing): smooth, sharp, noisy, flat (ties at the
    # median), tiny. The decision repeats imagehash's arithmetic on the scan's thumbnail; the bits must be its own.
    # Except the pHash of a flat image that is not black: every DCT coefficient but the first is 0 up to rounding,
    # which decides each bit, differently in scipy's DCT and the decision's matrix product (noise either way).
    image = hash_test_images()[index]
    flat = np.ptp(np.asarray(image)) == 0 and np.asarray(image).max() > 0
    scan, _ = scan_bytes(encode(image, "PNG"), LIMITS)
    for mirrored, seen in ((False, image), (True, ImageOps.mirror(image))):
        phash, dhash = codes(scan, mirrored)
        assert flat or (phash == hex_to_codes([str(imagehash.phash(seen))])).all()
        assert (dhash == hex_to_codes([str(imagehash.dhash(seen))])).all()


def test_a_cached_scan_of_an_older_version_still_reads():
    # Scans cached before the pHash/dHash hex strings were dropped carry them; nothing reads them any more.
    scan, _ = scan_bytes(encode(smooth_image(2), "PNG"), LIMITS)
    stored = {**scan.to_json(), "phash": "e4b997e74548cc8c", "dhash": "2f1eb393c2c584c4",
              "phash_mirror": "b1ecc3b2101db9d9", "dhash_mirror": "03073236bc1cdedc"}
    assert ImageScan.from_json(stored) == scan


def test_scans_read_from_json_share_their_repeated_strings():
    # 10⁶ cached scans: one copy of each property name, format and mode, not one per scan (json.loads makes new ones).
    import json

    scan, _ = scan_bytes(encode(smooth_image(2), "PNG"), LIMITS)
    first, second = (ImageScan.from_json(json.loads(json.dumps(scan.to_json()))) for _ in range(2))
    assert first.format is second.format and first.mode is second.mode
    assert all(a is b for a, b in zip(first.properties, second.properties))
    assert first.properties._names is second.properties._names  # one tuple of names for every such scan


def test_properties_read_like_the_dict_they_were_made_from():
    import copy
    import json
    import pickle
    import tracemalloc

    values = {"brightness": 91.5, "contrast": 56.2, "sharpness": 326.6, "colourfulness": 27.2, "entropy": 7.5,
              "greyscale_as_rgb": False, "jpeg_quality": 70, "camera_model": None}  # a photo's, as scanned
    properties = Properties(values)
    assert properties == values and dict(properties) == values and list(properties) == list(values)
    assert properties["jpeg_quality"] == 70 and properties.get("camera_model", "x") is None
    assert properties.get("missing") is None and "entropy" in properties and "missing" not in properties
    with pytest.raises(KeyError):
        properties["missing"]
    assert pickle.loads(pickle.dumps(properties)) == values and copy.deepcopy(properties) == values
    scan = ImageScan(sha256="0" * 64, file_size=1, properties=dict(values))
    assert isinstance(scan.properties, Properties) and json.loads(json.dumps(scan.to_json()))["properties"] == values
    assert ImageScan.from_json(scan.to_json()) == scan
    # smaller than a dict per scan: what 10⁶ scans hold
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    as_dicts = [dict(values) for _ in range(2000)]
    dicts = tracemalloc.get_traced_memory()[0] - before
    compact = [Properties(values) for _ in range(2000)]
    mappings = tracemalloc.get_traced_memory()[0] - before - dicts
    tracemalloc.stop()
    assert mappings < 0.6 * dicts, (mappings, dicts)
    del as_dicts, compact


@pytest.mark.parametrize("quality", [50, 75, 90])
def test_jpeg_quality_is_estimated(quality):
    data = encode(smooth_image(10), "JPEG", quality=quality)
    scan, _ = scan_bytes(data, LIMITS)
    assert abs(scan.properties["jpeg_quality"] - quality) <= 3
    assert abs(estimate_jpeg_quality(Image.open(io.BytesIO(data))) - quality) <= 3


def test_jpeg_quality_is_none_for_png():
    scan, _ = scan_bytes(encode(smooth_image(10), "PNG"), LIMITS)
    assert scan.properties["jpeg_quality"] is None


def test_embed_array_shape_and_dtype():
    image = smooth_image(11, (300, 100))
    scan, array = scan_bytes(encode(image, "PNG"), LIMITS, embed_size=224)
    assert scan.usable
    assert array.shape == (224, 224, 3) and array.dtype == np.uint8
    # Squashed, not cropped: the left edge of the array shows the left edge of the image.
    left = np.asarray(image)[:, :3].mean(axis=(0, 1))
    assert np.abs(array[:, :2].mean(axis=(0, 1)) - left).max() < 12
    _, none = scan_bytes(encode(image, "PNG"), LIMITS)
    assert none is None


def test_scan_round_trips_through_json():
    from auditor.encoding.imaging import ImageScan

    scan, _ = scan_bytes(encode(smooth_image(12, (20, 20)), "PNG"), LIMITS)
    assert scan.problems  # tiny
    assert ImageScan.from_json(scan.to_json()) == scan


@pytest.mark.parametrize("width, height", [(10_000, 9_200), (20_000, 10_000)])  # 92 MP; 200 MP (> 2× Pillow's)
def test_max_pixels_above_pillows_own_limit_is_honoured_without_warnings(width, height):
    import warnings

    data = png_claiming_size(width, height)  # the header says so; the pixels are missing (so: truncated)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan, _ = scan_bytes(data, ScanLimits(max_pixels=250_000_000))
    assert "decompression_bomb" not in kinds(scan), scan.problems  # the user's limit is the one that counts
    assert not [w for w in caught if "DecompressionBomb" in w.category.__name__]
    scan, _ = scan_bytes(data, ScanLimits(max_pixels=90_000_000))
    assert kinds(scan) == {"decompression_bomb"} and "exceeds the limit of 90 MP" in scan.problems[0].message


def _two_page_tiff_whose_second_page_has_no_width() -> bytes:
    first, second = smooth_image(1, (40, 30)), smooth_image(2, (40, 30))
    data = bytearray(encode_all(first, [second], "TIFF"))
    entries = [i for i in range(len(data) - 3) if data[i:i + 2] == b"\x00\x01" and data[i + 2:i + 4] in (b"\x03\x00", b"\x04\x00")]
    assert len(entries) >= 2
    data[entries[1]:entries[1] + 2] = b"\x00\x80"  # tag 256 (ImageWidth) of page 2 becomes an unknown tag
    return bytes(data)


def encode_all(image, more, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, save_all=True, append_images=more)
    return buffer.getvalue()


def test_damage_pillow_finds_late_is_a_finding_not_an_exception():
    """Found by the property tests: counting the frames of a damaged TIFF, or reading the alpha channel of
    a truncated RGBA PNG, raised out of scan_bytes and ended the whole audit."""
    scan, array = scan_bytes(_two_page_tiff_whose_second_page_has_no_width(), LIMITS, embed_size=16)
    assert not scan.usable and array is None and kinds(scan) & {"corrupt", "truncated"}
    rgba = Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 4), dtype=np.uint8), "RGBA")
    whole = encode(rgba, "PNG")
    scan, array = scan_bytes(whole[: len(whole) // 2], LIMITS, embed_size=16)
    assert not scan.usable and array is None and kinds(scan) & {"corrupt", "truncated"}


def test_a_large_jpeg_is_decoded_in_draft_mode_and_keeps_its_full_size():
    import io

    import numpy as np
    from PIL import Image

    import auditor.encoding.imaging as imaging

    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).resize((1600, 1200), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    decoded_sizes = []
    real = imaging._decode_rgb

    def spy(image, scan):
        rgb = real(image, scan)
        decoded_sizes.append(rgb.size)
        return rgb

    imaging._decode_rgb = spy
    try:
        scan, array = imaging.scan_bytes(buffer.getvalue(), imaging.ScanLimits(), 224)
    finally:
        imaging._decode_rgb = real
    assert (scan.width, scan.height) == (1600, 1200)  # the file's size, not the reduced decode's
    assert decoded_sizes == [(400, 300)]  # 1/4 scale: both sides still ≥ 256 (the thumbnail) and ≥ 224
    assert array.shape == (224, 224, 3) and not scan.problems


def test_channel_spread_is_numpy_s_mean_over_channels_bit_for_bit():
    from auditor.encoding.imaging import channel_spread_of

    rng = np.random.default_rng(0)
    for _ in range(50):
        shape = (int(rng.integers(1, 200)), int(rng.integers(1, 200)), 3)
        rgb = rng.integers(0, 256, shape).astype(np.float32)
        rgb[..., 1] = rgb[..., 0] + rng.integers(-1, 2, shape[:2])  # near-grey too: the cut-off at 1 matters
        assert channel_spread_of(rgb) == float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean())


def test_a_scan_says_whether_the_image_has_colour():
    colour = smooth_image(1)
    grey_file = colour.convert("L")
    grey_as_rgb = grey_file.convert("RGB")
    limits = ScanLimits()
    assert not scan_bytes(encode(colour, "PNG"), limits)[0].is_grey
    assert scan_bytes(encode(grey_file, "PNG"), limits)[0].is_grey
    assert scan_bytes(encode(grey_as_rgb, "JPEG", quality=90), limits)[0].is_grey
