"""`outliers`: images far from everything else in embedding space — a placeholder "image not found"
picture, a blank frame, a screenshot among photos.

The score is the mean cosine distance to an image's k nearest other images (FAISS), on a log scale,
turned into a robust z-score (median and MAD of the dataset's own scores), so the cut-off adapts to
how spread out a dataset is instead of being a fixed distance. The same score within the image's own
class is reported as evidence and used to list the most isolated images of every split and class.
Held-out images far from every training image are measured too (for `split_shift`'s evidence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from auditor.checks.common import percent, plural
from auditor.config import REFERENCE_SPLIT
from auditor.context import AuditContext
from auditor.checks.base import Check, Evidence, Verdict, share_policy_text, share_status, skipped
from auditor.config import Policy
from auditor.report import Finding, Severity, stable_finding_id
from auditor.similarity.neighbours import drop_self
from auditor.stats import robust_z

CHECK_ID = "outliers"
MIN_LOG_DISTANCE_SCALE = 0.05  # a dataset of near-identical images must not turn tiny differences into outliers
MIN_CLASS_IMAGES = 5  # class-relative scores need this many images in the class
MOST_ISOLATED_PER_GROUP = 3
MIN_OUTLIER_Z = 3.5  # Iglewicz & Hoaglin's cut-off for modified z-scores
FAMILY_ALPHA = 0.05  # chance that the most isolated of n clean images is flagged, if log distances were normal


def outlier_cutoff(images: int, configured: float | None) -> tuple[float, str]:
    """The z above which an image is an outlier, and where that number comes from. Without a configured
    value it grows with the dataset: the (1 − α/n) normal quantile (Bonferroni), at least 3.5, so a clean
    dataset of any size is flagged by chance in at most about α of audits."""
    if configured is not None:
        return float(configured), "max_outlier_z, set in the configuration"
    from scipy.stats import norm

    bonferroni = float(norm.isf(FAMILY_ALPHA / max(1, images)))
    if bonferroni > MIN_OUTLIER_Z:
        return round(bonferroni, 3), f"Bonferroni for {images} images at α = {FAMILY_ALPHA:g}"
    return MIN_OUTLIER_Z, f"the usual 3.5 for modified z-scores (Bonferroni for {images} images gives {bonferroni:.2f})"


def knn_distances(unit_vectors: np.ndarray, k: int, rows: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each vector (or each of `rows`, searched among all): mean cosine distance to its k nearest *other*
    vectors, the nearest one's index and its cosine similarity. Above the exact-search limit this reads the
    k-NN graph shared with the other checks that search the same matrix (similarity.neighbours)."""
    from auditor.similarity.neighbours import drop_self_rows, has_exact_graph, knn

    n = len(unit_vectors)
    queries = n if rows is None else len(rows)
    k = min(k, n - 1)
    if k < 1:
        return np.full(queries, np.nan), np.full(queries, -1), np.full(queries, np.nan)
    if rows is not None and has_exact_graph(unit_vectors, k + 1):
        # The rows of the exact graph at hand (a merge audit's duplicate decision searched it, or read it from the
        # cache): a search of 2 000 rows among 10 000 (0.5 s) saved, the same neighbours.
        sims, neighbours = knn(unit_vectors, k + 1)
        sims, neighbours = drop_self_rows(sims[rows], neighbours[rows], np.asarray(rows), k)
    elif rows is None:
        sims, neighbours = knn(unit_vectors, k + 1)
        sims, neighbours = drop_self(sims, neighbours, k)
    else:
        sims, neighbours = knn(unit_vectors, k + 1, queries=np.asarray(unit_vectors[rows], dtype=np.float32))
        sims, neighbours = drop_self_rows(sims, neighbours, rows, k)
    mean_distance = np.nanmean(np.where(neighbours >= 0, 1.0 - sims, np.nan), axis=1)
    nearest, nearest_sim = neighbours[:, 0], sims[:, 0].astype(float)
    return np.clip(mean_distance, 1e-6, None), nearest, nearest_sim


