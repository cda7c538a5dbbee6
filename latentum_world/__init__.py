"""latentum-world: LatentUM, a latent-space unified model, as a world model for RL.

Importing this package registers the Gymnasium ids (``VSPMaze-v0``, ...).
"""

from envs import register_envs

__version__ = "0.1.0"

register_envs()
