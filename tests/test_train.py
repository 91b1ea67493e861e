"""Tests for edudiff.training: exact resumption (in process, after Ctrl-C, after SIGKILL), the CLI,
DDP with gloo on CPU, sampling helpers, and the PNG writer (read back by an independent decoder).

The in-process runs use synthetic 8-bit images; the CLI and DDP runs read MNIST from the offline
dataset folder (skipped when it is absent).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from edudiff import Schedule
from edudiff.cli import main
from edudiff.images import denoising_strip, make_grid, sample_images, save_image_grid, write_png
from edudiff.nn import UNet, mnist_tiny
from edudiff.nn.checkpoint import CheckpointError, load_checkpoint, load_model
from edudiff.training import TrainConfig, TrainingInterrupted, ema_update, epoch_permutation, train

REPO = Path(__file__).resolve().parent.parent
from dataset_paths import DATA, needs_mnist


@contextmanager
def threads(n: int):
    """Run with n intra-op threads (the subprocesses get OMP_NUM_THREADS=n), then restore."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", EDUDIFF_DATA=str(DATA), PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture(scope="module")
def images():
    """48 synthetic 8-bit images in [-1, 1] (uint8 v -> v/127.5 - 1)."""
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (48, 1, 28, 28), generator=g).float() / 127.5 - 1.0


def cfg(out, **kw) -> TrainConfig:
    # 48 images at batch 4: 12 steps per epoch, so 16 steps cross an epoch boundary; dropout on, so
    # the global RNG state must be saved and restored too.
    base = dict(
        steps=16,
        batch_size=4,
        warmup=3,
        lr=1e-3,
        ema_decay=0.9,
        out=str(out),
        ckpt_every=8,
        log_every=1,
        sample_every=0,
        unet={"dropout": 0.1},
        seed=5,
    )
    base.update(kw)
    return TrainConfig.recommended("mnist", fast=True, **base)


def assert_same_run(a, b):
    for name in ("model", "ema"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}.{k} differs between the straight and the resumed run"
    assert torch.equal(a.losses, b.losses), f"loss histories differ:\n{a.losses}\n{b.losses}"
    assert a.step == b.step


def assert_same_weights(state_a: dict, model_b: torch.nn.Module, what: str):
    for k, v in model_b.state_dict().items():
        assert torch.equal(state_a[k], v.cpu()), f"{what}: parameter {k} differs"


@pytest.fixture(scope="module")
def straight(images, tmp_path_factory):
    with threads(1):
        return train(cfg(tmp_path_factory.mktemp("straight")), dataset=images, progress=False)


# ------------------------------------------------------------------------------------------------
# Exact resumption
# ------------------------------------------------------------------------------------------------
def test_resume_is_bit_identical(images, straight, tmp_path):
    with threads(1):
        first = train(cfg(tmp_path, steps=8), dataset=images, progress=False)
        assert first.checkpoint == tmp_path / "last.pt" and load_checkpoint(first.checkpoint)["step"] == 8
        resumed = train(cfg(tmp_path), dataset=images, progress=False, resume=True)
    assert resumed.resumed_from == 8
    assert_same_run(straight, resumed)
    opt_a = load_checkpoint(straight.checkpoint)["optimizer"]["state"]
    opt_b = load_checkpoint(resumed.checkpoint)["optimizer"]["state"]
    for k in opt_a:
        for key in opt_a[k]:
            assert torch.equal(opt_a[k][key], opt_b[k][key]), f"optimizer state {k}.{key} differs"
    log = [line for line in (tmp_path / "log.jsonl").read_text().splitlines() if line]
    assert len(log) == 16, "log.jsonl should hold one line per step, without duplicates after resuming"


def test_ctrl_c_saves_at_the_step_reached_and_resumes_exactly(images, straight, tmp_path):
    # What SIGINT did before training: Python's default_int_handler normally, but SIG_IGN when pytest runs
    # in a background job of a non-interactive shell (as `make test &` or a CI runner may start it).
    before = signal.getsignal(signal.SIGINT)

    def press_ctrl_c(state):
        if state.step == 5:  # not a checkpoint step: the handler must save here
            os.kill(os.getpid(), signal.SIGINT)

    with threads(1):
        with pytest.raises(TrainingInterrupted) as info:
            train(cfg(tmp_path), dataset=images, progress=False, callback=press_ctrl_c)
        assert info.value.step == 5 and "SIGINT" in str(info.value)
        assert load_checkpoint(tmp_path / "last.pt")["step"] == 5
        resumed = train(cfg(tmp_path), dataset=images, progress=False, resume=True)
    assert resumed.resumed_from == 5
    assert_same_run(straight, resumed)
    assert signal.getsignal(signal.SIGINT) is before, "the SIGINT handler was not restored"


