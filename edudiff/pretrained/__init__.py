"""Weights trained by the course, shipped in the package: skip training and sample in seconds.

``model, schedule, card = edudiff.pretrained.load("mnist")`` returns the EMA U-Net in eval mode (float32
on ``device``), the noise schedule it was trained with (t = 1..T; ``schedule.alpha_bars[0] = 1`` is "no
noise"), and its model card (a dict: the exact training command, steps, minutes, the loss curve and the
scores, from ``<name>.json`` beside the weights; the prose card is ``<name>.md``).

The weights file holds only what :func:`export` writes: the EMA state dict in float16 (under 4 MB for
``mnist_small``), the U-Net configuration and the betas (float64). It is md5-pinned in :data:`MODELS`
and read with ``torch.load(weights_only=True)``, so loading it runs no code and needs no network.

Producing the shipped file from a training run (the command is in the card)::

    python -m edudiff train --dataset mnist --out runs/mnist_cpu ...
    python -m edudiff.pretrained export runs/mnist_cpu/last.pt edudiff/pretrained/mnist.pt

Shipped: ``"mnist"`` (unconditional, notebook 06) and ``"mnist_cond"`` (class-conditional with label dropout, for
classifier-free guidance; notebook 08: ``sample_images(model, schedule, n, (1, 28, 28), labels=...,
guidance_scale=...)``); and the classifier ``"mnist_classifier"`` (:func:`load_classifier`), p(y | x_t, t) on noisy
MNIST, for classifier guidance of ``"mnist"`` (notebook 09).

Taught in: notebooks/06_unet_mnist.ipynb ("skip training: load the course's weights") and
notebooks/08_conditional_guidance.ipynb.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..config import default_device
from ..data import md5sum
from ..nn.checkpoint import CheckpointError, load_checkpoint, load_weights, schedule_from_checkpoint
from ..nn.noisy_classifier import NoisyClassifier, classifier_from_state
from ..nn.unet import UNet
from ..nn.unet_config import UNetConfig
from ..schedules import Schedule
from ..utils import atomic_write

__all__ = [
    "MODELS", "CLASSIFIERS", "FORMAT", "PretrainedError", "available", "path_of", "card", "verified_weights", "load",
    "export", "score",
    "write_card", "load_classifier", "export_classifier",
]  # fmt: skip

FORMAT = "edudiff-pretrained"
HERE = Path(__file__).resolve().parent

#: Shipped weights by name: the file beside this module and its md5.
MODELS: dict[str, dict] = {
    "mnist": {"file": "mnist.pt", "md5": "2608069333d0159f9e477b9e8e991edb", "card": "mnist.json"},
    "mnist_cond": {"file": "mnist_cond.pt", "md5": "0ae117b5dfa6c57fb3ab3e32630fe079", "card": "mnist_cond.json"},
}
#: Shipped noise-aware classifiers p(y | x_t, t), for classifier guidance (notebook 09): :func:`load_classifier`.
CLASSIFIERS: dict[str, dict] = {
    "mnist_classifier": {
        "file": "mnist_classifier.pt",
        "md5": "0392f5f869ad055f01c6fcbd7ca8054e",
        "card": "mnist_classifier.json",
    },
}


class PretrainedError(CheckpointError):
    """Shipped weights are missing, corrupted or unreadable; the message names the file and the fix."""


def available() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted(MODELS)


def _entry(name: str) -> dict:
    if name not in MODELS:
        raise ValueError(f"name must be one of {available()} (the course ships weights for these), got {name!r}")
    return MODELS[name]


def path_of(name: str) -> Path:
    """The weights file of ``name`` inside the installed package."""
    return HERE / _entry(name)["file"]


def card(name: str = "mnist") -> dict:
    """The model card of ``name`` as a dict (command, steps, minutes, losses, scores)."""
    path = HERE / _entry(name)["card"]
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PretrainedError(f"cannot read the model card {path} ({err}); reinstall edudiff") from err


def _fix(path: Path) -> str:
    return (
        f"restore the file with `git checkout -- {path.name}` in {path.parent} (or reinstall edudiff); "
        "if it is a few hundred bytes of text, it is a Git LFS pointer: run `git lfs pull`"
    )


def _verified_state(name: str, entry: dict, path: Path, required: tuple[str, ...]) -> dict:
    """The shipped file of ``name``, md5-checked, read weights-only; raises PretrainedError naming the file."""
    if not path.is_file():
        raise PretrainedError(f"the weights {path} are missing; {_fix(path)}")
    found = md5sum(path)
    if found != entry["md5"]:
        raise PretrainedError(
            f"the weights {path} are corrupted or altered (md5 {found}, expected {entry['md5']}); {_fix(path)}"
        )
    state = load_checkpoint(path, required=("format", *required))
    if state["format"] != FORMAT:
        raise PretrainedError(f"{path} is not an {FORMAT} file (format {state['format']!r}); {_fix(path)}")
    return state


def verified_weights(name: str) -> tuple[Path, dict]:
    """``(path, state)`` of the shipped diffusion model ``name``: its file, md5-checked and read weights-only (the
    float16 EMA weights, ``unet_config``, ``betas``). :func:`load` builds the model from it; the command
    line's ``train --init-from NAME`` starts a training run from it."""
    if name in CLASSIFIERS:
        raise ValueError(f"{name!r} is a classifier, not a diffusion model: use load_classifier({name!r})")
    path = path_of(name)
    return path, _verified_state(name, _entry(name), path, ("ema", "unet_config", "betas"))


