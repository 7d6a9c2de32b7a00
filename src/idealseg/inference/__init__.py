"""Inference: a trained run over a volume (the one predictor), NIfTI masks out (predict), the scale
search, per-scan quality scores, the spacing checks they share."""
