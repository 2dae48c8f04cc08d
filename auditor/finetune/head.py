"""The reference fine-tune: the head people put on a frozen ImageNet base, trained on cached feature maps.

The reference run (the one whose training accuracy reached 99 % while validation stalled at 81 %):
frozen base (224×224, no top) → Flatten → 2 × [Dense(1024, no bias, L2 0.003) → BatchNorm → ReLU →
Dropout(0.5)] → Dense(C, no bias) → BatchNorm → softmax; Adam (lr 5e-6), categorical cross-entropy,
class weights. Every hyper-parameter is in `FinetuneOptions`; the defaults are the reference's.

The base is frozen, so its output maps are computed once, in the encode pass, and read from the
`FeatureMapStore`; training never runs the base (unless augmentation is asked for, which needs it in
the loop). Training is seeded; early stopping watches val_loss and restores the best epoch's weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from auditor.config import REFERENCE_SPLIT, FinetuneOptions

# ---------------------------------------------------------------------------------------------
# The head and its training on arrays of maps (no audit context needed: unit-testable)
# ---------------------------------------------------------------------------------------------


def build_reference_head(input_shape: tuple[int, ...], num_classes: int, options: FinetuneOptions):
    """Flatten → 2 × [Dense(units, no bias, L2) → BN → ReLU → Dropout] → Dense(C, no bias) → BN → softmax."""
    from auditor.backbones.keras_import import import_keras

    keras = import_keras()
    from keras import layers, regularizers

    inputs = keras.Input(tuple(input_shape), dtype="float32", name="feature_maps")
    x = layers.Flatten(name="flatten")(inputs)
    for i in (1, 2):
        x = layers.Dense(options.dense_units, use_bias=False, kernel_regularizer=regularizers.L2(options.l2),
                         name=f"dense_{i}")(x)
        x = layers.BatchNormalization(name=f"bn_{i}")(x)
        x = layers.ReLU(name=f"relu_{i}")(x)
        x = layers.Dropout(options.dropout, name=f"dropout_{i}")(x)
    x = layers.Dense(num_classes, use_bias=False, name="logits")(x)
    x = layers.BatchNormalization(name="bn_logits")(x)
    outputs = layers.Softmax(name="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="reference_head")


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """n / (C · n_c), as sklearn's "balanced" and the usual Keras recipes compute them (0 for absent classes)."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    weights = np.zeros(num_classes)
    present = counts > 0
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights


def stratified_holdout(labels: list[str], fraction: float, seed: int) -> np.ndarray:
    """A seeded, stratified held-out mask: round(fraction · n_c) of each class (at least one of any
    class with two or more images, never all of a class)."""
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    held = np.zeros(len(labels), dtype=bool)
    for label in sorted(set(labels)):
        members = np.flatnonzero(labels_arr == label)
        if len(members) < 2:
            continue
        count = min(len(members) - 1, max(1, int(round(fraction * len(members)))))
        held[rng.permutation(members)[:count]] = True
    return held


@dataclass
class HeadRun:
    """One training run of the head: per-epoch curves, the restored model's accuracies and predictions."""

    history: dict[str, list[float]]  # loss, acc, val_loss, val_acc (one value per epoch run)
    epochs_run: int
    best_epoch: int  # 1-based epoch whose weights were restored (lowest val_loss)
    stopped_early: bool
    train_accuracy: float  # the restored model, inference mode, on the training images
    val_accuracy: float
    train_loss: float
    val_loss: float
    train_probs: np.ndarray
    val_probs: np.ndarray
    parameters: int
    train_seconds: float
    seconds_per_epoch: float
    train_images: int
    val_images: int

    @property
    def seconds_per_epoch_per_1000(self) -> float:
        return self.seconds_per_epoch * 1000.0 / max(self.train_images, 1)

    def summary(self) -> dict[str, Any]:
        return {
            "train_accuracy": round(self.train_accuracy, 4),
            "val_accuracy": round(self.val_accuracy, 4),
            "gap_points": round(100 * (self.train_accuracy - self.val_accuracy), 2),
            "train_loss": round(self.train_loss, 4),
            "val_loss": round(self.val_loss, 4),
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "train_images": self.train_images,
            "val_images": self.val_images,
            "head_parameters": self.parameters,
            "train_seconds": round(self.train_seconds, 2),
            "seconds_per_epoch": round(self.seconds_per_epoch, 3),
            "seconds_per_epoch_per_1000_images": round(self.seconds_per_epoch_per_1000, 3),
        }


