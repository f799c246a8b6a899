"""Which rows train and which validate: split selection, the grouped validation carve, and the
warnings for a validation set too small to choose a checkpoint or a threshold."""

from __future__ import annotations


import numpy as np

from ceod.data.manifest import Manifest, Sample, DatasetError


def select(manifest: Manifest, split: str, filters: dict[str, str] | None = None) -> list[Sample]:
    """Rows of one split that match every `column=value` filter (e.g. aoi_status=ok)."""
    rows = manifest.split(split)
    for column, value in (filters or {}).items():
        if column not in manifest.columns:
            raise DatasetError(f"filter column '{column}' is not in the manifest ({', '.join(manifest.columns)})")
        rows = [s for s in rows if s.extra.get(column) == value]
    return rows


def train_val(manifest: Manifest, train_split: str, val_split: str, val_fraction: float,
              filters: dict[str, str] | None = None, seed: int = 0, max_val: int = 0
              ) -> tuple[list[Sample], list[Sample]]:
    train, val = _train_val(manifest, train_split, val_split, val_fraction, filters, seed)
    if max_val and len(val) > max_val:
        keep = sorted(np.random.default_rng(seed + 1).permutation(len(val))[:max_val])
        val = [val[i] for i in keep]
    return train, val


def _train_val(manifest: Manifest, train_split: str, val_split: str, val_fraction: float,
               filters: dict[str, str] | None = None, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """The training and validation rows. Without a val split, hold out val_fraction of train,
    whole `group`s at a time where the manifest has that column (copies never straddle)."""
    train = select(manifest, train_split, filters)
    if not train:
        raise DatasetError(f"no rows in split '{train_split}' (column '{manifest.split_column}'; "
                           f"splits present: {manifest.splits})")
    val = select(manifest, val_split, filters)
    if val:
        return train, val
    key = lambda s: s.extra.get("group") or str(s.image)  # noqa: E731
    sizes: dict[str, int] = {}
    family_label: dict[str, list[int]] = {}
    for s in train:
        sizes[key(s)] = sizes.get(key(s), 0) + 1
        family_label.setdefault(key(s), []).append(s.label)
    keys = sorted(sizes)
    np.random.default_rng(seed).shuffle(keys)
    # Per label, hold out val_fraction of its rows, built from many families none over a fifth of
    # that target: one big family of near-copies would make validation measure a single photo
    # (perfect AUROC, useless threshold), and big ok-families would crowd out one class.
    held: set[str] = set()
    for label in sorted({s.label for s in train}):
        target = val_fraction * sum(s.label == label for s in train)
        cap = max(1.0, target / 5)
        count = 0
        for k in keys:
            if count >= target:
                break
            majority = max(set(family_label[k]), key=family_label[k].count)
            if majority != label or sizes[k] > cap or k in held:
                continue
            held.add(k)
            count += sizes[k]
    in_val = [(s.extra.get("group") or str(s.image)) in held for s in train]
    return ([s for s, v in zip(train, in_val) if not v], [s for s, v in zip(train, in_val) if v])


MIN_VAL_GROUPS = 5    # families of one class below which validation speaks for a few parts only
MIN_VAL_IMAGES = 20


def validation_warnings(val: list[Sample], classes: tuple[str, ...] | list[str]) -> list[str]:
    """What makes a validation set unfit to pick a checkpoint or calibrate a threshold: a class
    with too few images or too few families (`group`; an image without one is its own)."""
    warnings_ = []
    for index, name in enumerate(classes):
        rows = [s for s in val if s.label == index]
        groups = {s.extra.get("group") or str(s.image) for s in rows}
        if len(rows) < MIN_VAL_IMAGES or len(groups) < MIN_VAL_GROUPS:
            warnings_.append(f"validation holds {len(rows)} '{name}' image(s) from {len(groups)} famil"
                             f"{'y' if len(groups) == 1 else 'ies'} (fewer than {MIN_VAL_IMAGES} images or "
                             f"{MIN_VAL_GROUPS} families): its scores speak for those parts only")
    return warnings_
