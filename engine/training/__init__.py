"""Training: the paper's three-stage method (two VAEs, latent mapping) plus the scratch detector."""
