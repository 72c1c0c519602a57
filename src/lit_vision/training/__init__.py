"""Training: the LightningModule, its metrics, checkpoints, callbacks, DDP handling, and builders from config."""
