"""ONNX export (export.onnx_export, needs torch) and the runtime (export.runtime, no torch).

Nothing is imported here, so `import export.runtime` on a line PC never pulls torch.
"""
