"""The world model's greedy step as fused pieces: Jacobi rounds over the latent positions, and the re-ingest.

:class:`~latentum_world.world.model.LatentWorldModel` runs every greedy ``step`` (the env default) through
:class:`FusedStep` instead of the general forwards (which handle padding, ragged caches and any sampling, and
which sampled steps still use); ``compile=True`` compiles the pieces with Inductor. The computation is the
same (``tests/test_fused_step.py`` compares them):

1. ``round`` (:meth:`FusedStep._jacobi`): the action token through the understanding branch after the cached
   ``<img> s_t </img>``, and all ``P`` latent positions at once through the generation branch, each fed a
   guess of the codes before it (slot inputs ``image_norm(visual_projector(z_q)) + image_pos_embed``), then
   the depth head's ``K`` greedy sub-steps for every position. Rows whose greedy codes equal their guess are
   done: the same codes as decoding position by position; the others run again from their prediction (Jacobi
   iteration), fewer rows each round. Guesses come from the model's own earlier steps
   (:class:`~latentum_world.world.code_guess.TransitionMemo`): a step changes one or two of the 16 positions.
2. ``understand``: after the roll-back, ``<img> visual_projector(z_q) </img>`` re-ingested by the
   understanding branch together with the questions' shared start ("Is the player"), then both
   questions' endings as two blocks of queries in the same row (each block sees the shared prefix and
   itself: the two-row question batch of :class:`~latentum_world.world.model.FlagQuestions` without
   copying the cache), and P(Yes) from the text head.

Position by position (``imagine`` without a guess; ``LatentWorldModel.jacobi = False``), ``act`` runs the action
token and ``position`` one latent position over a preallocated key/value buffer, 16 times. Besides,
:meth:`FusedStep.ingest` / :meth:`FusedStep.encode` serve resets and :meth:`FusedStep.extend` the read-outs'
first forward.

What makes it fast on a CPU: a round multiplies ``B * P`` rows per matmul instead of ``B`` (at 64 rows, 1,024:
about 2x the matmul rate, ``docs/findings.md``); each branch's projections are packed into one weight (q/k/v;
gate/up); the matmuls go through oneDNN with pre-packed weights (:func:`packed_linear`: up to 2.3x MKL's sgemm
on this project's AMD CPUs); and each compiled piece is one graph for any number of rows (Inductor fuses the
RMSNorms, rotary embedding, attention and SwiGLU into a few C++ loops around the matmuls). The weights are a
snapshot taken at construction (the world model is inference only): a model trained further needs a new
``LatentWorldModel``.
"""

from __future__ import annotations

import copy
import functools
import weakref

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import register_flop_formula

from latentum_world.model.language import KVCache, rotary_table

RECOMPILE_LIMIT = 16  # graphs per compiled piece: one per batch bucket (powers of two, see FusedStep._rows)
PACK_MIN_ROWS = 16  # packed (oneDNN) matmuls from this many rows: below it the plain one is faster

# weight data pointer -> its oneDNN-packed copy, for the weights of live FusedSteps (each removes its own when
# collected, so a pointer is never reused while listed)
_PACKED: dict[int, torch.Tensor] = {}


# the oneDNN linear overload itself (no overload resolution per call); only reached for packed weights
_LINEAR_POINTWISE = torch.ops.mkldnn._linear_pointwise.default if torch.backends.mkldnn.is_available() else None


def packing_available(device: torch.device) -> bool:
    """Whether weights on ``device`` can be packed for oneDNN's matmul (CPU builds with oneDNN)."""
    return device.type == "cpu" and torch.backends.mkldnn.is_available()


def packed_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for ``x`` ``(N, k)`` through oneDNN with ``weight``'s packed copy (see
    :data:`_PACKED`; ``F.linear`` for a weight that was not packed). As ``torch.ops.latentum.packed_linear``.

    On the 2-core AMD CPUs this project is built on, oneDNN's packed fp32 matmul runs 1.5-2.3x faster than
    the MKL sgemm behind ``F.linear`` at most of the step's shapes from 16 rows up; the 128 x 128 output
    projection at 64 rows is the exception, about 0.9x (``benchmarks/matmul_shapes.py``). An
    operator of its own, so a compiled graph calls it as one kernel (Inductor takes no packed tensor as input);
    registered with ``torch.library.Library``, whose per-call cost is a few microseconds lower than
    ``torch.library.custom_op``'s."""
    packed = _PACKED.get(weight.data_ptr())
    if packed is None:
        return F.linear(x, weight, bias)
    return _LINEAR_POINTWISE(x, packed, bias, "none", [], "")


_LIBRARY = torch.library.Library("latentum", "DEF")
_LIBRARY.define("packed_linear(Tensor x, Tensor weight, Tensor? bias=None) -> Tensor")
_LIBRARY.impl("packed_linear", packed_linear, "CPU")


