"""Training: the step (losses, per-layer rates, weight decay), the two stages, the feature and
prefix caches, k-means pseudo-labels, strategies and precision."""
