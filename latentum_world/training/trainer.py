"""The trainer loop shared by every stage.

AdamW over the stage's trainable parameters, linear warm-up then cosine decay, gradient clipping,
a progress bar, TensorBoard scalars (``losses/*``, ``charts/*``, ``eval/*``) under ``out_dir/tb``,
periodic evaluation, a checkpoint every ``save_every`` steps and at the end, and resume from the
newest checkpoint. Batches are pure functions of ``(seed, step, rank)`` and all other state is in
the checkpoint, so an interrupted run resumes to the same weights as an uninterrupted one.

Multi-process: run under ``torchrun --nproc_per_node N``; each process draws its own batches and
DDP averages gradients (gloo on CPU, nccl on CUDA). Rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from latentum_world.model.quiet import no_progress_bar
from latentum_world.training.checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def lr_factor(step: int, steps: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from 1 to ``min_ratio`` at ``steps``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


GLOO_DRAIN_SECONDS = 0.5  # at the end of a distributed run: time for Gloo's threads to let go of their last work


class Trainer:
    """Runs one stage (see :mod:`latentum_world.training.stages`) to ``cfg.stage.steps``.

    :param cfg: the composed Hydra config (``configs/train.yaml``).
    :param stage: the stage object: builds the model, its batches, its loss and its evaluation.
    """

    def __init__(self, cfg: DictConfig, stage):
        self.cfg, self.stage = cfg, stage
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
            dist.init_process_group(backend)
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda" and self.distributed:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if cfg.num_threads:
            torch.set_num_threads(int(cfg.num_threads))
        self.out_dir = Path(cfg.out_dir)

    def run(self) -> Path:
        """Train to ``stage.steps`` (resuming from the newest checkpoint); returns the final model directory."""
        with no_progress_bar():  # one progress bar: ours (transformers' own setting is restored afterwards)
            return self._run()

    def _run(self) -> Path:
        cfg, sc, stage = self.cfg, self.cfg.stage, self.stage
        torch.manual_seed(cfg.seed)
        ckpt = latest_checkpoint(self.out_dir) if cfg.resume else None
        model, tokenizer = stage.build(ckpt)
        model.to(self.device)
        params = stage.trainable_parameters(model)
        if not params:
            raise RuntimeError(f"stage {sc.name!r} has no trainable parameters")
        optimizer = torch.optim.AdamW(params, lr=sc.lr, weight_decay=sc.weight_decay, betas=(0.9, 0.95))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, sc.steps, sc.warmup_steps, sc.min_lr_ratio)
        )
        start = 0
        if ckpt is not None:
            state = load_trainer_state(ckpt)
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            torch.set_rng_state(state["torch_rng"])
            start = int(state["step"])
            if self.rank == 0:
                print(f"resuming {sc.name} from {ckpt} (step {start}/{sc.steps})")
        find_unused = bool(getattr(stage, "ddp_find_unused", False))
        wrapped = DistributedDataParallel(model, find_unused_parameters=find_unused) if self.distributed else model

        writer = None
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=start if start else None)

        def save(step: int) -> None:
            if self.rank == 0:
                state = {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                         "torch_rng": torch.get_rng_state(), "step": step}
                save_checkpoint(self.out_dir, step, model, tokenizer, state, sc.keep_checkpoints)
            if self.distributed:
                dist.barrier()

        bar = tqdm(total=sc.steps, initial=start, desc=f"train {sc.name}", disable=self.rank != 0, dynamic_ncols=True)
        t_last, n_last = time.perf_counter(), 0
        model.train()
        for step in range(start, sc.steps):
            batch = stage.batch(step, self.rank)
            batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            loss, metrics = stage.compute_loss(wrapped, model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}; last good checkpoint: {latest_checkpoint(self.out_dir)}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, sc.grad_clip)
            optimizer.step()
            schedule.step()
            metrics.update(stage.after_step(model, step))
            n_last += batch["input_ids"].shape[0] * self.world
            done = step + 1
            if writer is not None and (done % sc.log_every == 0 or done == sc.steps):
                now = time.perf_counter()
                writer.add_scalar("losses/total", loss.item(), done)
                for k, v in metrics.items():
                    writer.add_scalar(k, float(v), done)
                writer.add_scalar("charts/lr", schedule.get_last_lr()[0], done)
                writer.add_scalar("charts/grad_norm", float(grad_norm), done)
                writer.add_scalar("charts/samples_per_sec", n_last / max(now - t_last, 1e-9), done)
                t_last, n_last = now, 0
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4g}")
            if done % sc.eval_every == 0 or done == sc.steps:
                if self.rank == 0:
                    model.eval()
                    results = stage.evaluate(model)
                    model.train()
                    for k, v in results.items():
                        writer.add_scalar(f"eval/{k}", float(v), done)
                    tqdm.write(f"[{sc.name} step {done}] " + " ".join(f"{k}={v:.4g}" for k, v in results.items()))
                if self.distributed:
                    dist.barrier()
            if done % sc.save_every == 0 or done == sc.steps:
                save(done)
        bar.close()
        final = self.out_dir / "final"
        if self.rank == 0:
            model.save_pretrained(final)
            tokenizer.save_pretrained(final)
            writer.close()
            print(f"{sc.name}: final model in {final}")
        if self.distributed:
            dist.barrier()
            # Gloo's worker thread frees the finished barrier (and, through it, the works before it, which hold
            # Python tensors: it needs the GIL) just after this rank sees it complete. The group's destructor
            # joins that thread while holding the GIL, so destroying the group right away deadlocked now and
            # then (about 1 run in 15 of the 2-process test beside a busy core; py-spy: the main thread in
            # ~ProcessGroupGloo -> thread::join, the worker in ~AsyncBarrierWork -> gil_scoped_acquire). Sleeping
            # releases the GIL for the worker; the DDP wrapper goes first, while the group is still registered,
            # so the group is destroyed below, by destroy_process_group, with its threads idle.
            time.sleep(GLOO_DRAIN_SECONDS)
            del wrapped
            dist.destroy_process_group()
        return final
