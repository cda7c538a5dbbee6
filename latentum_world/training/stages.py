"""Training stages. Each owns its model set-up, batches, loss and evaluation; :class:`Trainer` runs them.

* ``vlm``: the understanding model (vision encoder, ``mlp1``, language model, text head) learns VSP
  questions from scratch. The quantizer is untouched.
* ``mbaq``: everything but the quantizer frozen; the quantizer learns to make the model's answer
  distribution on quantized features match the one on continuous features (KL at answer tokens)
  plus its codebook / commitment / entropy terms. No pixel loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from latentum_world.data.understanding import TASKS, UnderstandingData, batch_rng, collate, probe_batch
from latentum_world.evaluation.answers import accuracy_by_kind, answer
from latentum_world.model.config import LatentUMConfig
from latentum_world.model.mbaq import MBAQuantizer, codebook_perplexity
from latentum_world.model.modeling import LatentUMModel
from latentum_world.model.quiet import from_pretrained_quietly
from latentum_world.tokenizer import LatentUMTokenizer, build_tokenizer

#: Held-out examples come from this seed stream, disjoint from training's ``[seed, step, rank]`` streams.
EVAL_SEED = 987_654_321


def answer_kl(teacher: torch.Tensor, student: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of the next-token distributions at answer tokens, averaged over those tokens.

    :param teacher: ``(B, T, V)`` logits (no gradient needed); :param student: ``(B, T, V)`` logits;
    :param labels: ``(B, T)``, -100 outside the answers (as :func:`collate` makes them).
    """
    answer_pos = labels[:, 1:] != -100  # (B, T-1): positions whose next token is an answer token
    t = F.log_softmax(teacher[:, :-1][answer_pos], dim=-1)  # (N, V)
    s = F.log_softmax(student[:, :-1][answer_pos], dim=-1)  # (N, V)
    return F.kl_div(s, t, log_target=True, reduction="batchmean")


def load_model(path: str | Path) -> tuple[LatentUMModel, LatentUMTokenizer]:
    """A trained model directory (``save_pretrained`` output) and its tokenizer."""
    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path} is not a LatentUM model directory (needs config.json and model.safetensors)")
    model = from_pretrained_quietly(LatentUMModel, path)
    return model, LatentUMTokenizer.from_pretrained(path)


def load_stage_model(cfg: DictConfig, ckpt: Path | None, needs: str) -> tuple[LatentUMModel, LatentUMTokenizer, Path]:
    """The model a stage starts from: its checkpoint when resuming, else ``init_from`` (command line, then the
    stage's config); ``needs`` completes the error "stage <name> needs ...: set init_from=...". Returns the source too."""
    source = ckpt or cfg.init_from or cfg.stage.get("init_from")
    if source is None:
        raise ValueError(f"stage {cfg.stage.name} needs {needs}")
    if not Path(source).exists():  # a checkpoint always exists: this is init_from
        hint = "set init_from=<model dir>"
        if not cfg.init_from:  # the stage config's default, runs/<previous stage>/final
            previous = Path(source).parent.name
            hint = f"train stage {previous} first (`latentum-world train {previous}`), or {hint}"
        raise FileNotFoundError(f"stage {cfg.stage.name} starts from {source}, which does not exist: {hint}")
    model, tok = load_model(source)
    return model, tok, source


def length_chunks(batch: dict, chunks: int) -> list[tuple[dict, float]]:
    """A right-padded batch split into ``chunks`` sub-batches of similar length, each cut to its own longest
    row: ``[(sub_batch, share of the batch's answer tokens), ...]``. A loss averaged over answer tokens is
    then ``sum(share * sub-batch loss)``, the same as on the whole batch, without computing the padding
    (a length group's rows still differ up to 2x: the listing grows with the level squared).
    Per-row tensors are selected; the ``images`` and probe targets go with their rows."""
    lengths = batch["attention_mask"].sum(1)  # (B,)
    order = torch.argsort(lengths, stable=True)
    answers = (batch["labels"] != -100).sum()
    out = []
    for idx in torch.tensor_split(order, min(chunks, len(order))):
        t = int(lengths[idx].max())
        sub = {k: (v[idx, :t] if k in ("input_ids", "attention_mask", "labels") else v[idx])
               for k, v in batch.items() if torch.is_tensor(v)}
        out.append((sub, float((sub["labels"] != -100).sum() / answers)))
    return out


