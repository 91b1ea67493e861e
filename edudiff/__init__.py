"""edudiff: the verified implementations behind the edudiff course on DDPM (Ho et al. 2020).

Convention everywhere: t runs 1..T; per-step tables have length T+1 with index 0 = no noise;
schedules are float64; image data lives in [-1, 1].
"""

from .config import data_root, default_device, fast_mode
from .elbo import (
    bits_per_dim,
    discretized_gaussian_log_likelihood,
    elbo_terms,
    gaussian_log_likelihood,
    l_0,
    l_t_minus_1,
    normal_kl,
    prior_kl,
    vb_terms,
)
from .forward import q_mean_var, q_sample, q_step
from .losses import elbo_weights, loss_elbo_weighted, loss_simple
from .posterior import posterior_mean_from_eps, predict_eps_from_x0, predict_x0_from_eps, q_posterior
from .sampling import DDPMScheduler, ddim_sample, p_mean_variance, p_sample, sample
from .schedules import Schedule, cosine_betas, linear_betas

__version__ = "0.1.0"

__all__ = [
    "data_root", "default_device", "fast_mode",
    "bits_per_dim", "discretized_gaussian_log_likelihood", "elbo_terms", "gaussian_log_likelihood", "l_0",
    "l_t_minus_1", "normal_kl", "prior_kl", "vb_terms",
    "q_mean_var", "q_sample", "q_step",
    "elbo_weights", "loss_elbo_weighted", "loss_simple",
    "posterior_mean_from_eps", "predict_eps_from_x0", "predict_x0_from_eps", "q_posterior",
    "DDPMScheduler", "ddim_sample", "p_mean_variance", "p_sample", "sample",
    "Schedule", "cosine_betas", "linear_betas",
]  # fmt: skip
