"""Which input size the backbone gets: small images at 96 px in large datasets, at the backbone's own size in
datasets of at most FULL_SIZE_UP_TO images; in a merge audit the existing dataset's size decides; the note says why."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from auditor.config import AuditConfig
from auditor.index.dataset import load_dataset
from auditor.index.merged import load_merged
from auditor.runner import _set_input_size
from auditor.similarity import input_size
from auditor.similarity.input_size import FULL_SIZE_UP_TO, SMALL_INPUT, choose_input_size


def test_small_images_are_embedded_small_only_in_large_datasets():
    small = [32] * 40
    assert choose_input_size(small, 224, FULL_SIZE_UP_TO + 1)[0] == SMALL_INPUT
    size, why = choose_input_size(small, 224, FULL_SIZE_UP_TO)
    assert size == 224 and "small" in why and str(FULL_SIZE_UP_TO) in why
    assert choose_input_size(small, 224, None)[0] == SMALL_INPUT  # count unknown: the speed default
    assert choose_input_size([500] * 40, 224, 10)[0] == 224 and choose_input_size([500] * 40, 224, 10**6)[0] == 224


def write_tiny_dataset(root: Path, per_class: int) -> None:
    for split in ("train", "val"):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                buffer = io.BytesIO()
                Image.new("RGB", (32, 32), (i * 7 % 255, 40, 90)).save(buffer, "JPEG")
                (folder / f"{i}.jpg").write_bytes(buffer.getvalue())


class FakeBackbone:
    name = "efficientnet-lite0"
    input_size = 224


def test_the_audit_chooses_by_the_number_of_images_and_notes_why(tmp_path, monkeypatch):
    write_tiny_dataset(tmp_path / "d", 5)
    config = AuditConfig()
    index = load_dataset(tmp_path / "d", config)
    backbone = FakeBackbone()
    _set_input_size(backbone, index, config)
    assert backbone.input_size == 224 and any("at most" in note for note in index.notes)
    monkeypatch.setattr(input_size, "FULL_SIZE_UP_TO", 10)  # 20 images: now a large dataset
    index = load_dataset(tmp_path / "d", config)
    backbone = FakeBackbone()
    _set_input_size(backbone, index, config)
    assert backbone.input_size == SMALL_INPUT and any("Embedding input: 96 px" in note for note in index.notes)


def test_a_merge_audit_embeds_at_the_size_the_existing_dataset_was_embedded_at(tmp_path, monkeypatch):
    write_tiny_dataset(tmp_path / "existing", 3)  # 12 images
    write_tiny_dataset(tmp_path / "incoming", 2)  # 8 more: 20 in the union
    monkeypatch.setattr(input_size, "FULL_SIZE_UP_TO", 15)
    config = AuditConfig()
    merged = load_merged(tmp_path / "incoming", tmp_path / "existing", config)
    backbone = FakeBackbone()
    _set_input_size(backbone, merged, config)
    assert backbone.input_size == 224  # the existing 12 decide, as their own audit did (12 ≤ 15)
