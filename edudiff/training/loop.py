"""The training loop: :func:`train` and :func:`run_loop` (Algorithm 1 at scale; see :mod:`edudiff.training`).

:func:`run_loop` repeats :meth:`Trainer.run_step <edudiff.training.trainer.Trainer.run_step>` and does the
bookkeeping between steps: the loss log, the progress bar, checkpoints and sample grids when due, and a clean stop
(a callback, a time budget, Ctrl-C / SIGTERM) that always leaves a checkpoint to resume from.

Taught in: notebooks/06_unet_mnist.ipynb (MNIST) and notebooks/07_cifar10.ipynb (CIFAR-10).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable

import torch

from ..nn import checkpoint as ckpt
from .config import TrainConfig
from .distributed import any_rank, close_distributed, init_distributed
from .parts import TrainingInterrupted, TrainProgress, TrainResult, TrainState, stop_on_signals, trim_log
from .trainer import Trainer

__all__ = ["train", "run_loop"]


def _checkpoint_due(trainer) -> bool:
    every = trainer.config.ckpt_every  # the last step always saves, after the loop
    return bool(every) and trainer.step % every == 0 and trainer.step < trainer.config.steps


def _samples_due(trainer, final: bool = False) -> bool:
    every = trainer.config.sample_every
    if not (trainer.dist.is_main and trainer.out is not None and every):
        return False
    if final:  # a grid of the final weights too, unless the last periodic grid shows them
        return bool(trainer.step % every) and trainer.step > (trainer.resumed_from or 0)
    return trainer.step % every == 0


def _log(trainer, log_file, progress: TrainProgress, lr: float) -> None:
    if not (trainer.step % max(trainer.config.log_every, 1) == 0 or trainer.step == trainer.config.steps):
        return
    values = trainer.flush_losses()
    if values is None or not trainer.dist.is_main:
        return
    mean = float(values.mean())
    progress.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}")
    if log_file is not None and trainer.config.log_every:
        speed = trainer.images_done / max(trainer.train_seconds, 1e-9)
        log_file.write(json.dumps({"step": trainer.step, "loss": mean, "lr": lr, "images_per_sec": speed}) + "\n")
        log_file.flush()


def _stop_requested(trainer, signals: dict, loss: torch.Tensor) -> str | None:
    """Why to stop after this step ("callback", "time budget" or a signal name), agreed by all ranks."""
    reason = None
    if trainer.callback is not None:
        trainer.flush_losses()
        parts = (
            trainer.step,
            trainer.model,
            trainer.ema,
            trainer.schedule,
            trainer.config,
            loss.detach(),
            trainer.train_seconds,
        )
        reason = "callback" if trainer.callback(TrainState(*parts, trainer.dist.rank, trainer.dist.world)) else None
    if trainer.config.minutes is not None and trainer.train_seconds >= 60.0 * trainer.config.minutes:
        reason = reason or "time budget"
    reason = signals["stop"] or reason
    if any_rank(reason is not None, trainer.dist, trainer.device) and reason is None:
        reason = "another process"
    return reason


# -------------------------------------------------------------------------------- the loop
def run_loop(trainer) -> TrainResult:
    """Train from ``trainer.step`` to ``config.steps`` (or until stopped); returns the :class:`TrainResult`."""
    config = trainer.config
    if trainer.dist.is_main and trainer.out is not None:
        trainer.out.mkdir(parents=True, exist_ok=True)
        ckpt.remove_stale_temp_files(trainer.out)
        trim_log(trainer.out / "log.jsonl", trainer.step)
    train_model = trainer._training_model()
    progress = TrainProgress(
        trainer.show_progress and trainer.dist.is_main and trainer.step < config.steps,
        config,
        trainer.step,
        desc=f"training {config.preset} on {config.dataset}",
    )
    log_file = open(trainer.out / "log.jsonl", "a") if (trainer.dist.is_main and trainer.out is not None) else None  # noqa: SIM115
    trainer.model.train()
    try:
        with stop_on_signals() as signals:
            while trainer.step < config.steps and trainer.stop_reason is None:
                loss, lr = trainer.run_step(train_model)
                _log(trainer, log_file, progress, lr)
                progress.update(trainer.step, trainer.train_seconds)
                reason = _stop_requested(trainer, signals, loss)
                if reason is None and _checkpoint_due(trainer):
                    trainer.save()
                if _samples_due(trainer):
                    trainer.save_samples()
                if reason is not None:
                    _stop(trainer, reason, signals)
            if trainer.stop_reason is None:
                trainer.save()
                if _samples_due(trainer, final=True):
                    trainer.save_samples()
    finally:
        progress.close()
        if log_file is not None:
            log_file.close()
    return trainer.result()


def _stop(trainer, reason: str, signals: dict) -> None:
    trainer.save()
    trainer.stop_reason = reason
    where = (
        f"; saved {trainer.last_checkpoint}, continue with resume=True / --resume" if trainer.last_checkpoint else ""
    )
    if signals["stop"]:
        message = f"training stopped by {signals['stop']} at step {trainer.step}{where}"
        raise TrainingInterrupted(message, trainer.step, trainer.last_checkpoint)
    if reason == "time budget":
        trainer.say(
            f"time budget of {trainer.config.minutes} min spent at step {trainer.step}/{trainer.config.steps}{where}"
        )


def train(
    config: TrainConfig,
    resume: bool | str | os.PathLike = False,
    callback: Callable[[TrainState], bool | None] | None = None,
    progress: bool = True,
    dataset=None,
) -> TrainResult:
    """Train a DDPM per ``config`` (see :class:`~edudiff.training.TrainConfig`) and return a :class:`TrainResult`.

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
        if trainer.resumed_from is None and config.init_from is not None:
            trainer.init_weights(config.init_from)
        return run_loop(trainer)
    finally:
        close_distributed(dist)
