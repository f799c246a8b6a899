"""A synthetic inspection line: parts on a roller conveyor, defects inside the AOI, and
look-alike distractors outside it whose presence is correlated with the label.

The correlation is the trap: a classifier that learns "a mark anywhere means def" scores well
on `test` (same correlation), drops on `test_shift` (independent) and fails on `test_anti`
(reversed). CEOD exists to defeat it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ceod.contracts.config import ConfigError
from ceod.data.manifest import write_manifest

SHAPES = ("plate", "disc", "ring", "bracket")
MARKS = ("scratch", "pit", "crack", "stain")
SPLITS = ("train", "val", "test", "test_shift", "test_anti")


@dataclass
class SynthConfig:
    """Everything that shapes the synthetic line (see configs/synth.yaml)."""

    size: int = 128
    counts: dict = field(default_factory=lambda: {"train": 1200, "val": 200, "test": 200,
                                                  "test_shift": 200, "test_anti": 200})
    p_def: float = 0.5
    p_distractor_def: float = 0.9
    p_distractor_ok: float = 0.1
    defect_contrast: list[float] = field(default_factory=lambda: [0.22, 0.45])
    defect_size: list[float] = field(default_factory=lambda: [0.06, 0.16])
    distractor_contrast: list[float] = field(default_factory=lambda: [0.25, 0.5])
    shapes: list[str] = field(default_factory=lambda: list(SHAPES))
    marks: list[str] = field(default_factory=lambda: list(MARKS))

    def validate(self) -> None:
        for key in ("p_def", "p_distractor_def", "p_distractor_ok"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"config key '{key}': must lie in [0, 1]")
        if self.size < 32:
            raise ConfigError("config key 'size': must be at least 32 pixels")
        for key in ("defect_contrast", "defect_size", "distractor_contrast"):
            lo_hi = getattr(self, key)
            if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
                raise ConfigError(f"config key '{key}': give [low, high] with 0 < low <= high")
        bad = [s for s in self.shapes if s not in SHAPES] + [m for m in self.marks if m not in MARKS]
        if bad or not self.shapes or not self.marks:
            raise ConfigError(f"config keys 'shapes'/'marks': unknown or empty ({bad}); "
                              f"choose from {SHAPES} and {MARKS}")
        for split, n in self.counts.items():
            if split not in SPLITS or not isinstance(n, int) or n < 0:
                raise ConfigError(f"config key 'counts.{split}': splits are {SPLITS}, counts >= 0")

    def p_distractor(self, split: str, is_def: bool) -> float:
        """P(distractor | label) for a split: correlated, independent or reversed."""
        if split == "test_shift":
            return 0.5
        if split == "test_anti":
            return self.p_distractor_ok if is_def else self.p_distractor_def
        return self.p_distractor_def if is_def else self.p_distractor_ok


PRESETS: dict[str, dict] = {
    "tiny": {"size": 64, "counts": {"train": 64, "val": 16, "test": 16, "test_shift": 16, "test_anti": 16}},
    "small": {"size": 128, "counts": {"train": 1200, "val": 200, "test": 200, "test_shift": 200, "test_anti": 200}},
    "full": {"size": 192, "counts": {"train": 6000, "val": 1000, "test": 1000, "test_shift": 1000, "test_anti": 1000}},
}


# ---------------------------------------------------------------- rendering

def _conveyor(rng: np.random.Generator, s: int, new_belt: bool = False) -> np.ndarray:
    """Belt texture, rollers with cylindrical shading, and a lighting gradient. `new_belt` lays a
    replacement belt: a coarse woven texture in place of the fine stripes."""
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    base = rng.uniform(0.22, 0.38)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (s, s)).astype(np.float32), (0, 0), 1.0) * 0.03
    stripes = 0.02 * np.sin(2 * np.pi * (yy * rng.uniform(18, 30) + rng.uniform(0, 1)))
    if new_belt:
        weave = np.sign(np.sin(2 * np.pi * xx * 10)) * np.sign(np.sin(2 * np.pi * yy * 10))
        stripes = 0.07 * weave + 2.0 * noise
    belt = base + noise + stripes
    period = rng.uniform(0.22, 0.32)
    phase = rng.uniform(0, period)
    u = ((xx + phase) % period) / period  # position across one roller, 0..1
    roller_w = 0.7
    inside = u < roller_w
    shade = np.cos((u / roller_w - 0.5) * np.pi)  # bright in the roller's middle
    roller = rng.uniform(0.45, 0.6) * (0.55 + 0.45 * shade)
    img = np.where(inside, roller + noise * 0.5, belt)
    angle = rng.uniform(0, 2 * np.pi)
    grad = 1.0 + rng.uniform(0.1, 0.25) * ((xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle)) * 2
    return (img * grad).astype(np.float32)


def _part_mask(rng: np.random.Generator, s: int, shape: str) -> np.ndarray:
    """The part's silhouette, which is also its AOI (the inspectable surface)."""
    mask = np.zeros((s, s), np.uint8)
    cx, cy = s / 2 + rng.uniform(-0.08, 0.08) * s, s / 2 + rng.uniform(-0.08, 0.08) * s
    scale = rng.uniform(0.5, 0.68) * s
    angle = rng.uniform(0, 180)
    if shape == "disc":
        r = scale / 2
        cv2.ellipse(mask, (int(cx), int(cy)), (int(r), int(r * rng.uniform(0.85, 1.0))), angle, 0, 360, 1, -1)
    elif shape == "ring":
        r = scale / 2
        cv2.circle(mask, (int(cx), int(cy)), int(r), 1, -1)
        cv2.circle(mask, (int(cx), int(cy)), int(r * rng.uniform(0.3, 0.42)), 0, -1)
    elif shape == "plate":
        w, h = scale, scale * rng.uniform(0.6, 0.85)
        box = cv2.boxPoints(((cx, cy), (w, h), angle)).astype(np.int32)
        cv2.fillPoly(mask, [box], 1)
    else:  # bracket: an L
        a, t = scale, scale * rng.uniform(0.38, 0.48)
        pts = np.array([[0, 0], [a, 0], [a, t], [t, t], [t, a], [0, a]], np.float32) - a / 2
        rot = cv2.getRotationMatrix2D((0, 0), angle, 1.0)[:, :2]
        pts = pts @ rot.T + [cx, cy]
        cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    return mask


