"""Pure tensor math: the zeroing correction, distances, row normalisation and rollout."""
