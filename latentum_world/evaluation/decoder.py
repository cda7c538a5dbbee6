"""How good the pixel decoder's pictures are: PSNR against the real render, and whether the model
reads the decoded picture as the board it came from.

On held-out states (random boards of every level with the player anywhere, including on the goal and
in a hole, and the elf facing any way): the real image's MBAQ codes are decoded to RGB by the pixel
decoder beside the model; PSNR is measured against the real image, and the decoded image is then
re-encoded as an OBSERVED image (continuous features) and read out as a VSP table by the
understanding branch (exact match with the real board). The same read-out on the real images is the
reference. A decoded miss on a state whose real image is read right is the decoder's own miss
(``decoder_misses``); the rest are states the model misreads from the real image too, which no decoder
of this model can fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from envs.vsp.maps import LEVELS
from envs.vsp.observation import content_side
from latentum_world.data import prompts
from latentum_world.data.understanding import Example, UnderstandingData
from latentum_world.evaluation.answers import answer
from latentum_world.evaluation.perception import heldout_rng
from latentum_world.world.decoder import decode_images

DECODER_PART = 9  # the held-out generator stream of this evaluation


@dataclass
class DecoderResults:
    model: str
    per_level: dict[int, dict[str, float]] = field(default_factory=dict)
    overall: dict[str, float] = field(default_factory=dict)
    decoder: str = ""  # the pixel decoder's directory ("": the one beside the model)

    def to_dict(self) -> dict:
        return {"model": self.model, "decoder": self.decoder or f"{self.model}/decoder", "overall": self.overall, "per_level": {str(k): v for k, v in self.per_level.items()}}

    def format_table(self) -> str:
        rows = [f"model: {self.model}", f"pixel decoder: {self.decoder or 'decoder/ beside the model'}", "",
                "level    n  PSNR dB  read-out decoded  read-out real  decoder's own misses", "-" * 74]
        for lv, r in [*self.per_level.items(), ("overall", self.overall)]:
            rows.append(f"{lv!s:7s} {int(r['n']):4d}  {r['psnr_db']:7.2f}  {100 * r['readout_decoded']:15.1f}%"
                        f"  {100 * r['readout_real']:12.1f}%  {int(r['decoder_misses']):20d}")
        return "\n".join(rows)


def mean_squared_error(a: np.ndarray, b: np.ndarray) -> float:
    """MSE of uint8 images ``a`` against ``b``, pixel values scaled to [0, 1]."""
    return float(np.mean((a.astype(np.float64) / 255.0 - b.astype(np.float64) / 255.0) ** 2))


def psnr_from_mse(mse: float) -> float:
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of uint8 images ``a`` against ``b`` (pixel values scaled to [0, 1])."""
    return psnr_from_mse(mean_squared_error(a, b))


@torch.no_grad()
def evaluate_decoder(model, tokenizer, per_level: int = 100, seed: int = 20261122, batch_size: int = 64,
                     levels=LEVELS, quiet: bool = False, model_name: str = "", decoder=None) -> DecoderResults:
    """``decoder``: a :class:`~latentum_world.world.decoder.PixelDecoder` to score (default: the one saved
    beside the model, in ``decoder/``)."""
    if per_level < 1:
        raise ValueError(f"per_level must be >= 1, got {per_level}")
    device = next(model.parameters()).device
    data = UnderstandingData(image_size=model.config.image_size, cell_pixels=model.config.cell_pixels)
    results = DecoderResults(model_name)
    totals = {"n": 0, "sq": 0.0, "dec": 0, "real": 0, "own": 0}
    for level in tqdm(levels, desc="decoder", disable=quiet):
        rng = heldout_rng(seed, DECODER_PART, level)
        states = [data.random_state(rng, level=level) for _ in range(per_level)]
        real = np.stack([data.image(m, last) for m, last in states])  # (N, S, S, 3) uint8
        decoded = []
        for i in range(0, len(real), batch_size):
            images = torch.from_numpy(real[i : i + batch_size]).to(device)
            codes = model.quantizer.encode(model.get_vit_feature(images))
            decoded.append(decode_images(model, codes, decoder))
        decoded = np.concatenate(decoded)
        question = prompts.table_question(states[0][0])[0]
        ok = {}
        for name, images in (("decoded", decoded), ("real", real)):
            examples = [Example(img, question, prompts.table_question(m)[1], "table", m) for img, (m, _) in zip(images, states)]
            # the real board drafts each read-out (speed only: the read-out is the model's own greedy text)
            preds = answer(model, tokenizer, examples, features="continuous", batch_size=batch_size, draft=True)
            ok[name] = [p == ex.answer for p, ex in zip(preds, examples)]  # per state: read right?
        own = int(sum(r and not d for d, r in zip(ok["decoded"], ok["real"])))  # decoded misread, real read right
        side = content_side(level, model.config.image_size, model.config.cell_pixels)  # the board, not the black margin
        sq = mean_squared_error(decoded[:, :side, :side], real[:, :side, :side])
        n_dec, n_real = int(sum(ok["decoded"])), int(sum(ok["real"]))
        results.per_level[level] = {"n": per_level, "psnr_db": psnr_from_mse(sq), "readout_decoded": n_dec / per_level,
                                    "readout_real": n_real / per_level, "decoder_misses": own}
        totals["n"] += per_level
        totals["sq"] += sq * per_level
        totals["dec"] += n_dec
        totals["real"] += n_real
        totals["own"] += own
    n = totals["n"]
    results.overall = {"n": n, "psnr_db": psnr_from_mse(totals["sq"] / n),
                       "readout_decoded": totals["dec"] / n, "readout_real": totals["real"] / n,
                       "decoder_misses": totals["own"]}
    return results
