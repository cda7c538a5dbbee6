"""task3 by likelihood on eval perception's held-out task3 stream: python task3_ranked.py MODEL N_PER_LEVEL [continuous|quantized]."""
import sys, time, torch
torch.set_num_threads(1)
from latentum_world.training.stages import load_model
from latentum_world.evaluation.perception import generated_examples
from latentum_world.evaluation.answers import ranked_choices, is_correct
from envs.vsp.maps import LEVELS
model, tok = load_model(sys.argv[1]); model.eval()
n = int(sys.argv[2]); feats = sys.argv[3] if len(sys.argv) > 3 else "continuous"
t = time.time()
from latentum_world.data.understanding import UnderstandingData
from latentum_world.evaluation.perception import heldout_rng
from latentum_world.data.understanding import TASKS
exs = []
for level in LEVELS:
    data = UnderstandingData(image_size=model.config.image_size, cell_pixels=model.config.cell_pixels, levels=(level,))
    rng = heldout_rng(20261122, 1 + TASKS.index("task3"), level)
    exs += [data.example(rng, "task3") for _ in range(n)]
preds = ranked_choices(model, tok, exs, features=feats, batch_size=32)
ok = [is_correct("task3", p, e.answer) for p, e in zip(preds, exs)]
print(feats, sum(ok), len(ok), f"{100*sum(ok)/len(ok):.1f}%", f"{time.time()-t:.1f}s")
