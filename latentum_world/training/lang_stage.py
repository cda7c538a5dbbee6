"""Stage ``lang``: the paper's lang-only step (C1), the understanding branch learning to read states given
as codes.

The world model's reward, termination and board read-out are the understanding branch's answers about
imagined states, re-ingested as ``visual_projector(z_q)``. An understanding model trained only on
continuous features reads those less well (bundle, 1,536 rollout states: whole-board read-out 96.0 % from
the real frames' own codes, 96.7 % from the frames). Here, as in the reference's lang-only training, the
language model's text-branch weights (attention projections, q/k norms and MLP without ``_vision``) and
the text head train on questions about states given as ``visual_projector(codes)`` (``code_share`` of the
rows; the rest as observed continuous features, so reading real frames is kept).

Frozen: the vision encoder, ``mlp1``, quantizer, embeddings, the layer norms (shared with the generation
branch), ``visual_projector`` and the whole generation branch. The generation branch reads the context's
text-branch keys and values, so a ``world`` run after this stage re-adapts it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from latentum_world.data.understanding import batch_rng, collate
from latentum_world.evaluation.answers import accuracy_by_kind, answer
from latentum_world.model.config import FLAG_ANSWERS
from latentum_world.model.dual_sequence import noisy_codes
from latentum_world.training.stages import UnderstandingStage, length_chunks, load_stage_model

#: Text-branch parameter name pieces inside each language-model layer (the ``*_vision`` copies excluded).
TEXT_BRANCH = ("self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj.", "self_attn.o_proj.",
               "self_attn.q_norm.", "self_attn.k_norm.", "mlp.")


def is_text_branch_param(name: str) -> bool:
    """Parameters the ``lang`` stage trains: text-branch layer weights and the text head."""
    if name.startswith("lm_head."):
        return True
    return name.startswith("language_model.layers.") and "_vision" not in name and any(p in name for p in TEXT_BRANCH)


class LangStage(UnderstandingStage):
    """Questions and held-out examples as in ``vlm`` / ``mbaq`` (:class:`UnderstandingStage`); images enter
    as codes or as observed features."""

    name = "lang"

    def build(self, ckpt: Path | None):
        model, tok, source = load_stage_model(self.cfg, ckpt, "a model with its generation branch: set init_from=<gen or world model dir>")
        if not model.config.generation_branch:
            raise ValueError(f"{source} has no generation branch (and so no visual_projector): train the gen stage first")
        fmt = self.sc.get("flag_answers")
        if fmt is not None and fmt not in FLAG_ANSWERS:
            raise ValueError(f"stage.flag_answers must be null or one of {FLAG_ANSWERS}, got {fmt!r}")
        if fmt is not None and ckpt is None and fmt != model.config.flag_answers:
            # the goal / hole questions learn this answer format; the saved config tells FlagQuestions to use it
            print(f"lang: flag answers {model.config.flag_answers!r} -> {fmt!r}")
            model.config.flag_answers = fmt
        for name, p in model.named_parameters():
            p.requires_grad_(is_text_branch_param(name))
        return self._finish_build(model, tok)

    def trainable_parameters(self, model):
        return [p for n, p in model.named_parameters() if is_text_branch_param(n)]

    def batch(self, step: int, rank: int) -> dict:
        rng = batch_rng(self.cfg.seed, step, rank)
        out = collate(self.tokenizer, self.data.batch(rng, self.sc.batch_size), self.model_config.latent_positions)
        out["as_codes"] = torch.from_numpy(rng.random(self.sc.batch_size) < float(self.sc.code_share))  # (B,)
        out["noise_seed"] = torch.tensor(int(rng.integers(2**31)))
        return out

    @torch.no_grad()
    def image_embeds(self, model, images: torch.Tensor, as_codes: torch.Tensor, noise_seed: int) -> torch.Tensor:
        """``(B, P, d)``: ``visual_projector(codes)`` (``code_noise`` of them replaced) where ``as_codes``, else ``mlp1(ViT)``."""
        vit = model.get_vit_feature(images)
        gen = torch.Generator(device=images.device).manual_seed(noise_seed)
        codes = noisy_codes(model.quantizer.encode(vit), float(self.sc.code_noise), model.config.codebook_size, gen)
        return torch.where(as_codes[:, None, None], model.project_latents(codes), model.mlp1(vit))

    def compute_loss(self, wrapped, model, batch):
        embeds = self.image_embeds(model, batch["images"], batch["as_codes"], int(batch["noise_seed"]))
        ce = 0.0
        whole = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")} | {"image_embeds": embeds}
        for sub, share in length_chunks(whole, int(self.sc.get("micro_batches", 1))):
            out = wrapped(input_ids=sub["input_ids"], attention_mask=sub["attention_mask"],
                          image_embeds=sub["image_embeds"], labels=sub["labels"])
            ce = ce + share * out.loss
        return ce, {"losses/answer_ce": ce.item(), "lang/code_rows": batch["as_codes"].float().mean().item()}

    def evaluate(self, model) -> dict:
        examples = self.eval_examples()
        results = {}
        for features in ("projected", "continuous"):
            acc = accuracy_by_kind(examples, answer(model, self.tokenizer, examples, features=features, draft=True))
            results.update({f"{features}/acc_{k}": v for k, v in acc.items()})
        return results
