"""The label conventions every stage shares: a label map is uint8, 0 background, 1..C-1 the classes,
and IGNORE_LABEL where the reference leaves a voxel unannotated (nnU-Net's `ignore` label): no class,
read by no loss and no metric."""

IGNORE_LABEL = 255
