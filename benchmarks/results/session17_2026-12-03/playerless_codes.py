"""How often MBAQ gives a board drawn WITHOUT the player exactly the codes of the same board with the player on the goal.

    python benchmarks/results/session17_2026-12-03/playerless_codes.py MODEL_DIR
"""
import sys, dataclasses, numpy as np, torch
from latentum_world.data.understanding import UnderstandingData
from latentum_world.training.stages import load_model
torch.set_num_threads(1)
model, tok = load_model(sys.argv[1]); model.eval()
data = UnderstandingData(image_size=model.config.image_size, cell_pixels=model.config.cell_pixels)
rng = np.random.default_rng(0)
full_same = pos_diff = 0
N = 128
for _ in range(N):
    m, last = data.random_state(rng)
    g = dataclasses.replace(m, player=m.goal)
    imgs = np.stack([data.image(g, last), data.image(m, last, player=False)])
    with torch.no_grad():
        c = model.quantizer.encode(model.get_vit_feature(torch.from_numpy(imgs)))  # (2, P, K)
    d = (c[0] != c[1]).any(-1)  # (P,)
    full_same += int(not d.any()); pos_diff += int(d.sum())
print(f"{sys.argv[1]}: player-on-goal vs player-less boards: identical codes at every position in {full_same}/{N}; differing positions {pos_diff}")
