"""The one trainer, its checkpoints, metrics and callbacks."""
