"""Smoke tests of edudiff.course.plots with the Agg backend: each function returns a Figure whose axes are
labelled, and rejects mismatched shapes with an error that names the argument."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from scipy.integrate import trapezoid

from edudiff import Schedule
from edudiff.course import plots
from edudiff.toy import two_gaussians_1d

SCHED = Schedule.linear(50)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def assert_labelled(fig):
    assert isinstance(fig, Figure)
    assert fig.axes, "figure has no axes"
    for ax in fig.axes:
        if hasattr(ax, "_colorbar"):  # a colorbar carries one label, along its long side
            assert ax.get_ylabel() or ax.get_xlabel(), "colorbar without a label"
        else:
            assert ax.get_xlabel() and ax.get_ylabel(), f"unlabelled axes: {ax.get_title()!r}"


def test_marginal_density_grid_is_a_normalised_density():
    xs = np.linspace(-8, 8, 2001)
    d = plots.marginal_density_grid(two_gaussians_1d(), SCHED, [0, 10, 50], xs)
    assert d.shape == (3, xs.size)
    np.testing.assert_allclose(trapezoid(d, xs, axis=1), 1.0, atol=1e-6)


def test_heatmaps():
    mix = two_gaussians_1d()
    paths = torch.randn(SCHED.T + 1, 5, generator=torch.Generator().manual_seed(0))
    assert_labelled(plots.plot_marginal_heatmap(mix, SCHED, paths=paths))
    assert_labelled(plots.plot_density_heatmap(np.ones((4, 3)), [0, 1, 2, 3], [0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="density"):
        plots.plot_density_heatmap(np.ones((3, 4)), [0, 1, 2, 3], [0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="path_ts"):
        plots.plot_marginal_heatmap(mix, SCHED, paths=paths, path_ts=[0, 1])


def test_histograms_vs_marginals():
    x = two_gaussians_1d().sample(500, torch.Generator().manual_seed(0))
    assert_labelled(plots.plot_histograms_vs_marginals(two_gaussians_1d(), SCHED, {0: x, 20: x}))


def test_image_strip_one_and_several_rows():
    imgs = torch.rand(2, 4, 1, 8, 8) * 2 - 1
    assert_labelled(plots.image_strip(imgs[0], [0, 1, 2, 3]))
    fig = plots.image_strip(imgs, [0, 1, 2, 3], row_labels=["a", "b"], title="x")
    assert_labelled(fig)
    assert len(fig.axes) == 8
    assert_labelled(plots.image_strip(torch.rand(2, 3, 8, 8), [0, 5]))  # RGB
    with pytest.raises(ValueError, match="ts"):
        plots.image_strip(imgs[0], [0, 1])


def test_schedule_and_posterior_plots():
    scheds = {"linear": SCHED, "cosine": Schedule.cosine(50)}
    assert_labelled(plots.plot_schedules(scheds))
    assert_labelled(plots.plot_posterior_coefficients(scheds))


def test_plot_densities_and_interactive():
    xs = np.linspace(-3, 3, 50)
    fig = plots.plot_densities(xs, {"a": np.exp(-(xs**2))}, samples=np.zeros(10), vlines={"x0": 0.0})
    assert_labelled(fig)
    calls = []
    w = plots.make_interactive(lambda t: calls.append(t), t=(1, 10))
    assert calls == [5] and w.children[0].continuous_update is False
