"""Candidate merging in arrays gives what a per-sighting dict merge gives (the search's first, per-pair form)."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.similarity import evidence as ev


def dict_merge(events: list[ev.Sightings], symmetric: bool):
    """The merge as the search once did it, one sighting at a time into a dict (the reference)."""
    found: dict[tuple[int, int], list] = {}
    likeness_of: dict[tuple[int, int], float] = {}
    for e in events:
        for i in range(len(e.query)):
            q, j = int(e.query[i]), int(e.target[i])
            if e.by_hash:
                if symmetric and (j, q) in found and (q, j) not in found:
                    continue
                entry = found.setdefault((q, j), [-1, -1, 99, 99, 0])
                if e.phash[i] + e.dhash[i] < entry[2] + entry[3]:
                    entry[1:] = [int(e.variant[i]), int(e.phash[i]), int(e.dhash[i]), 1]
                continue
            key, variant = (q, j), int(e.variant[i])
            if symmetric and (j, q) in found:
                key, variant = (j, q), ev._inverse(variant) if variant > 0 else variant
            entry = found.setdefault(key, [-1, -1, 99, 99, 0])
            if e.rank[i] >= 0:
                entry[0] = int(e.rank[i]) if entry[0] < 0 else min(entry[0], int(e.rank[i]))
            if variant > 0 and e.likeness[i] > likeness_of.get(key, -np.inf):
                entry[1] = variant
                likeness_of[key] = float(e.likeness[i])
    if not found:
        return None
    keys = np.array(list(found), dtype=np.int64)
    info = np.array(list(found.values()), dtype=np.int64)
    return keys[:, 0], keys[:, 1], info[:, 0], info[:, 1], info[:, 2], info[:, 3], info[:, 4] > 0


def random_events(rng: np.random.Generator, n: int) -> list[ev.Sightings]:
    def pairs(m):
        q = np.sort(rng.integers(0, n, m))
        j = rng.integers(0, n, m)
        keep = q != j
        return q[keep], j[keep]

    q, j = pairs(5 * n)
    events = [ev.Sightings.of(q, j, rank=rng.integers(0, 5, len(q)))]
    for variant in range(8):
        q, j = pairs(n)
        # coarse likeness values, so ties happen and the first sighting must win them
        events.append(ev.Sightings.of(q, j, variant=np.full(len(q), variant),
                                      likeness=rng.integers(0, 4, len(q)) / 4))
    for variant in range(8):
        q, j = pairs(n // 2)
        events.append(ev.Sightings.of(q, j, variant=np.full(len(q), variant), phash=rng.integers(0, 4, len(q)),
                                      dhash=rng.integers(0, 4, len(q))))
    return events


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merge_sightings_equals_the_dict_merge(symmetric, seed):
    events = random_events(np.random.default_rng(seed), 60)  # few nodes: many repeated and reversed pairs
    want = dict_merge(events, symmetric)
    got = ev.merge_sightings(events, symmetric)  # consumes the events
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert got[7] is None and got[8] is None  # no sighting brought a cosine or was a crowd's: none is made up
    assert all(e.query is None and e.likeness is None and e.dhash is None for e in events)


def test_merge_sightings_of_nothing_is_none():
    assert ev.merge_sightings([ev.Sightings.of(np.zeros(0), np.zeros(0))], True) is None


def test_first_valid_skips_missing_and_own_labels_in_row_order():
    labels = np.array([[0, 3, -1, 2, 5], [1, 1, 4, 0, 2]])
    rows, found, position = ev._first_valid(labels, np.array([0, 1]), 2)
    assert rows.tolist() == [0, 0, 1, 1]
    assert found.tolist() == [3, 2, 4, 0]
    assert position.tolist() == [0, 1, 0, 1]
    assert ev._column_of(labels, np.array([0, 1]), 2).tolist() == [1, 3, 2, 3]


def test_inverse_variants_undo_each_variant():
    from auditor.similarity import pixels as px

    thumb = np.arange(16, dtype=np.uint8).reshape(1, 4, 4)
    for v in range(8):
        back = px.dihedral(np.ascontiguousarray(px.dihedral(thumb, v)), int(ev.INVERSE[v]))
        assert np.array_equal(back, thumb)


def test_pair_correlation_is_the_per_pair_correlation_in_the_callers_order(monkeypatch):
    # Pairs are compared in chunks of pairs sharing their first image (for feature reuse): the results must come
    # back in the caller's order, the numbers of one pair at a time (to the last float32 bit or so: BLAS may sum a
    # larger product in another order).
    from PIL import Image

    def scene(seed):  # a smooth random grey picture
        coarse = np.random.default_rng(seed).integers(0, 256, (5, 7), dtype=np.uint8)
        return np.asarray(Image.fromarray(coarse).resize((32, 32), Image.Resampling.BICUBIC))

    thumbs = np.stack([scene(s) for s in range(10)])
    thumbs[5] = np.clip(thumbs[1].astype(int) + 3, 0, 255)  # a recoloured copy of 1
    rng = np.random.default_rng(0)
    rows_a, rows_b = rng.integers(0, 10, 40), rng.integers(0, 10, 40)
    extra = rng.integers(-1, 8, 40)
    monkeypatch.setattr(ev, "PAIR_CHUNK", 7)
    correlation, variant = ev.pair_correlation(thumbs, rows_a, thumbs, rows_b, extra)
    for i in range(40):
        c, v = ev._best_correlation(thumbs[rows_a[i:i + 1]], thumbs[rows_b[i:i + 1]], extra[i:i + 1])
        assert abs(correlation[i] - c[0]) <= 1e-6 and variant[i] == v[0]


def test_pair_correlation_reads_memory_mapped_thumbnails_without_read_around(tmp_path, advised_arrays):
    """The pairs' second thumbnails are read at random from the memory-mapped thumbnail file: the comparison runs
    inside memory.random_access on both thumbnail arrays, and gives the same numbers as on thumbnails in memory."""
    rng = np.random.default_rng(0)
    thumbs = rng.integers(0, 256, (12, 32, 32), dtype=np.uint8)
    np.save(tmp_path / "thumbs.npy", thumbs)
    mapped = np.load(tmp_path / "thumbs.npy", mmap_mode="r")
    advised = advised_arrays(ev)
    rows_a, rows_b = rng.integers(0, 12, 30), rng.integers(0, 12, 30)
    correlation, variant = ev.pair_correlation(mapped, rows_a, mapped, rows_b, np.full(30, -1))
    assert [a is mapped for a in advised] == [True, True]
    expected, expected_variant = ev.pair_correlation(thumbs, rows_a, thumbs, rows_b, np.full(30, -1))
    assert np.array_equal(correlation, expected) and np.array_equal(variant, expected_variant)


def test_nearest_per_probe_keeps_each_probes_nearest_matches_in_probe_then_code_order():
    from auditor.similarity.neighbours import nearest_per_probe

    # (probe, code, pHash distance, dHash distance), ordered by probe then code; nearest by both distances
    rows = np.array([[0, 1, 4, 4], [0, 2, 1, 0], [0, 3, 2, 2], [0, 5, 1, 0], [2, 0, 6, 6], [2, 9, 0, 1]])
    both = rows[:, 2] + rows[:, 3]
    assert nearest_per_probe(rows, 2, both).tolist() == [[0, 2, 1, 0], [0, 5, 1, 0], [2, 0, 6, 6], [2, 9, 0, 1]]
    assert nearest_per_probe(rows, 1, both).tolist() == [[0, 2, 1, 0], [2, 9, 0, 1]]  # ties: the lower code
    assert nearest_per_probe(rows, 10, both).tolist() == rows.tolist()
    assert nearest_per_probe(rows, 1).tolist() == [[0, 2, 1, 0], [2, 9, 0, 1]]  # by the third column
    assert nearest_per_probe(rows[[0, 2]], 1).tolist() == [[0, 3, 2, 2]]  # pHash 2 before 4
    assert nearest_per_probe(np.zeros((0, 4), dtype=np.int64), 3).shape == (0, 4)


def _smooth_picture(rng, size=32):
    small = rng.integers(0, 256, (4, 4)).astype(np.float64)
    return np.kron(small, np.ones((size // 4, size // 4)))


def test_hash_candidates_per_query_are_the_closest_few(monkeypatch):
    # One query and twelve dataset images: eight faint variations of it (hash-alike) and four unrelated ones.
    rng = np.random.default_rng(3)
    base = _smooth_picture(rng)
    alike = [np.clip(base + rng.normal(0, 1 + level, base.shape), 0, 255) for level in range(8)]
    others = [_smooth_picture(rng) for _ in range(4)]
    thumbs = np.stack(alike + others).astype(np.uint8)
    query = base[None].astype(np.uint8)
    data = ev.make_dataset(None, thumbs)

    def hash_matches():
        pairs = ev.search(data, None, query, max_phash=10, max_dhash=10)
        return sorted(pairs.target[pairs.hash_match].tolist())

    every = hash_matches()
    assert len(every) >= 6 and set(every) <= set(range(8))
    monkeypatch.setattr(ev, "HASH_CANDIDATES", 2)
    capped = hash_matches()
    assert len(capped) == 2 and set(capped) <= set(every)
    # the two kept are the two closest by pHash + dHash distance
    phash, dhash = ev._query_codes(data, query)
    distance = {j: int(np.unpackbits(phash[0, 0] ^ data.phash[j]).sum() + np.unpackbits(dhash[0, 0] ^ data.dhash[j]).sum())
                for j in every}
    assert max(distance[j] for j in capped) <= min(distance[j] for j in every if j not in capped)


def test_dihedral_codes_turned_chunk_by_chunk_are_the_codes_of_each_turned_thumbnail(monkeypatch):
    from auditor.similarity import pixels as px

    rng = np.random.default_rng(11)
    thumbs = rng.integers(0, 256, (37, 32, 32), dtype=np.uint8)
    monkeypatch.setattr(ev, "CODE_CHUNK", 8)  # several chunks, the last one short
    phash, dhash = ev.dihedral_codes(thumbs)
    for v in range(8):
        turned = np.ascontiguousarray(px.dihedral(thumbs, v))
        assert np.array_equal(phash[v], px.phash_codes(turned)) and np.array_equal(dhash[v], px.dhash_codes(turned))


def test_pixel_background_is_the_third_best_alignment_with_pictures_the_embeddings_call_different():
    # node 0: aligned at 0.99 (same picture by embedding: not background), 0.9, 0.8, 0.7, 0.6; node 5: one partner
    nodes = np.array([0, 0, 0, 0, 0, 5])
    correlation = np.array([0.99, 0.6, 0.9, 0.7, 0.8, 0.5], dtype=np.float32)
    scaled = np.array([0.9, 0.0, 0.1, -0.2, 0.3, 0.0], dtype=np.float32)
    background = ev.pixel_backgrounds(6, (nodes[:3], correlation[:3], scaled[:3]), (nodes[3:], correlation[3:], scaled[3:]))
    assert background[0] == pytest.approx(0.7, abs=1e-4)  # 0.9, 0.8, then 0.7; the 0.99 same picture left out
    assert background[5] == pytest.approx(0.5, abs=1e-4)  # fewer than three: its worst
    assert np.isnan(background[[1, 2, 3, 4]]).all()  # no candidates


def test_a_picture_stored_many_times_does_not_have_its_copies_as_pixel_background():
    """Frames of one clip: every partner is a near-identical copy whose scaled cosine collapsed to ≈ 0 (the 10th
    embedding neighbour is a copy too). Aligned as is with matching hashes and an embedding as close as a re-encode's
    they are the same picture, left out of the background; a rotated alignment, one whose hashes differ, or a
    look-alike whose embedding is further away stays background."""
    from auditor.similarity.decision import EXCUSE_CORRELATION

    assert ev.SAME_PICTURE_CORRELATION == EXCUSE_CORRELATION
    nodes = np.zeros(7, dtype=np.int64)
    correlation = np.array([0.99, 0.985, 0.98, 0.97, 0.975, 0.96, 0.6], dtype=np.float32)
    pairs = ev.Pairs(query=nodes, target=np.arange(1, 8), rank=np.zeros(7, dtype=np.int64),
                     cosine=np.array([0.98, 0.97, 0.99, 0.98, 0.98, 0.90, 0.98], dtype=np.float32),
                     scaled=np.array([-0.1, 0.05, -0.3, 0.0, 0.1, -0.2, -0.2], dtype=np.float32),
                     correlation=correlation, variant=np.array([0, 4, 0, 1, 0, 0, 0]),
                     hash_match=np.array([True, True, True, True, False, True, True]),
                     phash_distance=np.zeros(7, dtype=np.int64), dhash_distance=np.zeros(7, dtype=np.int64))
    same = ev.same_picture(pairs, min_cosine=0.95)
    assert same.tolist() == [True, True, True, False, False, False, False]
    assert not ev.same_picture(pairs, min_cosine=None).any()  # no re-encoded copy measured: none
    unmeasured = ev.Pairs(**{**pairs.__dict__, "correlation": np.where(np.arange(7) == 0, np.nan, correlation)})
    assert ev.same_picture(unmeasured, min_cosine=0.95).tolist()[:3] == [False, True, True]  # NaN: not aligned
    background = ev.pixel_backgrounds(8, (pairs.query, pairs.correlation, pairs.scaled, same))
    assert background[0] == pytest.approx(0.96, abs=1e-4)  # 0.975, 0.97, then 0.96
    before = ev.pixel_backgrounds(8, (pairs.query, pairs.correlation, pairs.scaled))
    assert before[0] == pytest.approx(0.98, abs=1e-4)  # the copies were their own background


def test_the_same_pictures_cosine_is_a_mirrored_re_encodes_to_its_source():
    copy_pairs = ev.Pairs(query=np.array([0, 0, 1, 2, 3]), target=np.array([10, 11, 12, 13, 14]),
                          rank=np.zeros(5, dtype=np.int64), cosine=np.array([0.9, 0.5, 0.94, 0.7, 0.96], dtype=np.float32),
                          scaled=np.zeros(5, dtype=np.float32), correlation=np.zeros(5, dtype=np.float32),
                          variant=np.zeros(5, dtype=np.int64), hash_match=np.zeros(5, dtype=bool),
                          phash_distance=np.zeros(5, dtype=np.int64), dhash_distance=np.zeros(5, dtype=np.int64))
    source = np.array([10, 12, 13, 14])
    kinds = ["mirror_reencode", "mirror_reencode", "same_shot", "mirror_reencode"]
    # copy 0 with its source 0.9 (its 0.5 is another image), copy 1 0.94, copy 3 0.96; copy 2 is another kind
    assert ev.reencode_cosine(copy_pairs, source, kinds) == pytest.approx(0.94)
    assert ev.reencode_cosine(copy_pairs, source, ["same_shot"] * 4) is None


def test_relative_correlation_is_the_correlation_at_a_typical_background_and_less_where_everything_aligns():
    c = np.array([0.95, 0.95, 0.99, 0.95], dtype=np.float32)
    typical = ev.TYPICAL_PIXEL_BACKGROUND
    a = np.array([typical, 0.97, 0.97, np.nan], dtype=np.float32)
    relative = ev.relative_correlation(c, a, a)
    assert relative[0] == pytest.approx(0.95)  # a typical background: the correlation itself
    assert relative[1] < 0.5  # an image aligning at 0.97 with its look-alikes: 0.95 is below its background
    assert relative[2] == pytest.approx(1 - 0.01 * (1 - typical) / 0.03, abs=1e-5)  # (c − b)/(1 − b) rescaled
    assert relative[3] == pytest.approx(0.95)  # no background known: counted as typical
    low = ev.relative_correlation(np.array([0.8], np.float32), np.array([0.3], np.float32), np.array([0.3], np.float32))
    assert low[0] == pytest.approx(0.8)  # a low background never lowers the bar below the correlation itself


def test_least_per_key_is_the_two_key_sort_where_no_key_occurs_more_than_twice():
    """The stable one-key route gives what lexsort((weakness, key)) and the first of each key give: ties to the lower
    position, NaN last (also when both are NaN), −0.0 tied with 0.0; a key three times: None (the caller sorts)."""
    rng = np.random.default_rng(5)
    distinct = rng.choice(10**6, size=3000, replace=False)
    key = np.concatenate([distinct, rng.choice(distinct, size=2000, replace=False)])  # 2 000 keys twice
    rng.shuffle(key)
    weakness = np.round(rng.random(len(key)), 1).astype(np.float32)  # many ties
    weakness[rng.random(len(key)) < 0.1] = np.nan
    weakness[rng.random(len(key)) < 0.05] = -0.0
    weakness[rng.random(len(key)) < 0.05] = 0.0
    order = np.lexsort((weakness, key))
    first = np.r_[True, key[order][1:] != key[order][:-1]]
    assert np.array_equal(ev._least_per_key(key, weakness), order[first])
    assert ev._least_per_key(np.array([4, 1, 4, 4]), np.zeros(4, np.float32)) is None


@pytest.mark.parametrize("each_pair_at_most_twice", [False, True])
def test_unordered_keeps_each_pair_once_oriented_with_its_stronger_direction(each_pair_at_most_twice):
    """Against the plain reference (sort by (a, b, −strength), keep the first of each pair): the same pairs, in the
    same order, every column taken from the stronger direction; ties keep the earlier row. Pairs seen more than
    twice take the two-key sort, the others the one-key route (`_least_per_key`)."""
    rng = np.random.default_rng(3)
    n = 400
    query, target = rng.integers(0, 40, n), rng.integers(0, 40, n)
    target[target == query] += 1
    if each_pair_at_most_twice:  # 300 distinct pairs, 100 of them seen the other way too
        flat = rng.choice(2000 * 1999, size=300, replace=False)
        query, target = flat // 1999, flat % 1999
        target[target >= query] += 1
        again = rng.choice(300, size=100, replace=False)
        query, target = np.r_[query, target[again]], np.r_[target, query[again]]
    pairs = ev.Pairs(query=query, target=target, rank=rng.integers(-1, 5, n).astype(np.int16),
                     cosine=rng.random(n).astype(np.float32),
                     scaled=np.round(rng.random(n), 1).astype(np.float32),  # rounded: tied strengths
                     correlation=np.round(rng.random(n), 1).astype(np.float32), variant=rng.integers(0, 8, n),
                     hash_match=rng.random(n) < 0.3, phash_distance=rng.integers(0, 9, n).astype(np.int16),
                     dhash_distance=rng.integers(0, 9, n).astype(np.int16))
    a, b = np.minimum(query, target), np.maximum(query, target)
    one_key_route = ev._least_per_key(ev.pair_key(a, b, 2000), -(pairs.correlation + pairs.scaled)) is not None
    assert one_key_route == each_pair_at_most_twice
    order = np.lexsort((-(pairs.correlation + pairs.scaled), b, a))
    keys = np.stack([a[order], b[order]], axis=1)
    first = np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)]
    chosen = order[first]
    expected = pairs.subset(chosen)
    expected.query, expected.target = a[chosen], b[chosen]
    got = ev.unordered(pairs)
    assert len(got) == len({(x, y) for x, y in zip(a, b)}) < n  # some pairs were seen both ways
    for name in expected.__dataclass_fields__:
        want = getattr(expected, name)
        assert (getattr(got, name) is None) if want is None else np.array_equal(getattr(got, name), want), name
    assert pairs.query is None  # consumed


def test_the_same_picture_test_reads_a_copy_kind_every_calibration_mix_makes():
    """The same-picture cosine comes from one kind of calibration copy; a mix without it would switch the test off
    silently (no pair would be the same picture)."""
    from auditor.similarity import positives

    assert ev.SAME_PICTURE_KIND in positives.MIX_LARGE and ev.SAME_PICTURE_KIND in positives.MIX_SMALL


def test_a_copys_nearness_to_its_source_is_read_from_the_search_where_it_measured_it_as_is(monkeypatch):
    # The search correlates every candidate pair as is and mirrored; where that won for a copy and its source, the
    # number is reused, and only the other copies are measured again (the same numbers either way).
    from PIL import Image

    def scene(seed):
        coarse = np.random.default_rng(seed).integers(0, 256, (5, 7), dtype=np.uint8)
        return np.asarray(Image.fromarray(coarse).resize((32, 32), Image.Resampling.BICUBIC))

    thumbs = np.stack([scene(s) for s in range(8)])
    data = ev.make_dataset(None, thumbs)
    copy_thumbs = np.stack([np.clip(thumbs[0].astype(int) + 4, 0, 255).astype(np.uint8), thumbs[1][:, ::-1],
                            np.rot90(thumbs[2]).copy(), thumbs[3]])
    source = np.array([0, 1, 2, 3])
    measured, variant = ev.pair_correlation(copy_thumbs, np.arange(4), thumbs, source, np.array([-1, -1, 1, -1]))
    # The search found copies 0–2 with their source (copy 2 aligned best rotated), copy 3 only with image 5.
    pairs = ev.Pairs(query=np.array([0, 1, 2, 3]), target=np.array([0, 1, 2, 5]), rank=np.zeros(4, np.int16),
                     cosine=np.zeros(4, np.float32), scaled=np.zeros(4, np.float32),
                     correlation=np.r_[measured[:3], 0.1].astype(np.float32), variant=np.r_[variant[:3], 0],
                     hash_match=np.zeros(4, bool), phash_distance=np.zeros(4, np.int16),
                     dhash_distance=np.zeros(4, np.int16))
    assert list(variant[:3]) == [0, 4, 1]
    asked = []
    real = ev.pair_correlation

    def counted(a, rows_a, b, rows_b, *args, **kwargs):
        asked.append(list(rows_a))
        return real(a, rows_a, b, rows_b, *args, **kwargs)

    monkeypatch.setattr(ev, "pair_correlation", counted)
    got = ev.copy_source_correlation(data, copy_thumbs, source, pairs)
    monkeypatch.undo()
    assert asked == [[2, 3]]  # the rotated copy and the copy whose source was no candidate
    want = ev.pair_correlation(copy_thumbs, np.arange(4), thumbs, source, -1)[0]
    assert np.allclose(got, want, atol=1e-6)
    assert got[0] > 0.99 and got[1] > 0.99 and got[2] < 0.9


@pytest.mark.parametrize("symmetric", [True, False])
def test_merge_sightings_carries_the_cosine_a_sighting_brought_and_nan_where_none_did(symmetric):
    # Embedding sightings carry their search's cosine (the same either way round), others none.
    cos = lambda q, j: (np.minimum(q, j) * 100 + np.maximum(q, j)).astype(np.float32)
    q, j = np.array([0, 1, 2, 5]), np.array([1, 0, 3, 6])
    hq, hj = np.array([2, 4, 6]), np.array([3, 5, 5])
    events = [ev.Sightings.of(q, j, rank=np.zeros(4), cosine=cos(q, j)),
              ev.Sightings.of(hq, hj, variant=np.zeros(3), phash=np.zeros(3), dhash=np.zeros(3))]
    query, target, *_, cosine, _crowd = ev.merge_sightings(events, symmetric)
    carried = {(0, 1), (1, 0), (2, 3), (5, 6)}
    for a, b, c in zip(query.tolist(), target.tolist(), cosine.tolist()):
        if (a, b) in carried or (symmetric and (b, a) in carried):
            assert c == cos(np.array([a]), np.array([b]))[0]
        else:
            assert np.isnan(c)
    assert events[0].cosine is None  # consumed like the other columns


def _search_own_images(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    unit = rng.normal(size=(n, 32)).astype(np.float32)
    unit = (unit / np.linalg.norm(unit, axis=1, keepdims=True)).astype(np.float16)
    unit.flags.writeable = False
    thumbs = rng.integers(0, 256, (n, 32, 32), dtype=np.uint8)
    data = ev.make_dataset(unit, thumbs)
    # Hash thresholds that every pair passes: hash candidates the embedding search did not propose, too.
    return unit, data, ev.search(data, unit, data.thumbs, max_phash=64, max_dhash=64, self_nodes=np.arange(n))


def test_above_the_exact_limit_the_embedding_candidates_keep_the_cosine_their_search_computed(monkeypatch):
    from auditor.similarity import neighbours

    monkeypatch.setattr(neighbours, "EXACT_LIMIT", 100)  # 300 images: searched approximately, re-ranked exactly
    unit, data, pairs = _search_own_images()
    embedded = pairs.rank >= 0
    assert embedded.any() and (~embedded).any()
    sims, labels = data.neighbours
    for a, b, c in zip(pairs.query[embedded], pairs.target[embedded], pairs.cosine[embedded]):
        from_a, from_b = sims[a][labels[a] == b], sims[b][labels[b] == a]
        assert c == (from_a[0] if len(from_a) else from_b[0])  # the search's own bits
    computed = neighbours.paired_cosines(unit, pairs.query, unit, pairs.target)
    np.testing.assert_array_equal(pairs.cosine[~embedded], computed[~embedded])
    np.testing.assert_allclose(pairs.cosine, computed, atol=1e-6)  # the same cosines, to the last bits


def test_below_the_exact_limit_every_candidate_cosine_is_computed_one_way():
    from auditor.similarity import neighbours

    unit, _, pairs = _search_own_images()
    np.testing.assert_array_equal(pairs.cosine, neighbours.paired_cosines(unit, pairs.query, unit, pairs.target))


def test_merge_sightings_marks_the_pairs_a_crowd_sighting_saw():
    crowd = ev.Sightings.of(np.array([3, 3]), np.array([4, 5]), rank=np.array([0, 1]), crowd=True)
    plain = ev.Sightings.of(np.array([4, 1]), np.array([3, 2]), rank=np.array([0, 0]))
    query, target, *_, mate = ev.merge_sightings([plain, crowd], symmetric=True)
    marked = {tuple(sorted(p)) for p, m in zip(zip(query.tolist(), target.tolist()), mate.tolist()) if m}
    assert marked == {(3, 4), (3, 5)}  # (4, 3) seen plain first is still the crowd's pair; (1, 2) is not
