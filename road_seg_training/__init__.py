"""Training: datasets, augmentation, partial-label loss, the training loop and split evaluation (imports road_seg_core only)."""