def load(name: str = "mnist", device=None) -> tuple[UNet, Schedule, dict]:
    """The course's trained model ``name``: ``(model, schedule, card)``.

    ``model`` is the EMA U-Net in eval mode, float32, on ``device`` (default :func:`edudiff.default_device`);
    ``schedule`` the :class:`~edudiff.Schedule` it was trained with; ``card`` as :func:`card`. The file's md5 is
    checked first; a missing or altered file raises :class:`PretrainedError` naming the file and the fix.
    """
    path, state = verified_weights(name)
    model = UNet(UNetConfig(**state["unet_config"]))
    load_weights(model, {k: v.float() for k, v in state["ema"].items()}, path, "ema")
    device = default_device() if device is None else torch.device(device)
    return model.to(device).eval(), schedule_from_checkpoint(state, path), card(name)


def load_classifier(name: str = "mnist_classifier", device=None) -> tuple[NoisyClassifier, Schedule, dict]:
    """The course's noise-aware classifier ``name`` (:data:`CLASSIFIERS`): ``(classifier, schedule, card)``, the
    :class:`~edudiff.nn.NoisyClassifier` p(y | x_t, t) in eval mode (float32, on ``device``), the schedule it was
    trained on (guide only a model trained with the same one) and its card (command, minutes, the test accuracy
    against t). md5-checked and read weights-only, like :func:`load`."""
    if name not in CLASSIFIERS:
        raise ValueError(f"name must be one of {sorted(CLASSIFIERS)} (the course's classifiers), got {name!r}")
    entry = CLASSIFIERS[name]
    path = HERE / entry["file"]
    state = _verified_state(name, entry, path, ("classifier_config", "model", "betas"))
    classifier = classifier_from_state(state, path)
    try:
        info = json.loads((HERE / entry["card"]).read_text())
    except (OSError, ValueError) as err:
        raise PretrainedError(f"cannot read the card {HERE / entry['card']} ({err}); reinstall edudiff") from err
    device = default_device() if device is None else torch.device(device)
    return classifier.to(device).eval(), schedule_from_checkpoint(state, path), info


def export_classifier(checkpoint: str | os.PathLike, out: str | os.PathLike) -> str:
    """Write a classifier checkpoint (``python -m edudiff train-classifier``) as a shippable float16 file, and its
    card's data (the checkpoint's info: command, steps, minutes, the test accuracy against t, the losses) as
    ``<out stem>.json``. Returns the md5 to pin in :data:`CLASSIFIERS`."""
    state = load_checkpoint(checkpoint, required=("classifier_config", "model", "betas"))
    small = {
        "format": FORMAT,
        "version": 1,
        "classifier_config": state["classifier_config"],
        "model": {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()},
        "betas": state["betas"],
    }
    atomic_write(out, lambda f: torch.save(small, f))
    atomic_write(Path(out).with_suffix(".json"), (json.dumps(state.get("info", {}), indent=1) + "\n").encode())
    return md5sum(out)


