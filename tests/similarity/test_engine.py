"""The whole decision on real (generated) pictures with fake embeddings: copies found, a chain of similar
pictures not grouped, a held-out image leaks only with its own train duplicate, estimates present."""

from __future__ import annotations

import pytest

import io

import numpy as np
from PIL import Image

from auditor.encoding.imaging import ScanLimits, scan_bytes
from auditor.similarity import engine
from auditor.similarity.engine import decide
from auditor.similarity.pixels import decode_grey32
from auditor.similarity.positives import copy_kinds, make_copy


def picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((128, 96), Image.Resampling.BICUBIC)


def grey32(data: bytes) -> np.ndarray:
    scan, _ = scan_bytes(data, ScanLimits())
    return decode_grey32(scan.grey32)


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.slow
def test_decide_finds_the_planted_copy_and_estimates_its_quality(monkeypatch):
    originals = [picture(s) for s in range(40)]
    thumbs = [grey32(jpeg(im)) for im in originals]
    # Node 40: a same-shot copy of node 3, held out; every other image is in train.
    rng = np.random.default_rng(7)
    thumbs.append(grey32(make_copy(originals[3], "same_shot", rng)))
    thumbs = np.stack(thumbs)
    reference = np.array([True] * 40 + [False])
    held_out = ~reference
    copy_thumbs, source, kinds = [], [], []
    for i in range(0, 40, 2):
        for k, kind in enumerate(copy_kinds(originals[i].size, 5, offset=i)):
            copy_thumbs.append(grey32(make_copy(originals[i], kind, np.random.default_rng([i, k]))))
            source.append(i)
            kinds.append(kind)
    asked = []
    real_choose_rule = engine.choose_rule
    monkeypatch.setattr(engine, "choose_rule", lambda *args, **kw: asked.append(kw.get("splits")) or
                        real_choose_rule(*args, **kw))
    decision = decide(None, thumbs, reference, held_out, None, np.stack(copy_thumbs), np.array(source), kinds,
                      max_phash=6, max_dhash=10)
    # The rule is chosen knowing which images are held out (it is scored on leaks too where it misses them).
    assert len(asked) == 1 and asked[0][0] is reference and asked[0][1] is held_out
    assert decision.rule.min_correlation is not None  # no embeddings: the pixel tier decides
    assert [3, 40] in decision.groups
    assert all(len(g) == 2 for g in decision.groups)
    assert decision.leak is not None and decision.leak.flagged >= 1
    quality = decision.choice.near.as_dict()
    assert 0.0 <= quality["recall"] <= 1.0 and quality["recall_interval"][0] <= quality["recall"]
    assert 20 <= quality["recall_effective_copies"] <= 100  # between one draw per source and one per copy
    assert decision.choice.tiers["embedding"]["note"] == "no embeddings"
    intervals = decision.choice.per_kind_interval
    assert set(intervals) == set(decision.choice.per_kind_recall)
    assert all(intervals[k][0] <= r <= intervals[k][1] for k, r in decision.choice.per_kind_recall.items())


@pytest.mark.parametrize("rule", [dict(min_scaled=0.3, min_correlation=0.9), dict(min_scaled=0.3, min_correlation=None),
                                  dict(min_scaled=None, min_correlation=0.85),
                                  dict(min_scaled=0.95, min_correlation=0.999, joint_scaled=0.8, joint_correlation=0.99),
                                  dict(min_scaled=0.95, min_correlation=0.85, pixel_min_scaled=0.0)])
def test_judge_gives_the_rules_verdict_on_full_evidence(rule):
    """judge measures the pixel tier only where it decides; its verdicts are those of the rule on all evidence."""
    from types import SimpleNamespace

    from auditor.similarity import evidence as ev
    from auditor.similarity.decision import Rule
    from auditor.similarity.engine import DuplicateDecision, pair_evidence

    rng = np.random.default_rng(3)
    base = np.stack([grey32(jpeg(picture(s))) for s in range(12)])
    thumbs = np.concatenate([base, np.clip(base.astype(int) + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8)])
    unit = rng.normal(size=(24, 16)).astype(np.float32)
    unit[12:] = unit[:12] + rng.normal(0, 0.6, (12, 16))
    if "pixel_min_scaled" in rule:
        unit[12:18] = -unit[:6]  # look-alikes: the pixels align, the embeddings disagree
        thumbs[12:14] = np.rot90(thumbs[12:14], 1, axes=(1, 2))  # two of them align only rotated: not judged
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    data = ev.make_dataset(unit, thumbs, grey=np.arange(24) % 5 == 0)
    decision = DuplicateDecision(data=data, pairs=ev._empty_pairs(), accepted=np.zeros(0, bool),
                                 choice=SimpleNamespace(rule=Rule(**rule)), hash_tier={}, leak=None)
    a, b = np.triu_indices(24, 1)
    want = Rule(**rule).passes(pair_evidence(data, a, b))
    got = decision.judge(a, b)
    assert np.array_equal(got, want)
    assert 0 < want.sum() < len(a)  # some pairs pass, some do not
    if "joint_scaled" in rule:  # and some only by both tiers together
        alone = Rule(rule["min_scaled"], rule["min_correlation"]).passes(pair_evidence(data, a, b))
        assert (want & ~alone).any()
    if "pixel_min_scaled" in rule:  # the check turns some away and exempts grey against colour
        evidence = pair_evidence(data, a, b)
        plain = Rule(rule["min_scaled"], rule["min_correlation"]).passes(evidence)
        assert (plain & ~want).any()
        rotated = ((a == 0) & (b == 12)) | ((a == 1) & (b == 13))
        assert want[rotated].all() and not np.isin(evidence.variant[rotated], (0, 4)).any()
        assert np.array_equal(evidence.colour_differs, (a % 5 == 0) != (b % 5 == 0))


