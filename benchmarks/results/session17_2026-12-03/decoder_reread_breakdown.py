"""Where a pixel decoder's re-read errors come from, on `latentum-world eval decoder`'s 600 held-out states.

For each state: is the board read out right from the decoded image (continuous features), from the real
image (continuous), and from the real image's MBAQ codes (quantized)? A decoded miss where both real reads
are right is the decoder's fault; one where the real image is misread too is the model's.

    python benchmarks/results/session17_2026-12-03/decoder_reread_breakdown.py --model M [--decoder DIR] [--out F.json]

``--decoder`` defaults to ``M/decoder``.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np
import torch

from envs.vsp.maps import LEVELS
from envs.vsp.observation import content_side
from latentum_world.data import prompts
from latentum_world.data.understanding import Example, UnderstandingData
from latentum_world.eval_cli import load_for_eval
from latentum_world.evaluation import write_json
from latentum_world.evaluation.answers import answer
from latentum_world.evaluation.decoder import DECODER_PART, mean_squared_error, psnr_from_mse
from latentum_world.evaluation.perception import heldout_rng
from latentum_world.world.decoder import PixelDecoder, decode_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--decoder")
    ap.add_argument("--per-level", type=int, default=100)
    ap.add_argument("--seed", type=int, default=20261122)  # eval decoder's default
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, tok = load_for_eval(args.model, "cpu")
    decoder = PixelDecoder.from_pretrained(args.decoder or str(Path(args.model) / "decoder")).eval()
    data = UnderstandingData(image_size=model.config.image_size, cell_pixels=model.config.cell_pixels)
    cases, per_level, sq = collections.Counter(), {}, 0.0
    for level in LEVELS:
        rng = heldout_rng(args.seed, DECODER_PART, level)
        states = [data.random_state(rng, level=level) for _ in range(args.per_level)]
        real = np.stack([data.image(m, last) for m, last in states])  # (N, S, S, 3) uint8
        with torch.no_grad():
            codes = model.quantizer.encode(model.get_vit_feature(torch.from_numpy(real)))  # (N, P, K)
        decoded = decode_images(model, codes, decoder)
        side = content_side(level, model.config.image_size, model.config.cell_pixels)
        mse = mean_squared_error(decoded[:, :side, :side], real[:, :side, :side])
        sq += mse * len(states)
        question = prompts.table_question(states[0][0])[0]
        right = {}
        for name, images, features in (("decoded", decoded, "continuous"), ("real", real, "continuous"),
                                       ("real_quantized", real, "quantized")):
            examples = [Example(img, question, prompts.table_question(m)[1], "table", m) for img, (m, _) in zip(images, states)]
            preds = answer(model, tok, examples, features=features, batch_size=64)
            right[name] = [p == ex.answer for p, ex in zip(preds, examples)]
        cases.update(zip(right["decoded"], right["real"], right["real_quantized"]))
        per_level[str(level)] = {"psnr_db": psnr_from_mse(mse), **{k: float(np.mean(v)) for k, v in right.items()}}
        print(level, per_level[str(level)], flush=True)
    n = sum(cases.values())
    out = {"model": args.model, "decoder": args.decoder or str(Path(args.model) / "decoder"), "states": n,
           "psnr_db": psnr_from_mse(sq / n),
           "readout_decoded": sum(v for k, v in cases.items() if k[0]) / n,
           "cases_decoded_real_quantized": {"/".join("ok" if x else "wrong" for x in k): v for k, v in sorted(cases.items())},
           "per_level": per_level}
    print(out)
    if args.out:
        write_json(args.out, out)


if __name__ == "__main__":
    main()
