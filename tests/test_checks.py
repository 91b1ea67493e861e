"""Tests for edudiff.course.checks: check_close's messages and the homework-integrity helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import edudiff
import edudiff.forward
import edudiff.losses
from edudiff import Schedule, q_sample
from edudiff.course.checks import INTEGRITY_MESSAGE, ReferenceUsed, check_close, check_own_work, references_blocked

# --------------------------------------------------------------------------------------------
# check_close


def test_check_close_passes_and_reports_the_worst_element():
    x = torch.linspace(-1, 1, 12, dtype=torch.float64).view(3, 4)
    check_close("f(x)", x.float(), x, hint="eq. 4")
    check_close("f(x)", lambda: x.numpy() * (1 + 1e-7), x)
    wrong = x.clone()
    wrong[2, 1] += 0.5
    wrong[0, 0] += 0.1
    with pytest.raises(AssertionError) as info:
        check_close("q_sample(x0, t=5)", wrong, x, hint="sqrt(alpha_bar_t) x_0 (eq. 4)")
    msg = str(info.value)
    assert msg.startswith("q_sample(x0, t=5): 2 of 12 entries are off. Worst at index (2, 1): ")
    assert f"expected {x[2, 1].item():.6g}, got {wrong[2, 1].item():.6g}" in msg
    assert msg.endswith("Hint: sqrt(alpha_bar_t) x_0 (eq. 4)")
    with pytest.raises(AssertionError, match=r"nan_case: 1 of 3 entries are off. Worst at index \(1,\)"):
        check_close("nan_case", np.array([1.0, np.nan, 3.0]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(AssertionError, match=r"scalar: expected 0.5, got 0.25 .*\n  Hint: h$"):
        check_close("scalar", 0.25, 0.5, hint="h")


def test_check_close_friendly_failures():
    with pytest.raises(
        AssertionError,
        match=r"f\(x\): your answer has shape \(4,\) but the expected value "
        r"has shape \(4, 1\)",
    ):
        check_close("f(x)", torch.zeros(4), torch.zeros(4, 1))
    with pytest.raises(AssertionError, match="got None. Did you forget the `return` line"):
        check_close("f(x)", lambda: None, 1.0)
    with pytest.raises(AssertionError, match="should be a number, array or tensor, but it is a str"):
        check_close("f(x)", "0.5", 0.5)

    def stub():
        raise NotImplementedError("Exercise scale in hw.ipynb: write your solution here")

    with pytest.raises(NotImplementedError, match=r"scale\(1.0\): you haven't written it yet \(Exercise scale"):
        check_close("scale(1.0)", stub, 1.0)


# --------------------------------------------------------------------------------------------
# references_blocked / check_own_work

S = Schedule.linear(50)
X0 = torch.linspace(-1, 1, 6, dtype=torch.float64)
T6 = torch.tensor([1, 5, 10, 20, 40, 50])
EPS = torch.linspace(0.5, -0.5, 6, dtype=torch.float64)


def honest_q_sample(schedule, x0, t, noise):
    ab = schedule.alpha_bars[t]
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def cheating_q_sample(schedule, x0, t, noise):
    return q_sample(schedule, x0, t, eps=noise)


def via_package(schedule, x0, t, noise):
    return edudiff.q_sample(schedule, x0, t, eps=noise)


def via_submodule_import(schedule, x0, t, noise):
    from edudiff.forward import q_sample as qs

    return qs(schedule, x0, t, eps=noise)


def via_another_reference(schedule, x0, t, noise):  # loss_simple calls forward.q_sample inside
    return edudiff.losses.loss_simple(schedule, lambda x, tt: x, x0, t=t, eps=noise, reduction="none")


@pytest.mark.parametrize("cheat", [cheating_q_sample, via_package, via_submodule_import, via_another_reference])
def test_blocked_reference_raises_with_its_name(cheat):
    want = q_sample(S, X0, T6, eps=EPS)
    with references_blocked(q_sample):
        with pytest.raises(ReferenceUsed) as info:
            cheat(S, X0, T6, EPS)
        got = honest_q_sample(S, X0, T6, EPS)  # honest code runs inside the block
    assert isinstance(info.value, AssertionError)  # a failed check, as nbgrader and `grade` expect
    msg = str(info.value)
    assert "your function called edudiff.q_sample" in msg and INTEGRITY_MESSAGE in msg
    check_close("honest q_sample", got, want, atol=1e-12, rtol=1e-12)
    # everything is back after the block
    assert edudiff.q_sample is q_sample and edudiff.forward.q_sample is q_sample
    assert edudiff.losses.q_sample is q_sample and globals()["q_sample"] is q_sample
    assert bool(torch.isfinite(cheat(S, X0, T6, EPS)).all())  # the cheat itself runs again outside


def test_a_name_bound_to_the_reference_is_blocked_and_restored():
    ns = {"my_q_sample": q_sample, "q_sample": q_sample, "other": 3}
    with references_blocked(edudiff.forward, namespace=ns):  # a module: all its public functions
        assert ns["other"] == 3
        with pytest.raises(ReferenceUsed, match="edudiff.q_sample"):
            ns["my_q_sample"](S, X0, T6, EPS)
        with pytest.raises(ReferenceUsed, match="edudiff.q_step"):
            edudiff.q_step(S, X0, T6)
    assert ns["my_q_sample"] is q_sample and ns["q_sample"] is q_sample


def test_block_restores_even_when_the_student_code_raises():
    with pytest.raises(ZeroDivisionError), references_blocked(q_sample):
        _ = 1 / 0
    assert edudiff.q_sample is q_sample
    check_close("q_sample works again", q_sample(S, X0, T6, eps=EPS), honest_q_sample(S, X0, T6, EPS), atol=1e-12)


def test_references_blocked_rejects_bad_arguments():
    with pytest.raises(TypeError, match="at least one"):
        references_blocked()
    with pytest.raises(TypeError, match="functions or modules"):
        references_blocked("q_sample")


def test_check_own_work_catches_the_reference_itself_and_hidden_copies():
    check_own_work("honest", honest_q_sample, q_sample)
    with pytest.raises(ReferenceUsed, match=f"my_q_sample is edudiff.q_sample itself — {INTEGRITY_MESSAGE}"):
        check_own_work("my_q_sample", q_sample, q_sample)

    def with_default(schedule, x0, t, noise, f=q_sample):
        return f(schedule, x0, t, eps=noise)

    with pytest.raises(ReferenceUsed, match="default argument or closure"):
        check_own_work("with_default", with_default, q_sample)
    f = q_sample

    def closure(schedule, x0, t, noise):
        return f(schedule, x0, t, eps=noise)

    with pytest.raises(ReferenceUsed, match="default argument or closure"):
        check_own_work("closure", closure, edudiff.forward)
    assert math.isfinite(float(closure(S, X0, T6, EPS).sum()))


# --------------------------------------------------------------------------------------------
# Bypasses closed as a class (issue 21, section 3): aliases, unblocked modules, precomputed tables.
# Each test below failed on the name-swapping implementation (the alias tests ran the cheat to the end;
# the math-core and minimal-schedule tests had nothing to import).

import functools  # noqa: E402
import types  # noqa: E402

import edudiff.posterior  # noqa: E402
import edudiff.reverse  # noqa: E402

ALIAS_LIST = [q_sample]
ALIAS_DICT = {"f": q_sample}
ALIAS_PARTIAL = functools.partial(q_sample, S)
ALIAS_MODULE = types.ModuleType("students_helpers")  # a module that is not edudiff's
ALIAS_MODULE.f = q_sample
ALIAS_LAMBDA = (lambda f: lambda *a, **k: f(*a, **k))(q_sample)  # captured before the block opens


@pytest.mark.parametrize(
    "cheat",
    [
        lambda s, x0, t, e: ALIAS_LIST[0](s, x0, t, eps=e),
        lambda s, x0, t, e: ALIAS_DICT["f"](s, x0, t, eps=e),
        lambda s, x0, t, e: ALIAS_PARTIAL(x0, t, eps=e),
        lambda s, x0, t, e: ALIAS_MODULE.f(s, x0, t, eps=e),
        lambda s, x0, t, e: ALIAS_LAMBDA(s, x0, t, eps=e),
        lambda s, x0, t, e: types.MethodType(ALIAS_LIST[0], s)(x0, t, eps=e),  # a bound copy
        lambda s, x0, t, e: getattr(q_sample, "__wrapped_reference__", q_sample)(s, x0, t, eps=e),  # via the stub
    ],
    ids=["list", "dict", "partial", "module-attribute", "earlier-lambda", "bound-method", "through-the-stub"],
)
def test_every_alias_of_a_blocked_function_raises(cheat):
    assert bool(torch.isfinite(cheat(S, X0, T6, EPS)).all())  # outside the block the alias works
    with references_blocked(q_sample), pytest.raises(ReferenceUsed, match=f"edudiff.q_sample .*{INTEGRITY_MESSAGE}"):
        cheat(S, X0, T6, EPS)
    assert q_sample.__code__ is honest_code_of_q_sample  # restored
    check_close("q_sample after the block", cheat(S, X0, T6, EPS), honest_q_sample(S, X0, T6, EPS), atol=1e-12)


honest_code_of_q_sample = q_sample.__code__


def test_blocking_by_identity_restores_even_on_errors_and_nests():
    with pytest.raises(ZeroDivisionError), references_blocked(q_sample), references_blocked(edudiff.forward):
        _ = 1 / 0
    assert q_sample.__code__ is honest_code_of_q_sample and edudiff.q_sample is q_sample
    check_close("q_sample works again", ALIAS_LIST[0](S, X0, T6, eps=EPS), honest_q_sample(S, X0, T6, EPS), atol=1e-12)


def test_a_blocked_function_with_a_closure_is_blocked_by_identity():
    def make(k):
        def scaled(x):
            return k * x

        return scaled

    f = make(3.0)
    alias = [f]
    with references_blocked(f), pytest.raises(ReferenceUsed, match="scaled"):
        alias[0](1.0)
    assert alias[0](1.0) == 3.0


def via_unblocked_module(schedule, xt, t, eps_hat):
    """Notebook 05's reverse step (mean, variance) through edudiff.reverse, a module its check did not block."""
    out = edudiff.reverse.p_mean_variance(schedule, lambda x, tt: eps_hat, xt, t, var_type="beta_tilde")
    return out["mean"], edudiff.reverse.reverse_variance(schedule, t, xt, "beta_tilde")[0]


