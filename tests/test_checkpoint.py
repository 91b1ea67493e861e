"""Tests for edudiff.nn.checkpoint: atomic saving, weights-only loading, and clear errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from edudiff.nn.checkpoint import CheckpointError, load_checkpoint, remove_stale_temp_files, save_checkpoint


def _state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(lin.parameters(), lr=1e-3)
    lin(torch.randn(4, 3)).sum().backward()
    opt.step()
    return {
        "model": lin.state_dict(),
        "optimizer": opt.state_dict(),
        "step": 7,
        "rng": {"torch_cpu": torch.get_rng_state(), "noise": torch.Generator().manual_seed(seed).get_state()},
        "config": {"lr": 1e-3, "preset": "mnist_tiny", "limit": None, "mults": (1, 2, 2), "flags": [True, False]},
    }


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), "tensor changed in the round trip"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"keys differ: {sorted(a)} vs {sorted(b)}"
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b, f"{a!r} != {b!r}"


def test_round_trip_weights_only(tmp_path):
    state = _state()
    path = save_checkpoint(tmp_path / "sub" / "last.pt", state)
    assert path == tmp_path / "sub" / "last.pt" and path.is_file()
    loaded = load_checkpoint(path)
    _assert_same(state, loaded)
    # The saved RNG state really restores the generator: the same numbers come out.
    g = torch.Generator()
    g.set_state(loaded["rng"]["noise"])
    assert torch.equal(torch.randn(5, generator=g), torch.randn(5, generator=torch.Generator().manual_seed(0)))
    assert not [p for p in path.parent.iterdir() if p.name != "last.pt"], "a temporary file was left behind"


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(0))
    before = path.read_bytes()
    real_save = torch.save

    def broken_save(obj, f, *args, **kwargs):  # writes part of the bytes, then dies (disk full, crash, ...)
        real_save(obj, f, *args, **kwargs)
        f.truncate(100)
        raise OSError("No space left on device (simulated)")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, _state(1))
    assert path.read_bytes() == before, "the previous checkpoint was modified by a failed save"
    _assert_same(load_checkpoint(path), _state(0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"], "the temporary file was not removed"


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(0))

    def interrupted(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _state(1))
    _assert_same(load_checkpoint(path), _state(0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_truncated_checkpoint_error_names_file_and_fix(tmp_path):
    save_checkpoint(tmp_path / "ckpt_00000100.pt", _state())
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg and "truncated" in msg and "delete" in msg and "earlier" in msg, msg
    assert "ckpt_00000100.pt" in msg, f"the earlier checkpoint should be suggested: {msg}"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(
    "content", [b"", b"hello, I am a text file\n", b"\x80\x04garbage", np.random.default_rng(0).bytes(2000)]
)
def test_garbage_file_raises_checkpoint_error(tmp_path, content):
    path = tmp_path / "last.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="last.pt") as info:
        load_checkpoint(path)
    # A file the project did not write is never to be deleted on our advice: say what was expected instead.
    assert "delete" not in str(info.value) and "Expected a checkpoint written by edudiff" in str(info.value)


def test_a_foreign_file_is_named_and_never_advised_deleted(tmp_path):
    """`python -m edudiff evaluate --ckpt /etc/passwd` once answered "Fix: delete /etc/passwd". A text file, a
    plain pickle, a torch file holding code and a torch tensor each get a message naming the file and what was
    expected, without "delete"; only a damaged checkpoint of ours (the truncation test above) gets that advice."""
    foreign = tmp_path / "passwd"
    foreign.write_text("root:x:0:0:root:/root:/bin/bash\n")
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"step": 1}))
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Evil()}, evil)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    for path, says in [
        (foreign, "not a file written by torch.save"),
        (plain, "not a file written by torch.save"),
        (evil, "not a weights-only checkpoint"),
        (tensor, "not a checkpoint that edudiff wrote"),
    ]:
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        message = str(info.value)
        assert str(path) in message and says in message and "delete" not in message, message


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_non_weights_only_objects_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        torch.save({"model": _Evil()}, f)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)
    assert "must never run" not in capsys.readouterr().out
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"step": 1}))
    with pytest.raises(CheckpointError, match="plain.pkl"):
        load_checkpoint(plain)


def test_non_dict_and_missing_keys(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="holds a Tensor, not a dict"):
        load_checkpoint(path)
    path2 = save_checkpoint(tmp_path / "partial.pt", {"step": 3})
    with pytest.raises(CheckpointError, match=r"lacks the entries \['model'\]"):
        load_checkpoint(path2, required=("model", "step"))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)
    with pytest.raises(TypeError, match="state must be a dict"):
        save_checkpoint(tmp_path / "x.pt", [1, 2])


def test_remove_stale_temp_files(tmp_path):
    save_checkpoint(tmp_path / "last.pt", {"step": 1})
    stale = tmp_path / ".last.pt.1234.abcd.tmp"  # what a process killed mid-save leaves
    stale.write_bytes(b"partial")
    other = tmp_path / "notes.tmp"
    other.write_text("not ours")
    assert remove_stale_temp_files(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "notes.tmp"]


# ------------------------------------------------------------------------------------------------
# The training-checkpoint format: the schedule travels with the model; version-1 files still load
# ------------------------------------------------------------------------------------------------
def _version1_checkpoint(T: int, beta_1: float, beta_T: float) -> dict:
    """A checkpoint dict exactly as edudiff.training wrote it before the format stored the schedule (version 1):
    the keys and the config fields of that version, written out by hand (not with today's code)."""
    import dataclasses

    from edudiff.nn import UNet, mnist_tiny

    torch.manual_seed(0)
    unet_config = mnist_tiny()
    model = UNet(unet_config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    config = {"dataset": "mnist", "preset": "mnist_tiny", "unet": None, "steps": 200, "batch_size": 32, "lr": 1e-3,
              "warmup": 20, "weight_decay": 0.0, "grad_clip": 1.0, "ema_decay": 0.99, "T": T, "beta_1": beta_1,
              "beta_T": beta_T, "seed": 0, "out": "runs/mnist_fast", "ckpt_every": 100, "snapshot_every": 0,
              "sample_every": 0, "log_every": 10, "n_samples": 16, "sample_ddim_steps": 0, "data_root": None,
              "download": False, "limit": None, "hflip": None, "device": None, "compile": False,
              "channels_last": None, "bf16": True}  # fmt: skip
    return {
        "format": "edudiff-train",
        "version": 1,
        "step": 3,
        "model": model.state_dict(),
        "ema": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": {
            "noise": torch.Generator().get_state(),
            "noise_device": "cpu",
            "per_rank": [{"torch_cpu": torch.get_rng_state()}],
            "data_order": {
                "seed": 0,
                "epoch": 0,
                "batch_in_epoch": 3,
                "num_images": 320,
                "global_batch": 32,
                "world_size": 1,
            },
        },
        "config": config,
        "unet_config": dataclasses.asdict(unet_config),
        "losses": torch.ones(3),
    }


def test_version1_checkpoint_samples_with_its_own_schedule(tmp_path):
    from edudiff import Schedule
    from edudiff.images.generate import sample_images
    from edudiff.nn.checkpoint import load_model
    from edudiff.training import TrainConfig

    path = save_checkpoint(tmp_path / "old.pt", _version1_checkpoint(T=40, beta_1=2e-4, beta_T=0.05))
    with pytest.warns(UserWarning, match=r"predates stored schedules.*T=40, beta_1=0.0002, beta_T=0.05"):
        model, schedule, state = load_model(path, device="cpu")
    # the linear schedule from its own numbers (not the defaults T=1000, 1e-4, 0.02)
    expected = np.linspace(2e-4, 0.05, 40)
    np.testing.assert_allclose(schedule.betas[1:].numpy(), expected, rtol=1e-12)
    assert schedule.betas.dtype == torch.float64 and not model.training
    x = sample_images(model, schedule, 2, (1, 28, 28), ddim_steps=None, seed=0)  # Algorithm 2: all 40 steps
    assert x.shape == (2, 1, 28, 28) and bool(torch.isfinite(x).all())
    cfg = TrainConfig.from_dict(state["config"])
    assert cfg.ddim_steps is None, "the old sample_ddim_steps=0 (Algorithm 2) reads as ddim_steps=None"
    assert isinstance(Schedule(state.get("betas", schedule.betas[1:])), Schedule)


def test_version1_checkpoint_without_schedule_numbers_fails_clearly(tmp_path):
    from edudiff.nn.checkpoint import load_model

    state = _version1_checkpoint(T=40, beta_1=2e-4, beta_T=0.05)
    del state["config"]["beta_T"]
    path = save_checkpoint(tmp_path / "older.pt", state)
    with pytest.raises(CheckpointError, match=r"older.pt holds no schedule.*lacks \['beta_T'\]"):
        load_model(path, device="cpu")


def test_checkpoint_stores_the_schedule_it_was_trained_with(tmp_path):
    """A new checkpoint holds betas (float64); load_model uses them even when the config's numbers disagree."""
    from edudiff.nn.checkpoint import load_model

    state = _version1_checkpoint(T=40, beta_1=2e-4, beta_T=0.05)
    betas = torch.linspace(1e-3, 0.2, 30, dtype=torch.float64) ** 1.5  # not linear: only readable from betas
    state.update(version=2, betas=betas)
    _, schedule, _ = load_model(save_checkpoint(tmp_path / "new.pt", state), device="cpu")
    assert schedule.T == 30 and torch.equal(schedule.betas[1:], betas)


def test_resume_lists_every_changed_field_even_ones_newer_than_the_checkpoint(tmp_path):
    """A checkpoint written before a field existed (here lr_decay) reads it at its default, so switching it on
    when resuming is reported like any other change; a data/model/seed change is refused, naming the field."""
    from edudiff.training import TrainConfig
    from edudiff.training.resume import check_compatible

    saved = TrainConfig(steps=100).to_dict()
    del saved["lr_decay"], saved["noise_schedule"]  # both newer than the oldest checkpoints (all linear)
    changed = check_compatible(saved, TrainConfig(steps=300, lr_decay="cosine"), tmp_path / "last.pt")
    assert sorted(changed) == ["lr_decay: 'constant' -> 'cosine'", "steps: 100 -> 300"], changed
    assert check_compatible(saved, TrainConfig(steps=100), tmp_path / "last.pt") == []
    with pytest.raises(ValueError, match=r"cannot resume from .*last\.pt.*seed: checkpoint 0 vs now 1"):
        check_compatible(saved, TrainConfig(steps=100, seed=1), tmp_path / "last.pt")
    with pytest.raises(ValueError, match=r"noise_schedule: checkpoint 'linear' vs now 'cosine'"):
        check_compatible(saved, TrainConfig(steps=100, noise_schedule="cosine"), tmp_path / "last.pt")
