"""Generation stages: ``gen`` (board text -> state codes) and ``world`` (action-conditioned).

``gen`` starts from the MBAQ model, ``world`` from ``lang``'s (or any model with a generation branch).
The understanding branch (vision encoder, ``mlp1``, quantizer, language-model text weights, norms,
embeddings, text head) never trains here.

* ``gen`` adds the MoME generation branch (``*_vision`` copies of the text weights, depth head,
  ``visual_projector`` initialised from MBAQ's ``up_proj``) and teaches it to draw a board's codes
  from its VSP table text: the analogue of the paper's text-to-image pretraining.
* ``world`` first adapts the understanding side to imagined states (``text_steps``: only
  ``visual_projector`` trains, on questions about states given as codes, ``text_code_noise`` of them
  replaced at random), then trains the
  generation branch (with a text step every ``text_every`` steps) on real rollouts ``<img> s_t </img> a_t <img> s_t+1 ...`` with dual-sequence
  teacher forcing (``code_noise`` on the understanding copies of earlier states).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from envs.vsp.formats import to_table
from envs.vsp.maps import ACTION_LETTERS, LEVELS
from latentum_world.data.rollouts import transition_window
from latentum_world.data.understanding import UnderstandingData, batch_rng, collate
from latentum_world.model.dual_sequence import noisy_codes
from latentum_world.model.generation import image_block_ids
from latentum_world.training.stages import load_stage_model

GENERATION_PREFIXES = ("depth_head.",)


def is_generation_param(name: str) -> bool:
    return "_vision" in name or name.startswith(GENERATION_PREFIXES)


class GenerationStage:
    name = "base"
    ddp_find_unused = True  # the two phases of `world` use different parameters

    def __init__(self, cfg: DictConfig):
        self.cfg, self.sc = cfg, cfg.stage
        data = OmegaConf.to_container(self.sc.data, resolve=True)
        self.data = UnderstandingData.from_stage(data, weights={"table": 1.0})

    def _load(self, ckpt: Path | None):
        model, tok, _ = load_stage_model(self.cfg, ckpt, "a model: set init_from=<model dir>")
        if not model.config.generation_branch:
            model.add_generation_branch()
        self.tokenizer, self.model_config = tok, model.config
        self.data = self.data.for_model(model.config)  # its image layout and flag-answer format
        if "text_weights" in self.sc:  # world: the questions of its text steps, about the same images
            self.text_data = replace(self.data, weights=dict(self.sc.text_weights))
        return model, tok

    @torch.no_grad()
    def codes_of(self, model, images: torch.Tensor) -> torch.Tensor:
        """MBAQ codes ``(N, P, K)`` of real frames (frozen encoder and quantizer)."""
        return model.quantizer.encode(model.get_vit_feature(images))

    def after_step(self, model, step: int) -> dict:
        return {}

    def evaluate(self, model) -> dict:
        rng = np.random.default_rng(4242)
        batch = self.batch_from(rng, 32)
        batch = {k: v.to(next(model.parameters()).device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with torch.no_grad():
            _, metrics = self.compute_loss(model, model, batch, force_generation=True)
        return {k.split("/")[-1]: v for k, v in metrics.items()}


class GenStage(GenerationStage):
    name = "gen"

    def build(self, ckpt: Path | None):
        model, tok = self._load(ckpt)
        for name, p in model.named_parameters():
            p.requires_grad_(is_generation_param(name))
        return model, tok

    def trainable_parameters(self, model):
        return [p for n, p in model.named_parameters() if is_generation_param(n)]

    def batch_from(self, rng, size) -> dict:
        examples = self.data.batch(rng, size, "table")  # random states, any level, elf facing any way
        tok = self.tokenizer
        img = tok.convert_tokens_to_ids("<img>")
        rows = [tok.encode_text(to_table(ex.map, player=ex.player_drawn)) + [img] for ex in examples]
        t = max(len(r) for r in rows)
        ids = torch.full((size, t), tok.pad_token_id, dtype=torch.long)
        valid = torch.zeros((size, t), dtype=torch.long)
        for i, r in enumerate(rows):  # left padding: every row's <img> is the last token
            ids[i, t - len(r):] = torch.tensor(r)
            valid[i, t - len(r):] = 1
        return {"input_ids": ids, "u_valid": valid, "images": torch.from_numpy(np.stack([ex.image for ex in examples]))}

    def batch(self, step: int, rank: int) -> dict:
        return self.batch_from(batch_rng(self.cfg.seed, step, rank), self.sc.batch_size)

    def compute_loss(self, wrapped, model, batch, force_generation: bool = False):
        codes = self.codes_of(model, batch["images"])[:, None]  # (B, 1, P, K)
        lu = batch["input_ids"].shape[1]
        ce, acc = _dual(wrapped, batch["input_ids"], batch["u_valid"], None, [lu - 1], codes)
        return ce, {"losses/code_ce": ce.item(), "gen/code_accuracy": acc.item()}


class WorldStage(GenerationStage):
    name = "world"

    def build(self, ckpt: Path | None):
        model, tok = self._load(ckpt)
        self.train_projector = bool(self.sc.get("train_projector", True))
        if not self.train_projector and (self.sc.text_steps or self.sc.get("text_every", 0)):
            raise ValueError("stage.train_projector=false leaves the text steps nothing to train: "
                             "set stage.text_steps=0 stage.text_every=0")
        for name, p in model.named_parameters():
            p.requires_grad_(self._trains(name))
        self.action_ids = tok.convert_tokens_to_ids(list(ACTION_LETTERS))
        return model, tok

    def trainable_parameters(self, model):
        return [p for n, p in model.named_parameters() if self._trains(n)]

    def _trains(self, name: str) -> bool:
        """The generation branch, and ``visual_projector`` unless ``train_projector`` is false (the reference's
        vision-only step keeps it frozen; after ``lang`` the text branch has learned to read through it)."""
        return is_generation_param(name) or (self.train_projector and name.startswith("visual_projector."))

    def in_text_phase(self, step: int) -> bool:
        """The first ``text_steps`` steps, then every ``text_every``-th step (0: never): ``visual_projector``
        feeds both the generation branch and the understanding branch's re-reading of imagined states,
        so generation training moves it and interleaved text steps keep the reading calibrated."""
        if step < self.sc.text_steps:
            return True
        every = int(self.sc.get("text_every", 0))
        return every > 0 and (step - self.sc.text_steps) % every == every - 1

    def batch(self, step: int, rank: int) -> dict:
        rng = batch_rng(self.cfg.seed, step, rank)
        if self.in_text_phase(step):
            return self.text_batch(rng, self.sc.batch_size)
        return self.batch_from(rng, self.sc.batch_size)

    def text_batch(self, rng, size) -> dict:
        out = collate(self.tokenizer, self.text_data.batch(rng, size), self.model_config.latent_positions)
        out["phase"] = "text"
        out["noise_seed"] = int(rng.integers(2**31))
        return out

    def batch_from(self, rng, size) -> dict:
        k = int(self.sc.transitions)
        focus = float(self.sc.get("terminal_focus", 0.0))
        frames, actions = [], []
        for _ in range(size):
            ep = transition_window(rng, k, levels=LEVELS, terminal_focus=focus)
            frames.append(np.stack([self.data.image(m, last) for m, last in ep.frames]))  # (K+1, S, S, 3)
            actions.append(ep.actions)
        tok = self.tokenizer
        p = self.model_config.latent_positions
        block = [tok.convert_tokens_to_ids("<img>")] + [tok.convert_tokens_to_ids("<img_ctx>")] * p + [tok.convert_tokens_to_ids("</img>")]
        ids, delims = [], []
        for t in range(k + 1):
            if t > 0:
                delims.append(len(ids))
            ids += block
            if t < k:
                ids.append(-1)  # action slot, filled per row below
        ids = torch.tensor(ids).repeat(size, 1)
        slots = (ids == -1).nonzero()[:, 1].view(size, k)[0]
        ids[:, slots] = torch.tensor([[self.action_ids[a] for a in acts] for acts in actions])
        return {
            "phase": "world",
            "input_ids": ids,
            "images": torch.from_numpy(np.stack(frames)),  # (B, K+1, S, S, 3)
            "delims": delims,
            "first_continuous": torch.from_numpy(rng.random(size) < self.sc.first_frame_continuous),
            "noise_seed": int(rng.integers(2**31)),
        }

    def compute_loss(self, wrapped, model, batch, force_generation: bool = False):
        gen = torch.Generator(device=batch["input_ids"].device).manual_seed(batch["noise_seed"]) if "noise_seed" in batch else None
        if batch.get("phase") == "text" and not force_generation:
            # understanding side: read states given as visual_projector(noisy codes); only visual_projector learns
            noise = float(self.sc.get("text_code_noise", self.sc.code_noise))
            codes = noisy_codes(self.codes_of(model, batch["images"]), noise, model.config.codebook_size, gen)
            embeds = model.project_latents(codes)
            out = wrapped(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], image_embeds=embeds, labels=batch["labels"])
            return out.loss, {"losses/text_ce": out.loss.item()}
        b, f = batch["images"].shape[:2]
        codes = self.codes_of(model, batch["images"].flatten(0, 1)).view(b, f, model.config.latent_positions, model.config.num_codebooks)  # (B, K+1, P, K)
        noisy = noisy_codes(codes[:, 1:], self.sc.code_noise, model.config.codebook_size, gen)
        with torch.no_grad():  # U copies: frozen understanding inputs; the first frame as observed or as a latent
            first_cont = model.mlp1(model.get_vit_feature(batch["images"][:, 0]))  # (B, P, d)
            first_lat = model.project_latents(codes[:, 0])
            first = torch.where(batch["first_continuous"][:, None, None], first_cont, first_lat)
            later = model.project_latents(noisy)  # (B, K, P, d)
        u_embeds = torch.cat([first[:, None], later], dim=1).flatten(0, 1)  # (B*(K+1), P, d)
        changed = (codes[:, 1:] != codes[:, :-1]).any(-1).float()  # (B, K, P)
        cw, fw = float(self.sc.get("changed_weight", 1.0)), self.sc.get("first_change_weight")
        weights = position_weights(codes, cw, cw if fw is None else float(fw))
        ce, acc = _dual(wrapped, batch["input_ids"], torch.ones_like(batch["input_ids"]), u_embeds, batch["delims"], codes[:, 1:], weights)
        return ce, {"losses/code_ce": ce.item(), "world/code_accuracy": acc.item(),
                    "world/changed_accuracy_share": changed.mean().item()}


def position_weights(codes: torch.Tensor, changed_weight: float, first_change_weight: float) -> torch.Tensor:
    """Loss weight of each target position ``(B, K, P)`` for state codes ``(B, K+1, P, C)``. Most positions just
    copy the previous state and weigh 1; those the action changed (the player's old and new cells) weigh
    ``changed_weight``. Where two or more positions change, the first in raster order weighs
    ``first_change_weight``: it is drawn before any change is visible in the image being generated (for a
    left or up move across a position border, the arrival), so the move is decided there; later ones follow
    it. One-step errors concentrate on it (``benchmarks/one_step_codes.py``, ``whole_state_by_raster_order``)."""
    changed = (codes[:, 1:] != codes[:, :-1]).any(-1)  # (B, K, P)
    first = changed & (changed.cumsum(-1) == 1) & (changed.sum(-1, keepdim=True) >= 2)
    weights = torch.where(changed, changed_weight, 1.0)
    return torch.where(first, first_change_weight, weights)


def _dual(wrapped, u_ids, u_valid, u_embeds, delims, target_codes, weights=None):
    """Call the model's dual-sequence loss through the (possibly DDP-wrapped) module's forward."""
    return wrapped(input_ids=u_ids, dual=(u_valid, u_embeds, delims, target_codes, weights))
