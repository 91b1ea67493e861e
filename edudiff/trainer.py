"""The training loop: :class:`Trainer` and :func:`train` (Algorithm 1 at scale; see :mod:`edudiff.train`).

The loop is cut into small named steps, after improved-diffusion's ``TrainLoop``: :meth:`Trainer.run_loop`,
:meth:`Trainer.run_step`, :meth:`Trainer.forward_backward`, :meth:`Trainer.save`.

Taught in: notebooks/06_unet_mnist.ipynb (MNIST) and notebooks/07_cifar10.ipynb (CIFAR-10).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from . import checkpoint as ckpt
from ._validate import value_checks
from .distributed import (
    DistInfo,
    all_gather,
    any_rank,
    check_same_weights,
    close_distributed,
    init_distributed,
    param_digest,
    pick_device,
)
from .generate import sample_images
from .imageio import save_image_grid
from .losses import loss_simple, min_snr_weights
from .train_config import TrainConfig, unet_config_for
from .train_parts import (
    SEED_DROPOUT,
    SEED_MODEL_INIT,
    SEED_NOISE,
    TrainingInterrupted,
    TrainProgress,
    TrainResult,
    TrainState,
    autocast_context,
    derive_seed,
    ema_decay_at,
    drop_labels,
    ema_update,
    epoch_permutation,
    load_training_images,
    stop_on_signals,
    trim_log,
)
from .unet import UNet

__all__ = ["Trainer", "train"]


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
        path = ckpt.resolve_resume(resume, self.out)
        if path is None:
            return
        if not path.exists():
            if resume is not True:
                raise FileNotFoundError(f"checkpoint {path} (resume=) does not exist; check the path")
            self._say(f"no checkpoint at {path}; starting a new run")
            return
        state = ckpt.load_checkpoint(path, map_location="cpu", required=ckpt.REQUIRED_KEYS)
        changed = ckpt.check_compatible(state["config"], self.config, path)
        ckpt.load_weights(self.model, state["model"], path, "model")
        ckpt.load_weights(self.ema, state["ema"], path, "ema")
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = self.resumed_from = int(state["step"])
        self.seconds_before = float(state.get("train_seconds", 0.0))
        ckpt.restore_rng(
            state["rng"],
            self.noise_gen,
            self.dist.rank,
            self.dist.world,
            self.device,
            path,
            reseed=lambda *stream: derive_seed(self.config.seed, *stream, self.step),
        )
        self.losses = [state.get("losses", torch.zeros(0))[: self.step].float()]
        self._say(
            f"resuming from {path} at step {self.step}/{self.config.steps}"
            + (f" (changed: {'; '.join(changed)})" if changed else "")
        )

    def _say(self, message: str) -> None:
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
            per_example = loss_simple(self.schedule, train_model, x0, t=t, eps=eps, reduction="none", model_kwargs=kwargs)
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
        rng_here = ckpt.rng_state_here(self.device)
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
        state = ckpt.training_state(
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

    def _checkpoint_due(self) -> bool:
        every = self.config.ckpt_every  # the last step always saves, after the loop
        return bool(every) and self.step % every == 0 and self.step < self.config.steps

    def _samples_due(self, final: bool = False) -> bool:
        every = self.config.sample_every
        if not (self.dist.is_main and self.out is not None and every):
            return False
        if final:  # a grid of the final weights too, unless the last periodic grid shows them
            return bool(self.step % every) and self.step > (self.resumed_from or 0)
        return self.step % every == 0

    def _log(self, log_file, progress: TrainProgress, lr: float) -> None:
        if not (self.step % max(self.config.log_every, 1) == 0 or self.step == self.config.steps):
            return
        values = self.flush_losses()
        if values is None or not self.dist.is_main:
            return
        mean = float(values.mean())
        progress.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}")
        if log_file is not None and self.config.log_every:
            speed = self.images_done / max(self.train_seconds, 1e-9)
            log_file.write(json.dumps({"step": self.step, "loss": mean, "lr": lr, "images_per_sec": speed}) + "\n")
            log_file.flush()

    def _stop_requested(self, signals: dict, loss: torch.Tensor) -> str | None:
        """Why to stop after this step ("callback", "time budget" or a signal name), agreed by all ranks."""
        reason = None
        if self.callback is not None:
            self.flush_losses()
            parts = (self.step, self.model, self.ema, self.schedule, self.config, loss.detach(), self.train_seconds)
            reason = "callback" if self.callback(TrainState(*parts, self.dist.rank, self.dist.world)) else None
        if self.config.minutes is not None and self.train_seconds >= 60.0 * self.config.minutes:
            reason = reason or "time budget"
        reason = signals["stop"] or reason
        if any_rank(reason is not None, self.dist, self.device) and reason is None:
            reason = "another process"
        return reason

    # -------------------------------------------------------------------------------- the loop
    def run_loop(self) -> TrainResult:
        """Train from ``self.step`` to ``config.steps`` (or until stopped); returns the :class:`TrainResult`."""
        config = self.config
        if self.dist.is_main and self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_temp_files(self.out)
            trim_log(self.out / "log.jsonl", self.step)
        train_model = self._training_model()
        progress = TrainProgress(
            self.show_progress and self.dist.is_main and self.step < config.steps,
            config,
            self.step,
            desc=f"training {config.preset} on {config.dataset}",
        )
        log_file = open(self.out / "log.jsonl", "a") if (self.dist.is_main and self.out is not None) else None  # noqa: SIM115
        self.model.train()
        try:
            with stop_on_signals() as signals:
                while self.step < config.steps and self.stop_reason is None:
                    loss, lr = self.run_step(train_model)
                    self._log(log_file, progress, lr)
                    progress.update(self.step, self.train_seconds)
                    reason = self._stop_requested(signals, loss)
                    if reason is None and self._checkpoint_due():
                        self.save()
                    if self._samples_due():
                        self.save_samples()
                    if reason is not None:
                        self._stop(reason, signals)
                if self.stop_reason is None:
                    self.save()
                    if self._samples_due(final=True):
                        self.save_samples()
        finally:
            progress.close()
            if log_file is not None:
                log_file.close()
        return self._result()

    def _stop(self, reason: str, signals: dict) -> None:
        self.save()
        self.stop_reason = reason
        where = f"; saved {self.last_checkpoint}, continue with resume=True / --resume" if self.last_checkpoint else ""
        if signals["stop"]:
            message = f"training stopped by {signals['stop']} at step {self.step}{where}"
            raise TrainingInterrupted(message, self.step, self.last_checkpoint)
        if reason == "time budget":
            self._say(f"time budget of {self.config.minutes} min spent at step {self.step}/{self.config.steps}{where}")

    def _result(self) -> TrainResult:
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


def train(
    config: TrainConfig,
    resume: bool | str | os.PathLike = False,
    callback: Callable[[TrainState], bool | None] | None = None,
    progress: bool = True,
    dataset=None,
) -> TrainResult:
    """Train a DDPM per ``config`` (see :class:`~edudiff.train.TrainConfig`) and return a :class:`TrainResult`.

    Args:
        resume: ``True`` continues from ``<out>/last.pt`` if it exists (else starts afresh, saying so);
            a path continues from that checkpoint. The checkpoint's data/model/seed settings must match
            ``config`` (``steps``, ``lr``, ``minutes``, intervals, ... may differ, e.g. to train longer).
        callback: called after every step with a :class:`TrainState`; returning True stops the run
            (a checkpoint is saved). Its time is not counted as training time.
        progress: show a tqdm progress bar with the loss and an ETA
            (rank 0 only).
        dataset: an already loaded :class:`edudiff.data.ImageDataset` (or a float tensor
            (N, C, H, W) in [-1, 1]) to use instead of loading ``config.dataset`` -- the shape must still
            match the dataset's.

    ``config.minutes`` stops the run once this call has trained that long: a checkpoint is saved and the
    result has ``stop_reason="time budget"``; ``resume=True`` continues with a new budget.
    Raises :class:`TrainingInterrupted` (a KeyboardInterrupt) after Ctrl-C/SIGTERM, once ``last.pt``
    holds the state at the step reached; ``resume=True`` continues from there, bit-identically on CPU.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(
            f"config must be a TrainConfig (e.g. TrainConfig.recommended('mnist')), got {type(config).__name__}"
        )
    config = dataclasses.replace(config).validate()  # a private copy
    dist = init_distributed(config.device)
    try:
        trainer = Trainer(config, dist, dataset=dataset, progress=progress, callback=callback)
        trainer.resume(resume)
        return trainer.run_loop()
    finally:
        close_distributed(dist)