def _batches_class():
    """A keras.utils.PyDataset over (maps, one-hot labels[, sample weights]) read batch by batch."""
    from auditor.backbones.keras_import import import_keras

    keras = import_keras()

    class MapBatches(keras.utils.PyDataset):
        def __init__(self, source: Callable[[np.ndarray], np.ndarray], count: int, labels: np.ndarray | None,
                     num_classes: int, batch_size: int, sample_weights: np.ndarray | None = None,
                     shuffle_seed: int | None = None):
            super().__init__(workers=1, use_multiprocessing=False, max_queue_size=4)
            self.source, self.count, self.labels = source, count, labels
            self.num_classes, self.batch_size, self.sample_weights = num_classes, batch_size, sample_weights
            self.rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
            self.order = self.rng.permutation(count) if self.rng is not None else np.arange(count)

        def __len__(self) -> int:
            return math.ceil(self.count / self.batch_size)

        def __getitem__(self, index: int):
            rows = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])
            x = self.source(rows)
            if self.labels is None:
                return (x,)
            y = np.eye(self.num_classes, dtype="float32")[self.labels[rows]]
            if self.sample_weights is None:
                return x, y
            return x, y, self.sample_weights[rows].astype("float32")

        def on_epoch_end(self) -> None:
            if self.rng is not None:
                self.order = self.rng.permutation(self.count)

    return MapBatches


