"""What a resumed run keeps, what it must share, and where the options it does not choose come from.

One module for every rule that relates a run to the run it continues or starts from, so that a
new option is classified in one place: set from the dataset, carried over on --resume, taken from
a `train`'s pre-training, checked against the run folder's config.yaml or a checkpoint's record.
"""

from __future__ import annotations

# Set from the dataset (and target_spacing) when a run is resolved: a user who names one is refused.
FROM_DATASET = ("num_classes", "in_channels", "classes", "normalization", "spacing_mm")

# Not carried over on resume: the stage and dataset come from the command, the rest from the dataset.
NOT_RESUMED = frozenset({"stage", "dataset", *FROM_DATASET})

# What a `train` resumed before its fine-tuning recorded anything takes from its pre-training's record,
# unless named: the profile and what the pre-trained encoder and the experiment share with fine-tuning.
FROM_PRETRAINING = ("profile", "seed", "input_size", "channels", "target_spacing")

# Options a resumed run must share with the run it continues: otherwise it would be another experiment.
# spacing_mm is absent (0) in runs written before physical space: resized slices.
RESUME_KEYS = ("stage", "method", "dataset", "labeled", "seed", "fold", "input_size", "channels", "init",
               "optimizer", "spacing_mm")

# What a checkpoint's own record (the `config` entry of last.pt) must share with config.yaml: the
# options that shape the network or define the experiment its weights are the outcome of. Paths
# (dataset, init) are left out: moving a dataset and editing its path in config.yaml is fine.
RECORDED_KEYS = ("stage", "method", "channels", "in_channels", "num_classes", "input_size", "spacing_mm", "optimizer",
                 "labeled", "seed")