def test_callback_can_stop_training(images, tmp_path):
    with threads(1):
        r = train(cfg(tmp_path), dataset=images, progress=False, callback=lambda s: s.step >= 3)
    assert r.stopped_early and r.step == 3 and r.losses.shape == (3,)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 3


def test_resume_checks_settings_and_files(images, tmp_path):
    with threads(1):
        train(cfg(tmp_path, steps=2), dataset=images, progress=False)
        with pytest.raises(ValueError, match=r"cannot resume.*seed: checkpoint 5 vs now 6.*new --out"):
            train(cfg(tmp_path, seed=6), dataset=images, progress=False, resume=True)
        with pytest.raises(FileNotFoundError, match="nothing.pt"):
            train(cfg(tmp_path), dataset=images, progress=False, resume=tmp_path / "nothing.pt")
        (tmp_path / "last.pt").write_bytes(b"\x00" * 100)
        with pytest.raises(
            CheckpointError, match=r"last.pt is not a checkpoint.*Expected a checkpoint written by edudiff"
        ):
            train(cfg(tmp_path), dataset=images, progress=False, resume=True)
        fresh = tmp_path / "fresh"
        r = train(cfg(fresh, steps=1), dataset=images, progress=False, resume=True)  # nothing to resume: start
    assert r.resumed_from is None and r.step == 1


def test_config_errors_name_the_field(images):
    with pytest.raises(ValueError, match="steps must be a positive int"):
        TrainConfig.recommended("mnist", steps=0).validate()
    with pytest.raises(ValueError, match="preset 'mnist_tiny' expects 1-channel.*cifar10_tiny"):
        TrainConfig.recommended("cifar10", preset="mnist_tiny").validate()
    with pytest.raises(ValueError, match="dataset must be one of"):
        TrainConfig(dataset="svhn").validate()
    with pytest.raises(ValueError, match="ddim_steps=2000 exceeds T=1000"):
        TrainConfig(ddim_steps=2000).validate()
    with pytest.raises(ValueError, match="only 48 training images.*batch_size"):
        train(TrainConfig.recommended("mnist", fast=True, batch_size=64, out=None), dataset=images, progress=False)


# ------------------------------------------------------------------------------------------------
# Pieces
# ------------------------------------------------------------------------------------------------
def test_data_order_is_a_seeded_permutation_per_epoch():
    p0, p0b, p1 = epoch_permutation(100, 3, 0), epoch_permutation(100, 3, 0), epoch_permutation(100, 3, 1)
    assert torch.equal(p0, p0b)
    assert torch.equal(p0.sort().values, torch.arange(100)) and torch.equal(p1.sort().values, torch.arange(100))
    assert not torch.equal(p0, p1) and not torch.equal(p0, epoch_permutation(100, 4, 0))


def test_ema_update_formula():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    expected = {k: 0.9 * v + 0.1 * b.state_dict()[k] for k, v in a.state_dict().items()}
    ema_update(a, b, 0.9)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=0, atol=1e-7)


def test_png_grid_read_back_by_matplotlib(tmp_path):
    import matplotlib.image as mpimg

    g = torch.Generator().manual_seed(1)
    grey = torch.randint(0, 256, (5, 1, 6, 7), generator=g).float() / 127.5 - 1
    grid = make_grid(grey, nrow=3, padding=1)
    assert grid.shape == (2 * 7 + 1, 3 * 8 + 1) and grid.dtype == np.uint8
    # image k sits at row k // 3, column k % 3; pixels map exactly back to the uint8 values
    expected = ((grey[4, 0] + 1) * 127.5).round().numpy().astype(np.uint8)
    assert np.array_equal(grid[1 + 7 : 1 + 7 + 6, 1 + 8 : 1 + 8 + 7], expected)
    assert (grid[0] == 255).all(), "padding should be white"
    path = save_image_grid(grey, tmp_path / "g" / "grey.png", nrow=3, padding=1)
    back = mpimg.imread(path)  # matplotlib decodes PNGs with Pillow: independent of our writer
    assert np.array_equal(np.round(back * 255).astype(np.uint8), grid)
    rgb = np.random.default_rng(0).integers(0, 256, (4, 9, 3), dtype=np.uint8)
    back = mpimg.imread(write_png(tmp_path / "rgb.png", rgb))
    assert np.array_equal(np.round(back * 255).astype(np.uint8), rgb)
    with pytest.raises(ValueError, match="uint8"):
        write_png(tmp_path / "bad.png", rgb.astype(np.float32))