@pytest.mark.slow  # seconds: run by `make test`, not the edit-test loop
def test_float16_rows_decide_as_their_float32_values():
    """The decision decodes a small float16 matrix once (exact search, pairs gathered several times): the
    same pairs, evidence and choice as the float32 rows with the same bits."""
    rng = np.random.default_rng(5)
    thumbs = np.stack([grey32(jpeg(picture(s))) for s in range(24)])
    unit = rng.normal(size=(24, 16)).astype(np.float32)
    unit[23] = unit[2] + 0.05 * rng.normal(size=16)  # an embedding near-copy of node 2
    unit = (unit / np.linalg.norm(unit, axis=1, keepdims=True)).astype(np.float16)
    copy_unit = unit[:8].astype(np.float32) + 0.01 * rng.normal(size=(8, 16)).astype(np.float32)
    copy_unit /= np.linalg.norm(copy_unit, axis=1, keepdims=True)
    arguments = dict(thumbs=thumbs, reference=np.arange(24) % 3 > 0, held_out=np.arange(24) % 3 == 0,
                     copy_unit=copy_unit, copy_thumbs=thumbs[:8], copy_source=np.arange(8), copy_kind=["jitter"] * 8,
                     max_phash=6, max_dhash=10)
    half = decide(unit, **arguments)
    single = decide(unit.astype(np.float32), **arguments)
    for field in ("query", "target", "cosine", "scaled", "correlation", "variant"):
        np.testing.assert_array_equal(getattr(half.pairs, field), getattr(single.pairs, field))
    np.testing.assert_array_equal(half.accepted, single.accepted)
    assert half.rule == single.rule and half.leak.as_dict() == single.leak.as_dict()


def test_a_pair_only_the_both_tiers_clause_accepts_is_an_edge_of_kind_joint():
    from types import SimpleNamespace

    from auditor.similarity import evidence as ev
    from auditor.similarity.decision import Rule
    from auditor.similarity.engine import DuplicateDecision

    thumbs = np.stack([grey32(jpeg(picture(s))) for s in range(4)])
    unit = np.eye(4, 8, dtype=np.float32)
    data = ev.make_dataset(unit, thumbs)
    none = np.full(3, 99)
    pairs = ev.Pairs(query=np.array([0, 0, 1]), target=np.array([1, 2, 3]), rank=np.zeros(3, np.int64),
                     cosine=np.array([0.9, 0.5, 0.5], np.float32), scaled=np.array([0.9, 0.5, 0.5], np.float32),
                     correlation=np.array([0.5, 0.91, 0.80], np.float32), variant=np.zeros(3, np.int64),
                     hash_match=np.zeros(3, bool), phash_distance=none, dhash_distance=none)
    rule = Rule(0.8, 0.95, joint_scaled=0.45, joint_correlation=0.9)
    decision = DuplicateDecision(data=data, pairs=pairs, accepted=rule.passes(pairs),
                                 choice=SimpleNamespace(rule=rule), hash_tier={}, leak=None)
    assert decision.accepted.tolist() == [True, True, False]
    assert [e["kinds"] for e in decision.edges_evidence([0, 1])] == [["embedding"], ["joint"]]


def edge_picture(seed: int) -> Image.Image:
    """Two flat tones split by one straight edge (a patch of sky over a roof, at 32 px): little detail, so it aligns
    with every other such picture once shifted or turned."""
    rng = np.random.default_rng(1000 + seed)
    yy, xx = np.mgrid[0:96, 0:128].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    side = (xx - 64 - rng.uniform(-16, 16)) * np.cos(angle) + (yy - 48 - rng.uniform(-12, 12)) * np.sin(angle) > 0
    dark, light = rng.uniform(20, 110, 3), rng.uniform(140, 235, 3)
    shading = rng.normal(0, 6, (3, 4, 1)).repeat(32, axis=0).repeat(32, axis=1)  # blotches, as on a real surface
    image = np.where(side[..., None], light, dark) + shading + rng.normal(0, 6, (96, 128, 3))
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


