"""``latentum-world demo``: the main job, the world model imagining mazes beside the real ones.

With a world model (``--model DIR``, else the bundled checkpoint ``latentum_world/checkpoints/default``):
fresh seeded mazes of every level (3..8) are rolled out twice under the SAME random actions, in reality and
in the model's imagination (open loop from the real first frame). The numbers come from
:func:`~latentum_world.evaluation.world_model.evaluate_world_model` (the model's board read-out against the
real board after one step and over every step, its reward / termination answers against the real env's,
imagined transitions per second), and are printed as a short table. A TensorBoard run is written under
``--logdir``: the numbers as scalars (and per depth), one image strip per shown episode (real frames above
the pixel decoder's pictures of the imagined states, step by step), and GIFs of real and imagined side by
side (as files, and as TensorBoard videos when moviepy < 2 is importable).

Without any model it says how to train one and runs the real-maze job instead (:func:`run_real_maze`:
generate maps of every level in the benchmark's layout, solve them by BFS, score the plans and a
random-plan baseline with both rules, render a few boards to PNG).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from envs.vsp.loader import load_vsp
from envs.vsp.maps import ACTION_LETTERS, ACTION_NAMES, LEVELS, VSPMap
from envs.vsp.render import render_map
from envs.vsp.scoring import RULES, aligned_table, format_accuracy, score_items
from latentum_world.vsp_cli import generate

DEFAULT_LOGDIR = "runs/demo"
DEFAULT_EPISODES = 8  # maps per level
DEFAULT_HORIZON = 8
DEFAULT_SHOW = 1  # episodes per level drawn (strips, GIFs, videos)
DEFAULT_REAL_COUNT = 100  # maps per level of the real-maze job
BUNDLE_COMMAND = "latentum-world train all --bundle latentum_world/checkpoints/default"
GIF_MS = 700  # per frame; the last frame is held 3x


# ---------------------------------------------------------------------------- the real-maze job
def run_real_maze(out: Path, count: int, seed: int) -> dict:
    t0 = time.perf_counter()
    maze = generate(out, list(LEVELS), count, seed, quiet=True)
    items = load_vsp(maze, task="task-main", split="maps")
    rng = np.random.default_rng(seed)
    bfs = {(it.level, it.index): ",".join(ACTION_LETTERS[a] for a in it.map.shortest_path()) for it in items}
    rand = {
        (it.level, it.index): ",".join(ACTION_LETTERS[a] for a in rng.integers(4, size=2 * len(it.map.shortest_path()) + 2))
        for it in items
    }
    plans_file = out / "plans_bfs.jsonl"
    plans_file.write_text("".join(json.dumps({"level": lv, "index": i, "plan": p}) + "\n" for (lv, i), p in bfs.items()))
    triples = [(it.level, it.index, it.map) for it in items]
    reports = {(name, rule): score_items(triples, plans, rule) for name, plans in (("bfs", bfs), ("random", rand)) for rule in RULES}
    png_dir = out / "png"
    png_dir.mkdir(exist_ok=True)
    for it in items:
        if it.index == 0:  # one picture per level, the elf facing its first BFS move
            first = it.map.shortest_path()[0]
            Image.fromarray(render_map(it.map.move(first), 64, first)).save(png_dir / f"level{it.level}_0_after_{ACTION_LETTERS[first]}.png")
    return {"maze": maze, "items": items, "reports": reports, "plans_file": plans_file, "png_dir": png_dir, "seconds": time.perf_counter() - t0}


run = run_real_maze  # the name this job had before the world-model demo


def format_summary(result: dict) -> str:
    items, reports = result["items"], result["reports"]
    lines = [
        f"{'level':>6} {'maps':>5} {'holes':>6} {'path':>5} {'detour':>7} | {'BFS orig':>8} {'BFS strict':>10} | {'rand orig':>9} {'rand strict':>11}"
    ]
    for lv in LEVELS:
        its = [it for it in items if it.level == lv]
        holes = np.mean([len(it.map.holes) for it in its])
        path = np.mean([len(it.map.shortest_path()) for it in its])
        detour = np.mean([it.map.is_detour for it in its])
        acc = {k: r.to_dict()["levels"][str(lv)]["accuracy"] for k, r in reports.items()}
        lines.append(
            f"{lv:>6} {len(its):>5} {holes:>6.2f} {path:>5.2f} {detour:>7.1%} | {acc['bfs', 'original']:>8.1%} {acc['bfs', 'strict']:>10.1%} | "
            f"{acc['random', 'original']:>9.1%} {acc['random', 'strict']:>11.1%}"
        )
    overall = {k: r.to_dict()["overall"]["accuracy"] for k, r in reports.items()}
    lines.append(
        f"{'all':>6} {len(items):>5} {'':>6} {'':>5} {'':>7} | {overall['bfs', 'original']:>8.1%} {overall['bfs', 'strict']:>10.1%} | "
        f"{overall['random', 'original']:>9.1%} {overall['random', 'strict']:>11.1%}"
    )
    return "\n".join(lines)


def real_maze_job(out: Path, count: int, seed: int) -> int:
    print(f"Generating {count} maps per level (seed {seed}) in the VSP layout under {out} ...")
    result = run_real_maze(out, count, seed)
    print(format_summary(result))
    print(f"\nmaps:  {result['maze']}   (score them: latentum-world vsp score --vsp {result['maze']} --plans {result['plans_file']})")
    print(f"PNGs:  {result['png_dir']}")
    print(f"done in {result['seconds']:.1f} s")
    return 0


def no_model_note(bundled: Path) -> str:
    return (
        f"No world model to show: no --model was given and there is no bundled checkpoint at {bundled}. "
        f"Train one (vlm -> mbaq -> gen -> lang -> world -> pixel decoder) and bundle it with `{BUNDLE_COMMAND}` "
        "(or pass --model DIR, e.g. runs/world/final written by `latentum-world train all`), then rerun "
        "`latentum-world demo` to watch it imagine mazes beside the real ones. Meanwhile, here is the real-maze "
        "job (generate, solve by BFS, score, render)."
    )


# ---------------------------------------------------------------------------- recording the evaluation's rollouts
@dataclass
class RecordedBatch:
    """One ``reset`` and the ``step`` calls after it (rows = that batch's episodes, in order)."""

    start_codes: object  # (B, P, K)
    actions: list = field(default_factory=list)  # per step: (B,) long
    steps: list = field(default_factory=list)  # per step: WorldStep


def recording_world_model(model, tokenizer, sampling):
    """A :class:`~latentum_world.world.model.LatentWorldModel` that keeps what it imagined (codes, answers) and
    the actions it was given, so the demo draws exactly the rollouts the evaluation scored."""
    import torch

    from latentum_world.world.model import LatentWorldModel

    class Recording(LatentWorldModel):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.batches: list[RecordedBatch] = []

        def reset(self, images, rows=None, draft_boards=None):
            codes = super().reset(images, rows, draft_boards)
            if rows is None:
                self.batches.append(RecordedBatch(codes))
            return codes

        def step(self, actions, rows=None):
            out = super().step(actions, rows)
            if rows is None and self.batches:
                self.batches[-1].actions.append(torch.as_tensor(actions).long().cpu())
                self.batches[-1].steps.append(out)
            return out

    return Recording(model, tokenizer, sampling)


@dataclass
class Episode:
    """One shown episode: real boards and the model's imagined codes, step 0 (the real start) to the real end."""

    name: str
    maps: list[VSPMap]
    actions: list[int | None]  # None at step 0
    codes: list  # (P, K) per step; step 0: the MBAQ codes of the real first frame
    reward: list[float | None]
    terminated: list[bool | None]


def recorded_episodes(recorder, starts, picks: list[int]) -> list[Episode]:
    """Replay the real maze of each picked episode under its recorded actions (as the evaluation does:
    an episode ends at the goal or a hole), beside the codes the model imagined."""
    rows = []  # global episode index -> (batch, row)
    for b, batch in enumerate(recorder.batches):
        rows += [(b, i) for i in range(batch.start_codes.shape[0])]
    out = []
    for j in picks:
        b, i = rows[j]
        batch = recorder.batches[b]
        m = starts[j].map
        ep = Episode(starts[j].name, [m], [None], [batch.start_codes[i].cpu()], [None], [None])
        for acts, step in zip(batch.actions, batch.steps):
            if m.terminal:
                break
            a = int(acts[i])
            m = m.move(a)
            ep.maps.append(m)
            ep.actions.append(a)
            ep.codes.append(step.codes[i].cpu())
            ep.reward.append(float(step.reward[i]))
            ep.terminated.append(bool(step.terminated[i]))
        out.append(ep)
    return out


# ---------------------------------------------------------------------------- pictures
def _font():
    try:
        return ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _caption(t: int, action: int | None) -> str:
    return "start" if action is None else f"{t}: {ACTION_NAMES[action]}"


def _verdict(ep: Episode, t: int) -> str:
    """What the model answered about imagined step ``t`` (goal / hole / nothing), and whether reality agrees."""
    if ep.terminated[t] is None:
        return "encoded real start"
    said = "goal" if ep.reward[t] else "hole" if ep.terminated[t] else "not over"
    m = ep.maps[t]
    ok = (ep.reward[t] == (1.0 if m.on_goal else 0.0)) and ep.terminated[t] == m.terminal
    return f"{said}: {'right' if ok else 'WRONG'}"


def episode_strip(ep: Episode, real: list[np.ndarray], imagined: list[np.ndarray]) -> np.ndarray:
    """``(H, W, 3)`` uint8: a caption band, the real frames, the imagined (decoded) frames, the model's answers."""
    s, band, margin, gap = real[0].shape[0], 14, 56, 2
    n = len(real)
    img = Image.new("RGB", (margin + n * (s + gap), band + 2 * s + gap + band), "white")
    draw, font = ImageDraw.Draw(img), _font()
    draw.text((2, band + s // 2 - 6), "real", fill="black", font=font)
    draw.text((2, band + s + gap + s // 2 - 6), "imagined", fill="black", font=font)
    for t in range(n):
        x = margin + t * (s + gap)
        draw.text((x + 2, 1), _caption(t, ep.actions[t]), fill="black", font=font)
        img.paste(Image.fromarray(real[t]), (x, band))
        img.paste(Image.fromarray(imagined[t]), (x, band + s + gap))
        verdict = _verdict(ep, t)
        draw.text((x + 2, band + 2 * s + gap + 1), verdict, fill="firebrick" if "WRONG" in verdict else "black", font=font)
    return np.asarray(img)


def side_by_side_frames(ep: Episode, real: list[np.ndarray], imagined: list[np.ndarray]) -> list[np.ndarray]:
    """One ``(H, W, 3)`` frame per step: real on the left, imagined on the right, captioned."""
    s, band, gap = real[0].shape[0], 14, 4
    frames = []
    for t in range(len(real)):
        img = Image.new("RGB", (2 * s + gap, band + s), "white")
        draw, font = ImageDraw.Draw(img), _font()
        draw.text((2, 1), f"real  {_caption(t, ep.actions[t])}", fill="black", font=font)
        draw.text((s + gap + 2, 1), "imagined", fill="black", font=font)
        img.paste(Image.fromarray(real[t]), (0, band))
        img.paste(Image.fromarray(imagined[t]), (s + gap, band))
        frames.append(np.asarray(img))
    return frames


def write_gif(path: Path, frames: list[np.ndarray]) -> None:
    images = [Image.fromarray(f) for f in frames]
    durations = [GIF_MS] * (len(images) - 1) + [3 * GIF_MS]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)


def video_supported() -> bool:
    """``SummaryWriter.add_video`` needs ``moviepy.editor`` (moviepy < 2)."""
    # moviepy.editor imports pygame's preview and initialises it: no window, no sound card
    for key, value in (("SDL_AUDIODRIVER", "dummy"), ("SDL_VIDEODRIVER", "dummy"), ("PYGAME_HIDE_SUPPORT_PROMPT", "1")):
        os.environ.setdefault(key, value)
    try:
        import moviepy

        if int(str(moviepy.__version__).split(".")[0]) >= 2:
            return False
        from moviepy import editor  # noqa: F401
    except Exception:  # not installed, or a broken install: no videos, nothing else changes
        return False
    return True


# ---------------------------------------------------------------------------- the world-model demo
def _acc(t) -> float | None:
    return t.accuracy


def summary_table(results) -> str:
    """One-step, multi-step and last-depth agreement with reality, and the imagination speed."""
    h = results.horizon
    cols = ("steps", "board", "reward", "terminated", "reward=1", "terminated=1")

    def row(name, s):
        return (name, str(s.steps), format_accuracy(s.board), format_accuracy(s.reward), format_accuracy(s.terminated),
                format_accuracy(s.reward_positive), format_accuracy(s.terminated_positive))

    rows = [row("one step (depth 1)", results.depth_stats(1)), row(f"multi-step (depths 1..{h})", results.level_stats())]
    if h > 1:
        rows.append(row(f"depth {h} only", results.depth_stats(h)))
    curve = "  ".join(f"{d}: {format_accuracy(results.depth_stats(d).board)}" for d in range(1, h + 1))
    tps = results.transitions_per_second
    speed = "-" if tps is None else f"{tps:.1f}"
    return "\n".join([
        aligned_table(("agreement with the real maze",) + cols, rows),
        "",
        f"board read-out by depth: {curve}",
        f"imagined transitions/s: {speed} ({results.transitions} transitions in {results.seconds:.2f} s, batch "
        f"{results.batch_size}, {results.device})",
    ])


def log_scalars(writer, results) -> None:
    one, every = results.depth_stats(1), results.level_stats()
    values = {
        "agreement/board_one_step": _acc(one.board),
        "agreement/board_multi_step": _acc(every.board),
        f"agreement/board_depth_{results.horizon}": _acc(results.depth_stats(results.horizon).board),
        "agreement/reward_one_step": _acc(one.reward),
        "agreement/reward_multi_step": _acc(every.reward),
        "agreement/terminated_one_step": _acc(one.terminated),
        "agreement/terminated_multi_step": _acc(every.terminated),
        "agreement/reward_positive_multi_step": _acc(every.reward_positive),
        "agreement/terminated_positive_multi_step": _acc(every.terminated_positive),
        "agreement/codes_multi_step": _acc(every.codes),
        "speed/imagined_transitions_per_second": results.transitions_per_second,
    }
    for tag, v in values.items():
        if v is not None:
            writer.add_scalar(tag, v, 0)
    for d in range(1, results.horizon + 1):  # the curves over depth (x axis: depth)
        s = results.depth_stats(d)
        for name in ("board", "reward", "terminated", "codes"):
            v = _acc(getattr(s, name))
            if v is not None:
                writer.add_scalar(f"by_depth/{name}", v, d)
    for lv in results.levels:
        v = _acc(results.level_stats(lv).board)
        if v is not None:
            writer.add_scalar("by_level/board_multi_step", v, lv)


@contextmanager
def _progress_bars(on: bool):
    """transformers' weight-loading bars on or off, restored afterwards."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if on else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()


def run_dir_under(logdir: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        d = logdir / (f"world-{stamp}" if k == 0 else f"world-{stamp}-{k}")
        if not d.exists():
            d.mkdir(parents=True)
            return d
    raise FileExistsError(f"too many demo runs named world-{stamp}* under {logdir}")


def world_model_demo(model_dir: Path, episodes: int = DEFAULT_EPISODES, horizon: int = DEFAULT_HORIZON, seed: int = 0,
                     logdir: Path = Path(DEFAULT_LOGDIR), show: int = DEFAULT_SHOW, device: str = "auto",
                     quiet: bool = False) -> dict:
    """Run the demo with the world model at ``model_dir``; returns the results and what was written."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from envs.vsp.observation import model_renderer
    from latentum_world.evaluation.world_model import evaluate_world_model, generated_start_states, make_sampling
    from latentum_world.world.decoder import decode_images, decoder_dir
    from latentum_world.world.loading import load_world_model

    from latentum_world.eval_cli import pick_device

    t0 = time.perf_counter()
    with _progress_bars(not quiet):
        model, tok = load_world_model(model_dir, str(pick_device(device)))
    dev = next(model.parameters()).device
    world = recording_world_model(model, tok, make_sampling(None, seed, dev))
    starts = generated_start_states(episodes, seed)
    results = evaluate_world_model(world, starts, horizon=horizon, policy="random", seed=seed,
                                   batch_size=min(len(starts), 64), quiet=quiet, model_name=str(model_dir),
                                   generated_per_level=episodes)
    t_eval = time.perf_counter() - t0

    run_dir = run_dir_under(Path(logdir))
    (run_dir / "world_model.json").write_text(json.dumps(results.to_dict(), indent=2) + "\n")
    table = summary_table(results)
    written = {"run_dir": run_dir, "json": run_dir / "world_model.json", "gifs": [], "strips": 0, "videos": 0,
               "no_pictures": None}
    with SummaryWriter(log_dir=str(run_dir)) as writer:
        log_scalars(writer, results)
        writer.add_text("demo/summary", f"model: {model_dir}\n\n" + "\n".join("    " + ln for ln in table.splitlines()), 0)

        picks = [j for j, s in enumerate(starts) if int(s.name.rsplit("/", 1)[1]) < show]
        if picks and not (decoder_dir(model) / "model.safetensors").is_file():
            written["no_pictures"] = (f"no pixel decoder at {decoder_dir(model)}, so no pictures of the imagined states "
                                      "(train one: `latentum-world train decoder init_from=<model dir>`)")
            picks = []
        eps = recorded_episodes(world, starts, picks)
        videos = bool(eps) and video_supported()
        size = model.config.image_size
        if eps:
            with _progress_bars(not quiet):  # the decoder's weights load on first use
                imagined_all = decode_images(model, torch.stack([c for ep in eps for c in ep.codes]))
        k = 0
        gif_dir = run_dir / "gifs"
        for ep in eps:
            level = ep.maps[0].size
            real = [model_renderer(model.config, level).render(m, a) for m, a in zip(ep.maps, ep.actions)]
            imagined = list(imagined_all[k : k + len(real)])
            k += len(real)
            tag = ep.name.replace("generated/", "").replace("/", "_ep")  # level3_ep0
            writer.add_image(f"strips/{tag}", episode_strip(ep, real, imagined), 0, dataformats="HWC")
            written["strips"] += 1
            frames = side_by_side_frames(ep, real, imagined)
            gif_dir.mkdir(exist_ok=True)
            path = gif_dir / f"{tag}.gif"
            write_gif(path, frames)
            written["gifs"].append(path)
            if videos:
                clip = torch.from_numpy(np.stack(frames + [frames[-1]] * 2)).permute(0, 3, 1, 2)[None]  # (1, T, C, H, W)
                writer.add_video(f"videos/{tag}", clip, 0, fps=max(1, round(1000 / GIF_MS)))
                written["videos"] += 1
    return {"results": results, "table": table, "written": written, "eval_seconds": t_eval,
            "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------------- command line
def cmd_demo(args: argparse.Namespace) -> int:
    for name in ("episodes", "horizon", "count"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.show < 0:
        raise ValueError(f"--show must be >= 0, got {args.show}")
    logdir = Path(args.logdir)

    from latentum_world.world import loading

    if args.model is None:
        try:
            model_dir = loading.resolve_model_path(None)
        except FileNotFoundError:
            print(no_model_note(loading.BUNDLED) + "\n")
            return real_maze_job(logdir, args.count, args.seed)
    else:
        try:
            model_dir = loading.resolve_model_path(args.model)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"--model {args.model}: not a world-model directory (it needs config.json and model.safetensors; "
                f"e.g. runs/world/final, written by `latentum-world train all`)"
            ) from None

    n = args.episodes * len(LEVELS)
    print(f"World model {model_dir}: {n} fresh mazes ({args.episodes} per level, levels {LEVELS[0]}..{LEVELS[-1]}, "
          f"seed {args.seed}), random actions, {args.horizon} steps; imagination (open loop from the real first frame) "
          "and the real maze side by side ...")
    out = world_model_demo(model_dir, args.episodes, args.horizon, args.seed, logdir, args.show, args.device, args.quiet)
    w = out["written"]
    print()
    print(out["table"])
    print()
    if w["no_pictures"]:
        print(f"note: {w['no_pictures']}")
    print(f"TensorBoard run: {w['run_dir']}  (scalars; {w['strips']} image strips: real above imagined; "
          f"{w['videos']} videos: real | imagined)")
    if w["gifs"]:
        print(f"GIFs (real | imagined): {w['gifs'][0].parent}/  ({len(w['gifs'])} files)")
    print(f"numbers: {w['json']}")
    print(f"done in {out['seconds']:.1f} s")
    print(f"\nview it: tensorboard --logdir {logdir}")
    print("next, agents that act on this imagination and are scored in the real maze:\n"
          "  python -m agents.plan_eval --maps-per-level 20             # planning in imagination (about 1 min)\n"
          "  python -m agents.train_sb3 --levels 3 --timesteps 100000   # PPO in imagination (about 3 min), 98 % in real level-3 mazes")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job: the world model imagining mazes beside the real ones (TensorBoard, GIFs)",
        description="Roll the world model's imagination and the real maze side by side under the same random actions "
        "on fresh mazes of levels 3..8, print how often they agree, and write a TensorBoard run (scalars, image "
        "strips, videos) and GIFs under --logdir. Without --model and without a bundled checkpoint it says how to "
        f"train one (`{BUNDLE_COMMAND}`) and runs the real-maze job (generate, solve by BFS, score, render) instead.",
    )
    p.add_argument("--model", help="world-model directory (default: the bundled checkpoint latentum_world/checkpoints/default)")
    p.add_argument("--episodes", type=int, default=DEFAULT_EPISODES, metavar="N",
                   help=f"fresh mazes per level (default {DEFAULT_EPISODES})")
    p.add_argument("--horizon", type=int, default=DEFAULT_HORIZON, metavar="H",
                   help=f"imagined steps per episode (default {DEFAULT_HORIZON})")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the mazes and the actions (default 0)")
    p.add_argument("--logdir", "--out", dest="logdir", default=DEFAULT_LOGDIR,
                   help=f"output folder: the TensorBoard run and GIFs, or the real-maze job's files (default {DEFAULT_LOGDIR})")
    p.add_argument("--show", type=int, default=DEFAULT_SHOW, metavar="N",
                   help=f"episodes per level drawn as strips, GIFs and videos (default {DEFAULT_SHOW})")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: cuda if available")
    p.add_argument("--count", type=int, default=DEFAULT_REAL_COUNT,
                   help=f"maps per level of the real-maze job run without a model (default {DEFAULT_REAL_COUNT})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