def test_the_math_core_blocks_routes_through_unblocked_modules():
    from edudiff.course.checks import MATH_MODULES, math_core

    xt = torch.linspace(-1, 1, 6, dtype=torch.float64)
    with references_blocked(edudiff.sampling, edudiff.posterior):  # what notebook 05 blocked: the variance leaks
        var, _ = edudiff.reverse.reverse_variance(S, T6, xt, "beta_tilde")
    assert torch.equal(var.flatten(), S.posterior_variance[T6])  # q_posterior's variance, read off a table
    layers = {"edudiff.forward", "edudiff.posterior", "edudiff.reverse", "edudiff.elbo", "edudiff.sampling"}
    assert layers <= set(MATH_MODULES)
    blocked = math_core()
    with references_blocked(*blocked), pytest.raises(ReferenceUsed, match=INTEGRITY_MESSAGE):
        via_unblocked_module(S, xt, T6, EPS)
    with references_blocked(*blocked), pytest.raises(ReferenceUsed, match="edudiff.reverse.reverse_variance"):
        edudiff.reverse.reverse_variance(S, T6, xt, "beta_tilde")
    allowed = math_core(allow=[edudiff.normal_kl])
    assert edudiff.normal_kl not in allowed and edudiff.q_posterior in allowed and edudiff.p_mean_variance in allowed
    with references_blocked(*allowed):  # what is allowed still runs
        kl = edudiff.normal_kl(X0, X0, X0, X0)
    assert float(kl.abs().max()) == 0.0
    assert math.isfinite(float(via_unblocked_module(S, xt, T6, EPS)[0].sum()))  # and everything after the block