@pytest.mark.slow  # seconds: run by `make test`, not the edit-test loop
def test_low_detail_look_alikes_are_not_duplicates_while_copies_of_detailed_pictures_are():
    """Edges between two tones align at 0.95 and more with each other; judged on the correlation itself they were
    grouped as duplicates (50 000 tiles of 32 px: hundreds of false leaks). Relative to each image's background
    they are not, while a same-shot copy of a detailed picture still is. The embeddings here say nothing (random:
    the pixel tier decides)."""
    detailed = [picture(s) for s in range(60)]
    edges = [edge_picture(s) for s in range(60)]
    thumbs = [grey32(jpeg(im)) for im in detailed + edges]
    rng = np.random.default_rng(7)
    thumbs.append(grey32(make_copy(detailed[3], "same_shot", rng)))  # node 120: a held-out copy of node 3
    thumbs = np.stack(thumbs)
    n = len(thumbs)
    reference = np.zeros(n, dtype=bool)
    reference[::2] = True
    reference[3], reference[120] = True, False
    held_out = ~reference
    copy_thumbs, source, kinds = [], [], []
    for i in range(0, 120, 3):
        picture_i = (detailed + edges)[i]
        for k, kind in enumerate(copy_kinds(picture_i.size, 5, offset=i)):
            copy_thumbs.append(grey32(make_copy(picture_i, kind, np.random.default_rng([i, k]))))
            source.append(i)
            kinds.append(kind)
    vectors = np.random.default_rng(3).normal(size=(n + len(source), 32)).astype(np.float32)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    decision = decide(unit[:n], thumbs, reference, held_out, unit[n:], np.stack(copy_thumbs), np.array(source),
                      kinds, max_phash=6, max_dhash=10, small_images=True)
    aligned = decision.pairs.correlation >= 0.95
    between_edges = (decision.pairs.query >= 60) & (decision.pairs.target >= 60) & (decision.pairs.target < 120)
    assert (aligned & between_edges).sum() >= 10  # the look-alikes are there, aligned as well as copies
    grouped = {node for group in decision.groups for node in group}
    assert [3, 120] in decision.groups
    assert not grouped & set(range(60, 120))


@pytest.mark.slow
@pytest.mark.parametrize("exact_limit", [20, 20_000])
def test_an_approximate_pixel_search_reports_its_measured_recall_and_still_finds_the_copy(monkeypatch, exact_limit):
    import auditor.similarity.evidence as ev

    monkeypatch.setattr(ev, "EXACT_PIXEL_SEARCH", exact_limit)
    monkeypatch.setattr(ev, "PIXEL_NPROBE", 10_000)  # every cell searched: the measured recall must then be near 1
    originals = [picture(s) for s in range(40)]
    rng = np.random.default_rng(7)
    thumbs = np.stack([grey32(jpeg(im)) for im in originals] + [grey32(make_copy(originals[3], "same_shot", rng))])
    reference = np.array([True] * 40 + [False])
    copies = [(i, kind, grey32(make_copy(originals[i], kind, np.random.default_rng([i, k]))))
              for i in range(0, 40, 4) for k, kind in enumerate(copy_kinds(originals[i].size, 5, offset=i))]
    decision = decide(None, thumbs, reference, ~reference, None, np.stack([c[2] for c in copies]),
                      np.array([c[0] for c in copies]), [c[1] for c in copies], max_phash=6, max_dhash=10)
    assert [3, 40] in decision.groups
    if exact_limit >= len(thumbs):
        assert decision.pixel_search is None  # exact: nothing to measure
    else:
        record = decision.pixel_search
        assert record["kind"] == "pixel_knn" and record["exact"] is False and record["k"] == 3
        assert record["queries_measured"] == len(thumbs) and record["recall"] >= 0.95
        assert record["parameters"]["rows_per_image"] == 6
        frames = record["whole_frames"]  # the index searched under rotations, one row an image
        assert frames["k"] == 1 and frames["parameters"]["rows_per_image"] == 1
        assert frames["recall"] >= 0.95  # 8-bit rows: a near tie can swap (0.99 measured)


def test_above_the_exact_limit_each_pixel_index_is_built_once_and_not_kept_past_the_decision(monkeypatch):
    import auditor.similarity.evidence as ev

    monkeypatch.setattr(ev, "EXACT_PIXEL_SEARCH", 20)
    built = []
    real_ivf = ev._pixel_ivf
    monkeypatch.setattr(ev, "_pixel_ivf", lambda thumbs, crops: built.append(crops) or real_ivf(thumbs, crops))
    originals = [picture(s) for s in range(30)]
    thumbs = np.stack([grey32(jpeg(im)) for im in originals])
    copies = [(i, kind, grey32(make_copy(originals[i], kind, np.random.default_rng([i, k]))))
              for i in range(0, 30, 6) for k, kind in enumerate(copy_kinds(originals[i].size, 5, offset=i))]
    decision = decide(None, thumbs, None, None, None, np.stack([c[2] for c in copies]),
                      np.array([c[0] for c in copies]), [c[1] for c in copies], max_phash=6, max_dhash=10)
    # The copies are searched first, with both indexes; the dataset's own search then uses and drops them.
    assert sorted(built) == [False, True]
    assert decision.data.pixel_index is None and decision.data.plain_pixel_index is None
    assert decision.pixel_search is not None and decision.pixel_search["queries_measured"] == len(thumbs)