def isolation_scores(unit_vectors: np.ndarray, k: int, scored: np.ndarray | None = None,
                     reference: np.ndarray | None = None) -> dict[str, np.ndarray | float]:
    """kNN distance, its robust z-score on a log scale, and each image's nearest neighbour. `scored`: only
    these rows are scored (searched among all; the others get NaN); `reference`: the rows whose scores give
    the z's median and MAD (default: every scored row)."""
    n = len(unit_vectors)
    if scored is None:
        distance, nearest, nearest_sim = knn_distances(unit_vectors, k)
    else:
        distance, nearest, nearest_sim = np.full(n, np.nan), np.full(n, -1), np.full(n, np.nan)
        distance[scored], nearest[scored], nearest_sim[scored] = knn_distances(unit_vectors, k, scored)
    basis = distance[reference] if reference is not None else distance[scored] if scored is not None else distance
    _z, median, scale = robust_z(np.log(basis), MIN_LOG_DISTANCE_SCALE)
    z = (np.log(distance) - median) / scale
    return {"distance": distance, "z": z, "nearest": nearest, "nearest_similarity": nearest_sim,
            "median_distance": float(np.exp(median)) if np.isfinite(median) else float("nan"), "log_scale": scale}


MAX_BASELINE_QUERIES = 20_000  # train images whose nearest other train image sets the baseline (seeded sample)
# Above the exact-search limit, a class up to this size is searched exactly (cost ≤ n · this · d in all);
# larger classes read the shared k-NN graph instead of a second search.
CLASS_EXACT_LIMIT = 2_000


MERGE_REFERENCE_IMAGES = 2_000  # a merge audit: existing images (seeded sample) whose scores set median and MAD


@dataclass
class Scope:
    """What a merge audit (`--against`) scores: its incoming images, searched among every image, with a
    seeded sample of existing images whose scores give the robust z's median and MAD. The existing images'
    own audit scored them already (their findings would be accepted anyway), so re-scoring all of them —
    an all-pairs search growing as n² — is what made the gate's outlier check as slow as a first audit's."""

    reported: np.ndarray  # sorted matrix rows of the incoming images: findings and counts
    reference: np.ndarray  # sorted rows of the existing sample (the incoming ones when there is no existing image)
    scored: np.ndarray  # sorted union of the two

    def metrics(self) -> dict:
        return {"scored": "incoming images, searched among all; median and MAD from a seeded sample of existing images",
                "incoming_images": int(len(self.reported)), "reference_images": int(len(self.reference))}


def merge_scope(ctx: AuditContext) -> Scope | None:
    """The Scope of a merge audit; None for an ordinary audit (every image scored)."""
    from auditor.index.merged import INCOMING

    origins = getattr(ctx.index, "origins", None)
    if not origins:
        return None
    positions, rows, _splits, _labels = _record_rows(ctx)
    incoming_record = np.array([origins[p] == INCOMING for p in positions.tolist()], dtype=bool)
    incoming = np.unique(rows[incoming_record])
    existing = np.setdiff1d(np.unique(rows[~incoming_record]), incoming)
    rng = np.random.default_rng(ctx.config.seed or 0)
    if len(existing) > MERGE_REFERENCE_IMAGES:
        existing = np.sort(rng.choice(existing, MERGE_REFERENCE_IMAGES, replace=False))
    reference = existing if len(existing) >= MIN_CLASS_IMAGES else incoming
    return Scope(reported=incoming, reference=reference, scored=np.union1d(incoming, reference))


