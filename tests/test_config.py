from pathlib import Path

import torch

from edudiff import config


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("EDUDIFF_DATA", str(tmp_path / "env"))
    assert config.data_root(tmp_path / "arg") == tmp_path / "arg"
    assert config.data_root() == tmp_path / "env"
    monkeypatch.delenv("EDUDIFF_DATA")
    assert config.data_root() == Path(config.__file__).resolve().parent.parent / "data"


def test_fast_mode_parsing(monkeypatch):
    for value, expected in [("1", True), ("true", True), ("YES", True), ("0", False), ("", False)]:
        monkeypatch.setenv("EDUDIFF_FAST", value)
        assert config.fast_mode() is expected
    monkeypatch.delenv("EDUDIFF_FAST")
    assert config.fast_mode() is False


def test_default_device_is_available():
    dev = config.default_device()
    assert isinstance(dev, torch.device)
    torch.zeros(1, device=dev)  # can allocate there
