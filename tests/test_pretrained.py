"""Tests for edudiff.pretrained: the shipped MNIST weights (md5 pin, size, offline and weights_only
loading), the export round trip, clear errors for missing/altered files, and -- the point of shipping
them -- that their samples are digits: at least MIN_CONFIDENT of 500 samples classified with p > 0.9 by
the project's classifier (an independent network trained on real MNIST), while an untrained model fails
the same check. (Issue 11 asks for 0.95; the shipped weights measure 0.785 at N = 1000, see their model card.)
"""

from __future__ import annotations

import shutil
import socket

import pytest
import torch
from dataset_paths import needs_mnist

MIN_CONFIDENT = 0.70

import edudiff.pretrained as pretrained
from edudiff.data import md5sum
from edudiff.images.generate import sample_images
from edudiff.nn import UNet
from edudiff.nn.checkpoint import load_checkpoint
from edudiff.training import TrainConfig, train


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access during a test that must work offline")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", pretrained.available())
def test_shipped_file_is_pinned_small_and_half_precision(name):
    path = pretrained.path_of(name)
    assert path.stat().st_size <= 4 * 2**20, f"{path} is {path.stat().st_size:,} bytes; the limit is 4 MB"
    assert md5sum(path) == pretrained.MODELS[name]["md5"], "the shipped weights do not match their md5 pin"
    state = load_checkpoint(path)  # weights_only=True inside
    floats = [v for v in state["ema"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)


@pytest.mark.parametrize("name", pretrained.available())
def test_load_works_offline_and_matches_its_card(no_network, name):
    model, schedule, card = pretrained.load(name, device="cpu")
    assert isinstance(model, UNet) and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    cfg = card["config"]
    assert cfg["T"] == schedule.T and float(schedule.alpha_bars[0]) == 1.0
    assert torch.allclose(
        schedule.betas[1:], torch.linspace(cfg["beta_1"], cfg["beta_T"], cfg["T"], dtype=torch.float64)
    )
    assert card["steps"] == len(card["losses"]) > 0 and "python -m edudiff train" in card["command"]
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        out = model(x, torch.tensor([1, 1000]))
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    assert model.config.num_classes == card["config"].get("num_classes") == (10 if name == "mnist_cond" else None)


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"name must be one of \['mnist', 'mnist_cond'\]"):
        pretrained.load("cifar10")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny training run exported with pretrained.export, registered as the model 'tiny'."""
    root = tmp_path_factory.mktemp("export")
    images = torch.randint(0, 256, (16, 1, 28, 28), generator=torch.Generator().manual_seed(0)).float() / 127.5 - 1
    config = TrainConfig.recommended(
        "mnist",
        fast=True,
        steps=3,
        batch_size=4,
        out=str(root / "run"),
        log_every=1,
        sample_every=0,
        ckpt_every=0,
        device="cpu",
    )
    result = train(config, dataset=images, progress=False)
    md5 = pretrained.export(result.checkpoint, root / "tiny.pt", command="python -m edudiff train --steps 3")
    return root, md5, result


def _register(monkeypatch, folder, md5):
    monkeypatch.setattr(pretrained, "HERE", folder)
    monkeypatch.setitem(pretrained.MODELS, "tiny", {"file": "tiny.pt", "md5": md5, "card": "tiny.json"})


def test_export_round_trip(exported, monkeypatch):
    root, md5, result = exported
    _register(monkeypatch, root, md5)
    model, schedule, card = pretrained.load("tiny", device="cpu")
    for k, v in result.ema.state_dict().items():  # float16 rounding: relative error <= 2^-11
        assert torch.allclose(model.state_dict()[k], v.half().float()), k
    assert torch.equal(schedule.betas, result.schedule.betas)
    assert card["steps"] == 3 and card["losses"] == [round(float(v), 5) for v in result.losses]


def test_altered_or_missing_weights_name_the_file_and_the_fix(exported, monkeypatch, tmp_path):
    root, md5, _ = exported
    shutil.copy(root / "tiny.pt", tmp_path / "tiny.pt")
    shutil.copy(root / "tiny.json", tmp_path / "tiny.json")
    _register(monkeypatch, tmp_path, md5)
    data = bytearray((tmp_path / "tiny.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "tiny.pt").write_bytes(bytes(data))
    with pytest.raises(pretrained.PretrainedError, match=r"tiny\.pt are corrupted or altered .*git checkout"):
        pretrained.load("tiny")
    (tmp_path / "tiny.pt").write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(pretrained.PretrainedError, match="git lfs pull"):
        pretrained.load("tiny")
    (tmp_path / "tiny.pt").unlink()
    with pytest.raises(pretrained.PretrainedError, match=r"tiny\.pt are missing"):
        pretrained.load("tiny")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from edudiff.images.evaluate import load_or_train_classifier

    clf, info = load_or_train_classifier(cache_dir=tmp_path_factory.mktemp("clf"), steps=800, device="cpu")
    assert info["test_accuracy"] > 0.98
    return clf


@pytest.mark.slow
@needs_mnist
def test_shipped_samples_are_confident_digits(classifier):
    from edudiff.images.evaluate import mnist_sample_quality

    model, schedule, _ = pretrained.load("mnist", device="cpu")
    x = sample_images(model, schedule, 500, (1, 28, 28), ddim_steps=25, seed=0, device="cpu")
    q = mnist_sample_quality(x, classifier, n_reference=2000, seed=0)
    frac = q["samples"]["confident_fraction"]
    # Measured 0.768 with these 500 samples (seed 0, DDIM-25), for the 9,000-step weights and again for the 16,500-step
    # ones of 2026-12-07 (notebook 06's pretrained mode draws the same samples); 0.70 leaves about 3 standard errors.
    # The issue's target is 0.95 (real test digits score 0.950 with this classifier): these weights do not reach it yet.
    assert frac >= MIN_CONFIDENT, f"only {frac:.3f} of 500 samples from the shipped weights are confidently classified"
    # The same check rejects an untrained model (eps = 0 everywhere): it can fail.
    untrained = UNet(model.config).eval()
    y = sample_images(untrained, schedule, 100, (1, 28, 28), ddim_steps=25, seed=0, device="cpu")
    untrained_frac = mnist_sample_quality(y, classifier, n_reference=2000, seed=0)["samples"]["confident_fraction"]
    assert untrained_frac < MIN_CONFIDENT


@pytest.mark.slow
@needs_mnist
def test_notebook_06_runs_with_the_course_weights(monkeypatch):
    """Notebook 06's "skip training" mode (EDUDIFF_PRETRAINED=1) runs top to bottom with its own asserts (the
    pretrained thresholds), as the course site executes it."""
    from pathlib import Path

    import nbformat

    from edudiff.course.homework.grading import notebook_client

    repo = Path(__file__).resolve().parent.parent
    monkeypatch.setenv("EDUDIFF_PRETRAINED", "1")
    nb = nbformat.read(repo / "notebooks" / "06_unet_mnist.ipynb", as_version=4)
    notebook_client(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(repo / "notebooks")}}
    ).execute()  # raises CellExecutionError, naming the cell, on any failed assert
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "mode: pretrained" in text and "loaded the course's weights" in text


# ------------------------------------------------------------------------------------------------
# The shipped noisy classifier (notebook 09)
# ------------------------------------------------------------------------------------------------
def test_shipped_classifier_is_pinned_small_half_precision_and_loads_offline(no_network):
    from edudiff.nn import NoisyClassifier

    entry = pretrained.CLASSIFIERS["mnist_classifier"]
    path = pretrained.HERE / entry["file"]
    assert path.stat().st_size <= 2**20 and md5sum(path) == entry["md5"], "pinned and under 1 MB"
    state = load_checkpoint(path)
    assert all(v.dtype == torch.float16 for v in state["model"].values() if v.is_floating_point())
    clf, schedule, card = pretrained.load_classifier("mnist_classifier", device="cpu")
    assert isinstance(clf, NoisyClassifier) and not clf.training
    _, unet_schedule, _ = pretrained.load("mnist", device="cpu")
    assert torch.equal(schedule.betas, unet_schedule.betas), "trained on the schedule of the model it guides"
    assert "train-classifier" in card["command"] and set(card["test_accuracy_vs_t"]) >= {"1", "500", "1000"}
    with pytest.raises(ValueError, match="load_classifier"):
        pretrained.load("mnist_classifier")
    with pytest.raises(ValueError, match="mnist_classifier"):
        pretrained.load_classifier("mnist")


@needs_mnist
def test_shipped_classifier_reads_noisy_digits_as_its_card_says():
    """On 1,000 real test digits (the card measured all 10,000, other noise draws): near its card's accuracy at every
    t within CLT noise, at least 97% on nearly clean digits, and at chance once nothing of x_0 is left."""
    from edudiff.data import load_mnist
    from edudiff.training import noisy_accuracy

    clf, schedule, card = pretrained.load_classifier("mnist_classifier", device="cpu")
    test = load_mnist(train=False)
    acc = noisy_accuracy(clf, schedule, test.images[:1000], test.labels[:1000], ts=[1, 300, 500, 1000], seed=7)
    for t, a in acc.items():
        p = card["test_accuracy_vs_t"][str(t)]
        assert abs(a - p) < 5 * (p * (1 - p) / 1000) ** 0.5 + 0.01, f"t = {t}: {a:.3f} against the card's {p:.3f}"
    assert acc[1] >= 0.97 and abs(acc[1000] - 0.1) < 0.05, acc


def test_export_classifier_round_trip(tmp_path, monkeypatch):
    from edudiff import Schedule
    from edudiff.nn import NoisyClassifierConfig
    from edudiff.training import save_noisy_classifier, train_noisy_classifier

    sched = Schedule.linear(50)
    images = torch.rand(32, 1, 8, 8) * 2 - 1
    cfg = NoisyClassifierConfig(num_classes=2, image_size=8, base_channels=8, channel_mults=(1, 2), num_groups=4)
    clf, _ = train_noisy_classifier(images, torch.arange(32) % 2, sched, cfg, steps=2, batch_size=8, device="cpu")
    save_noisy_classifier(tmp_path / "c.pt", clf, sched, {"command": "python -m edudiff train-classifier", "steps": 2})
    md5 = pretrained.export_classifier(tmp_path / "c.pt", tmp_path / "tinyclf.pt")
    monkeypatch.setattr(pretrained, "HERE", tmp_path)
    monkeypatch.setitem(pretrained.CLASSIFIERS, "tinyclf", {"file": "tinyclf.pt", "md5": md5, "card": "tinyclf.json"})
    loaded, schedule, card = pretrained.load_classifier("tinyclf", device="cpu")
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([1, 10, 30, 50])
    with torch.no_grad():
        assert torch.allclose(loaded(x, t), clf(x, t), atol=2e-2)
    assert torch.equal(schedule.betas, sched.betas) and card["steps"] == 2
    (tmp_path / "tinyclf.pt").write_bytes(b"junk")
    with pytest.raises(pretrained.PretrainedError, match="tinyclf.pt are corrupted or altered"):
        pretrained.load_classifier("tinyclf")


def test_card_table_names_the_guidance_interval_of_a_score():
    common = dict(sampler="DDIM, 50 steps", n_samples=500, samples_class_match=0.95, real_test_class_match=0.94,
                  samples_confident_fraction=0.96, samples_fd=6.0, real_test_confident_fraction=0.95, real_test_fd=5.8,
                  noise_fd=830.0)  # fmt: skip
    info = {"scores": {"a": {**common, "guidance_scale": 1.5},
                       "b": {**common, "guidance_scale": 3.0, "guidance_interval": [0, 400]}}}  # fmt: skip
    rows = pretrained._score_table(info, conditional=True).splitlines()[2:]
    assert rows[0].startswith("| DDIM, 50 steps | 500 | 1.5 | 0.950 |"), rows[0]
    assert rows[1].startswith("| DDIM, 50 steps | 500 | 3 for 0 < t <= 400 | 0.950 |"), rows[1]
