"""Imagined transitions per second of ``LatentWorldModel.step``, against the machine's dense fp32 matmul rate.

One ``step`` is one imagined transition per batch row: the prefix ``<img> s_t </img> a_t`` through the
language model, the ``latent_positions`` autoregressive passes of the MoME generation branch and depth head,
and the understanding branch's two yes/no answers (goal, hole) about the imagined state. The state is
Markov, so the context does not grow. The fused step finds the greedy codes by Jacobi rounds (all positions per
forward, started from a guess out of the model's own earlier steps); ``jacobi_round_rows_per_transition``
records how many row-rounds that took (about 1.07 from the memo saved with the bundled model; from an empty
one, ``--empty-memo``, it falls as the guesses warm up over a run).

For each batch size the model is reset on real first frames of random held-out maps and stepped with random
actions for ``--seconds``; as in the vector env, a row the model ends (goal or hole) restarts from a fresh real
first frame before the next step (the restarts' encoding is timed too; the frames are rendered beforehand),
and every row's start board drafts its read-outs (:mod:`latentum_world.model.draft`). Without restarts,
ended rows would go on stepping from terminal states, where every step pays for the ``"both"`` check's read-out. The model's FLOPs per transition are counted with
``torch.utils.flop_counter.FlopCounterMode`` on one step (matmuls and attention, 2 FLOPs per multiply-add;
elementwise work is not counted), and the machine's dense fp32 throughput is the rate of a loop of
1024 x 1024 matmuls on the same thread count, the faster of MKL's (``torch.mm``) and oneDNN's with a packed
factor (on this project's AMD CPUs oneDNN's is about twice MKL's); ``utilisation`` = achieved FLOP/s / that rate.

    python benchmarks/bench_world_model.py [--model runs/world/final] [--batch-sizes 1,16,64] [--seconds 5]
        [--threads N] [--compile] [--env-num-envs 1,64] [--out benchmarks/results/world_model.json]

``--compile`` measures ``LatentWorldModel(..., compile=True)`` (:mod:`latentum_world.model.compiled`); each
batch size's ``warmup_seconds`` then includes the compilation its first steps trigger. ``--env-num-envs``
also times whole env steps through ``gym.make_vec("LatentUM-VSP-v0", num_envs=N)`` (autoresets included).

``--model`` defaults to the bundled checkpoint, the env's default. ``--fresh`` measures a freshly initialised
model of the default config with its generation branch instead: the same shapes, but its random yes/no
answers do not end episodes the way a trained model's do, so its ``"both"`` read-out cost is not the real one.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from envs.vsp.maps import LEVELS, generate_map
from envs.vsp.observation import model_renderer
from latentum_world.world.model import DEFAULT_FLAG_SOURCE, FLAG_SOURCES, LatentWorldModel
from latentum_world.evaluation import write_json

DEFAULT_MODEL = str(Path(__file__).resolve().parents[1] / "latentum_world" / "checkpoints" / "default")


def fresh_model():
    """The default config (configs/model/default.yaml's sizes are LatentUMConfig's defaults) with its generation branch."""
    from latentum_world.model.config import LatentUMConfig
    from latentum_world.model.modeling import LatentUMModel
    from latentum_world.tokenizer import build_tokenizer

    tok = build_tokenizer()
    ids = tok.convert_tokens_to_ids(["<img>", "</img>", "<img_ctx>"])
    torch.manual_seed(0)
    config = LatentUMConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                            img_start_id=ids[0], img_end_id=ids[1], img_context_id=ids[2])
    model = LatentUMModel(config)
    model.add_generation_branch()  # (returns None: not chainable)
    return model.eval(), tok


def load(path: str | None):
    """The model at ``path`` (which must have a generation branch), or a fresh default-config one when ``path`` is None."""
    if path is None:
        model, tok = fresh_model()
        return model, tok, {"kind": "fresh", "path": None,
                            "why": "--fresh: freshly initialised default config + generation branch"}
    p = Path(path)
    if not ((p / "config.json").is_file() and (p / "model.safetensors").is_file()):
        raise SystemExit(f"no model at {p} (config.json + model.safetensors); pass --model DIR, or --fresh")
    from latentum_world.training.stages import load_model

    model, tok = load_model(p)
    if not model.config.generation_branch:
        raise SystemExit(f"{p} has no generation branch (train the gen and world stages)")
    return model.eval(), tok, {"kind": "trained", "path": str(p)}


def first_frames(batch: int, config, seed: int = 0) -> tuple[torch.Tensor, list]:
    """Real first frames ``(batch, S, S, 3)`` of random held-out maps (levels in turn), and the maps."""
    rng = np.random.default_rng(seed)
    maps = [generate_map(rng, LEVELS[i % len(LEVELS)]) for i in range(batch)]
    return torch.from_numpy(np.stack([model_renderer(config, m.size).render(m, None) for m in maps])), maps


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Restarts:
    """A pool of real first frames (and their maps) that ended rows restart from, in order."""

    def __init__(self, config, seed: int, size: int = 512):
        self.images, self.maps = first_frames(size, config, seed)
        self.next = 0

    def take(self, n: int) -> tuple[torch.Tensor, list]:
        idx = [(self.next + i) % len(self.maps) for i in range(n)]
        self.next += n
        return self.images[idx], [self.maps[i] for i in idx]


def transitions_per_second(wm: LatentWorldModel, batch: int, seconds: float, min_steps: int = 3,
                           warmup_steps: int = 2) -> dict:
    gen = torch.Generator().manual_seed(batch)
    images, maps = first_frames(batch, wm.model.config)
    wm.reset(images, draft_boards=maps)
    pool = Restarts(wm.model.config, seed=1000 + batch)

    def step() -> int:
        out = wm.step(torch.randint(4, (batch,), generator=gen))
        ended = torch.nonzero(out.terminated).flatten()
        if len(ended):
            frames, starts = pool.take(len(ended))
            wm.reset(frames, rows=ended, draft_boards=starts)
        return len(ended)

    t0 = time.perf_counter()
    for _ in range(warmup_steps):  # warm-up (and, compiled, the compilation a new batch size triggers)
        step()
    sync(wm.device)
    warmup = time.perf_counter() - t0
    fused = wm.fused
    counted = (fused.jacobi_rows, fused.round_rows) if fused is not None else (0, 0)
    steps, restarts, t0 = 0, 0, time.perf_counter()
    step_seconds = []
    while True:
        t_step = time.perf_counter()
        restarts += step()
        steps += 1
        sync(wm.device)
        step_seconds.append(time.perf_counter() - t_step)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and steps >= min_steps:
            break
    jacobi_rows = fused.jacobi_rows - counted[0] if fused is not None else 0
    round_rows = fused.round_rows - counted[1] if fused is not None else 0
    return {"batch_size": batch, "warmup_steps": warmup_steps, "warmup_seconds": warmup, "steps": steps,
            "jacobi_round_rows_per_transition": round_rows / jacobi_rows if jacobi_rows else None,
            "episodes_ended": restarts, "seconds": elapsed, "step_ms": 1000 * elapsed / steps,
            "step_ms_p10_p50_p90": [float(v) for v in np.percentile(1000 * np.array(step_seconds), [10, 50, 90])],
            "transitions_per_second": batch * steps / elapsed}


def env_steps_per_second(path: str, num_envs: int, seconds: float, compile: bool, flags_from: str,
                         warmup_steps: int = 3, empty_memo: bool = False) -> dict:
    """The same through ``gym.make_vec("LatentUM-VSP-v0", num_envs=N)``, as a policy sees it: random actions,
    next-step autoreset of ended slots (a real start map rendered and encoded), observations as numpy."""
    import gymnasium as gym

    import latentum_world  # noqa: F401  (registers the id)

    env = gym.make_vec("LatentUM-VSP-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", model=path,
                       compile=compile, flags_from=flags_from, memo=not empty_memo)
    rng = np.random.default_rng(num_envs)
    env.reset(seed=num_envs)
    t0 = time.perf_counter()
    for _ in range(warmup_steps):
        env.step(rng.integers(4, size=num_envs))
    warmup = time.perf_counter() - t0
    steps, ended, t0 = 0, 0, time.perf_counter()
    while True:
        _, _, terminated, truncated, _ = env.step(rng.integers(4, size=num_envs))
        steps += 1
        ended += int((terminated | truncated).sum())
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and steps >= 3:
            break
    env.close()
    return {"num_envs": num_envs, "warmup_steps": warmup_steps, "warmup_seconds": warmup, "steps": steps,
            "seconds": elapsed, "episodes_ended": ended, "env_steps_per_second": num_envs * steps / elapsed}


def flops_per_transition(wm: LatentWorldModel, batch: int = 1) -> dict:
    """FLOPs of one ``step`` at ``batch`` rows, divided by ``batch``; also the yes/no answers' share. The model's
    own FLOPs: the codes decoded position by position (``wm.jacobi = False``). The fused step's Jacobi rounds
    compute the same codes with more FLOPs (each round runs every position of the rows still changing), in fewer
    and larger matmuls; ``transitions_per_second`` counts those rounds."""
    wm.jacobi = False
    wm.reset(first_frames(batch, wm.model.config)[0])
    with FlopCounterMode(display=False) as fc:
        wm.step(torch.zeros(batch, dtype=torch.long))
    total = fc.get_total_flops()
    with FlopCounterMode(display=False) as fa:
        wm.answer_flags(wm.state_embeds)
    flags = fa.get_total_flops()
    return {"batch_size": batch, "flops": total / batch, "answer_flags_flops": flags / batch,
            "imagination_flops": (total - flags) / batch}


def matmul_flops_per_second(seconds: float, n: int = 1024, shape: tuple[int, int, int] | None = None,
                            kernel: str = "mkl") -> dict:
    """FLOP/s of a loop of ``(n, n) @ (n, n)`` products, or of ``(m, k) @ (k, n)`` for ``shape=(m, k, n)``:
    ``kernel="mkl"`` through ``torch.mm``, ``"onednn"`` through oneDNN with the right factor packed (what the
    fused step's matmuls use, :func:`~latentum_world.world.fused_step.packed_linear`)."""
    m, k, n = shape or (n, n, n)
    product = matmul_product(m, k, n, kernel)
    for _ in range(3):
        product()
    reps, t0 = 0, time.perf_counter()
    while True:
        for _ in range(5):
            product()
        reps += 5
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
    size = {"size": n} if shape is None else {"shape": list(shape)}
    return {**size, "dtype": "float32", "kernel": kernel, "matmuls": reps, "seconds": elapsed,
            "flops_per_second": 2 * m * k * n * reps / elapsed}


def matmul_product(m: int, k: int, n: int, kernel: str = "mkl"):
    """A no-argument callable multiplying random ``(m, k) @ (k, n)`` through ``kernel`` (``"mkl"``: ``torch.mm``;
    ``"onednn"``: oneDNN with the right factor packed, as the fused step's matmuls)."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    if kernel == "onednn":
        packed = torch.ops.mkldnn._reorder_linear_weight(b.t().contiguous(), m)
        return lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], "")
    return lambda: torch.mm(a, b)


def machine_probe(seconds: float = 0.5) -> dict:
    """This machine's speed at what dominates a 64-row step besides big matmuls, measured in the same run: one
    64 x 128 x 384 oneDNN matmul (the step's typical product) and one 64 x 128 elementwise add (a small
    kernel's floor), in microseconds, and a repeated copy of 9.4 MB (the size of the generation's key/value
    buffers at 64 rows; it stays in the last-level cache) in GB/s. The shared 2-core machines this project is
    built on have slow phases, lasting minutes to hours, where these move much more than the 1024^3 matmul
    rate; they tell a slow machine from slow code."""
    x = torch.randn(64, 128)
    big = torch.randn(9_437_184 // 4)
    out = torch.empty_like(big)
    ops = {"matmul_64x128x384_us": matmul_product(64, 128, 384, "onednn" if torch.backends.mkldnn.is_available() else "mkl"),
           "add_64x128_us": lambda: torch.add(x, x),
           "copy_9MB_us": lambda: out.copy_(big)}
    result = {}
    for name, op in ops.items():
        for _ in range(3):
            op()
        times, t_end = [], time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            op()
            times.append(time.perf_counter() - t0)
        result[name] = 1e6 * float(np.median(times))
    result["copy_GB_per_s"] = 2 * big.numel() * 4 / result.pop("copy_9MB_us") / 1e3  # read + write
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="world model directory (default: the bundled checkpoint)")
    parser.add_argument("--fresh", action="store_true", help="measure a freshly initialised default-config model instead")
    parser.add_argument("--flags-from", default=DEFAULT_FLAG_SOURCE, choices=FLAG_SOURCES,
                        help=f"where reward and termination are read from (default {DEFAULT_FLAG_SOURCE!r}, the env's)")
    parser.add_argument("--batch-sizes", default="1,16,64", help="comma-separated (default 1,16,64)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per batch size (default 5)")
    parser.add_argument("--matmul-seconds", type=float, default=3.0, help="measuring time of the matmul loop (default 3)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's default, all cores)")
    parser.add_argument("--compile", action="store_true", help="measure the torch.compile'd imagination loop")
    parser.add_argument("--env-num-envs", default="", help="also measure env steps/s through the vector env at these "
                        "comma-separated num_envs (e.g. 1,64; needs a trained --model)")
    parser.add_argument("--empty-memo", action="store_true", help="start the Jacobi guesses from an empty transition memo "
                        "instead of the one saved with the model (as a model without one starts)")
    parser.add_argument("--note", default="", help="free text stored in the JSON (e.g. what else was running)")
    parser.add_argument("--out", default="benchmarks/results/world_model.json")
    args = parser.parse_args()
    batches = [int(b) for b in args.batch_sizes.split(",")]
    if not batches or min(batches) < 1 or args.seconds <= 0:
        parser.error("--batch-sizes must be positive ints and --seconds > 0")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    model, tok, source = load(None if args.fresh else args.model)
    wm = LatentWorldModel(model, tok, compile=args.compile, flags_from=args.flags_from, memo=not args.empty_memo)
    memo_keys = None if wm.memo is None else len(wm.memo)
    c = model.config
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {source['kind']} ({source.get('path') or source['why']}), {params / 1e6:.2f} M parameters, "
          f"{torch.get_num_threads()} threads; transition memo: {memo_keys} keys at the start")

    flops = flops_per_transition(LatentWorldModel(model, tok, flags_from="questions"))  # counted eagerly: the same ops
    # either way; the "both" check's read-out (only for rows that say Yes) is not counted
    print(f"FLOPs per transition: {flops['flops'] / 1e6:.1f} M ({flops['imagination_flops'] / 1e6:.1f} M imagination, "
          f"{flops['answer_flags_flops'] / 1e6:.1f} M reward/termination answers)")
    kernels = [matmul_flops_per_second(args.matmul_seconds, kernel=k) for k in ("mkl", "onednn")]
    peak = max(kernels, key=lambda r: r["flops_per_second"])  # the machine's rate: the faster of the two libraries
    print("dense fp32 matmul 1024^3: " + ", ".join(f"{r['flops_per_second'] / 1e9:.1f} GFLOP/s ({r['kernel']})" for r in kernels))
    probe = machine_probe()
    print(f"machine probe: 64x128x384 matmul {probe['matmul_64x128x384_us']:.1f} us, 64x128 add "
          f"{probe['add_64x128_us']:.1f} us, copy {probe['copy_GB_per_s']:.1f} GB/s")
    rows = []
    for b in batches:
        r = transitions_per_second(wm, b, args.seconds, warmup_steps=20 if args.compile else 2)  # compiled: past the recompiles of the first restarts
        r["achieved_flops_per_second"] = r["transitions_per_second"] * flops["flops"]
        r["utilisation"] = r["achieved_flops_per_second"] / peak["flops_per_second"]
        rounds = r["jacobi_round_rows_per_transition"]
        if rounds is not None:  # what the Jacobi rounds executed: each round row costs about one row's imagination
            r["executed_flops_per_transition"] = flops["flops"] + (rounds - 1) * flops["imagination_flops"]
            r["executed_utilisation"] = r["transitions_per_second"] * r["executed_flops_per_transition"] / peak["flops_per_second"]
        rows.append(r)
        executed = "" if rounds is None else (f" (executed with {rounds:.2f} Jacobi round rows per transition: "
                                              f"{100 * r['executed_utilisation']:.1f}%)")
        print(f"batch {b:3d}: {r['transitions_per_second']:8.1f} transitions/s ({r['step_ms']:.1f} ms/step), "
              f"{r['achieved_flops_per_second'] / 1e9:.2f} GFLOP/s = {100 * r['utilisation']:.1f}% of matmul peak{executed}; "
              f"warm-up {r['warmup_seconds']:.1f} s")
    env_rows = []
    for n in [int(x) for x in args.env_num_envs.split(",") if x]:
        if source["kind"] != "trained":
            parser.error("--env-num-envs needs a trained world model at --model")
        r = env_steps_per_second(args.model, n, args.seconds, args.compile, args.flags_from,
                                 warmup_steps=20 if args.compile else 3, empty_memo=args.empty_memo)
        env_rows.append(r)
        print(f"env num_envs {n:3d}: {r['env_steps_per_second']:8.1f} steps/s ({r['episodes_ended']} episodes ended "
              f"and autoreset); warm-up {r['warmup_seconds']:.1f} s")

    result = {
        "benchmark": "world_model_transitions_per_second",
        "model": source,
        "parameters": params,
        "config": {k: getattr(c, k) for k in ("image_size", "hidden_size", "num_layers", "num_heads", "mlp_size",
                                              "latent_positions", "num_codebooks", "codebook_size", "depth_layers")},
        "sampling": "greedy",
        "flags_from": args.flags_from,
        "restarts": "rows the model ends restart from fresh real first frames (timed); start boards draft the read-outs",
        "compiled": args.compile,
        "transition_memo_keys_at_start": memo_keys,
        "device": str(wm.device),
        "threads": torch.get_num_threads(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "note": args.note,
        "flops_per_transition": flops,
        "flops_counted_by": "torch.utils.flop_counter.FlopCounterMode on one step at batch 1, decoded position by position (the model's FLOPs; matmul/attention only; flags from the questions: the \"both\" check's read-out of rows that say Yes is not counted). executed_flops_per_transition adds the Jacobi rounds' recomputation",
        "matmul_peak": peak,
        "matmul_kernels": kernels,
        "machine_probe": probe,
        "batches": {str(r["batch_size"]): r for r in rows},
        "env": {str(r["num_envs"]): r for r in env_rows},
    }
    write_json(args.out, result)


if __name__ == "__main__":
    main()