def array_source(maps: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Rows of a (possibly memory-mapped, float16) array, as float32."""
    return lambda rows: np.asarray(maps[rows], dtype=np.float32)


def store_source(store, shas: list[str]) -> Callable[[np.ndarray], np.ndarray]:
    """Rows of the feature-map store's memory maps, read batch by batch: memory holds one batch of maps,
    never the whole training set (200 KB per image with ResNet50: 20 GB at 100 000 images)."""
    return lambda rows: store.gather([shas[r] for r in rows]).astype(np.float32)


def train_head(
    train_source: Callable[[np.ndarray], np.ndarray],
    train_labels: np.ndarray,
    val_source: Callable[[np.ndarray], np.ndarray],
    val_labels: np.ndarray,
    input_shape: tuple[int, ...],
    num_classes: int,
    options: FinetuneOptions,
    seed: int,
    eval_train_source: Callable[[np.ndarray], np.ndarray] | None = None,
) -> HeadRun:
    """Train the reference head; `*_source(rows)` returns float32 maps for those rows.

    `train_source` may augment (it is then called with the base in the loop); `eval_train_source`
    (default: `train_source`) gives the un-augmented maps for the final training accuracy."""
    from auditor.backbones.keras_import import import_keras, quiet_native_stderr

    keras = import_keras()
    keras.utils.set_random_seed(seed)  # weights, dropout masks and shuffling are reproducible
    _quiet_tensorflow_retracing()
    train_labels = np.asarray(train_labels, dtype=int)
    val_labels = np.asarray(val_labels, dtype=int)
    MapBatches = _batches_class()
    weights = balanced_class_weights(train_labels, num_classes)[train_labels] if options.class_weights else None
    train_data = MapBatches(train_source, len(train_labels), train_labels, num_classes, options.batch_size,
                            weights, shuffle_seed=seed)
    val_data = MapBatches(val_source, len(val_labels), val_labels, num_classes, options.batch_size)

    with quiet_native_stderr():
        model = build_reference_head(input_shape, num_classes, options)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=options.learning_rate),
                      loss="categorical_crossentropy",
                      metrics=["accuracy", keras.metrics.CategoricalCrossentropy(name="cross_entropy")])
    stopper = keras.callbacks.EarlyStopping(monitor=options.stop_on, patience=options.patience,
                                            restore_best_weights=True)
    started = time.perf_counter()
    fitted = model.fit(train_data, validation_data=val_data, epochs=options.epochs, callbacks=[stopper],
                       verbose=0, shuffle=False)
    train_seconds = time.perf_counter() - started
    raw = fitted.history
    history = {
        "loss": [float(v) for v in raw.get("loss", [])],
        "acc": [float(v) for v in raw.get("accuracy", raw.get("acc", []))],
        "val_loss": [float(v) for v in raw.get("val_loss", [])],
        "val_acc": [float(v) for v in raw.get("val_accuracy", raw.get("val_acc", []))],
        "val_cross_entropy": [float(v) for v in raw.get("val_cross_entropy", [])],
    }
    epochs_run = len(history["loss"])
    watched = history.get(options.stop_on) or history["val_loss"]
    best_epoch = int(np.argmin(watched)) + 1 if watched else epochs_run

    eval_train = MapBatches(eval_train_source or train_source, len(train_labels), None, num_classes,
                            options.batch_size)
    eval_val = MapBatches(val_source, len(val_labels), None, num_classes, options.batch_size)
    train_probs = np.asarray(model.predict(eval_train, verbose=0), dtype=np.float64)
    val_probs = np.asarray(model.predict(eval_val, verbose=0), dtype=np.float64)
    return HeadRun(
        history=history,
        epochs_run=epochs_run,
        best_epoch=best_epoch,
        stopped_early=epochs_run < options.epochs,
        train_accuracy=accuracy(train_probs, train_labels),
        val_accuracy=accuracy(val_probs, val_labels),
        train_loss=cross_entropy(train_probs, train_labels),
        val_loss=cross_entropy(val_probs, val_labels),
        train_probs=train_probs,
        val_probs=val_probs,
        parameters=int(model.count_params()),
        train_seconds=train_seconds,
        seconds_per_epoch=train_seconds / max(epochs_run, 1),
        train_images=len(train_labels),
        val_images=len(val_labels),
    )


def _quiet_tensorflow_retracing() -> None:
    """A short last batch retraces the step function once; TensorFlow warns about it on stderr, which is ours."""
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == labels).mean()) if len(labels) else float("nan")


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> float:
    if not len(labels):
        return float("nan")
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)).mean())


# ---------------------------------------------------------------------------------------------
# The reference run over an audit context
# ---------------------------------------------------------------------------------------------


@dataclass
class SplitPlan:
    """Which records the head trains and is validated on."""

    train: list[int]  # record positions
    val: list[int]
    classes: list[str]
    val_split: str  # the held-out split's name, or "made" when auditor made one
    made: bool
    excluded: dict[str, int] = field(default_factory=dict)  # why records were left out → how many
    note: str = ""


def plan_split(ctx, options: FinetuneOptions, seed: int) -> SplitPlan:
    """The dataset's own train / held-out split (val before test), or a stratified seeded one made here."""
    store = ctx.encoded.feature_maps
    excluded: dict[str, int] = {}
    usable = []
    for p in ctx.usable_positions:
        if store is not None and ctx.encoded.record_sha[p] in store:
            usable.append(p)
        else:
            excluded["no feature map"] = excluded.get("no feature map", 0) + 1
    index = ctx.index
    held_out = [s for s in index.held_out_splits if any(ctx.records[p].split == s for p in usable)]
    if index.reference_split and held_out:
        val_split = held_out[0]
        train = [p for p in usable if ctx.records[p].split == REFERENCE_SPLIT]
        val = [p for p in usable if ctx.records[p].split == val_split]
        other = [s for s in held_out[1:]]
        note = f"trained on {REFERENCE_SPLIT}, validated on {val_split}"
        if other:
            note += f" ({', '.join(other)} not used)"
        made = False
    else:
        labels = [ctx.records[p].label for p in usable]
        held = stratified_holdout(labels, options.holdout_fraction, seed)
        train = [p for p, h in zip(usable, held) if not h]
        val = [p for p, h in zip(usable, held) if h]
        val_split, made = "made", True
        note = (f"the dataset has no held-out split, so auditor made one: {round(100 * options.holdout_fraction)} % of "
                f"each class, stratified, seed {seed}, like a random validation split would")
    classes = sorted({ctx.records[p].label for p in train})
    unseen = [p for p in val if ctx.records[p].label not in classes]
    if unseen:
        excluded["held-out label absent from train"] = len(unseen)
        val = [p for p in val if ctx.records[p].label in classes]
    return SplitPlan(train=train, val=val, classes=classes, val_split=val_split, made=made, excluded=excluded,
                     note=note)


@dataclass
class ReferenceRun:
    plan: SplitPlan
    run: HeadRun
    options: FinetuneOptions
    seed: int
    train_labels: np.ndarray
    val_labels: np.ndarray
    feature_map_shape: tuple[int, ...]


def options_of(ctx) -> FinetuneOptions:
    return ctx.config.finetune or FinetuneOptions()


def seed_of(ctx) -> int:
    options = options_of(ctx)
    if options.seed is not None:
        return options.seed
    return ctx.config.seed if ctx.config.seed is not None else 0


def train_on_positions(ctx, train: list[int], val: list[int], classes: list[str],
                       options: FinetuneOptions, seed: int) -> tuple[HeadRun, np.ndarray, np.ndarray]:
    """Train the head on these records' cached maps (or, with augmentation, on the base in the loop)."""
    store = ctx.encoded.feature_maps
    class_index = {c: i for i, c in enumerate(classes)}
    train_labels = np.array([class_index[ctx.records[p].label] for p in train], dtype=int)
    val_labels = np.array([class_index[ctx.records[p].label] for p in val], dtype=int)
    train_maps = store_source(store, [ctx.encoded.record_sha[p] for p in train])
    val_maps = store_source(store, [ctx.encoded.record_sha[p] for p in val])
    train_source = augmented_source(ctx, train, seed) if options.augment else train_maps
    run = train_head(train_source, train_labels, val_maps, val_labels, store.shape, len(classes),
                     options, seed, eval_train_source=train_maps)
    return run, train_labels, val_labels


def reference_run(ctx) -> ReferenceRun:
    """The reference fine-tune of this context (trained once, on the context: `ctx.reference_run`)."""
    return ctx.reference_run


def train_reference(ctx) -> ReferenceRun:
    """Train the reference head on the context's cached feature maps."""
    options, seed = options_of(ctx), seed_of(ctx)
    if ctx.encoded.feature_maps is None or ctx.backbone is None:
        raise RuntimeError("no feature maps were computed (the audit ran without --finetune)")
    plan = plan_split(ctx, options, seed)
    if len(plan.classes) < 2 or not plan.val or len(plan.train) < 2:
        raise ValueError(f"cannot fine-tune: {len(plan.train)} training images, {len(plan.val)} held-out images, "
                         f"{len(plan.classes)} classes (need 2 or more of each)")
    run, train_labels, val_labels = train_on_positions(ctx, plan.train, plan.val, plan.classes, options, seed)
    return ReferenceRun(plan=plan, run=run, options=options, seed=seed, train_labels=train_labels,
                        val_labels=val_labels, feature_map_shape=tuple(ctx.encoded.feature_maps.shape))


# ---------------------------------------------------------------------------------------------
# Augmentation (off by default): the base must run in the loop
# ---------------------------------------------------------------------------------------------


def augment_array(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flip and a random crop of 80–100 % of each side, resized back (uint8 HWC)."""
    from PIL import Image

    size = image.shape[0]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    scale = rng.uniform(0.8, 1.0)
    side = max(8, int(round(size * scale)))
    top = int(rng.integers(0, size - side + 1))
    left = int(rng.integers(0, size - side + 1))
    crop = Image.fromarray(np.ascontiguousarray(image[top:top + side, left:left + side]))
    return np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def augmented_source(ctx, positions: list[int], seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """Decode, augment and run the frozen base on each batch (slow: the base is in the loop)."""
    from PIL import Image

    from auditor.encoding.imaging import decode_for_embedding

    backbone = ctx.backbone
    size = backbone.input_size
    rng = np.random.default_rng(seed + 1)

    def source(rows: np.ndarray) -> np.ndarray:
        images = []
        for row in rows:
            data = ctx.records[positions[int(row)]].abspath.read_bytes()
            image = decode_for_embedding(data, size)
            if image is None:
                array = np.zeros((size, size, 3), np.uint8)
            else:  # exactly as the encode pass resizes (imaging.scan_bytes)
                array = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0), np.uint8)
            images.append(augment_array(array, rng))
        _pooled, maps = backbone.embed_with_maps(np.stack(images))
        return maps.astype(np.float32)

    return source
