"""Per-image domain scores: P(held-out | image) from a classifier that tells each held-out split from train.

`split_shift` tests whether such a classifier beats chance; `gap_attribution` groups held-out images by
these scores (accuracy on the most and least train-like fifths). Both use the same seeded subsample,
so the scores are the ones behind split_shift's AUC, whichever check asks first.
"""

from __future__ import annotations

import numpy as np

from auditor.config import REFERENCE_SPLIT

MAX_IMAGES_PER_SPLIT = 2000  # embeddings per side in the split-level tests (seeded subsample)
MIN_IMAGES_PER_SIDE = 10  # fewer images than this on either side: no classifier is fitted


def unique_by_split(ctx) -> dict[str, dict[str, int]]:
    """split → {sha: first record position}: one row per content per split, so copies do not inflate the tests.
    In record order (splits and contents as first met), from the record columns: no Python step per record."""
    columns = ctx.columns
    positions = np.flatnonzero(columns.usable)
    split_of, node_of = columns.split[positions], columns.node[positions]
    shas = ctx.unique_shas
    codes, first_record = np.unique(split_of, return_index=True)
    grouped: dict[str, dict[str, int]] = {}
    for code in codes[np.argsort(first_record)].tolist():
        in_split = split_of == code
        at, nodes = positions[in_split], node_of[in_split]
        first = np.sort(np.unique(nodes, return_index=True)[1])  # each content's first record, in record order
        grouped[columns.splits[code]] = dict(zip([shas[n] for n in nodes[first].tolist()], at[first].tolist()))
    return grouped


def contents_by_class(ctx, split: str) -> dict[str, dict[str, None]]:
    """class → its contents in `split` (as dict keys, first met first), from the record columns."""
    columns = ctx.columns
    if split not in columns.splits:
        return {}
    positions = np.flatnonzero(columns.usable & (columns.split == columns.splits.index(split)))
    label_of, node_of = columns.label[positions], columns.node[positions]
    shas = ctx.unique_shas
    by_class: dict[str, dict[str, None]] = {}
    for code in np.unique(label_of).tolist():
        nodes = node_of[label_of == code]
        first = np.sort(np.unique(nodes, return_index=True)[1])
        by_class[columns.classes[code]] = dict.fromkeys(shas[n] for n in nodes[first].tolist())
    return by_class


def subsample(items: list, cap: int, rng: np.random.Generator) -> list:
    if len(items) <= cap:
        return list(items)
    keep = np.sort(rng.choice(len(items), size=cap, replace=False))
    return [items[i] for i in keep]


def sample_pair(ctx, ref_shas: list[str], held_shas: list[str], seed: int, cap: int) -> tuple[list[str], list[str]]:
    """Seeded subsamples of two sets of contents, among those with an embedding (a content whose embedding
    is missing, e.g. changed while encoding, sits out)."""
    rng = np.random.default_rng(seed)
    embedded = ctx.embedded_row  # a dict of the audit's embedded contents: the store's own test took ≈ 1 s of a 10⁶ run
    ref_shas, held_shas = [s for s in ref_shas if s in embedded], [s for s in held_shas if s in embedded]
    return subsample(ref_shas, cap, rng), subsample(held_shas, cap, rng)


def split_seed(ctx) -> int:
    return ctx.config.seed or 0


def domain_scores(ctx) -> dict[str, dict[str, float]]:
    """{held-out split: {sha: P(held-out | image)}} for every held-out split the classifier can be fitted on:
    out-of-fold where the image is in the subsample, else from the model fitted on the whole subsample."""
    from auditor.stats import domain_classifier_test

    if not ctx.has_embeddings or REFERENCE_SPLIT not in ctx.index.splits:
        return {}
    by_split = unique_by_split(ctx)
    reference = list(by_split.get(REFERENCE_SPLIT, {}))
    scores: dict[str, dict[str, float]] = {}
    for split in ctx.index.held_out_splits:
        held = list(by_split.get(split, {}))
        ref_sample, held_sample = sample_pair(ctx, reference, held, split_seed(ctx), MAX_IMAGES_PER_SPLIT)
        if min(len(ref_sample), len(held_sample)) < MIN_IMAGES_PER_SIDE:
            continue
        domain = domain_classifier_test(ctx.unit_embeddings(ref_sample), ctx.unit_embeddings(held_sample), 0,
                                        split_seed(ctx), want_scores=True)
        split_scores = dict(zip(held_sample, (float(s) for s in domain.held_out_scores)))
        rest = [s for s in held if s not in split_scores and s in ctx.embedded_row]
        for start in range(0, len(rest), 4096):
            chunk = rest[start:start + 4096]
            split_scores.update(zip(chunk, (float(s) for s in domain.transform(ctx.unit_embeddings(chunk)))))
        scores[split] = split_scores
    return scores
