"""idealseg: semi-supervised medical image segmentation with IDEAL (Basak et al., ICASSP 2023).

The Python API (`idealseg.prepare`, `train`, `pretrain`, `finetune`, `evaluate`, `load`) lives in
`idealseg.api` and is imported on first use, so the command line does not pay for torch when a
subcommand does not need it.
"""

__version__ = "0.1.0"

_API = ("prepare", "train", "pretrain", "finetune", "evaluate", "score_masks", "report", "load",
        "Segmenter", "predict_files")


def __getattr__(name: str) -> object:
    if name in _API:
        from idealseg import api

        return getattr(api, name)
    raise AttributeError(f"module 'idealseg' has no attribute {name!r}")