def test_a_minimal_schedule_has_no_precomputed_tables():
    from edudiff.course.checks import minimal_schedule

    m = minimal_schedule(S)
    assert m.T == S.T and len(m) == S.T
    for name in ("betas", "alphas", "alpha_bars"):
        assert torch.equal(getattr(m, name), getattr(S, name))
    for name in ("posterior_variance", "posterior_mean_coef_x0", "sqrt_alpha_bars", "alpha_bars_prev", "snr"):
        with pytest.raises(ReferenceUsed, match=f"schedule.{name} .*{INTEGRITY_MESSAGE}.*betas, alphas, alpha_bars"):
            getattr(m, name)
    with pytest.raises(ReferenceUsed, match="model_log_variance"):
        m.model_log_variance("beta_tilde")
    assert honest_q_sample(m, X0, T6, EPS).shape == X0.shape  # honest code only needs the three tables


def test_the_math_core_hides_the_tables_of_every_schedule():
    from edudiff.course.checks import math_core

    def reads_a_global_table(t):
        return S.posterior_variance[t]

    want = S.posterior_variance[T6]
    with references_blocked(*math_core()):
        with pytest.raises(ReferenceUsed, match=f"schedule.posterior_variance .*{INTEGRITY_MESSAGE}"):
            reads_a_global_table(T6)
        assert torch.equal(S.alpha_bars, S.alpha_bars)  # the three tables stay readable
        with pytest.raises(ReferenceUsed, match="Schedule.linear"):
            type(S).linear(10)  # the class reached through an instance: its constructors are blocked
        with pytest.raises(ReferenceUsed, match="Schedule"):
            type(S)([0.1, 0.2])
    assert torch.equal(reads_a_global_table(T6), want)  # back after the block
