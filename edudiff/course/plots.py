r"""Plotting and widget helpers shared by the course notebooks.

Every ``plot_*`` / ``*_strip`` function draws with matplotlib, labels its axes, and returns the
:class:`matplotlib.figure.Figure` (it does not call ``plt.show()``: a notebook cell shows it, and a
widget callback calls ``plt.show()`` itself). Pass ``ax=`` where offered to draw into an existing axes.

* :func:`marginal_density_grid` / :func:`plot_density_heatmap` / :func:`plot_marginal_heatmap` —
  the density q(x_t) of 1-D data as a heat-map over (t, x), optionally with particle paths on top.
* :func:`plot_histograms_vs_marginals` — histograms of simulated particles against the exact
  mixture density q(x_t), one panel per t.
* :func:`image_strip` — images along t (one row per schedule or per example).
* :func:`plot_schedules` — beta_t, alpha_bar_t and log SNR(t) for several schedules.
* :func:`plot_posterior_coefficients` — the coefficients of the posterior mean (eq. 7) and
  beta-tilde_t / beta_t over t.
* :func:`plot_densities` — a few 1-D density curves (plus an optional histogram) on one axes.
* :func:`make_interactive` — ``ipywidgets.interactive`` whose sliders redraw on release only.

Conventions: t runs 0..T (0 = data), as in :class:`edudiff.Schedule`'s tables; images are in [-1, 1].

Taught in: notebooks/01_gaussian_mixture_diffusion.ipynb, 02_closed_form_jump.ipynb, 03_posterior.ipynb
(and used by the later notebooks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..schedules import Schedule

__all__ = [
    "marginal_density_grid",
    "plot_density_heatmap",
    "plot_marginal_heatmap",
    "plot_histograms_vs_marginals",
    "image_strip",
    "plot_schedules",
    "plot_posterior_coefficients",
    "plot_densities",
    "make_interactive",
    "show_images",
    "plot_denoising_strip",
]


# ------------------------------------------------------------------------------------ helpers
def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _new_axes(ax, figsize):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        return fig, ax
    return ax.figure, ax


def _check_1d_mixture(mixture) -> None:
    if getattr(mixture, "dim", 1) != 1:
        raise ValueError(f"mixture must be 1-D (means of shape (K,)); got a {mixture.dim}-D mixture")


# ------------------------------------------------------------------------------------ densities over t
def marginal_density_grid(mixture, schedule: Schedule, ts, xs) -> np.ndarray:
    r"""The exact density q(x_t) of a 1-D :class:`edudiff.toy.GaussianMixture` on a grid.

    ``ts``: steps in 0..T (0 = the data); ``xs``: points. Returns an array of shape (len(ts), len(xs)),
    row i holding :math:`q(x_{t_i}=x)`, from :meth:`GaussianMixture.marginal` (eq. 4 applied to each component).
    """
    _check_1d_mixture(mixture)
    xs_t = torch.as_tensor(_np(xs), dtype=torch.float64)
    rows = [mixture.marginal(schedule, int(t)).log_prob(xs_t).exp().numpy() for t in _np(ts).reshape(-1)]
    return np.stack(rows)


def plot_density_heatmap(
    density,
    ts,
    xs,
    ax=None,
    title: str = "density over t",
    cmap: str = "magma",
    vmax: float | None = None,
    xlabel: str = "step t",
    ylabel: str = "x",
    cbar_label: str = "density",
) -> Figure:
    """Draw ``density`` (shape (len(ts), len(xs))) as a heat-map: t on the horizontal axis, x vertical.

    ``vmax`` defaults to the 99th percentile so a sharp data density does not wash out later t.
    """
    d = _np(density)
    ts, xs = _np(ts).reshape(-1), _np(xs).reshape(-1)
    if d.shape != (ts.size, xs.size):
        raise ValueError(f"density must have shape (len(ts), len(xs)) = ({ts.size}, {xs.size}); got {d.shape}")
    fig, ax = _new_axes(ax, (7, 3.2))
    vmax = float(np.quantile(d, 0.99)) if vmax is None else vmax
    im = ax.imshow(
        d.T,
        origin="lower",
        aspect="auto",
        cmap=cmap,
        vmin=0.0,
        vmax=vmax,
        extent=(ts[0], ts[-1], xs[0], xs[-1]),
        interpolation="nearest",
    )
    cbar = fig.colorbar(im, ax=ax, pad=0.01)
    cbar.set_label(cbar_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig


def plot_marginal_heatmap(
    mixture,
    schedule: Schedule,
    ts=None,
    xs=None,
    ax=None,
    paths=None,
    path_ts=None,
    path_colors=None,
    title: str | None = None,
) -> Figure:
    r"""The exact marginal q(x_t) of a 1-D mixture as a heat-map over t, with particle paths on top.

    ``ts`` defaults to 201 steps spread over 0..T, ``xs`` to 400 points over [-4, 4].
    ``paths``: optional array (len(path_ts), n) of n particle trajectories sampled at the steps
    ``path_ts`` (default 0..T); ``path_colors``: one colour per particle.
    """
    ts = np.unique(np.linspace(0, schedule.T, 201).round().astype(int)) if ts is None else _np(ts).reshape(-1)
    xs = np.linspace(-4, 4, 400) if xs is None else _np(xs).reshape(-1)
    dens = marginal_density_grid(mixture, schedule, ts, xs)
    fig = plot_density_heatmap(
        dens, ts, xs, ax=ax, title=title or "exact marginal $q(x_t)$", ylabel="$x_t$", cbar_label="$q(x_t)$"
    )
    ax = fig.axes[0] if ax is None else ax
    if paths is not None:
        p = _np(paths)
        pts = np.arange(p.shape[0]) if path_ts is None else _np(path_ts).reshape(-1)
        if pts.size != p.shape[0]:
            raise ValueError(f"paths has {p.shape[0]} rows but path_ts has {pts.size} steps; they must match")
        for j in range(p.shape[1]):
            color = "white" if path_colors is None else path_colors[j]
            ax.plot(pts, p[:, j], lw=0.6, alpha=0.7, color=color)
        ax.set_ylim(xs[0], xs[-1])
    return fig


def plot_histograms_vs_marginals(
    mixture, schedule: Schedule, samples_by_t: Mapping[int, object], xs=None, bins: int = 80, title: str | None = None
) -> Figure:
    """One panel per step t: a density histogram of ``samples_by_t[t]`` against the exact q(x_t)."""
    _check_1d_mixture(mixture)
    if not samples_by_t:
        raise ValueError("samples_by_t is empty; give at least one {t: samples} entry")
    xs = np.linspace(-4, 4, 400) if xs is None else _np(xs).reshape(-1)
    items = list(samples_by_t.items())
    fig, axes = plt.subplots(
        1, len(items), figsize=(2.6 * len(items), 2.6), sharey=True, layout="constrained", squeeze=False
    )
    for ax, (t, x) in zip(axes[0], items):
        x = _np(x).reshape(-1)
        ax.hist(x, bins=bins, range=(xs[0], xs[-1]), density=True, color="C0", alpha=0.5, label=f"{x.size} particles")
        ax.plot(xs, marginal_density_grid(mixture, schedule, [t], xs)[0], color="C3", lw=1.5, label="exact $q(x_t)$")
        ax.set_title(f"t = {int(t)}")
        ax.set_xlabel("$x_t$")
        ax.set_ylabel("density")
    axes[0][0].legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title)
    return fig


# ------------------------------------------------------------------------------------ images
def _to_display(img: np.ndarray):
    """(C, H, W) or (H, W) in [-1, 1] -> (H, W) or (H, W, 3) in [0, 1], clipped."""
    img = np.clip((img + 1.0) / 2.0, 0.0, 1.0)
    if img.ndim == 3:
        img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
    return img


def image_strip(
    images, ts: Sequence[int], row_labels: Sequence[str] | None = None, title: str | None = None, size: float = 1.4
) -> Figure:
    """Images along t: ``images`` of shape (K, C, H, W) (one row) or (R, K, C, H, W) (R rows), values
    in [-1, 1] (shown clipped: -1 black, 1 white); ``ts`` names the K columns; ``row_labels`` the R rows.
    """
    im = _np(images)
    if im.ndim == 4:
        im = im[None]
    if im.ndim != 5:
        raise ValueError(f"images must have shape (K, C, H, W) or (R, K, C, H, W); got {tuple(_np(images).shape)}")
    R, K = im.shape[:2]
    ts = list(ts)
    if len(ts) != K:
        raise ValueError(f"ts has {len(ts)} entries but there are {K} images per row; they must match")
    if row_labels is not None and len(row_labels) != R:
        raise ValueError(f"row_labels has {len(row_labels)} entries for {R} rows")
    fig, axes = plt.subplots(
        R, K, figsize=(size * K, size * R + (0.4 if title else 0.1)), squeeze=False, layout="constrained"
    )
    for r in range(R):
        for k in range(K):
            ax = axes[r][k]
            ax.imshow(_to_display(im[r, k]), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"t = {int(ts[k])}", fontsize=8)
            ax.set_ylabel(row_labels[r] if row_labels is not None else "image", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


# ------------------------------------------------------------------------------------ schedules
def plot_schedules(schedules: Mapping[str, Schedule], title: str | None = None) -> Figure:
    r"""Three panels over t/T: :math:`\beta_t`, :math:`\bar\alpha_t` (with :math:`\sqrt{\bar\alpha_t}`
    dashed) and :math:`\log \mathrm{SNR}(t) = \log\frac{\bar\alpha_t}{1-\bar\alpha_t}`, one line per schedule."""
    fig, axes = _three_panels(schedules)
    for i, (name, s) in enumerate(schedules.items()):
        u = np.arange(1, s.T + 1) / s.T
        axes[0].plot(u, s.betas[1:].numpy(), color=f"C{i}", label=name)
        axes[1].plot(u, s.alpha_bars[1:].numpy(), color=f"C{i}", label=rf"{name}: $\bar\alpha_t$")
        axes[1].plot(
            u, s.sqrt_alpha_bars[1:].numpy(), color=f"C{i}", ls="--", label=rf"{name}: $\sqrt{{\bar\alpha_t}}$"
        )
        axes[2].plot(u, np.log(s.snr[1:].numpy()), color=f"C{i}", label=name)
    return _finish_panels(
        fig,
        axes,
        (r"$\beta_t$", r"$\bar\alpha_t$", r"$\log\,\mathrm{SNR}(t)$"),
        (r"$\beta_t$ (log scale)", "signal kept", r"log SNR $=\log\bar\alpha_t/(1-\bar\alpha_t)$"),
        title,
    )


def _three_panels(schedules: Mapping[str, Schedule]):
    """One row of three axes for curves over t/T, one colour per schedule."""
    if not schedules:
        raise ValueError("schedules is empty; give e.g. {'linear': Schedule.linear()}")
    return plt.subplots(1, 3, figsize=(11, 3), layout="constrained")


def _finish_panels(fig: Figure, axes, ylabels, titles, title: str | None, title_size=None) -> Figure:
    """Log scale on the first panel; axis labels, titles, legends and grids on all three."""
    axes[0].set_yscale("log")
    for ax, ylab, ttl in zip(axes, ylabels, titles):
        ax.set_xlabel("t / T")
        ax.set_ylabel(ylab)
        ax.set_title(ttl, fontsize=title_size)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def plot_posterior_coefficients(schedules: Mapping[str, Schedule], title: str | None = None) -> Figure:
    r"""Over t/T: the weights of :math:`x_0` and :math:`x_t` in the posterior mean (eq. 7), and
    :math:`\tilde\beta_t/\beta_t` (how much narrower the posterior step is than the forward step)."""
    fig, axes = _three_panels(schedules)
    for i, (name, s) in enumerate(schedules.items()):
        u = np.arange(1, s.T + 1) / s.T
        axes[0].plot(u, s.posterior_mean_coef_x0[1:].numpy(), color=f"C{i}", label=name)
        axes[1].plot(u, s.posterior_mean_coef_xt[1:].numpy(), color=f"C{i}", label=name)
        axes[2].plot(u, (s.posterior_variance[1:] / s.betas[1:]).numpy(), color=f"C{i}", label=name)
    labels = (r"coefficient of $x_0$", r"coefficient of $x_t$", r"$\tilde\beta_t/\beta_t$")
    titles = (
        r"$\sqrt{\bar\alpha_{t-1}}\beta_t/(1-\bar\alpha_t)$ (log scale)",
        r"$\sqrt{\alpha_t}(1-\bar\alpha_{t-1})/(1-\bar\alpha_t)$",
        r"$\tilde\beta_t/\beta_t=(1-\bar\alpha_{t-1})/(1-\bar\alpha_t)$",
    )
    return _finish_panels(fig, axes, labels, titles, title, title_size=9)


# ------------------------------------------------------------------------------------ generic 1-D curves
def plot_densities(
    xs,
    curves: Mapping[str, object],
    ax=None,
    samples=None,
    bins: int = 60,
    title: str = "densities",
    xlabel: str = "x",
    ylabel: str = "density",
    styles: Mapping[str, dict] | None = None,
    vlines: Mapping[str, float] | None = None,
) -> Figure:
    """Several curves ``{label: values on xs}`` on one axes, optionally over a density histogram of
    ``samples`` and with labelled vertical markers ``vlines`` ({label: x})."""
    fig, ax = _new_axes(ax, (6, 3))
    xs = _np(xs).reshape(-1)
    if samples is not None:
        s = _np(samples).reshape(-1)
        ax.hist(s, bins=bins, range=(xs[0], xs[-1]), density=True, color="0.75", label=f"{s.size} samples")
    for i, (label, ys) in enumerate(curves.items()):
        style = {"color": f"C{i}", "lw": 1.8}
        style.update((styles or {}).get(label, {}))
        ax.plot(xs, _np(ys).reshape(-1), label=label, **style)
    for j, (label, x) in enumerate((vlines or {}).items()):
        ax.axvline(float(x), color=f"C{len(curves) + j}", ls=":", lw=1.5, label=label)
    ax.set_xlim(xs[0], xs[-1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


# ------------------------------------------------------------------------------------ widgets
def make_interactive(fn: Callable, **controls):
    """``ipywidgets.interactive(fn, **controls)`` with every slider set to redraw on release only
    (``continuous_update=False``), so a plot that takes a fraction of a second never lags.

    ``fn`` must draw its figure and call ``plt.show()`` (the standard ``interact`` pattern with
    ``%matplotlib inline``). Display the returned widget; ``fn`` itself stays callable directly.
    """
    import ipywidgets

    w = ipywidgets.interactive(fn, **controls)
    for child in w.children:
        if hasattr(child, "continuous_update"):
            child.continuous_update = False
    return w


# ------------------------------------------------------------------------------------ image models
def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None, scale: float = 0.6):
    """Draw a grid of images (B, C, H, W) in [-1, 1] with matplotlib (:func:`edudiff.images.imageio.make_grid`);
    returns the Axes.

    Taught in: notebooks/06_unet_mnist.ipynb."""
    from ..images.imageio import make_grid

    grid = make_grid(images, nrow=nrow)
    if ax is None:
        h, w = grid.shape[:2]
        _, ax = plt.subplots(figsize=(max(2.0, scale * w / 16), max(2.0, scale * h / 16)))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def plot_denoising_strip(frames: torch.Tensor, timesteps: list[int], title: str = "reverse process x_T -> x_0"):
    """Plot :func:`edudiff.images.generate.denoising_strip`'s output (F, n, C, H, W): one column per frame (labelled
    by t), one row per image -- :func:`image_strip` with frames and images swapped.

    Taught in: notebooks/06_unet_mnist.ipynb."""
    n = frames.shape[1]
    return image_strip(frames.transpose(0, 1), timesteps, row_labels=[f"sample {i + 1}" for i in range(n)], title=title)
