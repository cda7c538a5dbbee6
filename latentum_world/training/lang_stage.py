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

``stage.train=read_out`` trains less: only what no generation-branch token ever reads, so the world model's
generated codes stay bit-identical and no ``world`` run is needed afterwards. That is the text head and the
LAST layer's text-branch query projection, q-norm, output projection and MLP: a layer's keys and values are
computed from its input, so the last layer's own keys and values (``k_proj``, ``k_norm``, ``v_proj``, kept
frozen) are the only part of it that generation tokens attend to, and nothing after the last layer feeds
the generation branch (the shared final norm stays frozen).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from latentum_world.data.understanding import batch_rng, collate
from latentum_world.evaluation.answers import accuracy_by_kind, answer
from latentum_world.model.config import FLAG_ANSWERS
from latentum_world.model.dual_sequence import noisy_codes
from latentum_world.training.stages import UnderstandingStage, length_chunks, load_stage_model

#: Text-branch parameter name pieces inside each language-model layer (the ``*_vision`` copies excluded).
TEXT_BRANCH = ("self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj.", "self_attn.o_proj.",
               "self_attn.q_norm.", "self_attn.k_norm.", "mlp.")


#: The last layer's text-branch pieces that only text tokens read (``stage.train=read_out``).
READ_OUT = ("self_attn.q_proj.", "self_attn.q_norm.", "self_attn.o_proj.", "mlp.")
#: ``stage.train`` choices.
LANG_TRAIN = ("text_branch", "read_out")


def is_text_branch_param(name: str) -> bool:
    """Parameters the ``lang`` stage trains: text-branch layer weights and the text head."""
    if name.startswith("lm_head."):
        return True
    return name.startswith("language_model.layers.") and "_vision" not in name and any(p in name for p in TEXT_BRANCH)


def is_read_out_param(name: str, num_layers: int) -> bool:
    """Parameters ``stage.train=read_out`` trains: the text head and the last layer's text-only pieces
    (:data:`READ_OUT`), none of which a generation-branch token reads."""
    if name.startswith("lm_head."):
        return True
    prefix = f"language_model.layers.{num_layers - 1}."
    return name.startswith(prefix) and "_vision" not in name and any(name.startswith(prefix + p) for p in READ_OUT)


def final_line_weights(labels: torch.Tensor, newline_id: int, weight: float) -> torch.Tensor:
    """``(B, T)`` loss weights for ``labels`` ``(B, T)``: 0 off the answer, ``weight`` on the answer's final
    line (the tokens after its last newline; the whole answer when it is one line), 1 on the rest (the
    interpretation). The final line is the only part a scorer reads, and one token of it (task1's copied
    piece) decides the answer after a listing of up to 64 cells."""
    answer = labels != -100
    t = torch.arange(labels.shape[1], device=labels.device)
    last_newline = torch.where(labels == newline_id, t, -1).amax(1, keepdim=True)  # (B, 1); -1: one line
    final = answer & (t > last_newline)
    return answer.float() + (weight - 1.0) * final.float()


class LangStage(UnderstandingStage):
    """Questions and held-out examples as in ``vlm`` / ``mbaq`` (:class:`UnderstandingStage`); images enter
    as codes or as observed features."""

    name = "lang"

    def __init__(self, cfg):
        super().__init__(cfg)
        which = self.sc.get("train", "text_branch")
        if which not in LANG_TRAIN:
            raise ValueError(f"stage.train must be one of {LANG_TRAIN}, not {which!r}")
        self.read_out_only = which == "read_out"
        self.final_line_weight = float(self.sc.get("final_line_weight", 1.0))
        if self.final_line_weight <= 0:
            raise ValueError(f"stage.final_line_weight must be > 0, got {self.final_line_weight}")

    def is_trained(self, name: str, num_layers: int) -> bool:
        return is_read_out_param(name, num_layers) if self.read_out_only else is_text_branch_param(name)

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
            p.requires_grad_(self.is_trained(name, model.config.num_layers))
        return self._finish_build(model, tok)

    def trainable_parameters(self, model):
        return [p for n, p in model.named_parameters() if self.is_trained(n, model.config.num_layers)]

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
        weighted = self.final_line_weight != 1.0
        if weighted:  # sum of the whole batch's token weights: each chunk's weighted sum is divided by it
            newline = self.tokenizer.encode_text("\n")[0]
            total = final_line_weights(whole["labels"][:, 1:], newline, self.final_line_weight).sum()
        for sub, share in length_chunks(whole, int(self.sc.get("micro_batches", 1))):
            out = wrapped(input_ids=sub["input_ids"], attention_mask=sub["attention_mask"],
                          image_embeds=sub["image_embeds"], labels=None if weighted else sub["labels"])
            if weighted:
                labels = sub["labels"][:, 1:]  # (b, t-1): the token each position predicts
                tok_ce = F.cross_entropy(out.logits[:, :-1].transpose(1, 2), labels, ignore_index=-100, reduction="none")
                ce = ce + (tok_ce * final_line_weights(labels, newline, self.final_line_weight)).sum() / total
            else:
                ce = ce + share * out.loss
        return ce, {"losses/answer_ce": ce.item(), "lang/code_rows": batch["as_codes"].float().mean().item()}

    def evaluate(self, model) -> dict:
        examples = self.eval_examples()
        results = {}
        for features in ("projected", "continuous"):
            acc = accuracy_by_kind(examples, answer(model, self.tokenizer, examples, features=features, draft=True))
            results.update({f"{features}/acc_{k}": v for k, v in acc.items()})
        return results
