r"""Small eps-prediction networks for the 1-D / 2-D toy mixtures, a tiny training loop, and
sample-quality metrics (Wasserstein distances).

* :class:`ToyEpsMLP` — an MLP :math:`\epsilon_\theta(x_t, t)` for data of shape (B,) (1-D) or (B, d),
  conditioned on t through a sinusoidal (transformer-style) or a learned embedding.
* :func:`train_toy` — Algorithm 1 on samples from a toy distribution, with either
  :func:`edudiff.loss_simple` (eq. 14) or :func:`edudiff.loss_elbo_weighted` (the true bound's
  weights :math:`\lambda_t`, eq. 12); returns the loss history.
* :func:`wasserstein_1d` — the exact 1-Wasserstein distance between two 1-D empirical distributions
  (the area between their CDFs; same value as ``scipy.stats.wasserstein_distance``).
* :func:`sliced_wasserstein` — the average 1-D W1 over random projections, for d-dimensional samples.

Taught in: notebooks/05_l_simple.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .._validate import check_positive_int
from ..losses import loss_elbo_weighted, loss_simple
from ..reverse import check_var_type
from ..schedules import Schedule
from .blocks import timestep_embedding

__all__ = [
    "SinusoidalTimeEmbedding",
    "LearnedTimeEmbedding",
    "ToyEpsMLP",
    "train_toy",
    "wasserstein_1d",
    "sliced_wasserstein",
]


class SinusoidalTimeEmbedding(nn.Module):
    r"""The transformer position encoding of the step, as in DDPM's U-Net:
    :math:`[\sin(s\,\omega_k), \cos(s\,\omega_k)]_{k<\mathrm{dim}/2}`
    with :math:`\omega_k = 10000^{-k/(\mathrm{dim}/2)}`
    and :math:`s = 1000\,t/T` (t rescaled to the paper's 1..1000 range, so the frequencies suit any T).

    ``t``: LongTensor (B,) in 1..T  ->  (B, dim) float32.
    """

    def __init__(self, dim: int, T: int, max_period: float = 10000.0):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even int >= 2 (half sines, half cosines), got {dim}")
        self.T = int(T)
        self.dim = dim
        self.max_period = max_period
        # An empty buffer whose dtype follows the module's (e.g. after .double()): the embedding's dtype.
        self.register_buffer("dtype_anchor", torch.zeros(0), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # The U-Net's embedding with t rescaled to 1000 t / T and frequencies spaced by 1/half.
        return timestep_embedding(
            t,
            self.dim,
            self.max_period,
            t_scale=1000.0 / self.T,
            freq_denominator=self.dim // 2,
            dtype=self.dtype_anchor.dtype,
        )


class LearnedTimeEmbedding(nn.Module):
    """One trainable vector per step: ``nn.Embedding(T + 1, dim)`` (row 0 unused). ``t`` (B,) -> (B, dim)."""

    def __init__(self, dim: int, T: int):
        super().__init__()
        self.table = nn.Embedding(int(T) + 1, dim)
        nn.init.normal_(self.table.weight, std=1.0)
        self.T = int(T)
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.table(t)


class ToyEpsMLP(nn.Module):
    r"""A small MLP noise predictor :math:`\epsilon_\theta(x_t, t)` for toy data.

    Architecture: the time embedding goes through Linear-SiLU-Linear to a vector e(t) of width
    ``hidden``; then :math:`h_0 = \mathrm{SiLU}(W_0 x + e(t))` and ``depth - 1`` residual blocks
    :math:`h \leftarrow h + \mathrm{SiLU}(W_i h + U_i e(t))`, and a linear read-out to ``dim`` outputs.

    Args:
        dim: data dimension d (1 for the 1-D mixture, whose samples have shape (B,)).
        T: number of diffusion steps (t runs 1..T).
        hidden: width of the hidden layers.
        depth: number of hidden layers (>= 1).
        time_embedding: ``"sinusoidal"`` (fixed, as in the paper) or ``"learned"`` (one vector per t).
        emb_dim: width of the raw time embedding.
        seed: if given, the parameters are initialised from ``torch.manual_seed(seed)`` without
            touching the global random state (reproducible models).

    ``forward(x, t)``: x (B,) when ``dim == 1`` (or (B, 1)), else (B, d); t LongTensor (B,) in 1..T.
    Returns eps_hat with x's shape and dtype.

    Taught in: notebooks/05_l_simple.ipynb.
    """

    def __init__(
        self,
        dim: int = 1,
        T: int = 100,
        hidden: int = 128,
        depth: int = 3,
        time_embedding: str = "sinusoidal",
        emb_dim: int = 32,
        seed: int | None = None,
    ):
        super().__init__()
        for name, value in (("dim", dim), ("T", T), ("hidden", hidden), ("depth", depth)):
            check_positive_int(value, name)
        if time_embedding not in ("sinusoidal", "learned"):
            raise ValueError(f"time_embedding must be 'sinusoidal' or 'learned', got {time_embedding!r}")
        self.dim, self.T, self.time_embedding_kind = int(dim), int(T), time_embedding
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(int(seed))
            emb = (
                SinusoidalTimeEmbedding(emb_dim, T)
                if time_embedding == "sinusoidal"
                else LearnedTimeEmbedding(emb_dim, T)
            )
            self.time_embed = nn.Sequential(emb, nn.Linear(emb_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            self.inp = nn.Linear(dim, hidden)
            self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth - 1))
            self.time_proj = nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in range(depth - 1))
            self.out = nn.Linear(hidden, dim)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        squeeze = x.ndim == 1
        if squeeze:
            if self.dim != 1:
                raise ValueError(
                    f"x has shape {tuple(x.shape)} but this model is for {self.dim}-D data; "
                    f"pass x of shape (B, {self.dim})"
                )
            h_in = x[:, None]
        else:
            if x.ndim != 2 or x.shape[1] != self.dim:
                raise ValueError(
                    f"x must have shape (B, {self.dim})"
                    + (" or (B,)" if self.dim == 1 else "")
                    + f"; got {tuple(x.shape)}"
                )
            h_in = x
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be a LongTensor of shape (B,) = ({x.shape[0]},); got shape {tuple(t.shape)}")
        if t.numel() and (int(t.min()) < 1 or int(t.max()) > self.T):
            raise ValueError(f"t must lie in 1..T={self.T}; got values in [{int(t.min())}, {int(t.max())}]")
        dtype = self.out.weight.dtype
        t = t.long()
        # Only T+1 distinct steps exist: for a large batch, embed every step once and gather the rows
        # (the same numbers, a fraction of the work); for a small batch, embed the batch's steps.
        table = t.shape[0] > self.T + 1
        steps = torch.arange(self.T + 1, device=t.device) if table else t
        pick = (lambda v: v[t]) if table else (lambda v: v)
        e = self.time_embed(steps)
        h = self.act(self.inp(h_in.to(dtype)) + pick(e))
        for block, proj in zip(self.blocks, self.time_proj):
            h = h + self.act(block(h) + pick(proj(e)))
        out = self.out(h)
        return (out[:, 0] if squeeze else out).to(x.dtype)


def _draw(sampler, n: int, generator):
    if hasattr(sampler, "sample"):
        return sampler.sample(n, generator=generator)
    if callable(sampler):
        return sampler(n, generator)
    raise TypeError(
        "sampler must have a .sample(n, generator=...) method (e.g. a GaussianMixture) "
        "or be a callable sampler(n, generator) returning a batch of x_0"
    )


def train_toy(
    model: nn.Module,
    schedule: Schedule,
    sampler,
    loss: str = "simple",
    steps: int = 2000,
    batch: int = 256,
    lr: float = 2e-3,
    generator: torch.Generator | None = None,
    var_type: str = "beta",
    lr_decay: bool = True,
    callback: Callable[[int, float], None] | None = None,
    num_threads: int | None = 1,
) -> list[float]:
    r"""Train an eps-model with Algorithm 1 on fresh samples of a toy distribution (no fixed dataset).

    Each step draws ``batch`` x_0 from ``sampler``, t ~ U{1..T} and eps ~ N(0, I) from ``generator``
    and takes one Adam step on

    * ``loss="simple"``: :func:`edudiff.loss_simple`, :math:`\|\epsilon-\epsilon_\theta\|^2` (eq. 14), or
    * ``loss="elbo"``: :func:`edudiff.loss_elbo_weighted`, :math:`T\lambda_t\|\epsilon-\epsilon_\theta\|^2`
      with the bound's weights for ``var_type`` (eq. 12).

    Args:
        sampler: a :class:`edudiff.toy.GaussianMixture` (anything with ``.sample(n, generator=)``) or a
            callable ``sampler(n, generator)``; its samples are cast to the model's dtype.
        lr_decay: cosine-decay the learning rate to 0 over ``steps`` (less noisy final weights).
        callback: called as ``callback(step, loss_value)`` after every step.
        num_threads: torch CPU threads to use while training (restored after). The default 1 is
            fastest for these tiny models: splitting a 256x64 matmul over threads costs more than it
            saves, and on a busy machine extra threads only wait. ``None`` keeps the current setting.
    Returns the per-step loss values (a list of ``steps`` floats). The model is left in train mode.
    With the same ``generator`` seed and the same initial model, the run is bit-for-bit repeatable.

    Taught in: notebooks/05_l_simple.ipynb.
    """
    if loss not in ("simple", "elbo"):
        raise ValueError(
            f"loss must be 'simple' (L_simple, eq. 14) or 'elbo' (lambda_t-weighted, eq. 12); got {loss!r}"
        )
    check_var_type(var_type)
    for name, value in (("steps", steps), ("batch", batch)):
        check_positive_int(value, name)
    if not float(lr) > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if num_threads is not None:
        check_positive_int(num_threads, "num_threads", fix="(or None: keep the current setting)")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    p0 = params[0]
    opt = torch.optim.Adam(params, lr=float(lr), foreach=True)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda i: 0.5 * (1 + math.cos(math.pi * i / steps))) if lr_decay else (lambda i: 1.0)
    )
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        return _train_loop(
            model, schedule, sampler, loss, int(steps), int(batch), generator, var_type, opt, sched, p0, callback
        )
    finally:
        torch.set_num_threads(previous_threads)


def _train_loop(model, schedule, sampler, loss, steps, batch, generator, var_type, opt, sched, p0, callback):
    model.train()
    history: list[float] = []
    for step in range(steps):
        x0 = torch.as_tensor(_draw(sampler, batch, generator)).to(device=p0.device, dtype=p0.dtype)
        if loss == "simple":
            value = loss_simple(schedule, model, x0, generator=generator)
        else:
            value = loss_elbo_weighted(schedule, model, x0, generator=generator, var_type=var_type)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        sched.step()
        history.append(float(value.detach()))
        if callback is not None:
            callback(step, history[-1])
    return history


def _as_np_1d(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError(f"{name} is empty; give at least one sample")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def wasserstein_1d(u, v) -> float:
    r"""The 1-Wasserstein (earth mover's) distance between the empirical distributions of two 1-D samples:

    .. math:: W_1(u, v) = \int_{-\infty}^{\infty} |F_u(z) - F_v(z)|\,dz

    with F the empirical CDFs (exact, not a histogram). ``u`` and ``v`` are arrays/tensors of any
    lengths (flattened). Equals ``scipy.stats.wasserstein_distance(u, v)``; for equal sizes it is
    ``mean(|sort(u) - sort(v)|)``.
    """
    u = np.sort(_as_np_1d(u, "u"))
    v = np.sort(_as_np_1d(v, "v"))
    z = np.sort(np.concatenate([u, v]))
    dz = np.diff(z)
    Fu = np.searchsorted(u, z[:-1], side="right") / u.size
    Fv = np.searchsorted(v, z[:-1], side="right") / v.size
    return float(np.sum(np.abs(Fu - Fv) * dz))


def sliced_wasserstein(x, y, n_projections: int = 256, generator: torch.Generator | None = None) -> float:
    r"""Sliced 1-Wasserstein distance between samples ``x`` (N, d) and ``y`` (M, d):
    :math:`SW_1 = \frac1L\sum_{l=1}^L W_1(\langle\theta_l, x\rangle, \langle\theta_l, y\rangle)`
    with directions :math:`\theta_l` uniform on the unit sphere (drawn from ``generator``).

    For 1-D samples (shape (N,) or (N, 1)) it is exactly :func:`wasserstein_1d`. A translation by c
    gives :math:`SW_1 = |c|\,E|\cos\angle(\theta, c)|`, i.e. :math:`2|c|/\pi` in 2-D.
    """
    xt = torch.as_tensor(x, dtype=torch.float64).detach().cpu()
    yt = torch.as_tensor(y, dtype=torch.float64).detach().cpu()
    if xt.ndim == 1 or (xt.ndim == 2 and xt.shape[1] == 1):
        if not (yt.ndim == 1 or (yt.ndim == 2 and yt.shape[1] == 1)):
            raise ValueError(f"x is 1-D but y has shape {tuple(yt.shape)}")
        return wasserstein_1d(xt, yt)
    if xt.ndim != 2 or yt.ndim != 2 or xt.shape[1] != yt.shape[1]:
        raise ValueError(
            f"x and y must have shapes (N, d) and (M, d) with the same d; got {tuple(xt.shape)} and {tuple(yt.shape)}"
        )
    check_positive_int(n_projections, "n_projections")
    theta = torch.randn(int(n_projections), xt.shape[1], generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=1, keepdim=True)
    px, py = (xt @ theta.T).numpy(), (yt @ theta.T).numpy()
    return float(np.mean([wasserstein_1d(px[:, l], py[:, l]) for l in range(theta.shape[0])]))
