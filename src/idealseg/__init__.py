"""idealseg: semi-supervised medical image segmentation with IDEAL (Basak et al., ICASSP 2023)."""

__version__ = "0.1.0"
