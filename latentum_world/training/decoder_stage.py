"""Stage ``decoder``: the pixel decoder on frozen codes (for ``render()`` and TensorBoard only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from latentum_world.data.understanding import UnderstandingData, batch_rng
from latentum_world.training.stages import load_model
from latentum_world.world.decoder import PixelDecoder, PixelDecoderConfig


class DecoderStage:
    name = "decoder"

    def __init__(self, cfg: DictConfig):
        self.cfg, self.sc = cfg, cfg.stage
        data = OmegaConf.to_container(self.sc.data, resolve=True)
        self.data = UnderstandingData.from_stage(data, weights={"table": 1.0})

    def build(self, ckpt: Path | None):
        source = self.cfg.init_from or self.sc.init_from
        if source is None:
            raise ValueError("stage decoder needs the model whose codes it decodes: set init_from=<model dir>")
        self.world, tok = load_model(source)
        self.world.eval().requires_grad_(False)  # frozen: no gradient ever reaches the model
        self.data.check_model(self.world.config)
        if ckpt is not None:
            decoder = PixelDecoder.from_pretrained(ckpt)
        else:
            c = self.world.config
            decoder = PixelDecoder(PixelDecoderConfig(code_dim=c.code_dim, grid_side=c.grid_side, image_size=c.image_size,
                                                      channels=list(self.sc.channels)))
        return decoder, tok

    def trainable_parameters(self, model):
        return list(model.parameters())

    def batch_from(self, rng, size) -> dict:
        examples = self.data.batch(rng, size, "table")  # random states, any level, any facing
        return {"input_ids": torch.zeros(size, 1), "images": torch.from_numpy(np.stack([ex.image for ex in examples]))}

    def batch(self, step: int, rank: int) -> dict:
        out = self.batch_from(batch_rng(self.cfg.seed, step, rank), self.sc.batch_size)
        out["feature_term"] = step >= int(self.sc.get("feature_from_step", 0))  # pixels first
        return out

    def compute_loss(self, wrapped, model, batch):
        """Pixel MSE, plus ``feature_weight`` x the relative squared error of the frozen vision encoder's
        features of the decoded image against those of the real one: the decoded image should read as
        the real one does (the gradient passes THROUGH the frozen encoder into the decoder only). The feature
        term is off before step ``feature_from_step``, so pixels are learnt first."""
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
        weight = float(self.sc.get("feature_weight", 0.0))
        if weight <= 0 or not batch.get("feature_term", True):
            return mse, metrics
        features = self.world.get_vit_feature(decoded.permute(0, 2, 3, 1) * 255.0)  # float pixels, same scale as uint8
        feature = (features - real_features).pow(2).mean() / real_features.pow(2).mean()
        metrics["losses/feature"] = feature.item()
        return mse + weight * feature, metrics

    def after_step(self, model, step: int) -> dict:
        return {}

    def evaluate(self, model) -> dict:
        batch = self.batch_from(np.random.default_rng(777), 64)
        batch["images"] = batch["images"].to(next(model.parameters()).device)
        with torch.no_grad():
            _, metrics = self.compute_loss(model, model, batch)
        return {"psnr_db": metrics["decoder/psnr_db"]}
