"""`ceod bench`: latency of the CEOD classifier vs a plain CNN and vs segmenter + classifier,
measured interleaved in one run (shared machines are noisy; ratios side by side are what count)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ceod.contracts.errors import CeodError
from ceod.contracts.metrics import percentiles_ms
from ceod.export.runtime import OnnxModel


def _interleaved(fns: dict[str, Callable[[], Any]], iters: int, warmup: int) -> dict[str, list[float]]:
    """Run each function `warmup` times, then `iters` rounds, rotating the order every round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(iters):
        for n in names[i % len(names):] + names[:i % len(names)]:
            t = time.perf_counter()
            fns[n]()
            times[n].append(time.perf_counter() - t)
    return times


def latency(classifier: str, plain: str, segmenter: str | None, batches: list[int], provider: str,
            iters: int, warmup: int, torch_run: str | None = None) -> dict[str, Any]:
    # Each callable gets its own sessions, so no session is called more often (and kept warmer)
    # than another; `ceod_copy` is the same model again: its ratio to `ceod` is the noise floor.
    open_model = lambda path: OnnxModel(path, provider, spin=False)  # noqa: E731
    models = {"ceod": open_model(classifier), "plain": open_model(plain), "ceod_copy": open_model(classifier)}
    seg = open_model(segmenter) if segmenter else None
    seg_classifier = open_model(classifier) if segmenter else None
    size = models["ceod"].info.input_size
    if models["plain"].info.input_size != size:
        raise CeodError("--classifier and --plain must take the same input size (export both from runs of one input_size)")
    torch_model = None
    if torch_run:
        import torch
        from ceod.classifier.inference import load_classifier
        torch.set_num_threads(torch.get_num_threads())
        torch_model = load_classifier(torch_run)[0]
    rows = []
    rng = np.random.default_rng(0)
    for b in batches:
        x = rng.normal(0, 1, (b, 3, size, size)).astype(np.float32)
        fns: dict[str, Callable[[], Any]] = {name: (lambda m=m: m.run_tensor(x)) for name, m in models.items()}
        if seg is not None:
            xs = rng.normal(0, 1, (b, 3, seg.info.input_size, seg.info.input_size)).astype(np.float32)

            def two_stage(xs=xs, x=x):
                aoi = seg.run_tensor(xs)["aoi_logits"] > 0
                if aoi.shape[-1] != size:
                    import cv2
                    aoi = np.stack([cv2.resize(a[0].astype(np.uint8), (size, size),
                                               interpolation=cv2.INTER_NEAREST) for a in aoi])[:, None] > 0
                return seg_classifier.run_tensor(x * aoi)
            fns["two_stage"] = two_stage
        if torch_model is not None:
            import torch
            xt = torch.from_numpy(x)

            def eager(xt=xt):
                with torch.inference_mode():
                    return torch_model(xt)
            fns["ceod_torch_eager"] = eager
        times = _interleaved(fns, iters, warmup)
        for name, t in times.items():
            p = percentiles_ms(t)
            rows.append({"model": name, "batch": b, **p, "throughput_per_s": b / float(np.median(t)),
                         "iters": iters})
    providers = {n: m.providers for n, m in models.items()}
    if seg is not None:
        providers["segmenter"] = seg.providers
    ratios = []
    for b in batches:
        get = {r["model"]: r for r in rows if r["batch"] == b}
        entry = {"batch": b, "ceod_over_plain_p50": get["ceod"]["p50_ms"] / get["plain"]["p50_ms"],
                 "same_model_noise_p50": get["ceod"]["p50_ms"] / get["ceod_copy"]["p50_ms"]}
        if "two_stage" in get:
            entry["two_stage_over_ceod_p50"] = get["two_stage"]["p50_ms"] / get["ceod"]["p50_ms"]
        if "ceod_torch_eager" in get:
            entry["torch_eager_over_onnxruntime_p50"] = get["ceod_torch_eager"]["p50_ms"] / get["ceod"]["p50_ms"]
        ratios.append(entry)
    return {"rows": rows, "ratios": ratios, "providers": providers, "input_size": size}


def end_to_end(classifier: str, images: str, provider: str, batch: int, model_only_p50_ms: float) -> dict[str, Any]:
    """Decode + preprocess + infer + log through `ceod inspect`'s own code vs model-only throughput."""
    from ceod.pipeline.inspect import Inspector
    inspector = Inspector(classifier, provider)
    inspector.run(images, None, None, batch, live=False)  # warm-up pass (file cache, sessions)
    with tempfile.TemporaryDirectory() as tmp:
        summary = inspector.run(images, Path(tmp) / "log.jsonl", None, batch, live=False).as_dict()
    model_only = batch / (model_only_p50_ms / 1000)
    return {"batch": batch, "records": summary["records"], "errors": summary["errors"],
            "end_to_end_per_s": summary["throughput_per_s"], "model_only_per_s": model_only,
            "ratio": summary["throughput_per_s"] / model_only, "providers": summary["providers"]}


TRAINING_PRESETS = ("default", "decoy-mnist")


