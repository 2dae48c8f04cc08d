"""`--precision auto` follows the precision the cache holds a dataset's embeddings in (another machine's choice),
so a gate or re-audit on a machine that would choose otherwise does not embed everything again."""

from __future__ import annotations

import dataclasses

import numpy as np

from auditor.backbones.registry import Backbone
from auditor.encoding.cache import Cache
from auditor.encoding.embedding_store import count_stored
from auditor.encoding.encode import follow_cached_precision

SHAS = [f"{i:064x}" for i in range(10)]


def backbone(precision: str = "float32") -> Backbone:
    # Never built here: only its cache key is read.
    return Backbone("efficientnet-lite0", "random", 224, 16, precision, "", None)


def cache_holding(tmp_path, precision: str, count: int) -> Cache:
    cache = Cache(tmp_path / "cache")
    key = backbone(precision).cache_key
    cache.embedding_store(key).put(SHAS[:count], np.random.default_rng(0).normal(size=(count, 16)))
    return cache


def test_the_precision_the_cache_holds_most_images_in_is_followed_and_the_report_says_so(tmp_path):
    cache, chosen, notes = cache_holding(tmp_path, "bfloat16", 9), backbone("float32"), []
    follow_cached_precision(cache, chosen, SHAS, ("bfloat16", "float16"), notes)
    assert chosen.precision == "bfloat16"
    assert notes == ["Precision: bfloat16, in which the cache holds 9 of these 10 images' embeddings "
                     "(float32, the fastest here, holds 0)."]


def test_the_fastest_precision_stays_where_the_cache_holds_half_or_fewer_or_it_holds_more(tmp_path):
    cache, chosen, notes = cache_holding(tmp_path / "a", "bfloat16", 5), backbone("float32"), []
    follow_cached_precision(cache, chosen, SHAS, ("bfloat16",), notes)
    assert chosen.precision == "float32" and notes == []
    cache = cache_holding(tmp_path / "b", "bfloat16", 8)
    key = backbone("float32").cache_key
    cache.embedding_store(key).put(SHAS, np.ones((10, 16)))
    follow_cached_precision(cache, chosen, SHAS, ("bfloat16",), notes)
    assert chosen.precision == "float32" and notes == []


def test_precisions_not_offered_are_never_taken(tmp_path):
    cache, chosen, notes = cache_holding(tmp_path, "bfloat16", 10), backbone("float32"), []
    follow_cached_precision(cache, chosen, SHAS, (), notes)  # an explicit --precision offers none
    assert chosen.precision == "float32"


def test_counting_opens_no_store_and_makes_no_folder(tmp_path):
    cache = Cache(tmp_path / "fresh")
    before = sorted(p.name for p in (tmp_path / "fresh").iterdir())
    assert count_stored(cache._db, backbone().cache_key, SHAS) == 0  # no store was ever written: no table yet
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == before
    cache = cache_holding(tmp_path, "bfloat16", 4)
    assert count_stored(cache._db, backbone("bfloat16").cache_key, SHAS + SHAS[:2]) == 4
    assert count_stored(cache._db, dataclasses.replace(backbone(), input_size=96).cache_key, SHAS) == 0
