"""task3 by likelihood on eval perception's held-out task3 stream: python task3_ranked.py MODEL N_PER_LEVEL [continuous|quantized]."""
import sys
import time

import torch

from latentum_world.evaluation.answers import is_correct, ranked_choices
from latentum_world.evaluation.perception import DEFAULT_SEED, generated_examples
from latentum_world.training.stages import load_model

torch.set_num_threads(1)
model, tok = load_model(sys.argv[1])
model.eval()
n = int(sys.argv[2])
feats = sys.argv[3] if len(sys.argv) > 3 else "continuous"
t = time.time()
c = model.config
exs = generated_examples(c.image_size, n, DEFAULT_SEED, cell_pixels=c.cell_pixels, flag_answers=c.flag_answers)["task3"]
preds = ranked_choices(model, tok, exs, features=feats, batch_size=32)
ok = [is_correct("task3", p, e.answer) for p, e in zip(preds, exs)]
print(feats, sum(ok), len(ok), f"{100*sum(ok)/len(ok):.1f}%", f"{time.time()-t:.1f}s")