class UnderstandingStage:
    """Shared by ``vlm`` and ``mbaq``: the synthetic question data and the per-kind evaluation."""

    name = "base"

    def __init__(self, cfg: DictConfig):
        self.cfg, self.sc = cfg, cfg.stage
        data = OmegaConf.to_container(self.sc.data, resolve=True)
        self.data = UnderstandingData.from_stage(data)
        self._eval_examples = None

    def batch(self, step: int, rank: int) -> dict:
        examples = self.data.batch(batch_rng(self.cfg.seed, step, rank), self.sc.batch_size)
        return collate(self.tokenizer, examples, self.positions)

    def eval_examples(self) -> list:
        if self._eval_examples is None:
            rng = np.random.default_rng(EVAL_SEED)
            kinds = [k for k in TASKS if self.data.weights.get(k, 0) > 0]  # the kinds this run trains on
            self._eval_examples = [ex for kind in kinds for ex in self.data.batch(rng, self.sc.eval_examples, kind)]
        return self._eval_examples

    def after_step(self, model, step: int) -> dict:
        return {}

    def _finish_build(self, model: LatentUMModel, tokenizer) -> tuple[LatentUMModel, LatentUMTokenizer]:
        self.tokenizer, self.positions, self.model_config = tokenizer, model.config.latent_positions, model.config
        self.data = self.data.for_model(model.config)  # its image layout and flag-answer format
        return model, tokenizer


class VLMStage(UnderstandingStage):
    name = "vlm"

    def batch(self, step: int, rank: int) -> dict:
        examples = self.data.batch(batch_rng(self.cfg.seed, step, rank), self.sc.batch_size)
        out = collate(self.tokenizer, examples, self.positions)
        if self.sc.probe_weight:
            out.update(probe_batch(examples, self.model_config))
        return out

    def build(self, ckpt: Path | None):
        if ckpt is not None:
            model, tok = load_model(ckpt)
        elif self.cfg.init_from or self.sc.get("init_from"):
            model, tok = load_model(self.cfg.init_from or self.sc.init_from)
        else:
            tok = build_tokenizer()
            sizes = OmegaConf.to_container(self.cfg.model, resolve=True)
            model = LatentUMModel(LatentUMConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                                 img_start_id=tok.convert_tokens_to_ids("<img>"),
                                                 img_end_id=tok.convert_tokens_to_ids("</img>"),
                                                 img_context_id=tok.convert_tokens_to_ids("<img_ctx>"), **sizes))
        for p in model.quantizer.parameters():
            p.requires_grad_(False)
        if not self.sc.probe_weight:
            for p in model.vision_probe.parameters():
                p.requires_grad_(False)
        return self._finish_build(model, tok)

    def trainable_parameters(self, model):
        return [p for p in model.parameters() if p.requires_grad]

    def compute_loss(self, wrapped, model, batch):
        """Answer cross-entropy (+ ``probe_weight`` x the vision probe's loss), over ``stage.micro_batches``
        length-sorted sub-batches (:func:`length_chunks`) summed into one graph."""
        ce = probe = 0.0
        b = batch["input_ids"].shape[0]
        for sub, share in length_chunks(batch, int(self.sc.get("micro_batches", 1))):
            kw = dict(input_ids=sub["input_ids"], attention_mask=sub["attention_mask"], images=sub["images"], labels=sub["labels"])
            if self.sc.probe_weight:
                kw["probe_targets"] = (sub["probe_cells"], sub["probe_levels"])
            out = wrapped(**kw)
            ce = ce + share * out.loss
            if self.sc.probe_weight:
                probe = probe + sub["input_ids"].shape[0] / b * out.probe_loss
        if not self.sc.probe_weight:
            return ce, {"losses/answer_ce": ce.item()}
        return ce + self.sc.probe_weight * probe, {"losses/answer_ce": ce.item(), "losses/probe": probe.item()}

    def evaluate(self, model) -> dict:
        examples = self.eval_examples()
        acc = accuracy_by_kind(examples, answer(model, self.tokenizer, examples, draft=True))  # drafts: speed only
        return {f"acc_{k}": v for k, v in acc.items()}


QUANTIZER_KEYS = ("code_dim", "num_codebooks", "codebook_size", "quantizer_hidden", "commitment_weight",
                  "entropy_weight", "usage_decay", "dead_code_fraction", "max_restarts")


