"""Drift watch, part two: the monitor. Rolling windows of the statistics of `ceod.export.watch`,
tested against the reference profile as frames arrive. Torch-free.

The test (`Monitor`): each statistic keeps a window of its last values; when the window is full,
and at every new value after that, the window is compared with the reference by a z-test on its
mean and a Kolmogorov-Smirnov test on its distribution (two-sided; one-sided upwards for the
evidence shares and the feature distance), p = 2 min(p_z, p_KS). An alarm needs p below
alpha / (statistics x evaluations per 10,000 frames): Bonferroni over every test a 10,000-frame
stretch makes, so in-distribution frames raise a false alarm in at most `alpha` of such
stretches (conservative: overlapping windows are correlated). It also needs the change to
matter: the window mean moved by the statistic's `min_effect` (5 grey levels, 2 % of the frame,
5 % of the heatmap's mass ...) or its distribution by KS D >= 0.25. An alarm clears when p rises
above 0.01; it is reported once per episode, with the frame it most likely started at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ceod.contracts.errors import CeodError
from ceod.export.watch import (BY_NAME, KINDS, MATERIAL_KS_D, QUANTILES, STATISTICS,
                               feature_distance, heat_shares, region_cover, thumbnail, thumbnail_statistics)


def kolmogorov_p(d: float, n: float, one_sided: bool = False) -> float:
    """P(D >= d) for the KS statistic with effective size n (asymptotic, Stephens' correction)."""
    if d <= 0:
        return 1.0
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    if one_sided:
        return min(1.0, math.exp(-2.0 * lam * lam))
    if lam < 0.3:
        return 1.0
    total, k = 0.0, 1
    while True:  # alternating series whose terms fall as exp(-2 k^2 lam^2)
        term = math.exp(-2.0 * k * k * lam * lam)
        total += term if k % 2 else -term
        if term < 1e-12 * max(total, 1e-300):
            break
        k += 1
    return float(min(1.0, max(0.0, 2.0 * total)))


def _reference_cdf(ref: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference CDF from its stored quantiles: its distinct values, the CDF there (right
    limit) and just below (left limit), so quantiles that tie (a statistic often exactly 0) make
    a step; cached in the summary."""
    if "_cdf" not in ref:
        q = np.asarray(ref["quantiles"], np.float64)
        values = np.unique(q)
        levels = np.array([QUANTILES[q <= v].max() for v in values])
        ref["_cdf"] = (values, levels, np.concatenate([[0.0], levels[:-1]]))
    return ref["_cdf"]


def window_test(window: np.ndarray, ref: dict[str, Any], upward: bool) -> dict[str, float]:
    """The z-test on the window's mean and the KS test on its distribution against a reference
    summary; p = 2 min(p_z, p_KS)."""
    w = np.sort(window)
    n_w, n_r = len(w), int(ref["n"])
    z = (float(w.mean()) - ref["mean"]) / (ref["std"] * math.sqrt(1.0 / n_w + 1.0 / n_r))
    p_z = 0.5 * math.erfc(z / math.sqrt(2)) if upward else math.erfc(abs(z) / math.sqrt(2))
    values, levels, levels_left = _reference_cdf(ref)
    # both CDFs compared right limit with right limit and left with left, at the window's values
    # and at the reference's (so tied values, a statistic often exactly 0, compare as steps)
    ref_at_w = np.interp(w, values, levels, left=0.0, right=1.0)
    ref_at_w_left = np.interp(w, values, levels_left, left=0.0, right=1.0)
    exact = np.isin(w, values)
    ref_at_w_left = np.where(exact, ref_at_w_left, ref_at_w)
    win_right = np.searchsorted(w, w, side="right") / n_w
    win_left = np.arange(n_w) / n_w  # w is sorted: the left limit at w_i counts the values before it
    win_at_v = np.searchsorted(w, values, side="right") / n_w
    win_at_v_left = np.searchsorted(w, values, side="left") / n_w
    d_up = float(max(0.0, (ref_at_w - win_right).max(), (ref_at_w_left - win_left).max(),
                     (levels - win_at_v).max(), (levels_left - win_at_v_left).max()))  # window to the right
    d = max(d_up, float((win_right - ref_at_w).max()), float((win_at_v - levels).max()),
            float((win_at_v_left - levels_left).max()))
    n_eff = n_w * n_r / (n_w + n_r)
    p_ks = kolmogorov_p(d_up, n_eff, one_sided=True) if upward else kolmogorov_p(d, n_eff)
    return {"z": z, "ks_d": d_up if upward else d, "p": min(1.0, 2.0 * min(p_z, p_ks))}


def change_start(values: np.ndarray, mean: float, std: float) -> int:
    """The index in a window where the shift most likely began: the split that maximises the
    standardised deviation of everything after it from the reference mean."""
    n = len(values)
    tails = np.cumsum(values[::-1])[::-1]  # sum of values[k:]
    counts = n - np.arange(n)
    score = np.abs(tails / counts - mean) * np.sqrt(counts) / std
    return int(np.argmax(score))


@dataclass
class Alarm:
    statistic: str
    kind: str
    frame: int  # the frame at which the alarm was raised
    since_frame: int  # where the shift most likely began
    source: str
    reference_mean: float
    window_mean: float
    shift_sigma: float
    ks_d: float
    p_value: float
    cleared_frame: int | None = None
    ceiling: float | None = None  # set: a level above the statistic's ceiling, not a change

    def message(self, unit: str) -> str:
        if self.ceiling is not None:
            return (f"{self.kind}: {self.statistic} at {self.window_mean:.3g} {unit}, above its ceiling "
                    f"{self.ceiling:g} (reference {self.reference_mean:.3g}): most of the evidence behind this "
                    f"model's defect verdicts lies outside the AOI; {KINDS[self.kind]} (check with `ceod audit`)")
        return (f"{self.kind}: {self.statistic} moved from {self.reference_mean:.4g} to {self.window_mean:.4g} "
                f"{unit} ({self.shift_sigma:+.1f} sigma, KS D {self.ks_d:.2f}, p {self.p_value:.1e}) since frame "
                f"{self.since_frame}: {KINDS[self.kind]}")


class _Window:
    """The last `size` (frame, value) pairs in a preallocated ring."""

    def __init__(self, size: int) -> None:
        self.frames = np.zeros(size, np.int64)
        self.values = np.zeros(size, np.float64)
        self.size, self.count = size, 0

    def extend(self, frames: np.ndarray, values: np.ndarray) -> None:
        frames, values = frames[-self.size:], values[-self.size:]
        slots = (self.count + np.arange(len(values))) % self.size
        self.frames[slots], self.values[slots] = frames, values
        self.count += len(values)

    @property
    def full(self) -> bool:
        return self.count >= self.size

    def ordered(self) -> tuple[np.ndarray, np.ndarray]:
        """Frames and values, oldest first."""
        if not self.full:
            return self.frames[:self.count], self.values[:self.count]
        start = self.count % self.size
        return np.roll(self.frames, -start), np.roll(self.values, -start)


def check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise CeodError(f"--watch-alpha {alpha}: a probability in (0, 1)")


CHECK_EVERY = 64  # frames between two tests of an every-frame statistic


class Monitor:
    """Rolling windows of every statistic the profile holds, tested against it as values arrive.
    Not thread-safe: the caller serialises `observe`."""

    CLEAR_P = 0.01

    def __init__(self, profile: dict[str, Any], block: dict[str, Any] | None, alpha: float = 0.01,
                 sample_every: int = 10, check_every: int = CHECK_EVERY, history: int = 20_000) -> None:
        check_alpha(alpha)
        self.profile, self.block = profile, block
        self.stats = [s for s in STATISTICS if s.name in profile["statistics"]
                      and (s.name != "feature_distance" or block is not None)]
        self.check_every = check_every
        self.sample_every = sample_every
        # tests a 10,000-frame stretch makes, per statistic: frame statistics every check_every
        # frames, sampled ones at every sample (one per sample_every frames at most)
        evaluations = {s.name: 10_000 / (check_every if s.per_frame else sample_every) for s in self.stats}
        self.alpha = alpha
        self.level = {name: alpha / (len(self.stats) * e) for name, e in evaluations.items()}
        self.windows = {s.name: _Window(s.window) for s in self.stats}
        self.counts = dict.fromkeys(self.windows, 0)
        self.active: dict[str, Alarm] = {}
        self.alarms: list[Alarm] = []
        self.series: dict[str, list[tuple[int, float, float]]] = {n: [] for n in self.windows}  # frame, value, window mean
        self.history = history
        self.frames = 0
        self.samples = 0
        self._cover: np.ndarray | None = None  # the background region's share of each heatmap cell
        self.ceilings_reported: set[str] = set()

    @property
    def watched(self) -> list[str]:
        return [s.name for s in self.stats]

    def features_distance(self, features: np.ndarray) -> np.ndarray:
        return feature_distance(features, self.block["mean"], self.block["whiten"])

    @property
    def background_region(self) -> np.ndarray | None:
        """The background region where the every-frame scene statistics are watched (None where
        the reference parts leave too little of the frame)."""
        return self.profile["background_region"]["mask"] if "background_grey" in self.windows else None

    def observe_frame(self, frame: int, source: str, score: float, features: np.ndarray | None,
                      image: np.ndarray | None = None, evidence: np.ndarray | None = None) -> list[Alarm]:
        """One judged frame (`observe_frames` with a batch of one; `image` at the model's input size)."""
        return self.observe_frames(np.array([frame]), [source], np.array([score]),
                                   None if features is None else features[None],
                                   None if image is None else thumbnail(image)[None], [evidence])

    def observe_frames(self, frames: np.ndarray, sources: list[str], scores: np.ndarray,
                       features: np.ndarray | None, thumbs: np.ndarray | None = None,
                       evidence: list[np.ndarray | None] | None = None) -> list[Alarm]:
        """A batch of judged frames: the every-frame statistics, vectorised. `thumbs`, the
        frames' `thumbnail`s, give the background and part-position ones; `evidence` (each
        frame's heatmap where it backs a defect verdict, else None) the evidence one."""
        frames = np.asarray(frames)
        self.frames += len(frames)
        new = self._add_many("score", frames, np.asarray(scores, np.float64), sources)
        if features is not None and "feature_distance" in self.windows:
            new += self._add_many("feature_distance", frames, self.features_distance(features), sources)
        region = self.background_region
        if thumbs is not None and region is not None:
            for name, values in thumbnail_statistics(thumbs, region).items():
                new += self._add_many(name, frames, values, sources)
        if evidence is not None and region is not None:
            backed = [k for k, e in enumerate(evidence) if e is not None]
            if backed:
                heats = np.stack([evidence[k] for k in backed])
                if self._cover is None or self._cover.shape != heats.shape[1:]:
                    self._cover = region_cover(region, heats.shape[1:])
                new += self._add_many("evidence_background", frames[backed], heat_shares(heats, self._cover),
                                      [sources[k] for k in backed])
        return new

    def observe_sample(self, frame: int, source: str, values: dict[str, float]) -> list[Alarm]:
        self.samples += 1
        new: list[Alarm] = []
        for st in self.stats:
            if not st.per_frame and st.name in values:
                new += self._add_many(st.name, np.array([frame]), np.array([values[st.name]], np.float64), [source])
        return new

    def _add_many(self, name: str, frames: np.ndarray, values: np.ndarray, sources: list[str]) -> list[Alarm]:
        """Append values to a statistic's window and test it: sampled statistics at every value,
        every-frame ones each time check_every more values have arrived (once per batch)."""
        if name not in self.windows:
            return []
        keep = np.isfinite(values)
        if not keep.all():
            frames, values = frames[keep], values[keep]
            sources = [s for s, k in zip(sources, keep) if k]
        if not len(values):
            return []
        st, window = BY_NAME[name], self.windows[name]
        before = self.counts[name]
        window.extend(frames, values)
        self.counts[name] += len(values)
        if st.per_frame and before // self.check_every == self.counts[name] // self.check_every:
            return []
        frame, source = int(frames[-1]), sources[-1]
        window_frames, window_values = window.ordered()
        full = window.full
        self._keep(name, frame, float(values[-1]), float(window_values.mean()) if full else float("nan"))
        if not full:
            return []
        ref = self.profile["statistics"][name]
        mean = float(window_values.mean())
        raised = self._above_ceiling(st, frame, source, ref, mean)
        result = window_test(window_values, ref, st.upward)
        if name in self.active:
            if result["p"] > self.CLEAR_P:
                self.active.pop(name).cleared_frame = frame
            return []
        if result["p"] >= self.level[name] or not st.material(ref, window_values, result["ks_d"]):
            return raised
        start = change_start(window_values, ref["mean"], ref["std"])
        alarm = Alarm(name, st.kind, frame, int(window_frames[start]), source, ref["mean"], mean,
                      (mean - ref["mean"]) / ref["std"], result["ks_d"], result["p"])
        self.active[name] = alarm
        self.alarms.append(alarm)
        return raised + [alarm]

    def _above_ceiling(self, st, frame: int, source: str, ref: dict[str, Any], mean: float) -> list[Alarm]:
        """A statistic with a ceiling whose full window sits above it: reported once a run."""
        if st.ceiling is None or mean <= st.ceiling or st.name in self.ceilings_reported:
            return []
        self.ceilings_reported.add(st.name)
        alarm = Alarm(st.name, st.kind, frame, frame, source, ref["mean"], mean, (mean - ref["mean"]) / ref["std"],
                      float("nan"), float("nan"), ceiling=st.ceiling)
        self.alarms.append(alarm)
        return [alarm]

    def _keep(self, name: str, frame: int, value: float, mean: float) -> None:
        series = self.series[name]
        series.append((frame, value, mean))
        if len(series) > self.history:  # a long shift keeps every other point
            self.series[name] = series[::2]

    def report(self) -> dict[str, Any]:
        stats = {}
        for st in self.stats:
            ref = self.profile["statistics"][st.name]
            values = self.windows[st.name].ordered()[1]
            stats[st.name] = {"kind": st.kind, "unit": st.unit, "per": "frame" if st.per_frame else "sample",
                              "min_effect": f"{st.min_effect:g}" + (" x reference mean" if st.relative else ""),
                              "window": st.window, "alarm_level_p": self.level[st.name],
                              "reference_mean": ref["mean"], "reference_std": ref["std"],
                              "values": self.counts[st.name],
                              "last_window_mean": float(np.mean(values)) if len(values) else None}
        return {"test": "window z-test on the mean and Kolmogorov-Smirnov on the distribution, p = 2 min; "
                        "alarm when p < alpha / (statistics x evaluations per 10,000 frames) and the mean moved by "
                        f"min_effect, or KS D >= {MATERIAL_KS_D} with a decile moved by min_effect; clears at p > 0.01",
                "alpha_per_10000_frames": self.alpha, "frames": self.frames, "samples": self.samples,
                "kinds": KINDS, "statistics": stats,
                "alarms": [{**a.__dict__, "meaning": KINDS[a.kind]} for a in self.alarms],
                "profile": {k: self.profile[k] for k in ("images", "aoi_source", "analysis_size", "baseline")
                            if k in self.profile}}
