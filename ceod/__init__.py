"""ceod core: the small layer both model packages share (no torch at import time).

Floors (imports point down only):
    pipeline/   CLI, demo, report, line inspection, benchmark
    export/     ONNX export + parity (torch) | runtime session factory (no torch)
    segmenter/  classifier/   (never import each other)
    ceod/       dataset + transforms, synthetic line, checkpoints, training helpers
"""

__version__ = "0.1.0"
