"""ceod core, shared by every floor above it and importing none of them.

Floors (imports point down only; enforced by .importlinter):
    pipeline/     the `ceod` CLI (one module a command), demo, report, line inspection and its
                  drift watch, benchmark
    experiments/  research runs: variants over seeds, grouped folds, reports, active learning
    export/       ONNX export + parity (torch) | runtime session factory and the watch's
                  statistics (no torch)
    segmenter/  classifier/   (never import each other)
    ceod/         data/ (manifest, splits, loading, generators), training/ (loop, checkpoints,
                  DDP, augmentation, weights), contracts/ (model metadata, config, metrics, errors)
"""

__version__ = "0.1.0"
