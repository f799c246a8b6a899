"""ONNX export (ceod.export.onnx_export, needs torch) and the runtime (ceod.export.runtime, no torch).

Nothing is imported here, so `import ceod.export.runtime` on a line PC never pulls torch.
"""