def test_sampling_helpers_are_seeded_and_shaped():
    torch.manual_seed(0)
    model = UNet(mnist_tiny())
    s = Schedule.linear(1000)
    with threads(1):
        a = sample_images(model, s, 3, (1, 28, 28), ddim_steps=4, seed=7, batch_size=2)
        b = sample_images(model, s, 3, (1, 28, 28), ddim_steps=4, seed=7)
        c = sample_images(model, s, 3, (1, 28, 28), ddim_steps=4, seed=8)
        anc = sample_images(model, Schedule.linear(20), 2, (1, 28, 28), ddim_steps=None, seed=0)
        frames, ts = denoising_strip(model, Schedule.linear(20), (1, 28, 28), n=2, num_frames=5)
        frames_ddim, ts_ddim = denoising_strip(model, s, (1, 28, 28), n=1, num_frames=3, ddim_steps=10)
    assert a.shape == (3, 1, 28, 28) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.abs().max()) <= 1.0 and anc.shape == (2, 1, 28, 28)
    assert frames.shape == (5, 2, 1, 28, 28) and ts[0] == 20 and ts[-1] == 0 and ts == sorted(ts, reverse=True)
    assert frames_ddim.shape == (3, 1, 1, 28, 28) and ts_ddim[0] == 1000 and ts_ddim[-1] == 0


# ------------------------------------------------------------------------------------------------
# Command line, SIGKILL, DDP
# ------------------------------------------------------------------------------------------------
def _cli(out, steps, *extra) -> list[str]:
    options = f"--dataset mnist --fast --steps {steps} --batch-size 4 --limit 40 --ckpt-every 4 --log-every 4 "
    options += "--sample-every 0 --seed 3 --quiet"
    return [sys.executable, "-m", "edudiff", "train", *options.split(), "--out", str(out), *extra]