def _draw_mark(rng: np.random.Generator, s: int, kind: str, centre: tuple[float, float],
               extent: float) -> np.ndarray:
    """A float mark profile in [0,1] (1 = full contrast) centred at `centre`."""
    canvas = np.zeros((s, s), np.float32)
    cx, cy = centre
    thick = max(1, int(round(s / 80)))
    if kind == "scratch":
        angle = rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * extent / 2, np.sin(angle) * extent / 2
        cv2.line(canvas, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), 1.0, thick, cv2.LINE_AA)
    elif kind == "pit":
        r = max(1.5, extent / 5)
        cv2.circle(canvas, (int(cx), int(cy)), int(round(r)), 1.0, -1, cv2.LINE_AA)
    elif kind == "crack":
        pts = [(cx, cy)]
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(4):
            angle += rng.uniform(-0.9, 0.9)
            step = extent / 4
            pts.append((pts[-1][0] + np.cos(angle) * step, pts[-1][1] + np.sin(angle) * step))
        cv2.polylines(canvas, [np.array(pts, np.int32)], False, 1.0, thick, cv2.LINE_AA)
    else:  # stain
        axes = (max(2, int(extent / 2.5)), max(2, int(extent / 4)))
        cv2.ellipse(canvas, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
        canvas = cv2.GaussianBlur(canvas, (0, 0), max(1.0, extent / 10))
        canvas /= max(canvas.max(), 1e-6)
    return canvas


def _place_mark(rng: np.random.Generator, s: int, region: np.ndarray, kind: str, extent: float
                ) -> np.ndarray | None:
    """Draw a mark whose centre lies in `region` and clip it to `region` (None if no room)."""
    ys, xs = np.nonzero(region)
    if len(xs) == 0:
        return None
    i = rng.integers(len(xs))
    profile = _draw_mark(rng, s, kind, (float(xs[i]), float(ys[i])), extent)
    return profile * region


@dataclass
class Rendered:
    image: np.ndarray  # uint8 RGB
    aoi: np.ndarray  # uint8 {0,255}
    defect: np.ndarray | None  # uint8 {0,255}
    distractor: np.ndarray | None  # uint8 {0,255}, kept for previews
    shape: str
    background: np.ndarray | None = None  # uint8 RGB: the same scene without the part (no shadow)


def render(cfg: SynthConfig, rng: np.random.Generator, is_def: bool, with_distractor: bool,
           new_belt: bool = False) -> Rendered:
    """One image of the line."""
    s = cfg.size
    img = _conveyor(rng, s, new_belt)
    background = img.copy()  # the scene as it would be without the part: the audit's clean donor
    shape = cfg.shapes[rng.integers(len(cfg.shapes))]
    part = _part_mask(rng, s, shape)
    # Cast shadow: the silhouette shifted down-right, blurred, darkening the belt.
    shift = np.float32([[1, 0, s * 0.04], [0, 1, s * 0.05]])
    shadow = cv2.GaussianBlur(cv2.warpAffine(part.astype(np.float32), shift, (s, s)), (0, 0), s / 40)
    img *= 1.0 - 0.45 * shadow
    # Metallic surface: base level, a soft gradient, fine machining texture.
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    level = rng.uniform(0.6, 0.75)
    surface = level + 0.06 * (xx - yy) + cv2.GaussianBlur(rng.normal(0, 0.025, (s, s)).astype(np.float32), (0, 0), 0.7)
    img = np.where(part > 0, surface, img)
    edge = cv2.morphologyEx(part, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    img = np.where(edge > 0, img * 0.8, img)
    lo, hi = cfg.defect_size
    defect = None
    if is_def:
        inner = cv2.erode(part, np.ones((3, 3), np.uint8), iterations=max(1, s // 40))
        kind = cfg.marks[rng.integers(len(cfg.marks))]
        profile = _place_mark(rng, s, inner if inner.any() else part, kind, rng.uniform(lo, hi) * s)
        if profile is not None:
            sign = -1.0 if kind in ("pit", "crack") or rng.random() < 0.6 else 1.0
            img += sign * rng.uniform(*cfg.defect_contrast) * profile
            defect = ((profile > 0.25) * 255).astype(np.uint8)
    distractor = None
    if with_distractor:
        outside = 1 - cv2.dilate(part, np.ones((3, 3), np.uint8), iterations=max(2, s // 25))
        total = np.zeros((s, s), np.float32)
        for _ in range(rng.integers(1, 3)):
            kind = cfg.marks[rng.integers(len(cfg.marks))]
            profile = _place_mark(rng, s, outside, kind, rng.uniform(lo, hi) * s)
            if profile is None:
                continue
            sign = -1.0 if kind in ("pit", "crack") or rng.random() < 0.6 else 1.0
            mark = sign * rng.uniform(*cfg.distractor_contrast) * profile
            img += mark
            background += mark
            total = np.maximum(total, profile)
        distractor = ((total > 0.25) * 255).astype(np.uint8)
    noise = rng.normal(0, 0.012, img.shape).astype(np.float32)  # sensor noise
    tint = np.array([1.0, 1.0, rng.uniform(0.92, 1.0)], np.float32)  # a slightly warm light

    def to_rgb(scene: np.ndarray) -> np.ndarray:
        gray = np.clip((scene + noise) * 255, 0, 255).astype(np.uint8)
        return np.clip(gray[..., None] * tint, 0, 255).astype(np.uint8)

    return Rendered(to_rgb(img), part * 255, defect, distractor, shape, to_rgb(background))


# ---------------------------------------------------------------- writing

def synthesize(out: str | Path, cfg: SynthConfig, seed: int, preview: bool = False,
               progress: bool = True) -> dict:
    """Write a dataset (manifest.csv, images/, aoi/, defects/) and return a summary."""
    out = Path(out)
    if (out / "manifest.csv").exists():
        raise FileExistsError(f"{out} already holds a dataset; choose an empty folder")
    start = time.perf_counter()
    rows = []
    previews: list[Rendered] = []
    png = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    jobs = [(split_index, split, i) for split_index, split in enumerate(SPLITS)
            for i in range(cfg.counts.get(split, 0))]
    from ceod.progress import progress_bar
    for split_index, split, i in progress_bar(jobs, total=len(jobs), desc="synth", disable=not progress):
        # One generator per image: the dataset is the same whatever order images are made in.
        rng = np.random.default_rng([seed, split_index, i])
        is_def = bool(rng.random() < cfg.p_def)
        with_distractor = bool(rng.random() < cfg.p_distractor(split, is_def))
        r = render(cfg, rng, is_def, with_distractor)
        label = "def" if is_def else "ok"
        stem = f"{split}/{label}/{split}_{i:05d}"
        for folder in ("images", "aoi", "backgrounds") + (("defects",) if r.defect is not None else ()):
            (out / folder / split / label).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / "images" / f"{stem}.png"), cv2.cvtColor(r.image, cv2.COLOR_RGB2BGR), png)
        cv2.imwrite(str(out / "aoi" / f"{stem}.png"), r.aoi, png)
        cv2.imwrite(str(out / "backgrounds" / f"{stem}.png"), cv2.cvtColor(r.background, cv2.COLOR_RGB2BGR), png)
        defect_rel = ""
        if r.defect is not None:
            defect_rel = f"defects/{stem}.png"
            cv2.imwrite(str(out / defect_rel), r.defect, png)
        rows.append({"image": f"images/{stem}.png", "aoi": f"aoi/{stem}.png", "split": split,
                     "label": label, "defect_mask": defect_rel, "background": f"backgrounds/{stem}.png",
                     "shape": r.shape,
                     "distractor": int(with_distractor)})
        if preview and len(previews) < 48 and i < 48 // len(SPLITS) + 1:
            previews.append(r)
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, rows, ("image", "aoi", "split", "label", "defect_mask", "background"))
    seconds = time.perf_counter() - start
    summary = {"images": len(rows), "seconds": round(seconds, 2), "out": str(out)}
    if preview and previews:
        summary["preview"] = str(write_contact_sheet(previews, out / "preview.png"))
    return summary


def write_contact_sheet(items: list[Rendered], path: Path, columns: int = 8) -> Path:
    """Tiles with the AOI contour (green), defect boxes (red) and distractor boxes (yellow)."""
    tiles = []
    for r in items:
        tile = cv2.resize(r.image, (160, 160), interpolation=cv2.INTER_NEAREST).copy()
        k = 160 / r.image.shape[0]
        aoi = cv2.resize(r.aoi, (160, 160), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(aoi, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(tile, contours, -1, (0, 220, 0), 1)
        for mask, colour in ((r.defect, (255, 40, 40)), (r.distractor, (255, 220, 0))):
            if mask is None:
                continue
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            for x, y, w, h, _ in stats[1:n]:
                cv2.rectangle(tile, (int(x * k) - 2, int(y * k) - 2), (int((x + w) * k) + 2, int((y + h) * k) + 2), colour, 1)
        cv2.putText(tile, "def" if r.defect is not None else "ok", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (255, 80, 80) if r.defect is not None else (80, 255, 80), 1, cv2.LINE_AA)
        tiles.append(tile)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)]
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    return path


def _yaml_keys(path: str) -> dict:
    import yaml
    return yaml.safe_load(Path(path).read_text()) or {}


def config_for(preset: str, path: str | None = None, overrides: dict | None = None) -> SynthConfig:
    """The preset's config, optionally starting from a YAML file, with CLI overrides applied."""
    from ceod.contracts.config import apply_overrides, from_dict, load_config
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: choose one of {list(PRESETS)}")
    data = dict(PRESETS[preset])
    if path:
        base = load_config(SynthConfig, path, "synth.yaml")
        data = {**data, **_yaml_keys(path)}  # keys the user's file sets win over the preset
        data = {**base.__dict__, **data}
    return from_dict(SynthConfig, apply_overrides(data, overrides or {}))


# ---------------------------------------------------------------- streams with a change

CHANGES: dict[str, str] = {
    "none": "no change: in-distribution frames throughout",
    "belt": "a new belt: a coarse woven texture in place of the fine stripes",
    "lamp": "the lamp dims: every grey level x0.75",
    "fixture": "a bright fixture bar across the top of the frame, outside the part",
    "camera": "the camera shifts by 5% of the frame to the right",
    "defect_rate": "the defect rate rises to 0.9",
    "dirt": "marks on the belt (distractors) in every frame, whatever the label",
}
STREAM_STYLES = ("test", "test_shift")


def _changed(cfg: SynthConfig, rng: np.random.Generator, change: str, style: str) -> tuple[Rendered, bool]:
    """One frame of the line after `change` (or before any, with change 'none')."""
    is_def = bool(rng.random() < (0.9 if change == "defect_rate" else cfg.p_def))
    with_distractor = change == "dirt" or bool(rng.random() < cfg.p_distractor(style, is_def))
    r = render(cfg, rng, is_def, with_distractor, new_belt=change == "belt")
    s = cfg.size
    if change == "lamp":
        r.image = (r.image.astype(np.float32) * 0.75).astype(np.uint8)
    elif change == "fixture":
        bar = np.zeros((s, s), bool)
        bar[: max(2, int(0.07 * s))] = True
        bar &= r.aoi == 0
        r.image[bar] = (235, 235, 230)
    elif change == "camera":
        shift = np.float32([[1, 0, 0.05 * s], [0, 1, 0]])
        r.image = cv2.warpAffine(r.image, shift, (s, s), borderMode=cv2.BORDER_REFLECT_101)
        r.aoi = cv2.warpAffine(r.aoi, shift, (s, s), flags=cv2.INTER_NEAREST, borderValue=0)
    return r, is_def


def first_changed_frame(change: str, kinds: dict[str, str], frames: int, at: int | None) -> int:
    """A stream's settings checked: the change one of `kinds`, at least one frame, and the first
    changed frame (half way by default; `frames`, i.e. never, for no change)."""
    if change not in kinds:
        raise ConfigError(f"--change {change}: choose one of {', '.join(kinds)}")
    if frames < 1:
        raise ConfigError(f"--frames {frames}: give at least one frame")
    at = frames if change == "none" else (frames // 2 if at is None else at)
    if not 0 <= at <= frames:
        raise ConfigError(f"--at {at}: the change must start within the stream's {frames} frames")
    return at


def synthesize_stream(out: str | Path, cfg: SynthConfig, seed: int, frames: int, change: str = "none",
                      at: int | None = None, style: str = "test_shift", progress: bool = True) -> dict:
    """A stream of line frames (frames/frame_NNNNN.png, their AOI in aoi/, and stream.csv with
    frame, image, aoi, label, changed), in-distribution up to frame `at` and changed from there:
    the bench for `ceod inspect --watch`. `style` sets the distractor-label relation before the
    change: `test` keeps the training correlation, `test_shift` makes it independent."""
    out = Path(out)
    if style not in STREAM_STYLES:
        raise ConfigError(f"--style {style}: choose one of {', '.join(STREAM_STYLES)}")
    at = first_changed_frame(change, CHANGES, frames, at)
    if (out / "stream.csv").exists() or (out / "manifest.csv").exists():
        raise FileExistsError(f"{out} already holds a dataset or stream; choose an empty folder")
    start = time.perf_counter()
    for folder in ("frames", "aoi"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    png = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    rows = []
    from ceod.progress import progress_bar
    for i in progress_bar(range(frames), total=frames, desc="stream", disable=not progress):
        rng = np.random.default_rng([seed, 99, i])
        changed = i >= at
        r, is_def = _changed(cfg, rng, change if changed else "none", style)
        name = f"frame_{i:05d}.png"
        cv2.imwrite(str(out / "frames" / name), cv2.cvtColor(r.image, cv2.COLOR_RGB2BGR), png)
        cv2.imwrite(str(out / "aoi" / name), r.aoi, png)
        rows.append(f"{i},frames/{name},aoi/{name},{'def' if is_def else 'ok'},{int(changed)}")
    (out / "stream.csv").write_text("frame,image,aoi,label,changed\n" + "\n".join(rows) + "\n")
    return {"frames": frames, "change": change, "at": at if change != "none" else None, "style": style,
            "seconds": round(time.perf_counter() - start, 2), "out": str(out)}
