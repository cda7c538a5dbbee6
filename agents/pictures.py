"""Pictures of an agent's episode: the real maze beside the world model's imagination under the same actions.

Used by :mod:`agents.plan_eval` (a plan) and :mod:`agents.train_sb3` (an agent's real episode): the actions are
replayed in imagination from the same real first frame (batch 1, open-loop), the imagined codes are drawn by the
pixel decoder, and TensorBoard gets a strip (real frames above imagined ones, with the model's goal / hole
verdicts, :func:`latentum_world.demo.episode_strip`) while a GIF of the two side by side goes to disk.
"""

from __future__ import annotations

from pathlib import Path

import torch

from envs.vsp.maps import VSPMap
from envs.vsp.observation import model_renderer


def imagined_episode(world, board: VSPMap, actions: list[int], name: str):
    """``actions`` replayed in imagination (batch 1, from ``board``'s real first frame) beside the real maze under
    the same actions, as a :class:`latentum_world.demo.Episode` (it ends where the real episode ends)."""
    from latentum_world.demo import Episode

    image = torch.from_numpy(model_renderer(world.model.config, board.size).render(board))
    codes = world.reset(image[None], draft_boards=[board])[0]
    ep = Episode(name, [board], [None], [codes.cpu()], [None], [None])
    for a in actions:
        if board.terminal:
            break
        out = world.step(torch.tensor([a]))
        board = board.move(a)
        ep.maps.append(board)
        ep.actions.append(a)
        ep.codes.append(out.codes[0].cpu())
        ep.reward.append(float(out.reward[0]))
        ep.terminated.append(bool(out.terminated[0]))
    return ep


def can_draw(world) -> bool:
    """Whether the world model's checkpoint has the pixel decoder the pictures need."""
    from latentum_world.world.decoder import decoder_dir

    return (decoder_dir(world.model) / "model.safetensors").is_file()


def log_episode(writer, gif_dir: Path, world, board: VSPMap, actions: list[int], tag: str) -> Path:
    """Add the strip of ``board`` under ``actions`` to ``writer`` (as ``tag``) and write ``gif_dir/<last part of tag>.gif``."""
    from latentum_world.demo import episode_strip, side_by_side_frames, write_gif
    from latentum_world.world.decoder import decode_images

    ep = imagined_episode(world, board, actions, tag)
    renderer = model_renderer(world.model.config, board.size)
    real = [renderer.render(m, a) for m, a in zip(ep.maps, ep.actions)]
    imagined = list(decode_images(world.model, torch.stack(ep.codes)))
    writer.add_image(tag, episode_strip(ep, real, imagined), 0, dataformats="HWC")
    path = Path(gif_dir) / f"{tag.rsplit('/', 1)[-1]}.gif"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_gif(path, side_by_side_frames(ep, real, imagined))
    return path