def _training_preset(preset: str) -> tuple[dict[str, Any], int]:
    """(config overrides, number of classes) of the model a training-step preset times."""
    if preset == "default":
        return {}, 2
    if preset == "decoy-mnist":
        from ceod.contracts.config import read_packaged
        decoy = read_packaged("experiments.yaml")["datasets"]["decoy-mnist"]["overrides"]
        return {k: v for k, v in decoy.items() if k.startswith("model.") or k in ("input_size", "train.batch_size")}, 10
    raise CeodError(f"unknown training preset {preset!r}; choose from {list(TRAINING_PRESETS)}")


def training_cost(input_size: int | None = None, batch: int | None = None, iters: int = 8, warmup: int = 2,
                  backbone: str | None = None, preset: str = "default") -> dict[str, Any]:
    """CE vs CEOD (fast and general Grad-CAM paths, one map or every class's) vs RRR training-step
    time, interleaved, and the memory autograd keeps for backward (sum of saved tensors).

    `preset` picks the model and data shape: `default` (configs/classifier.yaml, ok/def) or
    `decoy-mnist` (the DecoyMNIST experiment's 28 px, stride-2 CNN, 10 classes)."""
    import torch

    from ceod.contracts.config import load_config
    from ceod.classifier.config import ClassifierConfig
    from ceod.classifier.loss import CEODLoss
    from ceod.classifier.model import build_classifier

    overrides, classes = _training_preset(preset)
    if backbone:  # another backbone than the preset's; pretrained only where weights ship
        from ceod.training.weights import has_packaged_weights
        overrides = {**overrides, "model.backbone": backbone, "model.pretrained": has_packaged_weights(backbone)}
    base = load_config(ClassifierConfig, None, "classifier.yaml", overrides)
    backbone = base.model.backbone
    input_size = input_size or base.input_size
    batch = batch or base.train.batch_size
    # every CEOD variant timed with its term on (no gate, no ramp): the cost after the gate opens
    # (ceod_fast is the packaged default loss on the fast path)
    variants = {"ce": {"kind": "ce"}, "ceod_fast": {"kind": "ceod", "gradcam": "fast"},
                "ceod_fast_all_classes": {"kind": "ceod", "gradcam": "fast", "target": "all",
                                          "distance": "signed_outside"},
                "ceod_fast_sampled_classes": {"kind": "ceod", "gradcam": "fast", "target": "sampled",
                                              "distance": "signed_outside"},
                "ceod_general": {"kind": "ceod", "gradcam": "general"},
                # against the receptive-field leak: RRR's input gradient on 4 images of the batch
                "ceod_fast_input_grad4": {"kind": "ceod", "gradcam": "fast", "input_grad_weight": 10.0,
                                          "input_grad_images": 4},
                "rrr": {"kind": "rrr", "weight": 10.0},
                # against the receptive-field leak: a second view of 16 images with the outside replaced
                "ceod_fast_consistency16": {"kind": "ceod", "gradcam": "fast", "consistency_weight": 1.0,
                                            "consistency_images": 16}}
    if backbone.startswith("efficientnet_lite"):  # a map twice as fine: dilated last stages
        variants["ceod_fast_output_stride16"] = {"kind": "ceod", "gradcam": "fast", "model": {"output_stride": 16}}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, input_size, input_size, generator=g)
    y = torch.randint(0, classes, (batch,), generator=g)
    m = torch.zeros(batch, 1, input_size, input_size)
    m[:, :, input_size // 4: 3 * input_size // 4, input_size // 4: 3 * input_size // 4] = 1
    setups = {}
    from dataclasses import replace
    for name, over in variants.items():
        over = dict(over)
        model_cfg = replace(base.model, **over.pop("model", {}))
        torch.manual_seed(0)
        model = build_classifier(model_cfg, classes, input_size).train()
        loss = CEODLoss(replace(base.loss, **{"gate": "none", "warmup_epochs": 0, **over}))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        setups[name] = (model, loss, opt)

    def forward_loss(model, loss):
        xs = x.clone().requires_grad_(loss.needs_input_grad)
        k = min(loss.cfg.consistency_images, batch) if loss.cfg.consistency_weight > 0 else 0
        if k:  # as training does: one forward over both views
            logits, feats, counterfactual = model(torch.cat([xs, xs[:k].flip(-1)]), views=k)
        else:
            (logits, feats), counterfactual = model(xs, return_features=True), None
        return loss(model, logits, feats, m, y, inputs=xs, counterfactual_logits=counterfactual)

    def make_step(name):
        model, loss, opt = setups[name]

        def step():
            out = forward_loss(model, loss)
            opt.zero_grad(set_to_none=True)
            out.total.backward()
            opt.step()
        return step

    times = _interleaved({n: make_step(n) for n in variants}, iters, warmup)
    result: dict[str, Any] = {"batch": batch, "input_size": input_size, "backbone": backbone, "preset": preset,
                              "classes": classes, "threads": torch.get_num_threads(), "rows": []}
    for name in variants:
        model, loss, _ = setups[name]
        saved = [0]

        def pack(t):
            saved[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = forward_loss(model, loss)
        out.total.backward()
        result["rows"].append({"variant": name, **percentiles_ms(times[name]),
                               "saved_for_backward_mb": saved[0] / 2**20})
    ce = next(r for r in result["rows"] if r["variant"] == "ce")
    for r in result["rows"]:
        r["step_ratio_to_ce"] = r["p50_ms"] / ce["p50_ms"]
        r["memory_ratio_to_ce"] = r["saved_for_backward_mb"] / ce["saved_for_backward_mb"]
    return result


def write_report(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2, default=float))
    lines = ["# ceod bench", ""]
    if result.get("latency"):
        lines += latency_lines(result["latency"])
    if result.get("end_to_end"):
        e = result["end_to_end"]
        lines += ["", f"End-to-end inspection (decode + preprocess + infer + log, batch {e['batch']}, "
                  f"{e['records']} images): {e['end_to_end_per_s']:.1f} images/s vs model-only "
                  f"{e['model_only_per_s']:.1f} images/s: **{e['ratio']:.0%}**."]
    if result.get("training"):
        t = result["training"]
        lines += ["", f"Training step ({t.get('preset', 'default')} preset: {t['backbone']}, {t.get('classes', 2)} classes, "
                  f"batch {t['batch']}, {t['input_size']} px, CPU, {t.get('threads', '?')} threads), interleaved:", "",
                  "| variant | p50 ms | p95 ms | ratio to CE | saved for backward MB | memory ratio |",
                  "|---|---|---|---|---|---|"]
        for r in t["rows"]:
            lines.append(f"| {r['variant']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['step_ratio_to_ce']:.3f} | "
                         f"{r['saved_for_backward_mb']:.1f} | {r['memory_ratio_to_ce']:.3f} |")
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    if result.get("latency"):
        plot(result, out / "bench.png")


def latency_lines(lat: dict[str, Any]) -> list[str]:
    lines = [f"Providers in use: `{lat['providers']}`. Input {lat['input_size']} px. "
             "Models measured interleaved in one run after warm-up.", "",
             "| model | batch | p50 ms | p95 ms | p99 ms | images/s |", "|---|---|---|---|---|---|"]
    for r in lat["rows"]:
        lines.append(f"| {r['model']} | {r['batch']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['throughput_per_s']:.0f} |")
    lines += ["", "| batch | CEOD / plain (p50) | CEOD / same CEOD again (noise floor) | two-stage / CEOD (p50) | "
              "torch eager / onnxruntime (p50) |", "|---|---|---|---|---|"]
    for r in lat["ratios"]:
        lines.append(f"| {r['batch']} | {r['ceod_over_plain_p50']:.3f} | {r['same_model_noise_p50']:.3f} | "
                     f"{r.get('two_stage_over_ceod_p50', float('nan')):.2f} | "
                     f"{r.get('torch_eager_over_onnxruntime_p50', float('nan')):.2f} |")
    return lines


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["latency"]["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(4 * len(batches), 3.4))
    axes = np.atleast_1d(axes)
    for ax, b in zip(axes, batches):
        sel = [next(r for r in rows if r["model"] == m and r["batch"] == b) for m in models]
        p50 = [r["p50_ms"] for r in sel]
        err = [[0] * len(sel), [r["p95_ms"] - r["p50_ms"] for r in sel]]
        ax.bar(models, p50, yerr=err, capsize=3, color=["#2b7", "#888", "#9c9", "#d64", "#48c"][:len(models)])
        ax.set_title(f"batch {b}: p50 (bar) to p95 (whisker)")
        ax.set_ylabel("ms")
        ax.tick_params(axis="x", rotation=20, labelsize=8)
    fig.suptitle(f"latency, providers {sorted({p for v in result['latency']['providers'].values() for p in v})}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_bench(classifier: str | None, plain: str | None, segmenter: str | None, batches: list[int],
              provider: str, out: Path, iters: int = 50, warmup: int = 5, torch_run: str | None = None,
              images: str | None = None, train_cost: bool = True, train_preset: str = "default",
              train_iters: int = 8, train_size: int | None = None) -> dict[str, Any]:
    """Latency of the exported models (when given) and the training-step cost of each loss."""
    result: dict[str, Any] = {}
    if classifier is None:  # training cost only
        result["training"] = training_cost(input_size=train_size, iters=train_iters, preset=train_preset)
        write_report(result, out)
        return result
    result["latency"] = latency(classifier, plain, segmenter, batches, provider, iters, warmup, torch_run)
    if images:
        b8 = next((r for r in result["latency"]["rows"] if r["model"] == "ceod" and r["batch"] == 8), None)
        if b8 is None:
            b8 = {"p50_ms": latency(classifier, plain, None, [8], provider, iters, warmup)["rows"][0]["p50_ms"]}
        result["end_to_end"] = end_to_end(classifier, images, provider, 8, b8["p50_ms"])
    if train_cost:
        size = result["latency"]["input_size"] if train_preset == "default" else None
        result["training"] = training_cost(input_size=size, iters=train_iters, preset=train_preset)
    write_report(result, out)
    return result
