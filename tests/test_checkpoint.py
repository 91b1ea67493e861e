"""Tests for edudiff.checkpoint: atomic saving, weights-only loading, and clear errors."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from edudiff.checkpoint import CheckpointError, load_checkpoint, remove_stale_temp_files, save_checkpoint


def _state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(lin.parameters(), lr=1e-3)
    lin(torch.randn(4, 3)).sum().backward()
    opt.step()
    return {"model": lin.state_dict(), "optimizer": opt.state_dict(), "step": 7,
            "rng": {"torch_cpu": torch.get_rng_state(), "noise": torch.Generator().manual_seed(seed).get_state()},
            "config": {"lr": 1e-3, "preset": "mnist_tiny", "limit": None, "mults": (1, 2, 2), "flags": [True, False]}}


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
@pytest.mark.parametrize("content", [b"", b"hello, I am a text file\n", b"\x80\x04garbage",
                                     np.random.default_rng(0).bytes(2000)])
def test_garbage_file_raises_checkpoint_error(tmp_path, content):
    path = tmp_path / "last.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="last.pt"):
        load_checkpoint(path)


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
    stale = tmp_path / ".last.pt.1234.abcd.tmp"          # what a process killed mid-save leaves
    stale.write_bytes(b"partial")
    other = tmp_path / "notes.tmp"
    other.write_text("not ours")
    assert remove_stale_temp_files(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "notes.tmp"]
