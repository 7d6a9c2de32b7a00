"""Tensor and array transforms shared by training and inference: intensity normalisation, batched
augmentation, copy-paste and CutMix mixing, connected components."""