class MBAQStage(UnderstandingStage):
    name = "mbaq"

    def __init__(self, cfg: DictConfig):
        super().__init__(cfg)
        # stage.train: quantizer (default, the whole MBAQ) or up_proj: only its up-projection, with the
        # down-projection and codebooks (so every image's codes) fixed and no dead-code restarts; refits the quantized
        # features to a language model that changed after MBAQ (``lang``) without touching the world model's codes
        which = self.sc.get("train", "quantizer")
        if which not in ("quantizer", "up_proj"):
            raise ValueError(f"stage.train must be 'quantizer' or 'up_proj', not {which!r}")
        self.up_proj_only = which == "up_proj"
        self.trained_prefix = "quantizer.up_proj." if self.up_proj_only else "quantizer."

    def build(self, ckpt: Path | None):
        model, tok, _ = load_stage_model(self.cfg, ckpt, "a trained understanding model: set init_from=<vlm model dir>")
        if ckpt is None:
            self._size_quantizer(model)
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(self.trained_prefix))
        return self._finish_build(model, tok)

    def _size_quantizer(self, model) -> None:
        """The quantizer's sizes are chosen here (``model.code_dim`` etc. in the config), not by the
        understanding model it starts from: a fresh quantizer is built when they differ."""
        sizes = {k: self.cfg.model[k] for k in QUANTIZER_KEYS if k in self.cfg.model}
        if all(getattr(model.config, k) == v for k, v in sizes.items()):
            return
        if model.config.generation_branch:
            raise ValueError("cannot resize the quantizer of a model that already has a generation branch")
        for k, v in sizes.items():
            setattr(model.config, k, v)
        if model.config.code_dim % model.config.num_codebooks:
            raise ValueError(f"code_dim {model.config.code_dim} must split evenly over {model.config.num_codebooks} codebooks")
        model.quantizer = MBAQuantizer(model.config)
        model.quantizer.apply(model._init_weights)

    def trainable_parameters(self, model):
        return [p for n, p in model.named_parameters() if n.startswith(self.trained_prefix)]

    def compute_loss(self, wrapped, model, batch):
        """KL(continuous || quantized) of the answer tokens + ``vq_weight`` x the quantizer's own loss.

        The frozen ViT runs once for both feature kinds; the quantizer once over the whole batch (its usage EMA,
        entropy term and dead-code restart pool are per call and meant over a whole batch), through ``wrapped`` so
        DDP sees it; the frozen language model then reads both feature kinds in ``stage.micro_batches``
        length-sorted chunks (:func:`length_chunks`), each cut to its own longest row: the same loss as one
        padded pass, at about half the token slots."""
        with torch.no_grad():
            vit = model.get_vit_feature(batch["images"])  # (B, P, F)
            continuous = model.mlp1(vit)  # (B, P, d)
        quantized, q = wrapped(None, vit=vit, features="quantized")  # (B, P, d): one image per row
        kl = 0.0
        for sub, share in length_chunks({**batch, "quantized": quantized, "continuous": continuous},
                                        int(self.sc.get("micro_batches", 1))):
            kw = dict(input_ids=sub["input_ids"], attention_mask=sub["attention_mask"])
            with torch.no_grad():
                teacher = model(**kw, image_embeds=sub["continuous"]).logits  # (b, t, V)
            student = model(**kw, image_embeds=sub["quantized"]).logits
            kl = kl + share * answer_kl(teacher, student, sub["labels"])
        self._last_indices = q.indices.detach()
        return kl + self.sc.vq_weight * q.loss, {"losses/kl": kl.item(), "losses/vq": q.loss.item()}

    def after_step(self, model, step: int) -> dict:
        # restart randomness is a function of the step, so a resumed run restarts the same codes
        gen = torch.Generator().manual_seed(int(self.cfg.seed) * 1_000_003 + step)
        restarted = 0 if self.up_proj_only else model.quantizer.restart_dead_codes(gen)
        perplexity = codebook_perplexity(self._last_indices, model.config.codebook_size)
        out = {"mbaq/restarted_codes": restarted}
        out.update({f"mbaq/batch_perplexity_{i}": float(v) for i, v in enumerate(perplexity)})
        return out

    def evaluate(self, model) -> dict:
        examples = self.eval_examples()
        results = {}
        for features in ("continuous", "quantized"):
            acc = accuracy_by_kind(examples, answer(model, self.tokenizer, examples, features=features, draft=True))
            results.update({f"{features}/acc_{k}": v for k, v in acc.items()})
        images = torch.from_numpy(np.stack([ex.image for ex in examples])).to(next(model.parameters()).device)
        with torch.no_grad():
            codes = model.quantizer.encode(model.get_vit_feature(images))
        for i, v in enumerate(codebook_perplexity(codes, model.config.codebook_size)):
            results[f"perplexity_{i}"] = float(v)
        return results


def _stages() -> dict:
    from latentum_world.training.decoder_stage import DecoderStage
    from latentum_world.training.lang_stage import LangStage
    from latentum_world.training.world_stages import GenStage, WorldStage

    return {"vlm": VLMStage, "mbaq": MBAQStage, "gen": GenStage, "lang": LangStage, "world": WorldStage, "decoder": DecoderStage}


class _LazyStages(dict):
    def __missing__(self, key):
        self.update(_stages())
        return dict.__getitem__(self, key)


STAGES = _LazyStages(vlm=VLMStage, mbaq=MBAQStage)