def export(checkpoint: str | os.PathLike, out: str | os.PathLike, command: str = "", trained_on: str = "") -> str:
    """Write the EMA weights of a training checkpoint as a shippable file (float16 state dict, U-Net
    configuration, betas), atomically, and beside it the card's data ``<out stem>.json`` (``command``, the
    machine it was ``trained_on``, steps, minutes, config, the loss of every step; :func:`score` adds the
    scores). Returns the weights' md5, to pin in :data:`MODELS`."""
    state = load_checkpoint(checkpoint, required=("ema", "unet_config", "config"))
    small = {
        "format": FORMAT,
        "version": 1,
        "ema": {k: v.half() if v.is_floating_point() else v for k, v in state["ema"].items()},
        "unet_config": state["unet_config"],
        "betas": schedule_from_checkpoint(state, checkpoint).betas[1:].clone(),
        "step": int(state.get("step", 0)),
    }
    atomic_write(out, lambda f: torch.save(small, f))
    losses = state.get("losses", torch.zeros(0))
    info = {
        "command": command,
        "trained_on": trained_on,
        "steps": int(state.get("step", 0)),
        "train_minutes": float(state.get("train_seconds", 0.0)) / 60,
        "config": state["config"],
        "unet_config": state["unet_config"],
        "losses": [round(float(v), 5) for v in losses],
        "scores": {},
    }
    atomic_write(Path(out).with_suffix(".json"), (json.dumps(info, indent=1) + "\n").encode())
    return md5sum(out)


def score(
    name: str = "mnist",
    n: int = 1000,
    ddim_steps: int = 25,
    seed: int = 0,
    root=None,
    cache_dir=None,
    guidance_scale: float = 1.0,
    guidance_interval=None,
) -> dict:
    """Sample ``n`` digits from the shipped model with DDIM and score them with the project's classifier
    (:func:`edudiff.images.evaluate.mnist_sample_quality`, 800-step classifier); the result is stored under
    ``"scores"`` in the card's data file and returned. A class-conditional model draws the ten digits in turn
    (``n / 10`` each) at ``guidance_scale`` and is also scored on the class match (the share classified as the digit
    asked for with p > 0.9); ``guidance_interval=(t_lo, t_hi)`` guides only the steps t_lo < t <= t_hi."""
    from ..images.evaluate import load_or_train_classifier, mnist_sample_quality
    from ..images.generate import sample_images

    model, schedule, info = load(name, device="cpu")
    clf, clf_info = load_or_train_classifier(cache_dir=cache_dir, steps=800, root=root, device="cpu")
    labels = torch.arange(n) % 10 if model.config.num_classes is not None else None
    x = sample_images(
        model,
        schedule,
        n,
        (1, 28, 28),
        ddim_steps=ddim_steps,
        seed=seed,
        device="cpu",
        labels=labels,
        guidance_scale=guidance_scale if labels is not None else 1.0,
        guidance_interval=guidance_interval if labels is not None else None,
    )
    q = mnist_sample_quality(x, clf, n_reference=10000, seed=seed, root=root, labels=labels)
    scores = {
        "n_samples": n,
        "sampler": f"DDIM, {ddim_steps} steps, predicted x_0 clipped",
        "seed": seed,
        "classifier_test_accuracy": clf_info["test_accuracy"],
        **{f"{k}_{m}": q[k][m] for k in ("samples", "real_test", "noise") for m in ("confident_fraction", "fd")},
    }
    key = f"ddim{ddim_steps}_n{n}"
    if labels is not None:
        scores.update(
            guidance_scale=guidance_scale,
            samples_class_match=q["samples"]["class_match"],
            real_test_class_match=q["real_test"]["class_match"],
        )
        key += f"_s{guidance_scale:g}"
        if guidance_interval is not None:
            scores["guidance_interval"] = list(guidance_interval)
            key += "_t{}-{}".format(*guidance_interval)
    info["scores"][key] = scores
    atomic_write(HERE / _entry(name)["card"], (json.dumps(info, indent=1) + "\n").encode())
    return scores


