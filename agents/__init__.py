"""Agents over the LatentUM world model, scored in the real maze.

* :mod:`agents.planner`: breadth-first search in latent imagination (``LatentBFSPlanner``);
* :mod:`agents.plan_eval`: executes its plans in the real maze (``python -m agents.plan_eval``);
* :mod:`agents.sb3_vec_env`: Stable-Baselines3 on the batched world model (``SB3VecEnv``: one model call per
  step for all envs);
* :mod:`agents.train_sb3`: trains an SB3 agent in imagination and scores it in the real maze
  (``python -m agents.train_sb3``).
"""
