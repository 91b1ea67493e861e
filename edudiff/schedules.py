r"""Noise schedules and the per-step tables derived from them.

Convention (used everywhere in edudiff): t runs 1..T as in Ho et al. (2020). Every per-step
table has length T+1 and index 0 means "no noise": beta_0 = 0, alpha_0 = 1, alpha_bar_0 = 1.
All tables are float64 torch tensors; :meth:`Schedule.gather` casts to the data's dtype.

Math (paper notation):

* :math:`\alpha_t = 1-\beta_t`, :math:`\bar\alpha_t = \prod_{s=1}^t \alpha_s`
* posterior q(x_{t-1}|x_t,x_0) = N(coef_x0_t x_0 + coef_xt_t x_t, \tilde\beta_t)   (eq. 6-7) with
  :math:`\tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t`,
  coef_x0 = :math:`\frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t}`,
  coef_xt = :math:`\frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}`
* signal-to-noise ratio :math:`\mathrm{SNR}(t) = \bar\alpha_t/(1-\bar\alpha_t)`

Taught in: notebooks/02_closed_form_jump.ipynb (schedules, alpha_bar, SNR) and
notebooks/03_posterior.ipynb (posterior coefficients).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._validate import as_tensor_t

__all__ = ["linear_betas", "cosine_betas", "Schedule"]


def _check_T(T) -> int:
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)):
        raise TypeError(f"T must be a positive int (the number of diffusion steps), got {T!r}")
    if T < 1:
        raise ValueError(f"T must be >= 1 (the number of diffusion steps), got {T}")
    return int(T)


def linear_betas(T: int, beta_1: float = 1e-4, beta_T: float = 0.02) -> torch.Tensor:
    r"""The DDPM linear schedule: betas for t=1..T spaced evenly from ``beta_1`` to ``beta_T``.

    Ho et al. (2020), sec. 4: T=1000, beta_1=1e-4, beta_T=0.02.

    Returns a float64 tensor of shape (T,), entry ``t-1`` holding beta_t (feed it to
    :class:`Schedule`, which prepends beta_0 = 0).

    Taught in: notebooks/02_closed_form_jump.ipynb.
    """
    T = _check_T(T)
    for name, b in (("beta_1", beta_1), ("beta_T", beta_T)):
        if not (0.0 < float(b) < 1.0):
            raise ValueError(f"{name} must lie in (0, 1), got {b}")
    return torch.from_numpy(np.linspace(float(beta_1), float(beta_T), T, dtype=np.float64))


def cosine_alpha_bar(t, T: int, s: float = 0.008):
    r"""The cosine schedule's target :math:`\bar\alpha(t) = f(t)/f(0)`,
    :math:`f(t) = \cos^2\!\big(\frac{t/T + s}{1+s}\cdot\frac{\pi}{2}\big)` (Nichol & Dhariwal 2021, eq. 17).

    ``t`` may be a float, numpy array or tensor of times in [0, T]; computed in float64.
    """
    t = np.asarray(t, dtype=np.float64)
    f = lambda u: np.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return f(t) / f(0.0)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    r"""The cosine schedule (Nichol & Dhariwal 2021): :math:`\beta_t = 1-\bar\alpha(t)/\bar\alpha(t-1)`,
    clipped at ``max_beta`` to avoid the singularity at t=T.

    Where no clipping happened, :math:`\prod_{s\le t}(1-\beta_s)` reproduces :func:`cosine_alpha_bar`.
    Returns float64 betas of shape (T,) for t=1..T.

    Taught in: notebooks/02_closed_form_jump.ipynb.
    """
    T = _check_T(T)
    if not (0.0 < float(max_beta) < 1.0):
        raise ValueError(f"max_beta must lie in (0, 1), got {max_beta}")
    if not float(s) >= 0.0:
        raise ValueError(f"s must be >= 0 (the cosine schedule's offset), got {s}")
    ab = cosine_alpha_bar(np.arange(T + 1), T, s)
    betas = 1.0 - ab[1:] / ab[:-1]
    return torch.from_numpy(np.clip(betas, 0.0, float(max_beta)))


class Schedule:
    r"""All per-step quantities of a DDPM noise schedule, as float64 tables of length T+1.

    Build it from betas for t=1..T (shape (T,), each in (0, 1)) — e.g.
    ``Schedule(linear_betas(1000))`` or ``Schedule.linear(1000)``.

    Tables (index t = 0..T; index 0 is "no noise"):

    ================================== ===========================================================
    ``betas``                          beta_t, beta_0 = 0
    ``alphas``                         1 - beta_t
    ``sqrt_alphas``, ``sqrt_betas``    sqrt(alpha_t), sqrt(beta_t) (one forward step, eq. 2)
    ``alpha_bars``                     prod_{s<=t} alpha_s, alpha_bar_0 = 1
    ``alpha_bars_prev``                alpha_bar_{t-1} (index 0 holds 1)
    ``sqrt_alpha_bars``                sqrt(alpha_bar_t)
    ``sqrt_one_minus_alpha_bars``      sqrt(1 - alpha_bar_t)
    ``posterior_variance``             beta-tilde_t = beta_t (1-alpha_bar_{t-1})/(1-alpha_bar_t); 0 at t<=1
    ``posterior_log_variance_clipped`` log beta-tilde_t, with t=1 (where beta-tilde_1 = 0) and t=0
                                       set to log beta-tilde_2, as improved-diffusion does
    ``posterior_mean_coef_x0``         sqrt(alpha_bar_{t-1}) beta_t / (1-alpha_bar_t)        (eq. 7)
    ``posterior_mean_coef_xt``         sqrt(alpha_t)(1-alpha_bar_{t-1}) / (1-alpha_bar_t)    (eq. 7)
    ``snr``                            alpha_bar_t / (1-alpha_bar_t); inf at t=0
    ================================== ===========================================================

    At t=0 the posterior coefficients are set to (1, 0): "x_{-1}" is x_0 itself.

    Taught in: notebooks/02_closed_form_jump.ipynb and notebooks/03_posterior.ipynb.
    """

    def __init__(self, betas):
        if isinstance(betas, Schedule):
            betas = betas.betas[1:]
        try:
            b = torch.as_tensor(betas, dtype=torch.float64).detach().cpu().clone()
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"betas must be a 1-D sequence of floats in (0, 1), one per t=1..T: {e}") from None
        if b.ndim != 1:
            raise ValueError(f"betas must be 1-D with one entry per step t=1..T; got shape {tuple(b.shape)}")
        if b.numel() == 0:
            raise ValueError("betas is empty; give at least one step (T >= 1)")
        if not bool(torch.isfinite(b).all()):
            raise ValueError("betas contains NaN or inf; every beta_t must lie in (0, 1)")
        if not bool(((b > 0) & (b < 1)).all()):
            bad = int(torch.nonzero((b <= 0) | (b >= 1))[0]) + 1
            raise ValueError(
                f"betas must lie strictly in (0, 1); beta_{bad} = {float(b[bad - 1])!r}. "
                f"Betas are given for t=1..T (do not include beta_0 = 0)."
            )
        self.T = int(b.numel())
        one = torch.ones(1, dtype=torch.float64)
        zero = torch.zeros(1, dtype=torch.float64)
        self.betas = torch.cat([zero, b])
        self.alphas = 1.0 - self.betas
        self.sqrt_alphas = self.alphas.sqrt()
        self.sqrt_betas = self.betas.sqrt()
        self.alpha_bars = torch.cumprod(self.alphas, 0)
        self.alpha_bars_prev = torch.cat([one, self.alpha_bars[:-1]])
        self.sqrt_alpha_bars = self.alpha_bars.sqrt()
        self.one_minus_alpha_bars = 1.0 - self.alpha_bars
        self.sqrt_one_minus_alpha_bars = self.one_minus_alpha_bars.sqrt()

        denom = self.one_minus_alpha_bars.clone()
        denom[0] = 1.0  # avoid 0/0 at t = 0; index 0 is overwritten below
        self.posterior_variance = self.betas * (1.0 - self.alpha_bars_prev) / denom
        self.posterior_variance[0] = 0.0
        logvar = torch.full_like(self.posterior_variance, float("nan"))
        logvar[2:] = self.posterior_variance[2:].log()
        fallback = logvar[2] if self.T >= 2 else torch.log(self.betas[1])
        logvar[:2] = fallback
        self.posterior_log_variance_clipped = logvar
        self.posterior_mean_coef_x0 = self.alpha_bars_prev.sqrt() * self.betas / denom
        self.posterior_mean_coef_xt = self.alphas.sqrt() * (1.0 - self.alpha_bars_prev) / denom
        self.posterior_mean_coef_x0[0] = 1.0
        self.posterior_mean_coef_xt[0] = 0.0
        with torch.no_grad():
            self.snr = self.alpha_bars / self.one_minus_alpha_bars
        self._cache: dict = {}

    # ----------------------------------------------------------------- constructors
    @classmethod
    def linear(cls, T: int = 1000, beta_1: float = 1e-4, beta_T: float = 0.02) -> Schedule:
        """``Schedule(linear_betas(T, beta_1, beta_T))``."""
        return cls(linear_betas(T, beta_1, beta_T))

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
        """``Schedule(cosine_betas(T, s, max_beta))``."""
        return cls(cosine_betas(T, s, max_beta))

    # ----------------------------------------------------------------- the reverse process's variance
    MODEL_VARIANCES = ("beta", "fixedlarge", "beta_tilde", "fixedsmall")

    def model_log_variance(self, var_type: str = "beta") -> torch.Tensor:
        r"""The reverse step's fixed log-variance :math:`\log\sigma_t^2`, a float64 table of length T+1.

        The two choices of sec. 3.2 and how the released code differs from the paper's text at t = 1:

        ================ ============================================================================
        ``"beta"``       :math:`\sigma_t^2 = \beta_t` for every t, including :math:`\sigma_1^2 = \beta_1`
                         — the paper's text read literally. Right for continuous (toy) data, where the
                         decoder is a density.
        ``"fixedlarge"`` :math:`\sigma_t^2 = \beta_t` for t >= 2 but :math:`\sigma_1^2 = \tilde\beta_2` — what the
                         paper's released code (and improved-diffusion) does for "fixedlarge":
                         ``np.append(posterior_variance[1], betas[1:])``, "to get a better decoder log
                         likelihood". Use it to compute bits/dim the way the paper's 3.75 was computed.
        ``"beta_tilde"`` :math:`\sigma_t^2 = \tilde\beta_t`, with :math:`\tilde\beta_1 = 0` replaced by
        ``"fixedsmall"`` :math:`\tilde\beta_2` (``posterior_log_variance_clipped``); the two names are the same.
        ================ ============================================================================

        Index 0 repeats index 1 (there is no reverse step into t = 0). For T = 1, ``"fixedlarge"``
        has no :math:`\tilde\beta_2` and uses :math:`\beta_1`.

        Taught in: notebooks/04_elbo_terms.ipynb (section 8, the decoder) and notebooks/03_posterior.ipynb.
        """
        key = ("model_log_variance", var_type)
        if key not in self._cache:
            if var_type == "beta":
                table = self.betas.clone()
            elif var_type == "fixedlarge":
                table = self.betas.clone()
                table[1] = self.posterior_variance[2] if self.T >= 2 else self.betas[1]
            elif var_type in ("beta_tilde", "fixedsmall"):
                table = self.posterior_log_variance_clipped.exp()
            else:
                raise ValueError(
                    f"var_type must be one of {', '.join(map(repr, self.MODEL_VARIANCES))} "
                    f"(see Schedule.model_log_variance); got {var_type!r}"
                )
            table[0] = table[1]
            self._cache[key] = table.log()
        return self._cache[key]

    # ----------------------------------------------------------------- helpers
    def __len__(self) -> int:
        return self.T

    def __repr__(self) -> str:
        return (
            f"Schedule(T={self.T}, beta_1={float(self.betas[1]):.3g}, beta_T={float(self.betas[-1]):.3g}, "
            f"alpha_bar_T={float(self.alpha_bars[-1]):.3g})"
        )

    @property
    def timesteps(self) -> torch.Tensor:
        """The steps 1..T as a LongTensor of shape (T,)."""
        return torch.arange(1, self.T + 1)

    def check_t(self, t, batch: int | None = None, device=None, name: str = "t") -> torch.Tensor:
        """Validate ``t`` (int or LongTensor (B,)) against 1..T and return it as a LongTensor (B,)."""
        return as_tensor_t(t, self.T, batch=batch, device=device, name=name)

    def gather(self, table: torch.Tensor | str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``table[t]`` reshaped to (B, 1, ..., 1) so it broadcasts against ``like`` (shape (B, ...)),
        in ``like``'s dtype and device. ``table`` is a tensor of length T+1 or an attribute name."""
        if isinstance(table, str):
            table = getattr(self, table)
        dtype = like.dtype if like.dtype.is_floating_point else torch.float64
        key = (id(table), like.device, dtype)
        cached = self._cache.get(key)
        if cached is None or cached[0] is not table:
            cached = (table, table.to(device=like.device, dtype=dtype))
            self._cache[key] = cached
        out = cached[1][t.to(like.device)]
        return out.reshape(t.shape[0], *([1] * (like.ndim - 1)))