@torch.library.register_fake("latentum::packed_linear", lib=_LIBRARY)
def _(x, weight, bias=None):
    return x.new_empty(x.shape[0], weight.shape[0])


@register_flop_formula(torch.ops.latentum.packed_linear)
def _packed_linear_flops(x_shape, w_shape, *args, **kwargs) -> int:
    """For ``FlopCounterMode`` (benchmarks): 2 FLOPs per multiply-add, as for ``mm``."""
    return 2 * x_shape[0] * x_shape[1] * w_shape[0]


def _rms(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The half-split rotary embedding of ``x`` ``(..., hd)`` with ``[cos, cos]`` / ``[-sin, sin]`` rows (as
    :func:`~latentum_world.model.language.apply_rotary`)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat([x[..., half:], x[..., :half]], dim=-1) * sin


class _Branch(nn.Module):
    """One language-model layer's weights for one MoME branch, packed: ``qkv`` ``(3d, d)``, q/k norms
    ``(2, 1, hd)``, ``o`` ``(d, d)``, ``gate_up`` ``(2m, d)``, ``down`` ``(d, m)``; shared layer norms."""

    def __init__(self, layer, suffix: str):
        super().__init__()
        a = layer.self_attn
        mlp = layer.mlp if suffix == "" else layer.mlp_vision
        get = lambda name: getattr(a, name + suffix)  # noqa: E731
        self.register_buffer("ln1", layer.input_layernorm.weight.detach().clone())
        self.register_buffer("ln2", layer.post_attention_layernorm.weight.detach().clone())
        self.register_buffer("qkv", torch.cat([get(f"{n}_proj").weight for n in "qkv"]).detach().clone())
        self.register_buffer("qk_norm", torch.stack([get("q_norm").weight, get("k_norm").weight])[:, None].detach().clone())
        self.register_buffer("o", get("o_proj").weight.detach().clone())
        self.register_buffer("gate_up", torch.cat([mlp.gate.weight, mlp.up.weight]).detach().clone())
        self.register_buffer("down", mlp.down.weight.detach().clone())


class _DepthBlock(nn.Module):
    def __init__(self, block):
        super().__init__()
        for name in ("norm1", "norm2", "q_norm", "k_norm"):
            self.register_buffer(name, getattr(block, name).weight.detach().clone())
        self.register_buffer("qkv", block.qkv.weight.detach().clone())
        self.register_buffer("o", block.o.weight.detach().clone())
        self.register_buffer("gate_up", torch.cat([block.mlp.gate.weight, block.mlp.up.weight]).detach().clone())
        self.register_buffer("down", block.mlp.down.weight.detach().clone())


class FusedStep(nn.Module):
    """Greedy imagination steps of ``model`` (a LatentUM with its generation branch), compiled.

    :param action_ids: ``(4,)`` token ids of the actions; :param question_prefix: ``(n0,)`` ids both flag
        questions start with; :param questions: their two endings, ``(n,)`` ids each (goal, then hole);
        :param yes_no: the answer tokens' ids ``(yes, no)``; :param compile: ``False`` runs the same graphs
        eagerly (for tests and debugging).
    """

    def __init__(self, model, action_ids: torch.Tensor, question_prefix: torch.Tensor, questions: list[torch.Tensor],
                 yes_no: tuple[int, int], compile: bool = True):
        super().__init__()
        c = model.config
        if c.depth_layers < 1 or len(questions) != 2 or len(questions[0]) != len(questions[1]):
            raise ValueError("FusedStep needs a depth head and two flag questions of the same length")
        self.d, self.h, self.hd, self.m, self.eps = c.hidden_size, c.num_heads, c.head_dim, c.mlp_size, c.rms_eps
        self.layers, self.positions, self.num_codebooks = c.num_layers, c.latent_positions, c.num_codebooks
        self.context = c.latent_positions + 2  # <img> s </img>: what a state leaves in the cache
        self.length = self.context + 1 + c.latent_positions  # ... a_t <img> z_0 .. z_{P-2}: the generation buffer
        lm = model.language_model
        self.text = nn.ModuleList(_Branch(layer, "") for layer in lm.layers)
        self.vision = nn.ModuleList(_Branch(layer, "_vision") for layer in lm.layers)
        dh = model.depth_head
        self.depth_h, self.depth_hd = c.depth_heads, c.hidden_size // c.depth_heads
        self.depth = nn.ModuleList(_DepthBlock(block) for block in dh.layers)
        w = lambda t: t.detach().clone()  # noqa: E731
        self.register_buffer("final_norm", w(lm.norm.weight))
        self.register_buffer("depth_norm", w(dh.norm.weight))
        self.register_buffer("depth_out", w(dh.head.weight))  # (V, d)
        self.register_buffer("code_embed", torch.stack([w(e.weight) for e in dh.code_embed]))  # (K-1, V, d)
        self.register_buffer("codebooks", torch.stack([w(vq.codebook) for vq in model.quantizer.codebooks]))  # (K, V, c/K)
        proj = model.visual_projector
        self.register_buffer("proj1_w", w(proj[0].weight))
        self.register_buffer("proj1_b", w(proj[0].bias))
        self.register_buffer("proj2_w", w(proj[2].weight))
        self.register_buffer("proj2_b", w(proj[2].bias))
        self.register_buffer("image_norm", w(model.image_norm.weight))
        self.register_buffer("image_pos", w(model.image_pos_embed))  # (P, d)
        embed = lm.embed_tokens.weight
        self.register_buffer("embed", w(embed))  # (V, d): read-outs' tokens (extend)
        self.theta = c.rope_theta
        self.register_buffer("action_embeds", w(embed[action_ids]))  # (4, d)
        self.register_buffer("img_start", w(embed[c.img_start_id]))  # (d,)
        ends = torch.cat([embed[[c.img_end_id]], embed[question_prefix]])  # (1 + n0, d): </img> and the shared start
        self.register_buffer("after_slots", w(ends))
        self.register_buffer("question_embeds", w(embed[torch.cat(list(questions))]))  # (2n, d)
        self.register_buffer("yes_no", w(model.lm_head.weight[list(yes_no)]))  # (2, d)
        cos, sin = rotary_table(self.hd, c.rope_theta, embed.device, embed.dtype)
        self.register_buffer("cos", cos[: self.length + 1].clone())
        self.register_buffer("sin", sin[: self.length + 1].clone())
        dcos, dsin = rotary_table(self.depth_hd, 10000.0, embed.device, embed.dtype)
        self.register_buffer("depth_cos", dcos[: self.num_codebooks].clone())
        self.register_buffer("depth_sin", dsin[: self.num_codebooks].clone())
        n0, n = len(question_prefix), len(questions[0])
        self.prefix = self.context + n0  # tokens before the two question blocks
        q_pos = torch.arange(self.prefix, self.prefix + n).repeat(2)  # (2n,): both blocks at the same positions
        self.register_buffer("question_pos", q_pos)
        own = torch.block_diag(*[torch.tril(torch.ones(n, n, dtype=torch.bool))] * 2)  # each block sees itself
        self.register_buffer("question_mask", torch.cat([torch.ones(2 * n, self.prefix, dtype=torch.bool), own], 1))
        self.question_ends = (n - 1, 2 * n - 1)
        p = self.positions  # a Jacobi round's mask: every position sees the context, the action and itself
        round_mask = torch.cat([torch.ones(p, self.context + 1, dtype=torch.bool), torch.ones(p, p, dtype=torch.bool).tril()], 1)
        self.register_buffer("round_mask", round_mask)  # (P, C + 1 + P)
        self.register_buffer("action_mask", torch.ones(1, self.context + 1, dtype=torch.bool))  # (1, C + 1)
        self._index = [torch.tensor(i, device=embed.device) for i in range(self.length + 1)]  # positions and slots as graph inputs
        self._warm = False  # whether the Jacobi round's one-row graph is compiled
        self.jacobi_rows = self.round_rows = 0  # rows imagined by Jacobi rounds, and rows the rounds ran
        self._kept: dict = {}  # (device, dtype) -> the generation's key and value buffers (for the most rows yet)
        self.packed = packing_available(embed.device)
        if self.packed:
            keys: list[int] = []
            for m in [*self.text, *self.vision, *self.depth]:
                for name in ("qkv", "o", "gate_up", "down"):
                    _pack(getattr(m, name), keys)
            for weight in (self.depth_out, self.proj1_w, self.proj2_w):
                _pack(weight, keys)
            # inference copies of the image encoder (ViT, mlp1, MBAQ) with packed matmuls, for reset frames
            self.image_encoder = nn.ModuleList(_packed_copy(m, keys) for m in (model.vision_model, model.mlp1, model.quantizer))
            for block in self.image_encoder[0].blocks:
                block.written_out = True  # (its tiny local attention: about 4x faster written out)
            weakref.finalize(self, _forget, keys)
        self.eval()
        self.compiled = compile
        if compile:
            self._act = _compiled(self._act_graph)
            self._position = _compiled(self._position_graph)
            self._understand = _compiled(self._understand_graph, dynamic_rows=True)
            self._round = _compiled(self._round_graph, dynamic_rows=True)
        else:
            self._act, self._position, self._understand = self._act_graph, self._position_graph, self._understand_graph
            self._round = self._round_graph
        # (ingest stays eager: resets come in every number of rows, and a graph per bucket cost more than it saved)

    def _linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        # compiled: packed at any number of rows, so that no graph depends on it (one graph for every batch size)
        return _linear(x, weight, bias, always=self.compiled) if self.packed else F.linear(x, weight, bias)

    # ------------------------------------------------------------------ public
    @torch.no_grad()
    def imagine(self, cache: KVCache, actions: torch.Tensor, guess: torch.Tensor | None = None,
                trusted: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy next-state codes ``(B, P, K)`` and their ``visual_projector(z_q)`` ``(B, P, d)`` after the
        states in ``cache`` (``<img> s_t </img>`` per row, all rows real and of length ``P + 2``) and ``actions`` ``(B,)``.

        ``guess`` ``(B, P, K)`` (e.g. the current states' codes): the codes are found by Jacobi rounds started
        from it (:meth:`_jacobi`: all ``P`` positions per forward) instead of position by position; the same
        greedy codes either way; ``trusted`` ``(B, P)``: the guesses to keep while the rounds fix the positions
        before them (see :meth:`_jacobi`)."""
        if cache.length != self.context:
            raise ValueError(f"FusedStep expects a state context of {self.context} positions, got {cache.length}")
        b = actions.shape[0]
        if guess is not None:
            if guess.shape != (b, self.positions, self.num_codebooks):
                raise ValueError(f"guess must be ({b}, {self.positions}, {self.num_codebooks}) codes, got {tuple(guess.shape)}")
            return self._jacobi(torch.stack(cache.keys, 1), torch.stack(cache.values, 1), self.action_embeds[actions], guess,
                                trusted)
        n = self._rows(b)  # (compiled: padded to a bucket; the extra rows hold finite leftovers, then are dropped)
        keys, values = self._generation_buffers(n, cache.keys[0])  # (n, L, h, S, hd) each
        keys[:b, :, :, : self.context] = torch.stack(cache.keys, 1)
        values[:b, :, :, : self.context] = torch.stack(cache.values, 1)
        pos = self.context
        k, v = self._act(self.action_embeds[_pad(actions, n)], keys, values, self._index[pos])
        keys[:, :, :, pos], values[:, :, :, pos] = k, v
        x = self.img_start.repeat(n, 1)  # (n, d), contiguous like every later input (one graph)
        codes, latents = [], []
        for j in range(self.positions):
            pos += 1
            c, latent, x, k, v = self._position(x, keys, values, self._index[pos], self._index[j])
            codes.append(c)
            latents.append(latent)
            if j < self.positions - 1:
                keys[:, :, :, pos], values[:, :, :, pos] = k, v
        return torch.stack(codes, 1)[:b], torch.stack(latents, 1)[:b]

    def _jacobi(self, keys: torch.Tensor, values: torch.Tensor, action: torch.Tensor, guess: torch.Tensor,
                trusted: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy codes ``(B, P, K)`` and their ``visual_projector(z_q)`` ``(B, P, d)`` after the states' context
        ``keys``/``values`` ``(B, L, h, C, hd)`` and the actions' embeddings ``action`` ``(B, d)``, by Jacobi
        iteration from ``guess`` ``(B, P, K)``.

        A round (:meth:`_round_graph`) feeds every position the guessed codes of the positions before it and
        returns the greedy codes after them, all ``P`` positions in one forward (matmuls of ``B * P`` rows
        instead of ``P`` forwards of ``B``). A row whose prediction equals its guess is a fixed point: each
        position's codes are the greedy ones after the (equal) codes before it, which is what position-by-
        position decoding computes. Other rows go on with their prediction as the next guess, in a smaller
        batch. Round ``r``'s first ``r`` positions are always exact (position ``j`` only sees guesses before
        it), so a row is fixed after at most ``P + 1`` rounds, whatever the next guess holds past the first
        position it got wrong. There, where ``trusted`` ``(B, P)`` marks a first guess (e.g. one the memo
        remembered), that guess is kept: the prediction there saw the wrong position before it. From guesses
        of :class:`~latentum_world.world.code_guess.TransitionMemo`, rows take 1-4 rounds.
        """
        b = guess.shape[0]
        if self.compiled and not self._warm:  # the one-row graph too, compiled now rather than some steps later
            pick = torch.zeros(1, dtype=torch.long, device=guess.device)
            self._round(*(t.index_select(0, pick) for t in (keys, values, action, guess)))
            self._warm = True
        codes, first_guess = torch.empty_like(guess), guess  # (every row is written once it is fixed)
        latents = action.new_empty(b, self.positions, self.d)
        rows = torch.arange(b, device=guess.device)
        self.jacobi_rows += b
        for _ in range(self.positions + 1):
            self.round_rows += len(rows)
            if len(rows) == b:  # (every row: no copy)
                pred, projected = self._round(keys, values, action, guess)
            else:
                pred, projected = self._round(keys.index_select(0, rows), values.index_select(0, rows),
                                              action.index_select(0, rows), guess)
            fixed = (pred == guess).flatten(1).all(1)  # (m,)
            codes[rows[fixed]] = pred[fixed]
            latents[rows[fixed]] = projected[fixed]  # (a fixed point's guess: its codes)
            rows, pred, guess = rows[~fixed], pred[~fixed], guess[~fixed]
            if len(rows) == 0:
                return codes, latents
            if trusted is not None:  # past a row's first wrong position, where its prediction saw a wrong prefix,
                first = (pred != guess).any(-1).long().argmax(1)  # (m,)  ... the trusted first guesses are kept
                keep = (torch.arange(self.positions, device=rows.device) > first[:, None]) & trusted[rows]  # (m, P)
                pred = torch.where(keep[..., None], first_guess[rows], pred)
            guess = pred
        raise AssertionError("Jacobi rounds did not converge")  # (impossible: see the docstring)

    def _rows(self, b: int) -> int:
        """The rows a batch of ``b`` runs as position by position: compiled, the next power of two (those small
        graphs, specialised to a few fixed batch sizes, ran about 1.5x faster than with a symbolic batch size;
        the Jacobi rounds' larger ones do not, and take any number of rows); eager, ``b``."""
        return 1 << (b - 1).bit_length() if self.compiled else b

    def _generation_buffers(self, b: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The generation buffers ``(b, L, h, S, hd)``: the first ``b`` rows (contiguous) of buffers kept between
        steps for the most rows seen (allocating and faulting in 2 x 4.6 MB per step at 64 rows showed in the
        step time, and a vector env steps a different number of rows after each next-step reset). Created
        zeroed: positions not yet written this step get zero attention weight, but 0 * (NaN or inf left in
        fresh memory) would poison the weighted sum; later steps leave finite values there."""
        key = (like.device, like.dtype)
        if key not in self._kept or self._kept[key][0].shape[0] < b:
            shape = (b, self.layers, self.h, self.length, self.hd)
            self._kept[key] = (like.new_zeros(shape), like.new_zeros(shape))
        keys, values = self._kept[key]
        return keys[:b], values[:b]

    @torch.no_grad()
    def understand(self, embeds: torch.Tensor) -> tuple[KVCache, torch.Tensor, torch.Tensor]:
        """States ``(B, P, d)`` (``visual_projector(z_q)``) re-ingested: their cache ``<img> s </img>`` (the next
        step's context) and P(Yes) ``(B,)`` to the goal and to the hole question."""
        b = embeds.shape[0]
        keys, values, p_goal, p_hole = self._understand(embeds)
        return self._cache(keys[:, :b], values[:, :b]), p_goal[:b], p_hole[:b]

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Real frames ``(B, S, S, 3)`` uint8 -> (continuous slot embeddings ``(B, P, d)``, MBAQ codes ``(B, P, K)``),
        as the model's own encoder computes them, with packed matmuls; ``None`` where weights are not packed."""
        if not self.packed:
            return None
        vit, mlp1, quantizer = self.image_encoder
        features = vit(images)
        return mlp1(features), quantizer.encode(features)

    @torch.no_grad()
    def ingest(self, embeds: torch.Tensor) -> KVCache:
        """The cache of ``<img> embeds </img>`` (``(B, P, d)`` slot contents, e.g. a real first frame's
        continuous features) through the understanding branch: a state context."""
        return self._cache(*self._ingest_graph(embeds))

    @torch.no_grad()
    def extend(self, cache: KVCache, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor | None:
        """Text ``ids`` ``(n, W)`` (right-padded: ``valid`` ``(n, W)`` marks each row's leading real tokens) through
        the understanding branch after ``cache``, which it extends as the general forward does; returns the final
        hidden states ``(n, W, d)``. Eager (the shapes vary). Only for a cache whose keys are all real (a state
        context and what follows it); returns ``None`` for any other, for the caller's general forward."""
        if cache.key_valid is None or not bool(cache.key_valid.all()):
            return None
        w, s = ids.shape[1], cache.length
        cos, sin = (t[s : s + w] for t in rotary_table(self.hd, self.theta, ids.device, self.cos.dtype))  # (W, hd)
        mask = torch.cat([torch.ones(w, s, dtype=torch.bool, device=ids.device),
                          torch.ones(w, w, dtype=torch.bool, device=ids.device).tril()], 1)  # (W, S + W)
        x = self.embed[ids]  # (n, W, d); right padding is never attended to by a real token (causal)
        for i, p in enumerate(self.text):
            x, k, v = self._layer_block(x, p, cos, sin, cache.keys[i], cache.values[i], mask)
            cache.keys[i], cache.values[i] = torch.cat([cache.keys[i], k], 2), torch.cat([cache.values[i], v], 2)
        cache.key_valid = torch.cat([cache.key_valid, valid.bool()], 1)
        return _rms(x, self.final_norm, self.eps)

    def _cache(self, keys: torch.Tensor, values: torch.Tensor) -> KVCache:
        """A :class:`KVCache` over ``(L, B, h, P + 2, hd)`` keys and values."""
        cache = KVCache(self.layers)
        cache.keys, cache.values = list(keys.unbind(0)), list(values.unbind(0))
        cache.key_valid = torch.ones(keys.shape[1], self.context, dtype=torch.bool, device=keys.device)
        return cache

    # ------------------------------------------------------------------ graphs
    def _layer_token(self, x, p: _Branch, keys, values, pos, valid):
        """One token ``x`` ``(B, d)`` at ``pos`` through one layer, attending to ``keys``/``values`` ``(B, h, S, hd)``
        where ``valid`` ``(S,)`` and to itself; returns ``(x, k, v)``, the new key/value ``(B, h, hd)``."""
        b = x.shape[0]
        qkv = self._linear(_rms(x, p.ln1, self.eps), p.qkv).view(b, 3, self.h, self.hd)
        cos, sin = self.cos.index_select(0, pos.view(1)), self.sin.index_select(0, pos.view(1))  # (1, hd)
        qk = _rotate(_rms(qkv[:, :2], None, self.eps) * p.qk_norm, cos, sin)  # (B, 2, h, hd)
        q, k, v = qk[:, 0], qk[:, 1], qkv[:, 2]
        scale = self.hd**-0.5
        old = torch.einsum("bhd,bhsd->bhs", q, keys) * scale  # (B, h, S)
        old = old.masked_fill(~valid, float("-inf"))
        own = (q * k).sum(-1, keepdim=True) * scale  # (B, h, 1)
        w = torch.cat([old, own], -1).softmax(-1)
        att = torch.einsum("bhs,bhsd->bhd", w[..., :-1], values) + w[..., -1:] * v  # (B, h, hd)
        x = x + self._linear(att.reshape(b, self.d), p.o)
        gate, up = self._linear(_rms(x, p.ln2, self.eps), p.gate_up).chunk(2, -1)
        return x + self._linear(F.silu(gate) * up, p.down), k, v

    def _lm_token(self, x, branches, keys, values, pos):
        valid = torch.arange(self.length, device=x.device) < pos  # (S,)
        ks, vs = [], []
        for i, p in enumerate(branches):
            x, k, v = self._layer_token(x, p, keys[:, i], values[:, i], pos, valid)
            ks.append(k)
            vs.append(v)
        return x, torch.stack(ks, 1), torch.stack(vs, 1)  # (B, d), (B, L, h, hd) x 2

    def _act_graph(self, x, keys, values, pos):
        _, k, v = self._lm_token(x, self.text, keys, values, pos)
        return k, v

    def _depth_codes(self, h):
        """The depth head's greedy codes ``(B, K)`` for hidden states ``(B, d)`` (as ``DepthHead.sample``)."""
        b = h.shape[0]
        hh, hd = self.depth_h, self.depth_hd
        caches = [([], []) for _ in self.depth]
        step, codes = h, []
        for i in range(self.num_codebooks):
            x = step
            for blk, (ks, vs) in zip(self.depth, caches):
                q, k, v = self._linear(_rms(x, blk.norm1, self.eps), blk.qkv).view(b, 3, hh, hd).unbind(1)
                qk = torch.stack([_rms(q, blk.q_norm, self.eps), _rms(k, blk.k_norm, self.eps)], 1)
                q, k = _rotate(qk, self.depth_cos[i], self.depth_sin[i]).unbind(1)  # (B, hh, hd)
                ks.append(k)
                vs.append(v)
                keys, values = torch.stack(ks, 2), torch.stack(vs, 2)  # (B, hh, i+1, hd)
                w = (torch.einsum("bhd,bhsd->bhs", q, keys) * hd**-0.5).softmax(-1)
                att = torch.einsum("bhs,bhsd->bhd", w, values)
                x = x + self._linear(att.reshape(b, self.d), blk.o)
                gate, up = self._linear(_rms(x, blk.norm2, self.eps), blk.gate_up).chunk(2, -1)
                x = x + self._linear(F.silu(gate) * up, blk.down)
            code = self._linear(_rms(x, self.depth_norm, self.eps), self.depth_out).argmax(-1)  # (B,)
            codes.append(code)
            if i < self.num_codebooks - 1:
                step = self.code_embed[i][code]
        return torch.stack(codes, 1)  # (B, K)

    def _project(self, codes):
        """Codes ``(..., K)`` -> ``visual_projector(z_q)`` ``(..., d)``."""
        z = torch.cat([self.codebooks[i][codes[..., i]] for i in range(self.codebooks.shape[0])], -1)
        return self._linear(F.gelu(self._linear(z, self.proj1_w, self.proj1_b)), self.proj2_w, self.proj2_b)

    def _position_graph(self, x, keys, values, pos, slot):
        """The generation branch at ``pos`` on input ``x`` ``(B, d)``, then the depth head: this position's codes
        ``(B, K)``, their ``visual_projector(z_q)`` ``(B, d)``, the input for image slot ``slot`` and the new
        keys/values ``(B, L, h, hd)``."""
        h, k, v = self._lm_token(x, self.vision, keys, values, pos)
        codes = self._depth_codes(_rms(h, self.final_norm, self.eps))
        latent = self._project(codes)
        nxt = _rms(latent, self.image_norm, self.eps) + self.image_pos.index_select(0, slot.view(1))
        return codes, latent, nxt, k, v

    def _round_graph(self, keys, values, action, guess):
        """One Jacobi round: the action token (understanding branch) and every latent position at once
        (generation branch), after the states' context ``keys``/``values`` ``(B, L, h, C, hd)``; position ``j`` is
        fed the codes ``guess`` ``(B, P, K)`` of the positions before it (slot inputs as :meth:`_position_graph`
        makes them). ``action``: ``(B, d)`` embeddings. Returns the greedy codes ``(B, P, K)`` after each prefix,
        and the guess's ``visual_projector(z_q)`` ``(B, P, d)``."""
        b, p = guess.shape[:2]
        c = keys.shape[3]
        projected = self._project(guess)  # (B, P, d)
        slots = _rms(projected[:, :-1], self.image_norm, self.eps) + self.image_pos[: p - 1]  # (B, P - 1, d)
        x = torch.cat([self.img_start.expand(b, 1, -1), slots], 1)  # (B, P, d)
        a = action[:, None]  # (B, 1, d)
        cos, sin = self.cos[c + 1 : c + 1 + p], self.sin[c + 1 : c + 1 + p]
        for i, (text, vision) in enumerate(zip(self.text, self.vision)):
            a, k, v = self._layer_block(a, text, self.cos[c : c + 1], self.sin[c : c + 1], keys[:, i], values[:, i],
                                        self.action_mask, keys_only=i == self.layers - 1)
            x, _, _ = self._layer_block(x, vision, cos, sin, torch.cat([keys[:, i], k], 2), torch.cat([values[:, i], v], 2),
                                        self.round_mask)
        codes = self._depth_codes(_rms(x, self.final_norm, self.eps).reshape(b * p, self.d))  # (B * P, K)
        return codes.view(b, p, -1), projected

    def _prefix(self, embeds, after: int):
        """``<img> slots </img>`` and the first ``after - 1`` tokens of the questions' shared start: ``(B, T, d)``."""
        b = embeds.shape[0]
        slots = _rms(embeds, self.image_norm, self.eps) + self.image_pos  # (B, P, d)
        return torch.cat([self.img_start.expand(b, 1, -1), slots, self.after_slots[:after].expand(b, -1, -1)], 1)

    def _ingest_graph(self, embeds):
        x = self._prefix(embeds, 1)  # (B, P + 2, d)
        cos, sin = self.cos[: x.shape[1]], self.sin[: x.shape[1]]
        ks, vs = [], []
        for i, p in enumerate(self.text):
            x, k, v = self._layer_block(x, p, cos, sin, None, None, None, keys_only=i == len(self.text) - 1)
            ks.append(k)
            vs.append(v)
        return torch.stack(ks), torch.stack(vs)  # (L, B, h, P + 2, hd) x 2

    def _understand_graph(self, embeds):
        b = embeds.shape[0]
        x = self._prefix(embeds, len(self.after_slots))  # (B, T, d)
        q_x = self.question_embeds.expand(b, -1, -1)  # (B, 2n, d)
        cos, sin = self.cos[: x.shape[1]], self.sin[: x.shape[1]]
        q_cos, q_sin = self.cos[self.question_pos], self.sin[self.question_pos]
        ks, vs = [], []
        for i, p in enumerate(self.text):
            last = i == len(self.text) - 1  # the prefix's own output after the last layer is not needed
            x, k, v = self._layer_block(x, p, cos, sin, None, None, None, keys_only=last)  # the prefix: causal
            ks.append(k)
            vs.append(v)
            q_x, _, _ = self._layer_block(q_x, p, q_cos, q_sin, k, v, self.question_mask)
        h = _rms(q_x[:, list(self.question_ends)], self.final_norm, self.eps)  # (B, 2, d): goal, hole
        p_yes = F.linear(h, self.yes_no).softmax(-1)[..., 0]  # (B, 2)
        keys = torch.stack(ks)[:, :, :, : self.context]  # (L, B, h, P + 2, hd)
        values = torch.stack(vs)[:, :, :, : self.context]
        return keys, values, p_yes[:, 0], p_yes[:, 1]

    def _layer_block(self, x, p: _Branch, cos, sin, past_k, past_v, mask, keys_only: bool = False):
        """Tokens ``x`` ``(B, T, d)`` through one layer: causal among themselves (``past_k is None``), or after
        ``past_k``/``past_v`` ``(B, h, S, hd)`` with the boolean ``mask`` ``(T, S + T)``. Returns ``x`` and this
        block's keys/values ``(B, h, T, hd)`` (``keys_only``: ``x`` unchanged, the rest of the layer skipped)."""
        b, t, _ = x.shape
        qkv = self._linear(_rms(x, p.ln1, self.eps), p.qkv).view(b, t, 3, self.h, self.hd).transpose(1, 3)  # (B, h, 3, T, hd)
        qk = _rotate(_rms(qkv[:, :, :2], None, self.eps) * p.qk_norm, cos, sin)  # (B, h, 2, T, hd)
        q, k, v = qk[:, :, 0], qk[:, :, 1], qkv[:, :, 2]
        if keys_only:
            return x, k, v
        if past_k is None:  # (written out: Inductor fuses it; the CPU flash kernel is slow at these sizes)
            keys, vals, mask = k, v, torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        else:
            keys, vals = torch.cat([past_k, k], 2), torch.cat([past_v, v], 2)
        w = (q @ keys.transpose(-1, -2) * self.hd**-0.5).masked_fill(~mask, float("-inf")).softmax(-1)  # (B, h, T, S)
        att = w @ vals  # (B, h, T, hd)
        x = x + self._linear(att.transpose(1, 2).reshape(b, t, self.d), p.o)
        gate, up = self._linear(_rms(x, p.ln2, self.eps), p.gate_up).chunk(2, -1)
        return x + self._linear(F.silu(gate) * up, p.down), k, v


def _pack(weight: torch.Tensor, keys: list) -> None:
    """List ``weight``'s oneDNN-packed copy in :data:`_PACKED` (and its key in ``keys``, for :func:`_forget`)."""
    _PACKED[weight.data_ptr()] = torch.ops.mkldnn._reorder_linear_weight(weight, 64)
    keys.append(weight.data_ptr())


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, always: bool = False) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for ``x`` ``(..., k)``, through :func:`packed_linear` from :data:`PACK_MIN_ROWS` rows
    (``always``: at any number)."""
    if always or x.numel() >= PACK_MIN_ROWS * x.shape[-1]:  # (the op takes 2-d inputs)
        return torch.ops.latentum.packed_linear(x.reshape(-1, x.shape[-1]), weight, bias).view(*x.shape[:-1], -1)
    return F.linear(x, weight, bias)


class _PackedLinear(nn.Module):
    """An inference copy of an ``nn.Linear`` whose matmul goes through :func:`_linear` (its packed weight listed
    under ``keys``)."""

    def __init__(self, linear: nn.Linear, keys: list):
        super().__init__()
        self.register_buffer("weight", linear.weight.detach().clone())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        _pack(self.weight, keys)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear(x, self.weight, self.bias)


def _packed_copy(module: nn.Module, keys: list) -> nn.Module:
    """A copy of ``module`` for inference, every ``nn.Linear`` in it a :class:`_PackedLinear`."""
    module = copy.deepcopy(module).eval().requires_grad_(False)
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                setattr(parent, name, _PackedLinear(child, keys))
    return module


def _pad(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x`` with zero rows appended up to ``n`` rows."""
    return x if x.shape[0] == n else torch.cat([x, x.new_zeros(n - x.shape[0], *x.shape[1:])])


def _forget(keys) -> None:
    for key in keys:
        _PACKED.pop(key, None)


def _compiled(fn, dynamic_rows: bool = False):
    """``torch.compile(fn)`` with Inductor's weight freezing (the buffers are constants), allowed
    :data:`RECOMPILE_LIMIT` graphs: one per batch bucket, or with ``dynamic_rows`` one for any number of rows
    (the first dimension of every tensor argument; one row gets a graph of its own)."""
    compiled = torch.compile(fn, dynamic=None if dynamic_rows else False, options={"freezing": True})

    @functools.wraps(fn)
    def run(*args):
        if dynamic_rows:
            for a in args:
                if isinstance(a, torch.Tensor) and a.shape[0] > 1:
                    torch._dynamo.mark_dynamic(a, 0)
        with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
            return compiled(*args)

    return run