@needs_mnist
def test_cli_sigkill_resume_and_sample(tmp_path):
    """A process killed (SIGKILL) after a checkpoint resumes to the same weights as a straight run."""
    from edudiff.data import load_mnist

    out, steps = tmp_path / "run", 28
    proc = subprocess.Popen(_cli(out, steps), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while not (out / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    log = proc.communicate()[0].decode()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{log}"
    killed_at = load_checkpoint(out / "last.pt")["step"]
    assert 4 <= killed_at < steps

    done = subprocess.run(_cli(out, steps, "--resume"), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resuming from {out / 'last.pt'} at step {killed_at}/{steps}" in done.stdout

    cfg_straight = TrainConfig.recommended(
        "mnist",
        fast=True,
        steps=steps,
        batch_size=4,
        limit=40,
        ckpt_every=4,
        log_every=4,
        sample_every=0,
        seed=3,
        out=None,
    )
    with threads(1):
        straight = train(cfg_straight, dataset=load_mnist(DATA), progress=False)
    state = load_checkpoint(out / "last.pt")
    assert state["step"] == steps
    assert_same_weights(state["model"], straight.model, "SIGKILL + resume vs straight (model)")
    assert_same_weights(state["ema"], straight.ema, "SIGKILL + resume vs straight (EMA)")
    assert torch.equal(state["losses"], straight.losses)

    grid = tmp_path / "grid.png"
    smp = subprocess.run(
        [
            sys.executable,
            "-m",
            "edudiff",
            "sample",
            "--ckpt",
            str(out / "last.pt"),
            "--n",
            "4",
            "--ddim-steps",
            "3",
            "--out",
            str(grid),
            "--device",
            "cpu",
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert smp.returncode == 0, smp.stdout + smp.stderr
    import matplotlib.image as mpimg

    assert mpimg.imread(grid).shape == (2 * 30 + 2, 2 * 30 + 2), "a 2x2 grid of 28x28 digits with 2-pixel gaps"
    model, schedule, _ = load_model(out / "last.pt", device="cpu")
    assert schedule.T == 1000 and not model.training


def test_cli_errors_are_clear(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0 and "--resume" in capsys.readouterr().out
    assert main(["train", "--dataset", "cifar10", "--preset", "mnist_tiny", "--out", str(tmp_path)]) == 2
    assert "preset 'mnist_tiny' expects 1-channel" in capsys.readouterr().err
    assert main(["sample", "--ckpt", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt does not exist" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    assert main(["sample", "--ckpt", str(tmp_path / "bad.pt")]) == 2
    err = capsys.readouterr().err
    assert "bad.pt is not a checkpoint" in err and "delete" not in err, "a file we did not write: never 'delete it'"


def _run_ddp_two_processes(out, options: str) -> dict:
    """``python -m edudiff train OPTIONS`` under torchrun with 2 CPU processes (gloo) into ``out``; checks that it ran
    and that the ranks reported, and saved digests of, identical weights; returns the checkpoint."""
    # torchrun runs the one command line, python -m edudiff train
    launch = "-m torch.distributed.run --standalone --nproc_per_node 2 -m edudiff train"
    cmd = [sys.executable, *launch.split(), *options.split(), "--out", str(out), "--quiet"]
    run = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "DDP: all 2 processes hold identical weights" in run.stdout
    state = load_checkpoint(out / "last.pt")
    digests = state["ddp_param_digests"]
    assert len(digests) == 2 and digests[0] == digests[1], "the two ranks' weights differ"
    return state


@needs_mnist
def test_ddp_gloo_two_processes(tmp_path):
    """torchrun with 2 CPU processes (gloo): the ranks end with identical weights, and the run equals
    one process with the doubled batch (same images, same noise; only the summation order differs)."""
    from edudiff.data import load_mnist

    options = "--dataset mnist --fast --steps 4 --batch-size 4 --limit 64 --ckpt-every 2 --sample-every 0 --seed 1"
    state = _run_ddp_two_processes(tmp_path / "ddp", options)
    assert state["step"] == 4 and state["rng"]["data_order"]["world_size"] == 2
    single_cfg = TrainConfig.recommended(
        "mnist", fast=True, steps=4, batch_size=8, limit=64, seed=1, out=None, sample_every=0
    )
    with threads(1):
        single = train(single_cfg, dataset=load_mnist(DATA), progress=False)
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(
            state["model"][k],
            v,
            rtol=1e-4,
            atol=1e-5,
            msg=lambda m, k=k: f"DDP(2 x batch 4) vs 1 x batch 8 differ at {k}: {m}",
        )


@pytest.mark.slow
@needs_mnist
def test_ddp_gloo_two_processes_class_conditional(tmp_path):
    """DDP keeps working with labels and label dropout: both ranks end with identical weights, and the checkpoint
    loads as a class-conditional model."""
    out = tmp_path / "ddp_cond"
    options = "--dataset mnist --fast --class-conditional --steps 4 --batch-size 4 --limit 64 --sample-every 0"
    state = _run_ddp_two_processes(out, options)
    assert state["config"]["num_classes"] == 10 and state["config"]["label_dropout"] == 0.1
    model, _, _ = load_model(out / "last.pt", ema=False, device="cpu")
    assert model.config.num_classes == 10 and model.null_label == 10


def test_checkpoint_of_another_unet_version_is_refused_clearly(images, tmp_path):
    from edudiff.nn.checkpoint import save_checkpoint

    r = train(cfg(tmp_path, steps=1), dataset=images, progress=False)
    state = load_checkpoint(r.checkpoint)
    state["unet_config"]["base_channels"] = 8  # as if the preset had changed since
    save_checkpoint(tmp_path / "other.pt", state)
    with pytest.raises(CheckpointError, match=r"other.pt: its 'ema' weights do not fit.*another version"):
        load_model(tmp_path / "other.pt", device="cpu")
    model, schedule, _ = load_model(r.checkpoint, ema=False, device="cpu")
    assert_same_weights(model.state_dict(), r.model, "load_model(ema=False) returns the raw weights")


# ------------------------------------------------------------------------------------------------
# Time budget, progress bar, bf16 on the CPU, recipes, the one command line
# ------------------------------------------------------------------------------------------------
def test_time_budget_stops_like_ctrl_c_and_resumes_exactly(images, straight, tmp_path):
    with threads(1):
        stopped = train(cfg(tmp_path, minutes=1e-5), dataset=images, progress=False)  # 0.6 ms: one step
        assert stopped.stop_reason == "time budget" and stopped.stopped_early and 1 <= stopped.step < 16
        saved = load_checkpoint(tmp_path / "last.pt")
        assert saved["step"] == stopped.step and saved["train_seconds"] > 0
        assert torch.equal(saved["betas"], Schedule.linear(1000).betas[1:]), "the checkpoint stores the schedule"
        resumed = train(cfg(tmp_path), dataset=images, progress=False, resume=True)
    assert resumed.resumed_from == stopped.step and resumed.stop_reason is None
    assert_same_run(straight, resumed)


def test_progress_bar_counts_the_budget_when_it_ends_first():
    from edudiff.training.parts import TrainProgress, budget_ends_first

    assert budget_ends_first(steps_left=100, seconds_per_step=1.0, seconds_left=50.0)
    assert not budget_ends_first(steps_left=10, seconds_per_step=1.0, seconds_left=50.0)
    by_steps = TrainProgress(True, TrainConfig(steps=10, minutes=None), 0, "t")
    by_time = TrainProgress(True, TrainConfig(steps=1000, minutes=1.0), 0, "t")
    for step in range(1, 5):
        by_steps.update(step, seconds=step * 1.0)
        by_time.update(step, seconds=step * 1.0)  # 1 s per step: 996 more steps will not fit in 56 s
    assert by_steps.bar.total == 10 and by_steps.bar.n == 4 and not by_steps.by_time
    assert by_time.by_time and by_time.bar.total == 60 and by_time.bar.n == 4 and by_time.bar.unit == "s"
    by_steps.close()
    by_time.close()


def test_bf16_on_cpu_trains_with_finite_loss(images):
    base = dict(steps=3, batch_size=4, warmup=1, out=None, sample_every=0, log_every=1, seed=2)
    with threads(1):
        plain = train(TrainConfig.recommended("mnist", fast=True, **base), dataset=images, progress=False)
        bf16 = train(TrainConfig.recommended("mnist", fast=True, bf16=True, **base), dataset=images, progress=False)
    assert bool(torch.isfinite(bf16.losses).all()) and bf16.losses.shape == (3,)
    assert not torch.equal(plain.losses, bf16.losses), "bf16=True should run the CPU forward pass in bfloat16"
    torch.testing.assert_close(bf16.losses, plain.losses, rtol=0.05, atol=0.0)


def test_recipes_choose_fast_cpu_or_gpu():
    from edudiff.training.recipes import RECIPES, choose_mode

    assert choose_mode(fast=True, device="cuda") == "fast"
    assert choose_mode(fast=False, device="cuda") == "gpu" and choose_mode(fast=False, device="cpu") == "cpu"
    for dataset in ("mnist", "fashion_mnist", "cifar10"):
        assert {mode for (name, mode) in RECIPES if name == dataset} == {"fast", "cpu", "gpu"}
    c = TrainConfig.recommended("CIFAR-10", fast=False, device="cpu")
    assert c.dataset == "cifar10" and c.preset == "ddpm_cifar10" and c.device == "cpu" and c.out == "runs/cifar10"
    assert TrainConfig.recommended("mnist", fast=True, steps=7).steps == 7
    with pytest.raises(ValueError, match="ddim_steps must be a positive int.*None for Algorithm 2"):
        TrainConfig(ddim_steps=0).validate()


def test_one_command_line(capsys):
    from edudiff.cli import main as edudiff_main

    with pytest.raises(SystemExit) as info:
        edudiff_main(["train", "--help"])
    assert info.value.code == 0 and "--minutes" in capsys.readouterr().out
    assert edudiff_main(["sample", "--ckpt", "missing.pt"]) == 2
    assert "missing.pt does not exist" in capsys.readouterr().err
    assert edudiff_main(["nonsense"]) == 2
    assert "train,train-classifier,sample,evaluate,homework" in capsys.readouterr().err
    run = subprocess.run(
        [sys.executable, "-m", "edudiff", "homework", "--help"], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "edudiff", "evaluate", "--help"], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and "--ckpt" in run.stdout, run.stderr


def test_min_snr_training_logs_l_simple_but_follows_the_weighted_gradient(images, tmp_path):
    """With min_snr_gamma the logged loss is still L_simple (the same first-step value as plain training, whose
    batch and init are the same), the weights move differently, and a gamma so large that every weight is 1
    reproduces plain training exactly."""
    with threads(1):
        runs = {
            gamma: train(cfg(tmp_path / str(gamma), steps=3, min_snr_gamma=gamma), dataset=images, progress=False)
            for gamma in (None, 5.0, 1e12)
        }
    plain, weighted, huge = runs[None], runs[5.0], runs[1e12]
    assert plain.losses[0] == weighted.losses[0], "the logged loss must be L_simple, whatever the weighting"
    assert_same_run(plain, huge)
    w_plain, w_weighted = plain.model.state_dict(), weighted.model.state_dict()
    assert any(not torch.equal(w_plain[k], w_weighted[k]) for k in w_plain), "Min-SNR should change the update"
    with pytest.raises(ValueError, match="min_snr_gamma must be a positive number"):
        TrainConfig(min_snr_gamma=0).validate()


def _torch_warmup_cosine(lr: float, warmup: int, steps: int) -> list[float]:
    """The learning rate of each step from torch's own schedulers, as an independent reference: LinearLR for
    the warm-up (factor (k+1)/warmup), then CosineAnnealingLR with T_max = steps - warmup and eta_min = 0."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    rates, warmup = [], max(warmup, 1)  # no warm-up = a warm-up of one step at the full rate
    if warmup > 1:
        warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1)
        for _ in range(warmup - 1):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            warm.step()
    opt.param_groups[0]["lr"] = lr
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps - warmup, eta_min=0.0)
    for _ in range(steps - len(rates)):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        cosine.step()
    return rates


def test_cosine_lr_decay_matches_torch_schedulers_and_reaches_the_optimizer(images, tmp_path):
    """lr_decay="cosine": the rate of every step equals torch's LinearLR warm-up followed by CosineAnnealingLR
    (so the last step's rate is ~0), the logged rates are the ones the optimizer used, and "constant" keeps
    the peak after the warm-up, as the paper does."""
    with threads(1):
        run = train(cfg(tmp_path / "cos", steps=16, warmup=3, lr_decay="cosine"), dataset=images, progress=False)
    logged = [json.loads(line)["lr"] for line in (tmp_path / "cos" / "log.jsonl").read_text().splitlines()]
    expected = _torch_warmup_cosine(1e-3, 3, 16)
    np.testing.assert_allclose(logged, expected, rtol=1e-9, atol=1e-15)
    assert expected[-1] < 1e-5 * expected[3] and max(expected) == pytest.approx(1e-3)
    assert run.step == 16
    constant = TrainConfig(steps=100, warmup=10, lr=2e-3, lr_decay="constant")
    assert [constant.lr_at(s) for s in (0, 4, 9, 50, 99)] == pytest.approx([2e-4, 1e-3, 2e-3, 2e-3, 2e-3])
    for warmup in (0, 1, 7):
        cosine = TrainConfig(steps=100, warmup=warmup, lr=2e-3, lr_decay="cosine")
        np.testing.assert_allclose(
            [cosine.lr_at(s) for s in range(100)], _torch_warmup_cosine(2e-3, warmup, 100), rtol=1e-9, atol=1e-15
        )
    with pytest.raises(ValueError, match="lr_decay must be one of constant, cosine; got 'linear'"):
        TrainConfig(lr_decay="linear").validate()


def test_cosine_noise_schedule_is_trained_with_saved_and_reloaded(images, tmp_path):
    """noise_schedule="cosine": the run's alpha-bar is Nichol & Dhariwal's eq. 17, f(t)/f(0) with
    f(t) = cos^2(pi/2 (t/T + s)/(1 + s)), s = 0.008 (written out here from the paper, betas clipped at 0.999);
    the checkpoint stores those betas, load_model returns them, and resuming with the linear schedule is refused
    by name. "linear" stays the paper's beta_1..beta_T."""
    from edudiff.nn.checkpoint import load_model

    T, s = 50, 0.008
    f = np.cos(np.pi / 2 * (np.arange(T + 1) / T + s) / (1 + s)) ** 2
    betas = np.minimum(1 - f[1:] / f[:-1], 0.999)
    alpha_bar = np.concatenate([[1.0], np.cumprod(1 - betas)])
    with threads(1):
        run = train(cfg(tmp_path / "cos", steps=4, T=T, noise_schedule="cosine"), dataset=images, progress=False)
    np.testing.assert_allclose(run.schedule.alpha_bars.numpy(), alpha_bar, rtol=1e-12, atol=1e-15)
    _, schedule, _ = load_model(tmp_path / "cos" / "last.pt", device="cpu")
    np.testing.assert_allclose(schedule.alpha_bars.numpy(), alpha_bar, rtol=1e-12, atol=1e-15)
    linear = TrainConfig(T=T, beta_1=1e-3, beta_T=0.05).make_schedule()
    np.testing.assert_allclose(linear.betas[1:].numpy(), np.linspace(1e-3, 0.05, T), rtol=1e-12)
    with pytest.raises(ValueError, match=r"cannot resume.*noise_schedule: checkpoint 'cosine' vs now 'linear'"):
        train(cfg(tmp_path / "cos", steps=8, T=T), dataset=images, resume=True, progress=False)
    with pytest.raises(ValueError, match="noise_schedule must be one of linear, cosine; got 'sigmoid'"):
        TrainConfig(noise_schedule="sigmoid").validate()


# ------------------------------------------------------------------------------------------------
# Class-conditional training (label dropout)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def labelled(images):
    """The 48 synthetic images with labels 0..9 in turn."""
    from edudiff.data import ImageDataset

    return ImageDataset(images, torch.arange(48) % 10, classes=tuple(str(d) for d in range(10)))


def test_label_dropout_drops_the_fraction_asked_and_keeps_the_rest(labelled, tmp_path):
    """The dropped fraction over 2000 steps x 4 labels is p within 4 standard errors (CLT); the kept labels are the
    images' own; the dropped ones are the null label 10; and with p = 0 nothing is dropped."""
    from edudiff.training.distributed import DistInfo
    from edudiff.training.trainer import Trainer

    for p in (0.1, 0.5, 0.0):
        config = cfg(tmp_path, label_dropout=p, num_classes=10, steps=2000).validate()
        trainer = Trainer(config, DistInfo(), dataset=labelled, progress=False)
        dropped = kept = 0
        for step in range(2000):
            trainer.step = step
            x0, _, _, y = trainer.next_batch()
            truth = trainer.labels[trainer._order[(step % trainer.batches_per_epoch) * 4 :][:4]]
            assert bool(((y == truth) | (y == 10)).all()), "a label is either the image's own or the null label"
            dropped += int((y == 10).sum())
            kept += int((y != 10).sum())
        n = dropped + kept
        se = math.sqrt(max(p * (1 - p), 1e-12) / n)
        assert abs(dropped / n - p) < 4 * se + 1e-12, f"p={p}: dropped {dropped / n:.4f} of {n}"


def test_class_conditional_run_resumes_bit_identically_and_loads_as_a_conditional_model(labelled, tmp_path):
    with threads(1):
        straight = train(cfg(tmp_path / "a", num_classes=10), dataset=labelled, progress=False)
        train(cfg(tmp_path / "b", num_classes=10, steps=8), dataset=labelled, progress=False)
        resumed = train(cfg(tmp_path / "b", num_classes=10), dataset=labelled, progress=False, resume=True)
        with pytest.raises(ValueError, match="num_classes: checkpoint 10 vs now None"):
            train(cfg(tmp_path / "b", steps=20), dataset=labelled, progress=False, resume=True)
    assert_same_run(straight, resumed)
    model, _, state = load_model(tmp_path / "b" / "last.pt", device="cpu")
    assert model.config.num_classes == 10 and state["config"]["label_dropout"] == 0.1
    x, t = torch.zeros(2, 1, 28, 28), torch.tensor([500, 500])
    with torch.no_grad():
        assert not torch.equal(model(x, t, torch.tensor([1, 1])), model(x, t, torch.tensor([2, 2])))


def test_class_conditional_config_is_checked(images, tmp_path):
    with pytest.raises(ValueError, match="num_classes=7 but dataset 'mnist' has 10 classes"):
        cfg(tmp_path, num_classes=7).validate()
    with pytest.raises(ValueError, match="label_dropout must lie in"):
        cfg(tmp_path, num_classes=10, label_dropout=1.0).validate()
    assert TrainConfig.recommended("cifar10", fast=True).class_conditional().num_classes == 10
    with pytest.raises(ValueError, match="needs labels"):
        train(cfg(tmp_path, num_classes=10), dataset=images, progress=False)  # a bare image tensor has no labels


def test_cli_trains_class_conditional_and_samples_with_labels_and_guidance(tmp_path, capsys):
    from edudiff.cli import main as edudiff_main
    from edudiff.images.generate import labels_path

    if not (DATA / "MNIST" / "raw").is_dir():
        pytest.skip("MNIST not available")
    out = tmp_path / "cond"
    train_args = "train --dataset mnist --fast --class-conditional --label-dropout 0.2 --steps 2 --limit 64 --quiet"
    assert edudiff_main([*train_args.split(), "--out", str(out), "--data-root", str(DATA)]) == 0
    state = load_checkpoint(out / "last.pt")
    assert state["config"]["num_classes"] == 10 and state["config"]["label_dropout"] == 0.2
    tensor = tmp_path / "s.pt"
    sample_args = ["sample", "--n", "12", "--ddim-steps", "2", "--labels", "all", "--guidance-scale", "2"]
    assert edudiff_main([*sample_args, "--ckpt", str(out / "last.pt"), "--out", str(tmp_path / "g.png"),
                         "--save-tensor", str(tensor)]) == 0  # fmt: skip
    assert "guidance scale 2" in capsys.readouterr().out
    labels = torch.load(labels_path(tensor), weights_only=True)
    assert (
        labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1] and torch.load(tensor, weights_only=True).shape[0] == 12
    )
    interval_args = [*sample_args, "--guidance-interval", "0,500", "--ckpt", str(out / "last.pt")]
    assert edudiff_main([*interval_args, "--out", str(tmp_path / "i.png")]) == 0
    assert "guidance scale 2 for 0 < t <= 500" in capsys.readouterr().out
    assert edudiff_main([*interval_args[:-4], "--guidance-interval", "500", "--ckpt", str(out / "last.pt")]) == 2
    assert "--guidance-interval must be two timesteps LO,HI" in capsys.readouterr().err
    assert edudiff_main([*interval_args[:-4], "--guidance-interval", "0,2000", "--ckpt", str(out / "last.pt")]) == 2
    assert "t_hi <= T = 1000" in capsys.readouterr().err
    assert edudiff_main(["sample", "--ckpt", str(out / "last.pt"), "--labels", "11"]) == 2
    assert "--labels must name classes in 0..9" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# Starting a run from trained weights (init_from)
# ------------------------------------------------------------------------------------------------
def _trainer(config):
    from edudiff.training.distributed import DistInfo
    from edudiff.training.trainer import Trainer

    return Trainer(config.validate(), DistInfo(), dataset=None, progress=False)


def test_init_from_loads_the_ema_of_a_checkpoint_an_exported_file_or_a_shipped_name(images, straight, tmp_path):
    """The model and its EMA start equal to the source's EMA weights (the exported file's are float16: equal to the
    checkpoint's rounded to float16), the optimizer is fresh; a shipped name gives the weights pretrained.load reads."""
    from edudiff import pretrained
    from edudiff.training.distributed import DistInfo
    from edudiff.training.trainer import Trainer

    ema = load_checkpoint(straight.checkpoint)["ema"]
    pretrained.export(straight.checkpoint, tmp_path / "w.pt")
    for source, expected in (
        (straight.checkpoint, ema),
        (tmp_path / "w.pt", {k: v.half().float() for k, v in ema.items()}),
    ):
        trainer = Trainer(
            cfg(tmp_path / "run", init_from=str(source)).validate(), DistInfo(), dataset=images, progress=False
        )
        fresh = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.init_weights(str(source))
        assert any(not torch.equal(fresh[k], v) for k, v in expected.items()), "the fresh model already held them"
        assert_same_weights(expected, trainer.model, f"model from {source}")
        assert_same_weights(expected, trainer.ema, f"EMA from {source}")
        assert trainer.step == 0 and not trainer.optimizer.state, "init_from must leave the optimizer fresh at step 0"
    # The command line's --init-from mnist resolves the shipped name to its file (md5-checked): load()'s weights.
    from edudiff.cli import config_from_args, train_parser

    argv = ["--preset", "mnist_cpu", "--batch-size", "4", "--init-from", "mnist", "--out", str(tmp_path / "run")]
    args = train_parser().parse_args(argv)
    config = config_from_args(args)
    assert config.init_from == str(pretrained.path_of("mnist"))
    trainer = Trainer(config.validate(), DistInfo(), dataset=images, progress=False)
    trainer.init_weights(config.init_from)
    shipped, _, _ = pretrained.load("mnist", device="cpu")
    assert_same_weights(shipped.state_dict(), trainer.model, "model from the shipped 'mnist'")


def test_train_starts_from_init_from_and_a_resumed_run_ignores_it(images, straight, tmp_path):
    with threads(1):
        # lr ~ 0: after one step the weights are still the source's EMA -- and not without init_from.
        still = train(
            cfg(tmp_path / "a", steps=1, lr=1e-30, init_from=str(straight.checkpoint)), dataset=images, progress=False
        )
        scratch = train(cfg(tmp_path / "b", steps=1, lr=1e-30), dataset=images, progress=False)
        ema = load_checkpoint(straight.checkpoint)["ema"]
        for k, v in still.ema.state_dict().items():
            assert torch.allclose(v, ema[k], atol=1e-6), f"{k}: train() did not start from init_from"
        assert not all(torch.allclose(v, ema[k], atol=1e-6) for k, v in scratch.ema.state_dict().items())
        assert float(still.losses[0]) < float(scratch.losses[0]), "the trained weights should fit the data better"
        # Resuming continues from the run's own checkpoint, bit-identically, whatever init_from says.
        whole = train(cfg(tmp_path / "c", init_from=str(straight.checkpoint)), dataset=images, progress=False)
        train(cfg(tmp_path / "d", steps=8, init_from=str(straight.checkpoint)), dataset=images, progress=False)
        resumed = train(
            cfg(tmp_path / "d", init_from=str(straight.checkpoint)), dataset=images, progress=False, resume=True
        )
    assert resumed.resumed_from == 8
    assert_same_run(whole, resumed)


def test_init_from_errors_name_the_argument(images, straight, tmp_path):
    src = str(straight.checkpoint)
    with pytest.raises(ValueError, match=r"init_from=.*channel_mults: \(1, 2, 2\) there, \(1, 2, 4\) here"):
        _trainer(cfg(tmp_path, preset="mnist_cpu", unet=None, init_from=src)).init_weights(src)
    with pytest.raises(ValueError, match=r"init_from=.*another noise schedule \(T = 1000\).*T = 500"):
        _trainer(cfg(tmp_path, T=500, init_from=src)).init_weights(src)
    with pytest.raises(FileNotFoundError, match=r"init_from='nowhere.pt': no such file; give an exported weights file"):
        train(cfg(tmp_path, init_from="nowhere.pt"), dataset=images, progress=False)
    with pytest.raises(FileNotFoundError, match=r"init_from='mnist': no such file.*--init-from mnist"):
        train(cfg(tmp_path, init_from="mnist"), dataset=images, progress=False)  # names are the command line's
    from edudiff import pretrained

    shipped = str(pretrained.path_of("mnist"))
    with pytest.raises(ValueError, match=r"init_from=.*mnist.pt.*channel_mults: \(1, 2, 4\) there, \(1, 2, 2\) here"):
        train(cfg(tmp_path, init_from=shipped), dataset=images, progress=False)
