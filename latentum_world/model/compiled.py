"""Compiled imagination: ``torch.compile`` for the per-position work of :func:`~latentum_world.model.generation.generate_state`.

Imagining one state runs ``latent_positions`` generation-branch forwards of one token each and, after
each, the depth head's ``num_codebooks`` sub-steps: about 80 tiny sequential forwards per transition,
where eager PyTorch on a CPU spends most of its time dispatching ops rather than computing. Compiling
those two pieces fuses each into a few kernels, and so does compiling the step's other four forwards
(the action, the re-ingested state, the two yes/no questions).

Greedy world-model steps no longer come here: they run as the fused pieces of
:mod:`latentum_world.world.fused_step` (compiled there with ``compile=True``). These compiled twins serve
steps that sample codes (``temperature > 0``) and models whose flag answers are interpreted.

Opt-in (``LatentWorldModel(..., compile=True)``, ``gym.make("LatentUM-VSP-v0", compile=True)``): the
first steps at each new batch size compile (about 90 s on 2 cores with an empty cache for each of the
first two batch sizes, after which the batch size is symbolic; Inductor caches its kernels on disk, so
later processes warm up faster), and Inductor on CPU needs a C++ compiler. Inference only.
"""

from __future__ import annotations

import functools

import torch

from latentum_world.model.generation import after_latent, ingest_image, ingest_text, next_position

RECOMPILE_LIMIT = 32  # graphs per compiled function: cache lengths and batch sizes each start a few


class CompiledImagination:
    """Compiled twins of :func:`~latentum_world.model.generation.next_position` and
    :func:`~latentum_world.model.generation.after_latent` (for :func:`~latentum_world.model.generation.generate_state`,
    ``compiled=``) and of ``ingest_text`` / ``ingest_image`` (the world model's action, re-ingested state and
    questions). One instance serves any model (the model is an argument)."""

    def __init__(self):
        self.next_position = _compiled(next_position)
        self.after_latent = _compiled(after_latent)
        self.ingest_text = _compiled(ingest_text)
        self.ingest_image = _compiled(ingest_image)


def ingest_functions(compiled: CompiledImagination | None):
    """``(ingest_text, ingest_image)``: eager, or ``compiled``'s twins."""
    return (ingest_text, ingest_image) if compiled is None else (compiled.ingest_text, compiled.ingest_image)


def _compiled(fn):
    """``torch.compile(fn)``, allowed :data:`RECOMPILE_LIMIT` graphs (torch's default, 8, is global and would
    be reached by the world model's mix of batch sizes and cache lengths; past it torch runs eagerly)."""
    compiled = torch.compile(fn)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
            return compiled(*args, **kwargs)

    return run