def _loss_figure(name: str, losses) -> tuple[Path, int]:
    """The loss curve ``<name>_loss.png`` (per step and a moving average); returns its path and the window."""
    import matplotlib.pyplot as plt
    import numpy as np

    window = max(1, len(losses) // 50)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
    ax.plot(np.arange(1, len(losses) + 1), losses, alpha=0.3, label="per step")
    ax.plot(np.arange(window, len(losses) + 1), smooth, label=f"moving average ({window} steps)")
    ax.set(yscale="log", xlabel="training step", ylabel="L_simple", title=f"edudiff pretrained '{name}': training loss")
    ax.legend()
    png = HERE / f"{name}_loss.png"
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png, window


def _score_table(info: dict, conditional: bool) -> str:
    """The card's table of scores (with the class match of a conditional model)."""
    rows = []
    for sc in info.get("scores", {}).values():
        where = "" if "guidance_interval" not in sc else " for {} < t <= {}".format(*sc["guidance_interval"])
        match = (
            f" {sc['guidance_scale']:g}{where} | {sc['samples_class_match']:.3f} | {sc['real_test_class_match']:.3f} |"
            if conditional
            else ""
        )
        rows.append(
            f"| {sc['sampler']} | {sc['n_samples']} |{match} {sc['samples_confident_fraction']:.3f} | "
            f"{sc['samples_fd']:.1f} | {sc['real_test_confident_fraction']:.3f} | {sc['real_test_fd']:.1f} | "
            f"{sc['noise_fd']:.0f} |"
        )
    head = " guidance scale s | class match | real test class match |" if conditional else ""
    rule = "---:|---:|---:|" if conditional else ""
    return "\n".join(
        [
            f"| sampler | N |{head} samples confident | samples FD | real test confident | real test FD | noise FD |",
            f"|---|---:|{rule}---:|---:|---:|---:|---:|",
            *rows,
        ]
    )


def _card_purpose(name: str, conditional: bool) -> str:
    """The model card's opening sentence: what the weights are and which notebook loads them."""
    return (
        "The EMA weights of the course's class-conditional MNIST model (label dropout 0.1 for classifier-free "
        "guidance), shipped so that notebook 08 (and its page on the course site) can draw digits on demand without "
        f'training: `edudiff.pretrained.load("{name}")`, sampled with `labels=` and `guidance_scale=`.'
        if conditional
        else "The EMA weights of the course's MNIST CPU recipe, shipped so that notebook 06 (and its page on the "
        f'course site) can show real samples without training: `edudiff.pretrained.load("{name}")`.'
    )


def write_card(name: str = "mnist", notes: str = "") -> Path:
    """Render the model card ``<name>.md`` (and its loss curve ``<name>_loss.png``) from the card's data file:
    the command, the machine, steps and minutes, the loss curve and a table of the scores; ``notes`` (Markdown)
    is added at the end. Returns the card's path."""
    import numpy as np

    info, entry = card(name), _entry(name)
    losses = np.asarray(info["losses"], dtype=np.float64)
    png, window = _loss_figure(name, losses)
    cfg = info["config"]
    rows = [f"| {k} | {v} |" for k, v in cfg.items() if k in _CARD_FIELDS]
    checkpoints = [i for i in range(0, len(losses), max(1, len(losses) // 8))] + [len(losses) - 1]
    loss_rows = [f"| {i + 1} | {losses[max(0, i - window + 1) : i + 1].mean():.4f} |" for i in checkpoints]
    conditional = info["unet_config"].get("num_classes") is not None
    what = _card_purpose(name, conditional)
    text = f"""# Model card: edudiff pretrained `{name}`

{what}

- **File**: `edudiff/pretrained/{entry["file"]}`, {path_of(name).stat().st_size:,} bytes, md5 `{entry["md5"]}`
  (checked on every load); float16 state dict, read with `torch.load(weights_only=True)`.
- **Model**: `{cfg["preset"]}` (`UNetConfig`: {json.dumps(info["unet_config"])}).
- **Trained with**: `{info["command"]}`
- **Machine**: {info["trained_on"]}
- **Training**: {info["steps"]:,} steps of batch {cfg["batch_size"]} ({info["steps"] * cfg["batch_size"]:,} images,
  {info["steps"] * cfg["batch_size"] / 60000:.1f} passes over MNIST) in {info["train_minutes"]:.1f} minutes of
  training time.
- **Objective**: eps-prediction, L_simple weighted by Min-SNR-gamma (gamma = {cfg.get("min_snr_gamma")}); linear
  betas {cfg["beta_1"]}..{cfg["beta_T"]}, T = {cfg["T"]}.

## Configuration

| field | value |
|---|---|
{chr(10).join(rows)}

## Loss

![training loss]({png.name})

| step | L_simple (moving average of {window} steps) |
|---:|---:|
{chr(10).join(loss_rows)}

## Scores

The project's MNIST classifier (`edudiff.images.evaluate`, 800 steps): the share of samples classified with
p > 0.9 ("confident") and the Fréchet distance of its 64 penultimate features to real training digits. The
real test digits and uniform noise, at the same N, are the floor and the ceiling
(`python -m edudiff.pretrained score {name}`).{
        " The class match is the share of samples classified as the digit "
        "they were asked for with p > 0.9; for real test digits, against their true labels."
        if conditional
        else ""
    }

{_score_table(info, conditional)}
{notes}
"""
    out = HERE / f"{name}.md"
    atomic_write(out, text.encode())
    return out


_CARD_FIELDS = (
    "dataset",
    "preset",
    "steps",
    "batch_size",
    "lr",
    "warmup",
    "grad_clip",
    "ema_decay",
    "min_snr_gamma",
    "num_classes",
    "label_dropout",
    "lr_decay",
    "T",
    "beta_1",
    "beta_T",
    "seed",
    "weight_decay",
    "init_from",
)
