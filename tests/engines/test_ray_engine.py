"""The Ray engine on a real local Ray (2 CPUs): the same scans, the same embeddings (within float
rounding) and the same cache contents as the local engine, for local paths and file:// URLs; a clear
error when the workers cannot read the driver's paths; weights reach nodes that lack them."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from auditor.encoding.cache import Cache
from auditor.encoding.encode import encode_dataset
from auditor.encoding.imaging import ScanLimits
from auditor.engines import DecodeJob
from auditor.engines.local import LocalEngine
from auditor.errors import AuditorError
from auditor.index.dataset import DatasetIndex, ImageRecord

pytestmark = pytest.mark.slow  # every test here needs the session's Ray (seconds to start)

REPO = Path(__file__).resolve().parents[2]
LIMITS = ScanLimits()
MAX_BYTES = 10 * 2**20


# Embeddings are stored as float16 unit vectors (encoding/embedding_store.py): vectors that agree within float32
# rounding may round to neighbouring float16 values, one step (2⁻¹⁰ relative) apart.
FLOAT16_STEP = 2**-10


@pytest.fixture
def folder(tmp_path) -> Path:
    """A few real photos from samples/, an exact copy, a broken file, a tiny image and a text file."""
    root = tmp_path / "data"
    photos = sorted((REPO / "samples" / "train" / "ants").glob("*.jpg"))[:5] + sorted(
        (REPO / "samples" / "train" / "bees").glob("*.jpg"))[:5]
    for photo in photos:
        (root / photo.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, root / photo.parent.name / photo.name)
    shutil.copy(photos[0], root / "ants" / "copy.jpg")
    (root / "bees" / "broken.jpg").write_bytes(photos[1].read_bytes()[:2000])
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(root / "bees" / "tiny.png")
    (root / "bees" / "notes.jpg").write_text("not a picture")
    return root


def index_of(root: Path, as_urls: bool = False) -> DatasetIndex:
    records = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            relpath = path.relative_to(root).as_posix()
            records.append(ImageRecord(relpath, f"file://{path}" if as_urls else path, split="train",
                                       label=relpath.split("/")[0]))
    return DatasetIndex(root=root, layout="classes", records=records)


def ray_engine(**options):
    from auditor.engines.ray_engine import RayEngine

    return RayEngine(workers=2, address="local", **options)


def encode(index, engine, backbone=None, cache_dir=None, feature_maps=None, batch_size=4):
    cache = Cache(cache_dir)
    try:
        return encode_dataset(index, cache, backbone, LIMITS, MAX_BYTES, batch_size=batch_size, workers=2,
                              engine=engine, feature_maps=feature_maps)
    finally:
        cache.close()


def scans_by_sha(encoded) -> dict[str, dict]:
    return {sha: scan.to_json() for sha, scan in encoded.scans.items()}


@pytest.fixture(scope="module")
def backbone():
    from auditor.backbones.registry import resolve_backbone

    return resolve_backbone("efficientnet-lite0", None, offline=True, precision="float32")


def test_decoding_on_ray_gives_the_local_engines_scans(ray_session, folder):
    local = encode(index_of(folder), LocalEngine(2))
    remote = encode(index_of(folder), ray_engine())
    assert remote.record_sha == local.record_sha
    assert scans_by_sha(remote) == scans_by_sha(local)
    contents = {hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}
    assert len(local.scans) == len(contents) and sum(not s.usable for s in local.scans.values()) >= 2  # text, broken


def test_file_urls_are_hashed_and_decoded_by_the_workers(ray_session, folder):
    local = encode(index_of(folder), LocalEngine(2))
    index = index_of(folder, as_urls=True)
    index.records.append(ImageRecord("bees/gone.jpg", f"file://{folder}/bees/gone.jpg", split="train", label="bees"))
    remote = encode(index, ray_engine())
    assert remote.record_sha[:-1] == local.record_sha
    assert remote.record_sha[-1] is None and remote.read_problems[len(index.records) - 1].kind == "missing_file"
    assert scans_by_sha(remote) == scans_by_sha(local)


def test_urls_without_the_ray_engine_are_unreadable_not_a_crash(folder):
    encoded = encode(index_of(folder, as_urls=True), LocalEngine(2))
    assert set(encoded.read_problems) == set(range(len(encoded.record_sha)))
    assert "--engine ray" in encoded.read_problems[0].message


def test_workers_that_cannot_read_the_paths_stop_the_run_with_a_tip(ray_session, folder):
    jobs = [DecodeJob(sha="0" * 64, path=f"/nonexistent/node/path/{i}.jpg", want_scan=True, want_pixels=False)
            for i in range(6)]
    with pytest.raises(AuditorError) as error:
        list(ray_engine().run(jobs, None, LIMITS, MAX_BYTES, batch_size=4, want_maps=False))
    assert "cannot read" in error.value.message and "storage every node mounts" in error.value.tip


def test_weights_reach_a_node_that_lacks_them_through_the_object_store(ray_session, tmp_path):
    from dataclasses import replace

    from auditor.backbones.registry import packaged_efficientnet_weights, resolve_backbone
    from auditor.engines.ray_engine import receive_backbone, ship_backbone

    weights = tmp_path / "lite0.pth"
    shutil.copy(packaged_efficientnet_weights(), weights)
    backbone = resolve_backbone("efficientnet-lite0", str(weights), offline=True, precision="float32")
    shipped = ship_backbone(ray_session, backbone)
    assert receive_backbone(shipped, 8).weights_path == weights  # this node has the same file: used as it is
    shipped["backbone"] = replace(shipped["backbone"], weights_path=tmp_path / "not-on-this-node.pth")
    received = receive_backbone(shipped, 8)
    assert received.weights_path != weights and received.batch_shape == 8
    assert hashlib.sha256(received.weights_path.read_bytes()).hexdigest() == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert received.cache_key == backbone.cache_key  # the same vectors, so the same cache entries


def test_embeddings_match_the_local_engine_and_fill_the_same_cache(ray_session, folder, backbone, tmp_path):
    local = encode(index_of(folder), LocalEngine(2), backbone, tmp_path / "local")
    remote = encode(index_of(folder), ray_engine(), backbone, tmp_path / "ray")
    usable = [sha for sha, scan in local.scans.items() if scan.usable]
    assert remote.embeddings.keys() == local.embeddings.keys() == set(usable)
    for sha, vector in local.embeddings.items():
        np.testing.assert_allclose(remote.embeddings[sha], vector, rtol=FLOAT16_STEP, atol=1e-4)
        cosine = vector @ remote.embeddings[sha] / np.linalg.norm(vector) / np.linalg.norm(remote.embeddings[sha])
        assert cosine > 1 - 1e-6
    assert remote.stats["embeddings_computed"] == len(usable) and remote.stats["inference_s"] > 0
    again = encode(index_of(folder), ray_engine(), backbone, tmp_path / "ray")
    assert (again.stats["embeddings_cached"], again.stats["embeddings_computed"]) == (len(usable), 0)
    for sha, vector in remote.embeddings.items():
        assert again.embeddings[sha].tobytes() == vector.tobytes()  # what the cache gives back is what was stored


def test_decoding_apart_from_embedding_the_gpu_layout_gives_the_same_vectors_and_maps(ray_session, folder, backbone, tmp_path):
    """With GPUs, Ray tasks decode and one actor per GPU embeds; exercised here on CPUs, with feature maps."""
    from auditor.encoding.feature_maps import FeatureMapStore

    local_maps = FeatureMapStore(tmp_path / "local", backbone.feature_map_key)
    ray_maps = FeatureMapStore(tmp_path / "ray", backbone.feature_map_key)
    local = encode(index_of(folder), LocalEngine(2), backbone, tmp_path / "local", feature_maps=local_maps)
    remote = encode(index_of(folder), ray_engine(decode_apart=True), backbone, tmp_path / "ray", feature_maps=ray_maps)
    assert remote.stats["feature_maps_computed"] == local.stats["feature_maps_computed"] == len(local.embeddings) > 0
    for sha, vector in local.embeddings.items():
        np.testing.assert_allclose(remote.embeddings[sha], vector, rtol=FLOAT16_STEP, atol=1e-4)
    shas = sorted(local.embeddings)
    np.testing.assert_allclose(ray_maps.gather(shas).astype(np.float32), local_maps.gather(shas).astype(np.float32),
                               rtol=1e-2, atol=1e-2)


def test_each_cpu_node_is_asked_whether_it_has_amx_for_the_precision(ray_session):
    """A cluster's nodes, not the driver, decide `--precision auto` on CPUs: one pinned task per node reads its
    own CPU features (here the local Ray's single node is this machine, so it must agree with the local answer)."""
    from auditor.engines.device import has_amx_bf16, precision_for
    from auditor.engines.ray_engine import RayEngine, nodes_have_amx_bf16

    assert nodes_have_amx_bf16(ray_session) is has_amx_bf16()
    devices = RayEngine(workers=2, address="local").devices()  # Ray already runs here: the cluster's way
    assert devices.gpus == 0 and devices.cpu_bfloat16 is has_amx_bf16()
    assert precision_for(devices, "auto") == ("bfloat16" if has_amx_bf16() else "float32")