def _record_rows(ctx: AuditContext) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per usable record with an embedding: (record position, unit_matrix row, split code, label code)."""
    columns = ctx.columns
    positions = np.flatnonzero(columns.usable)
    rows = columns.embedded_row[columns.node[positions]]
    keep = rows >= 0
    positions, rows = positions[keep], rows[keep]
    return positions, rows, columns.split[positions], columns.label[positions]


def held_out_far_from_train(ctx: AuditContext, max_z: float | None = None, scope: Scope | None = None) -> dict[str, dict]:
    """For each held-out split: its images whose nearest training image is farther than training images
    usually are from each other (robust z of the log distance to the nearest train image, measured
    against train's own nearest-neighbour distances, above `max_z`). For `split_shift`'s evidence.
    The baseline uses at most MAX_BASELINE_QUERIES training images (seeded). Above the exact-search limit
    the nearest training image is read from the shared k-NN graph; only images with no training image
    among their graph neighbours are searched again, restricted to training rows (`nearest_among`).
    With a merge audit's `scope`, only incoming held-out images are measured, against a baseline of at most
    MERGE_REFERENCE_IMAGES training images."""
    if not ctx.has_embeddings or ctx.index.reference_split is None:
        return {}
    columns = ctx.columns
    _positions, rows, split_of, _labels = _record_rows(ctx)
    train_code = columns.splits.index(REFERENCE_SPLIT)
    train = np.unique(rows[split_of == train_code])
    if len(train) < 3:
        return {}
    from auditor.similarity.neighbours import EXACT_LIMIT

    vectors = ctx.unit_matrix
    seed = ctx.config.seed or 0
    rng = np.random.default_rng(seed)
    most = MAX_BASELINE_QUERIES if scope is None else MERGE_REFERENCE_IMAGES
    baseline = train if len(train) <= most else np.sort(rng.choice(train, most, replace=False))
    measured = np.ones(len(rows), dtype=bool) if scope is None else np.isin(rows, scope.reported)
    held_rows = {split: np.unique(rows[(split_of == columns.splits.index(split)) & measured])
                 for split in ctx.index.held_out_splits}
    query_sets = [baseline] + [held for held in held_rows.values() if len(held)]
    # The exact answers that check the approximate ones, for every query set in one pass over the training rows.
    exact = iter(exact_nearest_samples(vectors, query_sets, train, seed) if len(vectors) > EXACT_LIMIT
                 else [None] * len(query_sets))
    sims, _ids, _baseline_search = nearest_among(vectors, baseline, train, seed=seed, exact=next(exact))
    train_distance = np.clip(1.0 - sims, 1e-6, None)
    _z, median, scale = robust_z(np.log(train_distance), MIN_LOG_DISTANCE_SCALE)
    shas = ctx.embedded_shas
    result = {}
    for split in ctx.index.held_out_splits:
        code = columns.splits.index(split)
        in_split = (split_of == code) & measured
        held = held_rows[split]
        if not len(held):
            continue
        sims, ids, searched = nearest_among(vectors, held, train, seed=seed, exact=next(exact))
        distance = np.clip(1.0 - sims, 1e-6, None)
        z = (np.log(distance) - median) / scale
        cutoff = max_z if max_z is not None else outlier_cutoff(len(held), ctx.config.max_outlier_z)[0]
        far = [int(i) for i in np.argsort(-z, kind="stable") if z[i] > cutoff]
        far_rows = np.zeros(len(vectors), dtype=bool)
        far_rows[held[far]] = True
        images = int(in_split.sum())
        far_images = int(far_rows[rows[in_split]].sum())
        result[split] = {
            "images": images,
            "far_from_train": far_images,
            "percent": percent(far_images, images),
            "train_median_nearest_distance": round(float(np.exp(median)), 4),
            "baseline_train_images": int(len(baseline)),
            "nearest_train_search": searched,
            "max_z": cutoff,
            "examples": [
                {"path": _first_path(ctx, shas[held[i]], split), "nearest_train": _first_path(ctx, shas[int(ids[i])]),
                 "cosine": round(float(sims[i]), 4), "robust_z": round(float(z[i]), 2)}
                for i in far[:10]
            ],
        }
    return result


def _recall_sample(queries: int, seed: int) -> np.ndarray:
    """Which of `queries` queries the approximate nearest-train search is checked on (seeded)."""
    from auditor.similarity.neighbours import RECALL_QUERIES

    rng = np.random.default_rng(seed + 2)
    return np.sort(rng.choice(queries, size=min(queries, RECALL_QUERIES), replace=False))


def exact_nearest_samples(vectors: np.ndarray, query_sets: list[np.ndarray], among: np.ndarray,
                          seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each set of query rows, the exact 2 nearest `among` rows of its recall sample (`_recall_sample`),
    found in one streamed pass over the `among` rows for all the sets: at 10⁶ × 1280 float16 each pass
    decodes and multiplies 2 GB of rows, ≈ 10 CPU-s."""
    from auditor.similarity.neighbours import exact_search_streamed

    samples = [np.asarray(rows, dtype=np.int64)[_recall_sample(len(rows), seed)] for rows in query_sets]
    sims, ids = exact_search_streamed(vectors, vectors[np.concatenate(samples)], 2, among=among)
    bounds = np.cumsum([0] + [len(sample) for sample in samples])
    return [(sims[a:b], ids[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def nearest_among(vectors: np.ndarray, query_rows: np.ndarray, among: np.ndarray, seed: int = 0,
                  exact: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """For each row in `query_rows`: the cosine to, and row of, its nearest *other* row in `among` (sorted), and
    how it was found (for the report): the first `among` row in the shared k-NN graph (best first, so the nearest
    of them), and a restricted search only for queries whose graph neighbours hold no `among` row: no second full
    search. Up to the exact-search limit the graph is exact, and so is the answer; above it, the approximate
    answer is checked against exact search on a seeded sample of the queries (recall@1); `exact`: that sample's
    exact answer when already computed (`exact_nearest_samples`)."""
    from auditor.similarity.neighbours import EXACT_LIMIT, SELF_K, _interval, drop_self_rows, has_exact_graph, knn

    query_rows = np.asarray(query_rows, dtype=np.int64)
    below_limit = len(vectors) <= EXACT_LIMIT
    if below_limit and 2 * len(query_rows) < len(vectors) and not has_exact_graph(vectors, SELF_K):
        # A few queries (a merge audit's incoming images) and no graph yet: searching them alone costs less.
        sims, ids = knn(vectors, 2, queries=vectors[query_rows], among=among)
        sims, ids = drop_self_rows(sims, ids, query_rows, 1)
        return sims[:, 0].astype(float), ids[:, 0], {"method": "exact search among train", "exact": True}
    # Below the limit the graph is exact, so its first training row is the nearest one (no second search).
    graph_sims, graph_ids = knn(vectors, SELF_K)
    graph_sims, graph_ids = graph_sims[query_rows], graph_ids[query_rows]
    allowed = np.zeros(len(vectors), dtype=bool)
    allowed[among] = True
    valid = (graph_ids >= 0) & allowed[np.maximum(graph_ids, 0)] & (graph_ids != query_rows[:, None])
    first = np.argmax(valid, axis=1)
    found = valid[np.arange(len(query_rows)), first]
    sims = graph_sims[np.arange(len(query_rows)), first].astype(float)
    ids = graph_ids[np.arange(len(query_rows)), first].copy()
    missing = np.flatnonzero(~found)
    if len(missing):
        extra_sims, extra_ids = knn(vectors, 2, queries=vectors[query_rows[missing]], among=among)
        extra_sims, extra_ids = drop_self_rows(extra_sims, extra_ids, query_rows[missing], 1)
        sims[missing], ids[missing] = extra_sims[:, 0], extra_ids[:, 0]
    if below_limit:
        return sims, ids, {"method": f"exact: the first train image among the {SELF_K - 1} nearest neighbours, else a "
                                     "search among train", "exact": True, "searched_among_train": int(len(missing)),
                           "queries": int(len(query_rows))}
    sample = _recall_sample(len(query_rows), seed)
    true_sims, true_ids = exact if exact is not None else exact_nearest_samples(vectors, [query_rows], among, seed)[0]
    _true_sims, true_ids = drop_self_rows(true_sims, true_ids, query_rows[sample], 1)
    recall, interval = _interval((ids[sample] == true_ids[:, 0]).astype(float))
    return sims, ids, {
        "method": f"the shared k-NN graph ({SELF_K - 1} neighbours); a search among train for images with no train "
                  "image among them",
        "exact": False,
        "searched_among_train": int(len(missing)),
        "queries": int(len(query_rows)),
        "queries_measured": int(len(sample)),
        "recall_at_1": round(recall, 4),
        "recall_interval": interval,
    }


def _first_path(ctx: AuditContext, sha: str, split: str | None = None) -> str:
    positions = ctx.positions_by_sha[sha]
    preferred = [p for p in positions if split is None or ctx.records[p].split == split] or positions
    return ctx.records[preferred[0]].path


@dataclass
class Isolation:
    """The isolation scores of every unique content with an embedding, dataset-wide and within each class."""

    shas: list[str]
    k: int
    scores: dict  # isolation_scores(): distance, z, nearest, nearest_similarity, median_distance
    # label → (member rows, ascending; their kNN distance among the class; its robust z): arrays, not a dict entry
    # per image (10⁶ tuples).
    by_class: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    class_method: str = "exact k-NN within each class"

    def in_class(self, row: int, label: str) -> tuple[float, float] | None:
        """(kNN distance, robust z) of this row within that class, None if the class was not scored."""
        if label not in self.by_class:
            return None
        members, distance, z = self.by_class[label]
        at = int(np.searchsorted(members, row))
        if at == len(members) or members[at] != row:
            return None
        return float(distance[at]), float(z[at])

    @property
    def row_of(self) -> dict[str, int]:
        return {sha: i for i, sha in enumerate(self.shas)}


def compute(ctx: AuditContext) -> Evidence:
    from auditor.similarity.neighbours import search_quality

    if not ctx.has_embeddings:
        return skipped("skipped: no embeddings (run with a backbone)")
    shas = ctx.embedded_shas
    if len(shas) < 3:
        return skipped("skipped: fewer than 3 images with embeddings")
    scope = merge_scope(ctx)
    isolation = score_isolation(ctx, shas, scope)
    candidates = np.arange(len(shas)) if scope is None else scope.reported  # rows that may become findings
    max_z, cutoff_source = outlier_cutoff(len(candidates), ctx.config.max_outlier_z)
    z = isolation.scores["z"]
    flagged_rows = [int(i) for i in candidates[np.argsort(-z[candidates], kind="stable")] if z[i] > max_z]
    findings = [_finding(ctx, isolation, i, max_z, cutoff_source) for i in flagged_rows]
    per_split = _per_split(ctx, isolation, np.array(flagged_rows, dtype=np.int64),
                           None if scope is None else scope.reported)
    far = held_out_far_from_train(ctx, scope=scope)
    findings += _far_findings(far, {path for f in findings for path in f.paths})
    quality = search_quality(ctx.unit_matrix, min(10, len(shas) - 1)).to_dict()
    ctx.search_quality["embeddings"] = quality
    total_images = sum(m["images"] for m in per_split.values())
    total_outliers = sum(m["outliers"] for m in per_split.values())
    parts = [
        f"{plural(total_outliers, 'image')} of {total_images}{'' if scope is None else ' incoming'} "
        f"{'is' if total_outliers == 1 else 'are'} far from all others (robust z of kNN distance > {max_z:.2f})",
    ]
    if len(candidates):
        top = int(candidates[np.argmax(z[candidates])])
        parts.append(f"most isolated: {_first_path(ctx, shas[top])} (z {z[top]:.1f})")
    parts += [f"{m['far_from_train']} {split} images far from every train image" for split, m in far.items()]
    if not quality["exact"]:
        parts.append(f"neighbours by approximate search (recall@{quality['k']} {quality['recall']:.3f} against exact "
                     f"search on {quality['queries_measured']} sampled images)")
    metrics = {
        "k": isolation.k,
        "max_z": max_z,
        "max_z_source": cutoff_source,
        "median_knn_distance": round(float(isolation.scores["median_distance"]), 4),
        "outliers": total_outliers,
        "per_split": per_split,
        "held_out_far_from_train": far,
        "class_relative_method": isolation.class_method,
        "search": quality,
    }
    if scope is not None:
        metrics["scope"] = scope.metrics()
    return Evidence(summary="; ".join(parts), metrics=metrics, findings=findings)


def score_isolation(ctx: AuditContext, shas: list[str], scope: "Scope | None" = None) -> Isolation:
    """Isolation over the whole dataset, and the same score inside each class (a content filed under two
    labels is scored in both). `shas` are ctx.embedded_shas (the rows of ctx.unit_matrix). `scope`: score
    only its rows (a merge audit's incoming images and a reference sample), searched among all.

    Within a class: exact k-NN among the class's images while the whole matrix is within the exact-search limit,
    or the class within CLASS_EXACT_LIMIT; otherwise the class's
    images among each image's neighbours in the shared graph (the nearest k of them; where fewer than k of the
    graph's neighbours share the class, the graph's farthest distance stands in for the missing ones, a lower
    bound), so a class of 500 000 images costs no second search."""
    from auditor.similarity.neighbours import EXACT_LIMIT, SELF_K, knn

    vectors = ctx.unit_matrix
    k = min(ctx.config.outlier_neighbours, len(shas) - 1)
    scored = None if scope is None else scope.scored
    reference = None if scope is None else scope.reference
    isolation = Isolation(shas=shas, k=k, scores=isolation_scores(vectors, k, scored, reference), by_class={})
    _positions, rows, _splits, labels = _record_rows(ctx)
    pairs = unique_rows(np.stack([labels, rows], axis=1))  # (label code, row), each once, sorted
    classes = ctx.columns.classes
    graph = None
    for code in np.unique(pairs[:, 0]).tolist():
        members = pairs[pairs[:, 0] == code, 1]
        if len(members) < MIN_CLASS_IMAGES:
            continue
        kk = min(k, len(members) - 1)
        # Which members to score (positions in `members`), and whose scores set the class's median and MAD.
        local = np.arange(len(members)) if scored is None else np.flatnonzero(np.isin(members, scored))
        basis = local if reference is None else np.flatnonzero(np.isin(members, reference))
        if len(basis) < MIN_CLASS_IMAGES:
            basis = local
        if not len(local):
            continue
        if len(vectors) <= EXACT_LIMIT or len(members) <= CLASS_EXACT_LIMIT:
            distance, _nearest, _sims = knn_distances(np.asarray(vectors[members]), kk,
                                                      None if scored is None else local)
        else:
            if graph is None:
                graph = knn(vectors, max(SELF_K, k + 1), **({} if scored is None else {
                    "queries": np.asarray(vectors[scored], dtype=np.float32)}))
                graph_rows = np.arange(len(vectors)) if scored is None else np.asarray(scored)
            at = np.searchsorted(graph_rows, members[local])
            distance = _class_distance_from_graph((graph[0][at], graph[1][at]), members[local], members, kk)
            isolation.class_method = (f"exact k-NN within classes of up to {CLASS_EXACT_LIMIT} images; larger classes "
                                      "from the shared k-NN graph (a lower bound where fewer than k of an image's "
                                      f"{graph[1].shape[1] - 1} nearest share its class)")
        # the class's median and MAD from the `basis` members' scores (positions of `basis` within `local`)
        _z, median, scale = robust_z(np.log(distance[np.searchsorted(local, basis)]), MIN_LOG_DISTANCE_SCALE)
        z = (np.log(distance) - median) / scale
        isolation.by_class[classes[code]] = (members[local], np.asarray(distance, dtype=float), np.asarray(z, dtype=float))
    return isolation


def unique_rows(table: np.ndarray) -> np.ndarray:
    """np.unique(table, axis=0) for small non-negative integer columns: the rows as one mixed-radix int64 key
    each (same lexicographic order), so 10⁶ rows sort as integers rather than as void records (seconds)."""
    table = np.asarray(table, dtype=np.int64)
    if not len(table):
        return table.reshape(0, table.shape[1])
    radix = table.max(axis=0) + 1
    key = np.zeros(len(table), dtype=np.int64)
    for column in range(table.shape[1]):
        key = key * radix[column] + table[:, column]
    key = np.unique(key)
    out = np.empty((len(key), table.shape[1]), dtype=np.int64)
    for column in reversed(range(table.shape[1])):
        key, out[:, column] = np.divmod(key, radix[column])
    return out


def _class_distance_from_graph(graph: tuple[np.ndarray, np.ndarray], queried: np.ndarray, members: np.ndarray,
                               k: int) -> np.ndarray:
    """Mean cosine distance of each queried member to its k nearest same-class images found in the shared
    graph; `graph` holds the queried members' rows of it, in that order."""
    sims, neighbours = graph
    in_class = np.zeros(int(max(neighbours.max(), members.max())) + 1, dtype=bool)
    in_class[members] = True
    same = (neighbours >= 0) & in_class[np.maximum(neighbours, 0)] & (neighbours != queried[:, None])
    farthest = np.where(neighbours >= 0, sims, np.inf).min(axis=1)
    filled = np.where(same, sims, -np.inf)
    top = -np.sort(-filled, axis=1)[:, :k]
    top = np.where(np.isfinite(top), top, farthest[:, None])
    return np.clip(np.mean(1.0 - top, axis=1), 1e-6, None)


def _far_findings(far: dict[str, dict], already: set[str]) -> list[Finding]:
    """A warning for each held-out image listed as far from every training image (the farthest, at most 10 a
    split: `held_out_far_from_train`'s examples) that is not already an isolated image: the model never saw
    anything like it, which the summary counts and the policy's "warn on any" must then see too."""
    return [
        Finding(
            id=stable_finding_id(CHECK_ID, "far_from_train", [example["path"]]),
            severity=Severity.WARNING,
            message=(f"{split} image far from every training image (nearest training image "
                     f"{example['nearest_train']} at cosine {example['cosine']:.2f}, robust z {example['robust_z']:.1f} "
                     f"against training images' own nearest distances): {example['path']}"),
            paths=[example["path"]],
            evidence={"kind": "far_from_train", "split": split, **example, "max_z": measured["max_z"]},
        )
        for split, measured in far.items() for example in measured["examples"] if example["path"] not in already
    ]


def _finding(ctx: AuditContext, isolation: Isolation, i: int, max_z: float, cutoff_source: str) -> Finding:
    scores, k = isolation.scores, isolation.k
    sha = isolation.shas[i]
    positions = ctx.positions_by_sha[sha]
    paths = [ctx.records[p].path for p in positions]
    labels = sorted({ctx.records[p].label for p in positions})
    nearest = int(scores["nearest"][i])
    return Finding(
        id=stable_finding_id(CHECK_ID, "isolated", [sha]),
        severity=Severity.WARNING,
        message=(f"far from every other image (mean cosine distance to its {k} nearest {scores['distance'][i]:.2f}, "
                 f"dataset median {scores['median_distance']:.2f}, robust z {scores['z'][i]:.1f}): "
                 + ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")),
        paths=paths,
        evidence={
            "score": round(float(scores["z"][i]), 3),
            "score_name": f"robust z-score of the log mean cosine distance to the {k} nearest images",
            "max_z": max_z,
            "max_z_source": cutoff_source,
            "knn_distance": round(float(scores["distance"][i]), 4),
            "median_knn_distance": round(float(scores["median_distance"]), 4),
            "nearest": {"path": _first_path(ctx, isolation.shas[nearest]),
                        "cosine": round(float(scores["nearest_similarity"][i]), 4)},
            "class_relative": {label: {"knn_distance": round(scored[0], 4), "robust_z": round(scored[1], 3)}
                               for label in labels if (scored := isolation.in_class(i, label)) is not None},
            "labels": labels,
            "splits": sorted({ctx.records[p].split for p in positions}),
        },
    )


def _per_split(ctx: AuditContext, isolation: Isolation, flagged: np.ndarray,
               only: np.ndarray | None = None) -> dict[str, dict]:
    """Per split: counts, and the most isolated images of every class (flagged or not) for a person to look at;
    `only`: of these rows (a merge audit's incoming images)."""
    scores = isolation.scores
    z = np.asarray(scores["z"], dtype=float)
    columns = ctx.columns
    _positions, rows, split_of, labels = _record_rows(ctx)
    if only is not None:
        keep = np.isin(rows, only)
        rows, split_of, labels = rows[keep], split_of[keep], labels[keep]
    is_flagged = np.zeros(len(isolation.shas), dtype=bool)
    is_flagged[flagged] = True
    # One entry per (split, label, content), ranked by z within each (split, label).
    triples = unique_rows(np.stack([split_of, labels, rows], axis=1))
    order = np.lexsort((triples[:, 2], -z[triples[:, 2]], triples[:, 1], triples[:, 0]))
    triples = triples[order]
    group_start = np.r_[True, np.any(np.diff(triples[:, :2], axis=0) != 0, axis=1)]
    rank = np.arange(len(triples)) - np.maximum.accumulate(np.where(group_start, np.arange(len(triples)), 0))
    shown = triples[rank < MOST_ISOLATED_PER_GROUP]
    per_split: dict[str, dict] = {}
    for code, split in enumerate(columns.splits):
        in_split = split_of == code
        images = int(in_split.sum())
        outliers = int(is_flagged[rows[in_split]].sum())
        most_isolated: dict[str, list] = {}
        for _s, label_code, r in shown[shown[:, 0] == code].tolist():
            label = columns.classes[label_code]
            in_class = isolation.in_class(r, label)
            most_isolated.setdefault(label, []).append(
                {"path": _first_path(ctx, isolation.shas[r], split), "robust_z": round(float(z[r]), 2),
                 "knn_distance": round(float(scores["distance"][r]), 4),
                 "class_robust_z": round(in_class[1], 2) if in_class is not None else None})
        if images or split in ctx.index.splits:
            per_split[split] = {"images": images, "outliers": outliers, "percent": percent(outliers, images),
                                "most_isolated": dict(sorted(most_isolated.items()))}
    return per_split


def judge(evidence: Evidence, policy: Policy) -> Verdict:
    """Warn on any outlier; fail only above the policy's share of a split (100 % by default: never)."""
    status = share_status(evidence, policy.outliers_max_percent, "percent", warned=bool(evidence.findings))
    return Verdict(status, policy=f"warn on any, {share_policy_text(policy.outliers_max_percent)}")


CHECK = Check(CHECK_ID, compute, judge)
