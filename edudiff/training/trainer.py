"""One training run, :class:`Trainer`: its set-up and its steps (Algorithm 1 at scale; see :mod:`edudiff.training`).

The run is cut into small named steps, after improved-diffusion's ``TrainLoop``: :meth:`Trainer.next_batch`,
:meth:`Trainer.forward_backward`, :meth:`Trainer.run_step`, :meth:`Trainer.save`, :meth:`Trainer.resume`; the
loop that repeats them is :func:`edudiff.training.loop.run_loop`.

Taught in: notebooks/06_unet_mnist.ipynb (MNIST) and notebooks/07_cifar10.ipynb (CIFAR-10).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .._validate import value_checks
from ..images.generate import sample_images
from ..images.imageio import save_image_grid
from ..losses import loss_simple, min_snr_weights
from ..nn import checkpoint as ckpt
from ..nn.unet import UNet
from ..nn.unet_config import UNetConfig
from . import resume as resume_state
from .config import TrainConfig, unet_config_for
from .distributed import (
    DistInfo,
    all_gather,
    check_same_weights,
    param_digest,
    pick_device,
)
from .parts import (
    SEED_DROPOUT,
    SEED_MODEL_INIT,
    SEED_NOISE,
    TrainResult,
    TrainState,
    autocast_context,
    derive_seed,
    drop_labels,
    ema_decay_at,
    ema_update,
    epoch_permutation,
    load_training_images,
)

__all__ = ["Trainer"]


class Trainer:
    """One training run: the set-up in ``__init__``, the loop in :meth:`run_loop`. Use :func:`train`."""

    def __init__(
        self,
        config: TrainConfig,
        dist: DistInfo,
        dataset=None,
        progress: bool = True,
        callback: Callable[[TrainState], bool | None] | None = None,
    ):
        self.config, self.dist, self.callback, self.show_progress = config, dist, callback, progress
        self.device = pick_device(config.device, dist)
        self.out = Path(config.out) if config.out is not None else None
        self.images, self.labels = load_training_images(config, dist, self.device, dataset)
        self.num_images, self.image_shape = self.images.shape[0], tuple(self.images.shape[1:])
        self.global_batch = config.batch_size * dist.world
        self.batches_per_epoch = self.num_images // self.global_batch
        self._build_model()
        self.schedule = config.make_schedule()
        # Min-SNR weights per t (None = L_simple), looked up once here instead of rebuilt at every step.
        self.loss_weights = (
            None
            if config.min_snr_gamma is None
            else min_snr_weights(self.schedule, config.min_snr_gamma).to(self.device, torch.float32)
        )
        # The t/eps/flip generator is shared by all ranks (they slice the global batch); the global
        # generator (dropout) is per rank.
        self.noise_gen = torch.Generator(device=self.device).manual_seed(derive_seed(config.seed, SEED_NOISE))
        self._seed_dropout(derive_seed(config.seed, SEED_DROPOUT, dist.rank))
        self.step, self.resumed_from, self.losses, self.recent = 0, None, [], []
        self.train_seconds, self.seconds_before, self.images_done = 0.0, 0.0, 0
        self.last_checkpoint, self.stop_reason = None, None
        self._epoch_cached, self._order = -1, None

    # -------------------------------------------------------------------------------- set-up
    def _build_model(self) -> None:
        """Model, EMA and optimizer. The initial weights come from the seed (identical on every rank)."""
        config, device = self.config, self.device
        self.unet_config = unet_config_for(config)
        torch.manual_seed(derive_seed(config.seed, SEED_MODEL_INIT))
        channels_last = (device.type == "cuda") if config.channels_last is None else bool(config.channels_last)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = UNet(self.unet_config).to(device=device, memory_format=self.memory_format)
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=config.weight_decay
        )

    def _seed_dropout(self, seed: int) -> None:
        torch.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)

    def resume(self, resume) -> None:
        """Continue from the checkpoint ``resume`` names (see :func:`train`), if there is one."""
        path = resume_state.resolve_resume(resume, self.out)
        if path is None:
            return
        if not path.exists():
            if resume is not True:
                raise FileNotFoundError(f"checkpoint {path} (resume=) does not exist; check the path")
            self.say(f"no checkpoint at {path}; starting a new run")
            return
        state = ckpt.load_checkpoint(path, map_location="cpu", required=resume_state.REQUIRED_KEYS)
        changed = resume_state.check_compatible(state["config"], self.config, path)
        ckpt.load_weights(self.model, state["model"], path, "model")
        ckpt.load_weights(self.ema, state["ema"], path, "ema")
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = self.resumed_from = int(state["step"])
        self.seconds_before = float(state.get("train_seconds", 0.0))
        resume_state.restore_rng(
            state["rng"],
            self.noise_gen,
            self.dist.rank,
            self.dist.world,
            self.device,
            path,
            reseed=lambda *stream: derive_seed(self.config.seed, *stream, self.step),
        )
        self.losses = [state.get("losses", torch.zeros(0))[: self.step].float()]
        self.say(
            f"resuming from {path} at step {self.step}/{self.config.steps}"
            + (f" (changed: {'; '.join(changed)})" if changed else "")
        )

    def init_weights(self, source) -> None:
        """Start the model and its EMA from trained weights (``config.init_from``): a file, either a weights file
        written by :func:`edudiff.pretrained.export` (the shipped ones: :func:`edudiff.pretrained.path_of`) or a
        training checkpoint (its EMA). The optimizer stays fresh and the run starts at step 0. A U-Net configuration
        or a noise schedule other than this run's (dropout aside) raises a ValueError naming ``init_from``."""
        source = str(source)
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"init_from={source!r}: no such file; give an exported weights file or a training checkpoint "
                "(for the course's shipped weights, edudiff.pretrained.path_of(name); on the command line, "
                "--init-from mnist)"
            )
        state = ckpt.load_checkpoint(path, map_location="cpu", required=("ema", "unet_config"))
        there, here = dataclasses.asdict(UNetConfig(**state["unet_config"])), dataclasses.asdict(self.unet_config)
        # Dropout is a training setting, not part of what the weights mean: it may differ.
        diffs = [f"{k}: {there[k]!r} there, {here[k]!r} here" for k in here if k != "dropout" and there[k] != here[k]]
        if diffs:
            raise ValueError(
                f"init_from={source!r}: {path} holds a U-Net unlike this run's ({'; '.join(diffs)}); train with the "
                "preset (and unet overrides, --class-conditional) the weights were trained with"
            )
        betas = ckpt.schedule_from_checkpoint(state, path).betas
        if betas.shape != self.schedule.betas.shape or not torch.allclose(
            betas, self.schedule.betas, rtol=1e-6, atol=0
        ):
            raise ValueError(
                f"init_from={source!r}: {path} was trained with another noise schedule (T = {betas.numel() - 1}) than "
                f"this run's (T = {self.config.T}, {self.config.noise_schedule}); use the schedule it was trained with"
            )
        weights = {k: v.float() if v.is_floating_point() else v for k, v in state["ema"].items()}
        ckpt.load_weights(self.model, weights, path, "ema")
        ckpt.load_weights(self.ema, weights, path, "ema")
        self.say(f"starting from the weights of {path} (their EMA), with a fresh optimizer at step 0")

    def say(self, message: str) -> None:
        if self.dist.is_main:
            print(message, flush=True)

    def _training_model(self) -> nn.Module:
        model = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        return torch.compile(model) if self.config.compile else model

    # -------------------------------------------------------------------------------- one step
    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(x0, t, eps, y)`` of the current step for this rank: the seeded data order, then t, eps (and flips)
        for the whole global batch from the shared generator, of which this rank keeps its rows. ``y`` is None
        for an unconditional run; for a class-conditional one, the batch's labels with each replaced by the null
        label (``num_classes``) with probability ``label_dropout`` (drawn from the same generator, after the
        rest, so an unconditional run draws exactly what it drew before labels existed)."""
        config, rank, world, device, batch = (
            self.config,
            self.dist.rank,
            self.dist.world,
            self.device,
            self.global_batch,
        )
        epoch, i = divmod(self.step, self.batches_per_epoch)
        if epoch != self._epoch_cached:
            self._order, self._epoch_cached = epoch_permutation(self.num_images, config.seed, epoch), epoch
        idx = self._order[i * batch : (i + 1) * batch][rank::world]
        on_cpu = self.images.device.type == "cpu"
        x0 = self.images[idx] if on_cpu else self.images[idx.to(self.images.device)]
        t = torch.randint(1, config.T + 1, (batch,), generator=self.noise_gen, device=device)[rank::world]
        eps = torch.randn((batch, *self.image_shape), generator=self.noise_gen, device=device)[rank::world]
        if config.use_hflip:
            flip = (torch.rand(batch, generator=self.noise_gen, device=device) < 0.5)[rank::world]
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        y = None
        if self.labels is not None:
            y = (self.labels[idx] if on_cpu else self.labels[idx.to(self.labels.device)]).to(device)
            y = drop_labels(y, config.label_dropout, config.num_classes, self.noise_gen, batch, rank, world)
        x0 = x0.contiguous(memory_format=self.memory_format)
        return x0, t, eps.contiguous(memory_format=self.memory_format), y

    def forward_backward(self, train_model: nn.Module, x0, t, eps, y=None) -> torch.Tensor:
        """L_simple on the batch and the gradient of the training loss: L_simple itself, or with
        ``min_snr_gamma`` each example's eps error weighted by min(SNR_t, gamma)/SNR_t. Returns L_simple (what
        is logged, whatever the weighting). ``y``: the labels of a class-conditional run (None otherwise).
        On a GPU the per-call value checks are skipped (each one is a
        device sync): this batch is valid by construction (images from uint8, t from randint(1, T+1))."""
        kwargs = {"y": y} if y is not None else None
        with autocast_context(self.device, self.config.bf16), value_checks(self.device.type == "cpu"):
            per_example = loss_simple(
                self.schedule, train_model, x0, t=t, eps=eps, reduction="none", model_kwargs=kwargs
            )
        loss = per_example.mean()
        if self.loss_weights is None:
            loss.backward()
        else:
            w = self.loss_weights[t].to(per_example.dtype)
            (w * per_example).mean().backward()
        return loss.detach()

    def run_step(self, train_model: nn.Module) -> tuple[torch.Tensor, float]:
        """One optimizer step (Algorithm 1, lines 2-5) and the EMA update; returns (loss, lr)."""
        t0 = time.perf_counter()
        x0, t, eps, y = self.next_batch()
        lr = self.config.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = self.forward_backward(train_model, x0, t, eps, y)
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        ema_update(self.ema, self.model, ema_decay_at(self.step, self.config.ema_decay))
        self.step += 1
        self.recent.append(loss.detach())
        self.images_done += self.global_batch
        self.train_seconds += time.perf_counter() - t0
        return loss, lr

    # -------------------------------------------------------------------------------- bookkeeping
    def flush_losses(self) -> torch.Tensor | None:
        """Move the losses of the recent steps to the CPU history; a FloatingPointError if one is not finite."""
        if not self.recent:
            return None
        values = torch.stack(self.recent).float().cpu()
        self.recent.clear()
        self.losses.append(values)
        if not bool(torch.isfinite(values).all()):
            bad = self.step - len(values) + int(torch.nonzero(~torch.isfinite(values))[0]) + 1
            config = self.config
            raise FloatingPointError(
                f"the loss became {float(values[~torch.isfinite(values)][0])} at step {bad}: training diverged. "
                f"Fix: lower lr (now {config.lr}), keep grad_clip > 0 (now {config.grad_clip}), and restart "
                f"or resume from an earlier checkpoint" + (f" in {self.out}" if self.out else "")
            )
        return values

    def save(self) -> Path | None:
        """Write ``last.pt`` (and a ``ckpt_<step>.pt`` snapshot when due) on rank 0; every rank must call it."""
        self.flush_losses()
        rng_here = resume_state.rng_state_here(self.device)
        per_rank = all_gather(rng_here, self.dist)
        digests = all_gather(param_digest(self.model), self.dist) if self.dist.enabled else None
        if not (self.dist.is_main and self.out is not None):
            return None
        data_order = {
            "seed": self.config.seed,
            "epoch": self.step // self.batches_per_epoch,
            "batch_in_epoch": self.step % self.batches_per_epoch,
            "num_images": self.num_images,
            "global_batch": self.global_batch,
            "world_size": self.dist.world,
        }
        state = resume_state.training_state(
            step=self.step,
            model=self.model,
            ema=self.ema,
            optimizer=self.optimizer,
            schedule=self.schedule,
            config=self.config.to_dict(),
            unet_config=self.unet_config,
            rng={
                "noise": self.noise_gen.get_state(),
                "noise_device": self.device.type,
                "per_rank": per_rank,
                "data_order": data_order,
            },
            losses=torch.cat(self.losses) if self.losses else torch.zeros(0),
            train_seconds=self.seconds_before + self.train_seconds,
            ddp_param_digests=digests,
        )
        path = ckpt.save_checkpoint(self.out / "last.pt", state)
        if self.config.snapshot_every and self.step % self.config.snapshot_every == 0:
            ckpt.save_checkpoint(self.out / f"ckpt_{self.step:08d}.pt", state)
        self.last_checkpoint = path
        return path

    def save_samples(self) -> None:
        """A grid of ``n_samples`` images from the EMA model, ``<out>/samples/step_<step>.png``."""
        config = self.config
        images = sample_images(
            self.ema,
            self.schedule,
            config.n_samples,
            self.image_shape,
            ddim_steps=config.ddim_steps,
            seed=config.seed,
            device=self.device,
        )
        save_image_grid(
            images,
            self.out / "samples" / f"step_{self.step:08d}.png",
            nrow=max(1, int(round(math.sqrt(config.n_samples)))),
        )

    def result(self) -> TrainResult:
        """The :class:`TrainResult` of the run so far (every rank must call it: it compares the weights under DDP)."""
        digests = check_same_weights(self.model, self.dist)
        seconds = self.train_seconds
        return TrainResult(
            model=self.model,
            ema=self.ema,
            schedule=self.schedule,
            config=self.config,
            unet_config=self.unet_config,
            step=self.step,
            losses=torch.cat(self.losses) if self.losses else torch.zeros(0),
            out=self.out,
            checkpoint=self.last_checkpoint,
            train_seconds=seconds,
            images_per_sec=self.images_done / seconds if seconds > 0 else float("nan"),
            resumed_from=self.resumed_from,
            stopped_early=self.stop_reason is not None,
            device=self.device,
            ddp_param_digests=digests,
            stop_reason=self.stop_reason,
        )
