"""Stage ``decoder``: the pixel decoder on frozen codes (for ``render()`` and TensorBoard only).

Its loss: pixel MSE; plus ``feature_weight`` x the frozen vision encoder's feature error on the decoded
image; plus ``readout_weight`` x the KL between the understanding branch's board read-out (the VSP table
answer) on the real image and on the decoded one, as MBAQ is trained to keep the model's answers. The two
understanding terms start at ``feature_from_step`` / ``readout_from_step``, so pixels are learnt first.
Gradients pass THROUGH the frozen model into the decoder only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from latentum_world.data import prompts
from latentum_world.data.understanding import Example, UnderstandingData, batch_rng, collate
from latentum_world.evaluation.answers import answer
from latentum_world.model.quiet import from_pretrained_quietly
from latentum_world.training.stages import answer_kl, load_model
from latentum_world.world.decoder import PixelDecoder, PixelDecoderConfig, to_pictures


class DecoderStage:
    name = "decoder"

    def __init__(self, cfg: DictConfig):
        self.cfg, self.sc = cfg, cfg.stage
        share = float(self.sc.get("near_hole_share", 0.0))
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"stage.near_hole_share must be in [0, 1], got {share}")
        data = OmegaConf.to_container(self.sc.data, resolve=True)
        self.data = UnderstandingData.from_stage(data, weights={"table": 1.0})

    def build(self, ckpt: Path | None):
        source = self.cfg.init_from or self.sc.init_from
        if source is None:
            raise ValueError("stage decoder needs the model whose codes it decodes: set init_from=<model dir>")
        self.world, tok = load_model(source)
        self.world.eval().requires_grad_(False)  # frozen: no gradient ever reaches the model
        self.data.check_model(self.world.config)
        self.tokenizer = tok
        start = self.sc.get("decoder_from")  # fine-tune an existing decoder instead of starting fresh
        if ckpt is not None:
            decoder = from_pretrained_quietly(PixelDecoder, ckpt)
        elif start:
            if not (Path(start) / "model.safetensors").is_file():
                raise FileNotFoundError(f"stage.decoder_from={start} holds no pixel decoder (no model.safetensors)")
            decoder = from_pretrained_quietly(PixelDecoder, start)
            c, d = self.world.config, decoder.config
            if (d.code_dim, d.grid_side, d.image_size) != (c.code_dim, c.grid_side, c.image_size):
                raise ValueError(f"the decoder at {start} decodes code_dim {d.code_dim}, grid {d.grid_side}, {d.image_size} px; "
                                 f"the model has {c.code_dim}, {c.grid_side}, {c.image_size}")
        else:
            c = self.world.config
            decoder = PixelDecoder(PixelDecoderConfig(code_dim=c.code_dim, grid_side=c.grid_side, image_size=c.image_size,
                                                      channels=list(self.sc.channels),
                                                      context_layers=int(self.sc.get("context_layers", 0))))
        return decoder, tok

    def trainable_parameters(self, model):
        return list(model.parameters())

    def examples(self, rng, size) -> list[Example]:
        """``size`` random states of any level and facing, as board read-out (``table``) examples;
        ``stage.near_hole_share`` of them with the player in or beside a hole (the decoder's hard states)."""
        share = float(self.sc.get("near_hole_share", 0.0))
        if share == 0:
            return self.data.batch(rng, size, "table")  # the stream of the decoders trained before the option
        return [self._near_hole_example(rng) if rng.random() < share else self.data.example(rng, "table")
                for _ in range(size)]

    def batch_from(self, rng, size) -> dict:
        """:meth:`examples`' images and, for the read-out term, their VSP table question and answer tokens
        (``input_ids`` / ``attention_mask`` / ``labels`` ``(B, T)``)."""
        return collate(self.tokenizer, self.examples(rng, size), self.world.config.latent_positions)

    def _near_hole_example(self, rng) -> Example:
        m, last = self.data.state_near_holes(rng)
        q, a = prompts.table_question(m)
        return Example(self.data.image(m, last), q, a, "table", m)

    def batch(self, step: int, rank: int) -> dict:
        out = self.batch_from(batch_rng(self.cfg.seed, step, rank), self.sc.batch_size)
        out["feature_term"] = step >= int(self.sc.get("feature_from_step", 0))  # pixels first
        out["readout_term"] = step >= int(self.sc.get("readout_from_step", 0))
        return out

    def compute_loss(self, wrapped, model, batch):
        """Pixel MSE, plus ``feature_weight`` x the relative squared error of the frozen vision encoder's
        features of the decoded image against those of the real one, plus ``readout_weight`` x the KL of
        the board read-out's answer-token distributions (real image = teacher, decoded image = student):
        the decoded image should read as the real one does."""
        self.world.to(batch["images"].device)
        with torch.no_grad():
            real_features = self.world.get_vit_feature(batch["images"])  # (B, P, F)
            codes = self.world.quantizer.encode(real_features)
            z_q = self.world.quantizer.indices_to_latent(codes)  # (B, P, code_dim)
        target = batch["images"].permute(0, 3, 1, 2).float() / 255.0
        decoded = wrapped(z_q)  # (B, 3, S, S) in [0, 1]
        mse = torch.nn.functional.mse_loss(decoded, target)
        psnr = 10 * torch.log10(1.0 / mse.detach().clamp(min=1e-10))
        metrics = {"losses/mse": mse.item(), "decoder/psnr_db": psnr.item()}
        loss = mse
        pixels = decoded.permute(0, 2, 3, 1) * 255.0  # (B, S, S, 3) float pixels, same scale as uint8
        weight = float(self.sc.get("feature_weight", 0.0))
        if weight > 0 and batch.get("feature_term", True):
            features = self.world.get_vit_feature(pixels)
            feature = (features - real_features).pow(2).mean() / real_features.pow(2).mean()
            metrics["losses/feature"] = feature.item()
            loss = loss + weight * feature
        weight = float(self.sc.get("readout_weight", 0.0))
        if weight > 0 and batch.get("readout_term", True):
            kw = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            with torch.no_grad():
                teacher = self.world(**kw, images=batch["images"]).logits  # (B, T, V): the real image's read-out
            student = self.world(**kw, images=pixels).logits
            readout = answer_kl(teacher, student, batch["labels"])
            metrics["losses/readout_kl"] = readout.item()
            loss = loss + weight * readout
        return loss, metrics

    def after_step(self, model, step: int) -> dict:
        return {}

    def evaluate(self, model) -> dict:
        """PSNR on 64 held-out states, and how often the model reads the decoded image as the real board."""
        rng = np.random.default_rng(777)
        examples = self.data.batch(rng, 64, "table")
        device = next(model.parameters()).device
        images = torch.from_numpy(np.stack([ex.image for ex in examples])).to(device)
        with torch.no_grad():
            self.world.to(device)
            z_q = self.world.quantizer.indices_to_latent(self.world.quantizer.encode(self.world.get_vit_feature(images)))
            decoded = model(z_q)  # (B, 3, S, S)
            mse = torch.nn.functional.mse_loss(decoded, images.permute(0, 3, 1, 2).float() / 255.0)
        reread = [dataclasses.replace(ex, image=pic) for pic, ex in zip(to_pictures(decoded), examples)]
        preds = answer(self.world, self.tokenizer, reread, batch_size=64, draft=True)  # drafts: speed only
        return {"psnr_db": float(10 * torch.log10(1.0 / mse.clamp(min=1e-10))),
                "readout_decoded": float(np.mean([p == ex.answer for p, ex in zip(preds, reread)]))}
