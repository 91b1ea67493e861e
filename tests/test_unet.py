"""Tests for edudiff.nn: the DDPM U-Net.

Independent checks: the paper's / official code's parameter count, a float64 numpy evaluation of the
sinusoid definition (plus the shift-invariance of its inner products), autograd, memory-format and
autocast equivalences, and a small model overfitting one batch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edudiff.nn import (
    PRESETS,  # the one table of presets (also used by --preset)
    AttentionBlock,
    Downsample,
    ResBlock,
    UNet,
    UNetConfig,
    Upsample,
    count_parameters,
    ddpm_cifar10,
    describe,
    mnist_small,
    mnist_tiny,
    timestep_embedding,
)


def small_config(**overrides) -> UNetConfig:
    """Tiny but complete: 2 levels, attention in the down/up path (at 8x8) and the middle, dropout."""
    cfg = dict(
        in_channels=1,
        out_channels=1,
        base_channels=8,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(8,),
        dropout=0.1,
        image_size=16,
        num_groups=4,
    )
    cfg.update(overrides)
    return UNetConfig(**cfg)


def batch(cfg: UNetConfig, b: int = 2, size: int | None = None, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    size = size or cfg.image_size
    x = torch.randn(b, cfg.in_channels, size, size, generator=g)
    t = torch.randint(1, 1001, (b,), generator=g)
    return x, t


# ------------------------------------------------------------------------------------ parameters
def test_ddpm_cifar10_has_the_papers_35_7M_parameters():
    # Ho et al. (2020) report 35.7M; the official TF code and its PyTorch ports give 35,746,307.
    with torch.device("meta"):
        model = UNet(ddpm_cifar10())
    assert count_parameters(model) == 35_746_307
    blocks = [m for m in model.modules() if isinstance(m, ResBlock)]
    attns = [m for m in model.modules() if isinstance(m, AttentionBlock)]
    assert len(blocks) == 4 * 2 + 2 + 4 * 3  # down, middle, up (num_res_blocks + 1 per level)
    assert len(attns) == 2 + 1 + 3  # 16x16 down, middle, 16x16 up
    assert sum(isinstance(m, Downsample) for m in model.modules()) == 3
    assert sum(isinstance(m, Upsample) for m in model.modules()) == 3


def test_preset_sizes_are_as_documented():
    counts = {name: count_parameters(UNet(make())) for name, make in PRESETS.items() if name != "ddpm_cifar10"}
    assert 1_000_000 <= counts["mnist_small"] <= 2_000_000, counts
    assert counts["mnist_tiny"] < 300_000, counts
    assert counts["cifar10_small"] < counts["mnist_small"] * 5, counts


def test_count_parameters_counts_trainable_only_by_default():
    lin = torch.nn.Linear(3, 4)  # 3*4 weights + 4 biases
    assert count_parameters(lin) == 16
    lin.bias.requires_grad_(False)
    assert count_parameters(lin) == 12 and count_parameters(lin, trainable_only=False) == 16


# ------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("name", list(PRESETS))
def test_output_shape_equals_input_shape(name):
    cfg = PRESETS[name]()
    model = UNet(cfg).eval()
    x, t = batch(cfg, b=1 if name == "ddpm_cifar10" else 2)
    with torch.no_grad():
        out = model(x, t)
    assert out.shape == x.shape
    assert out.dtype == x.dtype


def test_mnist_presets_accept_28x28_and_32x32():
    for make in (mnist_small, mnist_tiny):
        model = UNet(make()).eval()
        for size in (28, 32):
            x, t = batch(model.config, size=size)
            with torch.no_grad():
                assert model(x, t).shape == x.shape


def test_piece_shapes():
    emb = torch.randn(2, 32)
    x = torch.randn(2, 8, 12, 12)
    assert ResBlock(8, 16, 32, num_groups=4)(x, emb).shape == (2, 16, 12, 12)
    assert ResBlock(8, 8, 32, num_groups=4)(x, emb).shape == (2, 8, 12, 12)
    assert AttentionBlock(8, num_heads=2, num_groups=4)(x).shape == x.shape
    assert Downsample(8)(x).shape == (2, 8, 6, 6)
    assert Upsample(8)(x).shape == (2, 8, 24, 24)


def test_describe_prints_every_block_and_covers_all_parameters():
    model = UNet(mnist_tiny())
    x, t = batch(model.config)
    lines = []
    rows = describe(model, x, t, print_fn=lines.append)
    names = [r[0] for r in rows]
    assert names[0] == "time_embed" and names[1] == "conv_in" and names[-1] == "conv_out"
    assert rows[-1][2] == tuple(x.shape)
    assert rows[names.index("down.0.sample")][:3] == ("down.0.sample", "Downsample", (2, 16, 14, 14))
    # The blocks listed partition the model, so their parameters add up to the total.
    assert sum(r[3] for r in rows) == count_parameters(model)
    assert len(lines) == len(rows) + 3 and "conv_out" in lines[-2]
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())


# ------------------------------------------------------------------------------------ timestep embedding
def numpy_sinusoid(t: np.ndarray, dim: int) -> np.ndarray:
    """DDPM / Transformer sinusoid from its definition, in float64: half sines, half cosines,
    frequencies 10000^(-i/(half-1)), zero-padded to an odd dim."""
    half = dim // 2
    out = np.zeros((len(t), dim))
    for row, tt in enumerate(t.astype(np.float64)):
        for i in range(half):
            w = 10000.0 ** (-i / (half - 1))
            out[row, i] = math.sin(tt * w)
            out[row, half + i] = math.cos(tt * w)
    return out


@pytest.mark.parametrize("dim", [2 + 30, 128, 33])
def test_timestep_embedding_matches_numpy_formula(dim):
    t = torch.tensor([1, 2, 10, 250, 999, 1000])
    got = timestep_embedding(t, dim)
    assert got.shape == (6, dim) and got.dtype == torch.float32
    # float32 angles t*w carry a relative error ~6e-8, i.e. ~1e-4 absolute at t = 1000.
    np.testing.assert_allclose(got.numpy(), numpy_sinusoid(t.numpy(), dim), atol=5e-4, rtol=0)


def test_timestep_embedding_inner_products_depend_only_on_the_time_difference():
    # sum_i sin(a w_i) sin(b w_i) + cos(a w_i) cos(b w_i) = sum_i cos((a - b) w_i): a property of
    # the sinusoids, not a re-evaluation of them.
    t = torch.tensor([5, 105, 600, 700])
    e = timestep_embedding(t, 64).double()
    assert torch.allclose(e[0] @ e[1], e[2] @ e[3], atol=1e-3)
    assert torch.allclose((e * e).sum(1), torch.full((4,), 32.0, dtype=torch.float64), atol=1e-4)


def test_different_timesteps_give_different_embeddings_and_outputs():
    t = torch.arange(1, 1001)
    e = timestep_embedding(t, 32)
    d = torch.cdist(e, e) + torch.eye(1000) * 1e9
    assert d.min() > 1e-3, "two timesteps share an embedding"
    torch.manual_seed(0)
    model = UNet(small_config(zero_init=False)).eval()
    x = torch.randn(1, 1, 16, 16).expand(3, -1, -1, -1)
    with torch.no_grad():
        out = model(x, torch.tensor([1, 500, 1000]))
    assert (out[0] - out[1]).abs().max() > 1e-4 and (out[1] - out[2]).abs().max() > 1e-4


def test_timestep_embedding_bad_input():
    with pytest.raises(ValueError, match="^t must have shape"):
        timestep_embedding(torch.ones(2, 1, dtype=torch.long), 8)
    with pytest.raises(TypeError, match="^t must be a tensor"):
        timestep_embedding([1, 2], 8)
    with pytest.raises(ValueError, match="^dim"):
        timestep_embedding(torch.tensor([1]), 1)


# ------------------------------------------------------------------------------------ gradients
def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = UNet(small_config(zero_init=False)).train()
    x, t = batch(model.config, b=4)
    F.mse_loss(model(x, t), torch.randn_like(x)).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().gt(0).any())]
    assert not dead, f"no gradient reaches {dead}"


def test_zero_init_layers_start_at_zero_and_learn_first():
    # With DDPM's zero init the network starts at eps_hat = 0, and at the very first step only
    # conv_out gets a gradient (its zero weights block the path back to everything before it).
    torch.manual_seed(0)
    model = UNet(small_config())
    x, t = batch(model.config, b=4)
    out = model(x, t)
    assert torch.equal(out, torch.zeros_like(out))
    zeroed = {
        n for n, p in model.named_parameters() if "norm" not in n and not p.detach().abs().gt(0).any()
    }  # GroupNorm biases start at 0 anyway
    expected = {"conv_out.weight", "conv_out.bias"} | {
        f"{n}.{k}" for n, m in model.named_modules() for k in ("weight", "bias") if n.endswith((".conv2", ".proj_out"))
    }  # ResBlock.conv2, AttentionBlock.proj_out
    assert zeroed == expected
    F.mse_loss(out, torch.randn_like(x)).backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().gt(0).any()}
    assert with_grad == {"conv_out.weight", "conv_out.bias"}


# ------------------------------------------------------------------------------------ formats, modes
def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = UNet(small_config(zero_init=False)).eval()
    x, t = batch(model.config, b=3)
    with torch.no_grad():
        ref = model(x, t)
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.contiguous(memory_format=torch.channels_last), t)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-4)


def test_eval_is_deterministic_and_train_uses_dropout():
    torch.manual_seed(0)
    model = UNet(small_config(zero_init=False, dropout=0.5))
    x, t = batch(model.config)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x, t), model(x, t))
        model.train()
        assert not torch.equal(model(x, t), model(x, t))


def test_bf16_autocast():
    torch.manual_seed(0)
    model = UNet(small_config(zero_init=False)).eval()
    x, t = batch(model.config)
    with torch.no_grad():
        ref = model(x, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, t)
    assert out.shape == x.shape and torch.isfinite(out).all()
    # bf16 keeps ~3 significant digits; a few % relative error overall is expected.
    assert (out.float() - ref).norm() / ref.norm() < 0.05


# ------------------------------------------------------------------------------------ learning
def test_tiny_model_overfits_one_batch():
    # Data = one fixed image x0 (a smooth "digit"), so eps is recoverable from (x_t, t):
    # eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t). The network has to learn x0 and the scaling.
    torch.manual_seed(0)
    model = UNet(small_config(attention_resolutions=(), dropout=0.0))
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    x0 = (torch.exp(-((xx.abs() - 0.4) ** 2 + yy**2) / 0.05) * 2 - 1)[None, None]
    t = torch.tensor([100, 300, 500, 700] * 2)
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)[t - 1].view(-1, 1, 1, 1)
    eps = torch.randn(8, 1, 16, 16)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = F.mse_loss(model(x_t, t), eps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, f"loss went from {losses[0]:.3f} to {losses[-1]:.3f}"


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "x_shape, t, exc, pattern",
    [
        ((2, 28, 28), None, ValueError, r"^x must have shape \(B, C, H, W\)"),
        ((2, 3, 28, 28), None, ValueError, r"^x has 3 channels"),
        ((2, 1, 30, 30), None, ValueError, r"^x has shape \(2, 1, 30, 30\).*divisible by 4"),
        ((2, 1, 28, 28), torch.tensor([1.0, 2.0]), TypeError, r"^t must hold integer timesteps"),
        ((2, 1, 28, 28), torch.tensor([1, 2, 3]), ValueError, r"^t must have shape \(B,\) = \(2,\)"),
        ((2, 1, 28, 28), torch.tensor([[1], [2]]), ValueError, r"^t must have shape"),
        ((2, 1, 28, 28), [1, 2], TypeError, r"^t must be a LongTensor"),
    ],
)
def test_bad_inputs_name_the_argument(x_shape, t, exc, pattern):
    model = UNet(mnist_tiny())
    x = torch.randn(*x_shape)
    t = torch.tensor([1, 2]) if t is None else t
    with pytest.raises(exc, match=pattern):
        model(x, t)


def test_bad_x_types():
    model = UNet(mnist_tiny())
    with pytest.raises(TypeError, match="^x must be a torch.Tensor"):
        model(np.zeros((2, 1, 28, 28), np.float32), torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="^x must be a floating-point"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.tensor([1, 2]))


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (dict(num_groups=3), "^num_groups=3 must divide"),
        (dict(num_res_blocks=(1, 2)), "^num_res_blocks has 2 entries"),
        (dict(num_res_blocks=0), "^num_res_blocks must be >= 1"),
        (dict(channel_mults=()), "^channel_mults"),
        (dict(dropout=1.0), "^dropout"),
        (dict(base_channels=0), "^base_channels"),
        (dict(num_heads=3), "^num_heads=3"),
        (dict(attention_resolutions=(16,)), r"^attention_resolutions=\(16,\) includes \[16\]"),
    ],
)
def test_bad_config_names_the_field(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        mnist_tiny(**overrides)


def test_unet_rejects_a_non_config():
    with pytest.raises(TypeError, match="^config must be a UNetConfig"):
        UNet({"base_channels": 8})


# ------------------------------------------------------------------------------------------------
# Class-conditional U-Net
# ------------------------------------------------------------------------------------------------
def test_class_conditional_unet_adds_a_label_embedding_with_a_null_label():
    torch.manual_seed(0)
    cond = UNet(mnist_tiny(num_classes=10, zero_init=False))
    torch.manual_seed(0)
    plain = UNet(mnist_tiny(zero_init=False))
    extra = {k: v.shape for k, v in cond.state_dict().items() if k not in plain.state_dict()}
    assert extra == {"label_embed.weight": (11, plain.config.base_channels * plain.config.time_embed_mult)}
    assert cond.null_label == 10 and plain.null_label is None
    # An unconditional model's weights (e.g. every checkpoint written before labels existed) load unchanged.
    assert set(plain.state_dict()) == set(UNet(mnist_tiny()).state_dict())
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([1, 500, 1000])
    with torch.no_grad():
        # y=None is the null label; the label embedding is added to the time embedding, so with it zeroed a
        # conditional model computes exactly what the same weights compute without labels.
        assert torch.equal(cond(x, t), cond(x, t, torch.full((3,), 10)))
        cond.label_embed.weight.zero_()
        cond.load_state_dict(plain.state_dict(), strict=False)
        assert torch.allclose(cond(x, t, torch.tensor([0, 5, 9])), plain(x, t), atol=1e-6)


@pytest.mark.parametrize(
    ("y", "error", "match"),
    [
        (torch.tensor([0, 11]), ValueError, r"outside 0\.\.10"),
        (torch.tensor([-1, 0]), ValueError, r"outside 0\.\.10"),
        (torch.tensor([0.0, 1.0]), TypeError, "integer class labels"),
        (torch.tensor([0, 1, 2]), ValueError, r"shape \(B,\) = \(2,\)"),
        ([0, 1], TypeError, "LongTensor"),
    ],
)
def test_bad_labels_are_refused_naming_y(y, error, match):
    model = UNet(mnist_tiny(num_classes=10))
    with pytest.raises(error, match=match):
        model(torch.zeros(2, 1, 28, 28), torch.tensor([1, 2]), y)


def test_labels_given_to_an_unconditional_model_are_refused():
    with pytest.raises(ValueError, match="unconditional model"):
        UNet(mnist_tiny())(torch.zeros(2, 1, 28, 28), torch.tensor([1, 2]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_classes must be"):
        mnist_tiny(num_classes=0)
