"""Agents over the LatentUM world model, scored in the real maze.

* :mod:`agents.planner`: breadth-first search in latent imagination (``LatentBFSPlanner``);
* :mod:`agents.plan_eval`: executes its plans in the real maze (``python -m agents.plan_eval``).
"""
