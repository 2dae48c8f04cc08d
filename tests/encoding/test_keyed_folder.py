"""Array folders are named by what they hold: one key, one folder; another key or version, another folder."""

from __future__ import annotations

from auditor.encoding.keyed_folder import keyed_folder


def test_the_same_key_finds_the_same_folder_and_says_what_it_holds(tmp_path):
    folder, temporary = keyed_folder(tmp_path, "embeddings", "v1", "efficientnet-lite0|96")
    again, _ = keyed_folder(tmp_path, "embeddings", "v1", "efficientnet-lite0|96")
    assert temporary is None and folder == again and folder.parent == tmp_path / "embeddings"
    assert (folder / "key.txt").read_text() == "v1\nefficientnet-lite0|96\n"


def test_other_keys_versions_and_kinds_never_share_a_folder(tmp_path):
    folders = {keyed_folder(tmp_path, kind, version, key)[0]
               for kind in ("embeddings", "feature_maps") for version in ("v1", "v2") for key in ("a", "b")}
    assert len(folders) == 8


def test_without_a_directory_the_folder_is_temporary_and_goes_with_it():
    folder, temporary = keyed_folder(None, "feature_maps", "v1", "k")
    assert folder.is_dir() and temporary is not None
    temporary.cleanup()
    assert not folder.exists()
