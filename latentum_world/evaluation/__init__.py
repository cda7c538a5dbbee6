"""Evaluation of the model against the real maze: perception, MBAQ, world model."""
