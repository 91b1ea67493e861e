"""The noise-aware classifier p(y | x_t, t) (edudiff.nn.noisy_classifier) and its training
(edudiff.training.classifier): checked against the Bayes-optimal accuracy of a two-class problem whose classes are two
points, where p(y | x_t) is known in closed form at every t; shapes and errors; the weights-only round trip and the
command line."""

from __future__ import annotations

import math

import pytest
import torch
from dataset_paths import DATA, needs_mnist
from scipy import stats

from edudiff import Schedule
from edudiff.guidance import ClassifierGuidance
from edudiff.nn import CheckpointError, NoisyClassifier, NoisyClassifierConfig, load_classifier, save_checkpoint
from edudiff.training import noisy_accuracy, save_noisy_classifier, train_noisy_classifier

SCHED = Schedule.linear(100, 1e-3, 0.2)  # the paper's schedule at T = 100 (betas x 10)
TINY = NoisyClassifierConfig(num_classes=2, image_size=8, base_channels=8, channel_mults=(1, 2), num_groups=4)
A = 0.1  # the classes: x_0 = +A or -A in every one of the 64 pixels, so |mu| = 0.8


def two_points(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x0 = (2.0 * y - 1.0).reshape(n, 1, 1, 1) * A * torch.ones(n, 1, 8, 8)
    return x0, y


def bayes_accuracy(t: int) -> float:
    """x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps with x_0 = +-mu: the best rule is the sign of <x_t, mu>, right with
    probability Phi(sqrt(ab) |mu| / sqrt(1 - ab))."""
    ab = float(SCHED.alpha_bars[t])
    return float(stats.norm.cdf(math.sqrt(ab) * A * 8 / math.sqrt(1 - ab)))


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    x0, y = two_points(4000, seed=0)
    model, losses = train_noisy_classifier(x0, y, SCHED, TINY, steps=300, batch_size=128, lr=5e-3, device="cpu")
    return model, losses


def test_trained_classifier_reaches_the_bayes_accuracy_at_every_noise_level(trained):
    model, losses = trained
    x0, y = two_points(4000, seed=1)
    ts = [1, 10, 15, 20, 30, 40, 60, 100]
    acc = noisy_accuracy(model, SCHED, x0, y, ts=ts)
    for t in ts:
        best = bayes_accuracy(t)
        se = math.sqrt(best * (1 - best) / 4000) + 1e-3
        assert acc[t] <= best + 4 * se, f"t = {t}: accuracy {acc[t]:.3f} above the Bayes optimum {best:.3f}"
        assert acc[t] >= best - 4 * se - 0.03, f"t = {t}: accuracy {acc[t]:.3f}, Bayes optimum {best:.3f}"
    assert bayes_accuracy(100) < 0.6 < 0.99 < bayes_accuracy(10), "the noise levels span easy to nearly hopeless"
    assert sum(losses[-30:]) / 30 < sum(losses[:30]) / 30 - 0.1, "the loss should fall"


def test_an_untrained_classifier_is_at_chance_so_the_check_above_can_fail():
    torch.manual_seed(0)
    x0, y = two_points(2000, seed=1)
    acc = noisy_accuracy(NoisyClassifier(TINY), SCHED, x0, y, ts=[1, 10])
    assert all(abs(a - 0.5) < 0.1 for a in acc.values()) and bayes_accuracy(10) > 0.99, acc


def test_its_log_probabilities_point_guidance_towards_the_class(trained):
    """The guidance gradient grad log p(y | x_t) of the trained classifier points from x_t towards the class's
    point: its inner product with mu is positive for y = 1 and negative for y = 0, for most draws."""
    model, _ = trained
    x0, y = two_points(256, seed=2)
    t = torch.full((256,), 20)
    xt = SCHED.sqrt_alpha_bars[20].float() * x0 + SCHED.sqrt_one_minus_alpha_bars[20].float() * torch.randn_like(x0)
    for label, sign in ((1, 1.0), (0, -1.0)):
        grad = ClassifierGuidance(lambda x, t: x, model, label, 1.0, SCHED).class_gradient(xt, t)
        assert (sign * grad.sum(dim=(1, 2, 3)) > 0).double().mean() > 0.9


def test_bad_inputs_name_the_argument():
    model = NoisyClassifier(TINY)
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 8, 8\)"):
        model(torch.zeros(2, 1, 28, 28), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"t must be a tensor of shape \(B,\) = \(2,\)"):
        model(x, torch.tensor([1]))
    with pytest.raises(TypeError, match="integer timesteps"):
        model(x, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="t must be >= 0"):
        model(x, torch.tensor([-1, 2]))
    with pytest.raises(ValueError, match="num_groups"):
        NoisyClassifierConfig(base_channels=12, num_groups=8)
    with pytest.raises(ValueError, match="image_size"):
        NoisyClassifierConfig(image_size=30, channel_mults=(1, 2, 4))
    with pytest.raises(ValueError, match="labels must be a LongTensor"):
        train_noisy_classifier(torch.zeros(4, 1, 8, 8), torch.zeros(3, dtype=torch.long), SCHED, TINY, steps=1)
    with pytest.raises(ValueError, match="NaN"):
        train_noisy_classifier(torch.full((4, 1, 8, 8), math.nan), torch.zeros(4, dtype=torch.long), SCHED, TINY)
    with pytest.raises(ValueError, match=r"every t in ts must be in 1..T = 1..100"):
        noisy_accuracy(model, SCHED, x, torch.zeros(2, dtype=torch.long), ts=[0])


def test_weights_only_round_trip_and_a_foreign_file_is_named(trained, tmp_path):
    model, _ = trained
    path = save_noisy_classifier(tmp_path / "clf.pt", model, SCHED, {"steps": 300})
    loaded, state = load_classifier(path)
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([1, 50, 100])
    with torch.no_grad():
        assert torch.equal(loaded(x, t), model(x, t))
    assert state["info"] == {"steps": 300} and torch.equal(state["betas"], SCHED.betas[1:])
    save_checkpoint(tmp_path / "other.pt", {"model": {}, "unet_config": {}})
    with pytest.raises(CheckpointError, match="other.pt"):
        load_classifier(tmp_path / "other.pt")


@needs_mnist
def test_command_line_trains_measures_and_saves(tmp_path, capsys):
    from edudiff.cli import main

    out = tmp_path / "clf"
    argv = ["train-classifier", "--steps", "3", "--limit", "256", "--test-limit", "100", "--out", str(out)]
    assert main([*argv, "--data-root", str(DATA), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "t = 1000" in printed and (out / "accuracy.json").is_file()
    model, state = load_classifier(out / "classifier.pt")
    assert state["info"]["steps"] == 3 and set(state["info"]["test_accuracy_vs_t"]) >= {"1", "500", "1000"}
    assert model.config.num_classes == 10
