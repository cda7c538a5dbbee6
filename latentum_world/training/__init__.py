"""The one training pipeline: Hydra config -> stage -> :class:`Trainer` loop."""
