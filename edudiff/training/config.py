"""The configuration of a training run, :class:`TrainConfig`, and the U-Net it describes.

Taught in: notebooks/06_unet_mnist.ipynb and notebooks/07_cifar10.ipynb.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .._validate import check_positive_int
from ..data import DATASET_SHAPES, DATASETS, dataset_key
from ..nn.unet import UNet
from ..nn.unet_config import PRESETS, UNetConfig
from ..schedules import Schedule
from .recipes import choose_mode, recipe

__all__ = ["LR_DECAYS", "NOISE_SCHEDULES", "TrainConfig", "unet_config_for", "build_model"]

#: The learning-rate shapes after the warm-up (:attr:`TrainConfig.lr_decay`).
LR_DECAYS = ("constant", "cosine")

#: The noise schedules a run can train with (:attr:`TrainConfig.noise_schedule`).
NOISE_SCHEDULES = ("linear", "cosine")

# Presets to suggest when a preset does not fit the dataset's images.
_SUGGESTED_PRESETS = {
    "mnist": "mnist_small or mnist_tiny",
    "fashion_mnist": "mnist_small or mnist_tiny",
    "cifar10": "ddpm_cifar10 or cifar10_tiny",
}


@dataclass
class TrainConfig:
    """Everything a training run depends on. Saved (as a plain dict) in every checkpoint.

    Data: ``dataset`` ("mnist", "fashion_mnist", "cifar10"), ``data_root`` (default: $EDUDIFF_DATA,
    see :func:`edudiff.data_root`), ``download``, ``limit`` (use only the first ``limit`` training
    images), ``hflip`` (random horizontal flips; None = on for CIFAR-10 only, as in the paper).

    Model: ``preset`` (a key of :data:`edudiff.nn.PRESETS`), ``unet`` (a dict of
    :class:`~edudiff.nn.UNetConfig` fields overriding the preset, e.g. ``{"dropout": 0.0}``).

    Conditioning: ``num_classes`` (None = an unconditional model, as in the paper; an int K = a class-conditional
    U-Net that takes the dataset's labels, :attr:`edudiff.nn.UNetConfig.num_classes`; K must be the dataset's
    number of classes, :meth:`class_conditional` fills it in) and ``label_dropout`` (the probability p_uncond
    with which a training label is replaced by the null label, Ho & Salimans 2022, Algorithm 1; 0.1 by default,
    so that the same network also learns eps(x_t, null) for classifier-free guidance).

    Diffusion: ``T`` and ``noise_schedule``: "linear", the paper's (sec. 4), beta_t rising linearly from
    ``beta_1`` to ``beta_T``; or "cosine" (Nichol & Dhariwal 2021, eq. 17, :func:`edudiff.schedules.cosine_betas`,
    s = 0.008, betas clipped at 0.999), which ignores ``beta_1`` and ``beta_T``. :meth:`make_schedule` builds it.

    Optimisation: ``steps`` (total optimizer steps), ``batch_size`` (per process), ``lr`` (peak),
    ``warmup`` (steps of linear warm-up), ``lr_decay`` (after the warm-up: "constant", as in the paper, or
    "cosine": lr * (1 + cos(pi * p)) / 2 with p the fraction of the post-warm-up steps done, reaching 0 at
    ``steps``), ``weight_decay`` (AdamW; 0 = Adam as in the paper),
    ``grad_clip`` (max gradient norm; 0 = off), ``ema_decay``, ``min_snr_gamma`` (None = L_simple, eq. 14; a
    number gamma = each t's eps error weighted by min(SNR_t, gamma)/SNR_t, Min-SNR-gamma, Hang et al. 2023 --
    :func:`edudiff.losses.loss_min_snr`; the logged loss stays L_simple either way, so curves compare).
    ``minutes``: a budget of training time
    (None = none): the run stops cleanly once this call of :func:`~edudiff.training.train` has trained that
    long -- a checkpoint is written and ``resume=True`` continues, with a new budget of ``minutes``.

    Output: ``out`` (run folder; None = write nothing), ``ckpt_every`` / ``sample_every`` /
    ``log_every`` (steps; 0 = never -- a checkpoint is still written at the end), ``snapshot_every``
    (also keep ``ckpt_<step>.pt`` copies every so many steps; 0 = only ``last.pt``), ``n_samples`` and
    ``ddim_steps`` (periodic grids: DDIM with that many steps; None = Algorithm 2 with all T).

    Starting point: ``init_from`` (None = random weights from ``seed``): start the model and its EMA from the
    weights of a trained model -- a file, either a weights file written by :func:`edudiff.pretrained.export` (a
    shipped one: ``edudiff.pretrained.path_of("mnist")``; the command line's ``--init-from mnist`` resolves the name
    and checks its md5) or a training checkpoint (its EMA weights) -- with a fresh optimizer, step 0 and this
    config's learning-rate schedule. Its U-Net configuration
    and noise schedule must be this run's. Used only when the run starts afresh: a run that resumes continues
    from its own checkpoint. This is how shipped weights, of which only the EMA is kept, are trained on.

    Speed: ``device`` (None = :func:`edudiff.default_device`), ``compile``, ``channels_last``
    (None = on CUDA only), ``bf16`` (bf16 autocast; None = on CUDA only, True = on CUDA and on the CPU,
    False = off). ``seed`` seeds everything (:func:`~edudiff.training.train` re-seeds torch's global
    generator, which dropout draws from).
    """

    dataset: str = "mnist"
    preset: str = "mnist_small"
    unet: dict | None = None
    steps: int = 10_000
    batch_size: int = 128
    lr: float = 2e-4
    warmup: int = 1000
    lr_decay: str = "constant"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    min_snr_gamma: float | None = None
    T: int = 1000
    beta_1: float = 1e-4
    beta_T: float = 0.02
    noise_schedule: str = "linear"
    seed: int = 0
    out: str | None = "runs/mnist"
    ckpt_every: int = 1000
    snapshot_every: int = 0
    sample_every: int = 1000
    log_every: int = 50
    n_samples: int = 64
    ddim_steps: int | None = 50
    data_root: str | None = None
    download: bool = False
    limit: int | None = None
    hflip: bool | None = None
    device: str | None = None
    compile: bool = False
    channels_last: bool | None = None
    bf16: bool | None = None
    minutes: float | None = None
    num_classes: int | None = None
    label_dropout: float = 0.1
    init_from: str | None = None

    @classmethod
    def recommended(cls, dataset: str = "mnist", fast: bool | None = None, device=None, **overrides) -> TrainConfig:
        """The recipe for ``dataset`` (:data:`edudiff.training.recipes.RECIPES`), ``overrides`` replacing any field.

        The row is the "fast" one when ``fast`` (default :func:`edudiff.fast_mode`), else "gpu" when
        ``device`` (default: ``overrides["device"]``, else :func:`edudiff.default_device`) is CUDA, else "cpu".
        """
        mode = choose_mode(fast, device if device is not None else overrides.get("device"))
        fields = recipe(dataset, mode)
        fields.update(overrides)
        if device is not None:
            fields.setdefault("device", str(device))
        return cls(**fields)

    def class_conditional(self) -> TrainConfig:
        """Make this run class-conditional on its dataset's labels (``num_classes`` = its class count); returns
        self."""
        self.num_classes = len(DATASETS[dataset_key(self.dataset, "dataset")].classes)
        return self

    def validate(self) -> TrainConfig:
        """Raise a ValueError naming the field if a value is out of range; returns self."""
        self.dataset = dataset_key(self.dataset, "dataset")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {self.preset!r}")
        for name in ("steps", "batch_size", "T"):
            check_positive_int(getattr(self, name), name)
        for name in ("warmup", "ckpt_every", "snapshot_every", "sample_every", "log_every", "n_samples", "seed"):
            check_positive_int(getattr(self, name), name, minimum=0)
        self._validate_numbers()
        if self.limit is not None:
            check_positive_int(self.limit, "limit", fix="(the number of training images; or None for all)")
        if self.ddim_steps is not None:
            check_positive_int(self.ddim_steps, "ddim_steps", fix="(use None for Algorithm 2 with all T steps)")
            if self.ddim_steps > self.T:
                raise ValueError(
                    f"ddim_steps={self.ddim_steps} exceeds T={self.T}; use at most T "
                    f"(or None for Algorithm 2 with all T steps)"
                )
        if self.unet is not None and not isinstance(self.unet, dict):
            raise ValueError(f"unet must be a dict of UNetConfig fields or None, got {type(self.unet).__name__}")
        unet_config_for(self)  # checks the preset against the dataset
        return self

    def _validate_numbers(self) -> None:
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.noise_schedule not in NOISE_SCHEDULES:
            raise ValueError(f"noise_schedule must be one of {', '.join(NOISE_SCHEDULES)}; got {self.noise_schedule!r}")
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be one of {', '.join(LR_DECAYS)}; got {self.lr_decay!r}")
        if not (0.0 <= float(self.ema_decay) < 1.0):
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay!r}")
        if not float(self.grad_clip) >= 0.0:
            raise ValueError(f"grad_clip must be >= 0 (0 = no clipping), got {self.grad_clip!r}")
        if self.min_snr_gamma is not None and not (
            isinstance(self.min_snr_gamma, (int, float)) and self.min_snr_gamma > 0
        ):
            raise ValueError(f"min_snr_gamma must be a positive number (e.g. 5) or None, got {self.min_snr_gamma!r}")
        if not float(self.weight_decay) >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not (isinstance(self.label_dropout, (int, float)) and 0.0 <= self.label_dropout < 1.0):
            raise ValueError(
                f"label_dropout must lie in [0, 1) (Ho & Salimans use 0.1 or 0.2), got {self.label_dropout!r}"
            )
        if self.num_classes is not None:
            check_positive_int(self.num_classes, "num_classes", fix="(the dataset's class count; None = unconditional)")
            classes = len(DATASETS[dataset_key(self.dataset, "dataset")].classes)
            if self.num_classes != classes:
                raise ValueError(
                    f"num_classes={self.num_classes} but dataset {self.dataset!r} has {classes} classes; "
                    f"use num_classes={classes} (TrainConfig.class_conditional(), --class-conditional) or None"
                )
        if self.minutes is not None and not (isinstance(self.minutes, (int, float)) and self.minutes > 0):
            raise ValueError(
                f"minutes must be a positive number (a training-time budget) or None, got {self.minutes!r}"
            )

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based, so the paper's step ``step + 1``): a linear warm-up,
        ``lr * (step + 1) / warmup`` for the first ``warmup`` steps, then ``lr`` (``lr_decay="constant"``, the
        paper) or a half cosine ``lr * (1 + cos(pi * p)) / 2`` with ``p = (step + 1 - w) / (steps - w)``,
        ``w = max(warmup, 1)``: ``lr`` at the end of the warm-up, 0 at the last step (``lr_decay="cosine"``)."""
        warmup, lr = self.warmup, self.lr
        if step + 1 < warmup:
            return lr * (step + 1) / warmup
        if self.lr_decay == "cosine":
            w = max(warmup, 1)
            done = min(1.0, (step + 1 - w) / max(1, self.steps - w))
            return lr * 0.5 * (1.0 + math.cos(math.pi * done))
        return lr

    def make_schedule(self) -> Schedule:
        """The run's noise schedule (float64, t = 1..T): :meth:`Schedule.linear` with ``T``, ``beta_1``,
        ``beta_T``, or :meth:`Schedule.cosine` with ``T`` (``noise_schedule``)."""
        if self.noise_schedule == "cosine":
            return Schedule.cosine(self.T)
        if self.noise_schedule != "linear":
            raise ValueError(f"noise_schedule must be one of {', '.join(NOISE_SCHEDULES)}; got {self.noise_schedule!r}")
        return Schedule.linear(self.T, self.beta_1, self.beta_T)

    @property
    def use_hflip(self) -> bool:
        return (self.dataset == "cifar10") if self.hflip is None else bool(self.hflip)

    def to_dict(self) -> dict:
        """A plain dict of primitives (what the checkpoint stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> TrainConfig:
        """Rebuild from :meth:`to_dict` (unknown keys are ignored, missing ones take defaults). Reads the keys
        of older checkpoints too: ``sample_ddim_steps`` (now ``ddim_steps``, its 0 now None)."""
        fields = dict(fields)
        if "sample_ddim_steps" in fields and "ddim_steps" not in fields:
            fields["ddim_steps"] = fields.pop("sample_ddim_steps") or None
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in fields.items() if k in names})


def unet_config_for(config: TrainConfig) -> UNetConfig:
    """The :class:`~edudiff.nn.UNetConfig` of a run: the preset, with ``config.unet`` overrides,
    checked against the dataset's image shape."""
    if config.preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {config.preset!r}")
    overrides = dict(config.unet or {})
    if config.num_classes is not None:
        overrides["num_classes"] = config.num_classes
    try:
        unet_config = PRESETS[config.preset](**overrides)
    except TypeError as err:
        raise ValueError(f"unet overrides {config.unet!r} do not fit UNetConfig: {err}") from None
    key = dataset_key(config.dataset, "dataset")
    channels, height, width = DATASET_SHAPES[key]
    fix = f"pick a preset for it (e.g. --preset {_SUGGESTED_PRESETS[key]})"
    if unet_config.in_channels != channels or unet_config.out_channels != channels:
        raise ValueError(
            f"preset {config.preset!r} expects {unet_config.in_channels}-channel images but dataset "
            f"{config.dataset!r} has {channels} channels; {fix}"
        )
    if height % unet_config.divisor or width % unet_config.divisor:
        raise ValueError(
            f"preset {config.preset!r} needs sizes divisible by {unet_config.divisor}, but dataset "
            f"{config.dataset!r} has {height}x{width} images; {fix}"
        )
    return unet_config


def build_model(config: TrainConfig | UNetConfig) -> UNet:
    """A fresh :class:`~edudiff.nn.UNet` for a run's config (or a UNetConfig), on the CPU."""
    unet_config = config if isinstance(config, UNetConfig) else unet_config_for(config)
    return UNet(unet_config)
