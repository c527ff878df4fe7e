"""stylejax.stylegan2_projection: a latent drawn from the shipped generator is recovered
(PSNR bound), the full recipe (W+, noise maps, LPIPS) lowers its distance and keeps the noise maps
normalised, and the schedule and regulariser follow the StyleGAN2 projector."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stylejax
from stylejax import metrics, stylegan2_projection
from stylejax import stylegan2_generate as gen
from stylejax.model_format import load_pretrained
from stylejax.models.lpips import LPIPS

# The small adversarial generator the package ships (z/w 64, 32 channels): these tests check
# the tools, with numbers measured on it.
SHIPPED = Path(stylejax.__file__).parent / "pretrained" / "synthetic64_gan"


@pytest.fixture(scope="module")
def model():
    return load_pretrained(SHIPPED)


@pytest.fixture(scope="module")
def targets(model):
    """Two images G made from known latents (ψ = 0.7, the generator's stored noise)."""
    G, variables = model
    ws = gen.map_to_ws(G, variables, gen.z_from_seeds([101, 202], G.z_dim), truncation_psi=0.7)
    return ws, gen.synthesize(G, variables, ws)


@pytest.fixture(scope="module")
def random_lpips():
    """LPIPS-AlexNet with random features and positive heads: a valid stand-in for the real
    (not downloadable) weights to exercise the LPIPS path."""
    module = LPIPS("alex")
    x = jnp.zeros((1, 64, 64, 3))
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), x, x)
    rng = np.random.default_rng(3)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "lin" in name:
            return jnp.asarray(rng.uniform(0.1, 1.0, leaf.shape), jnp.float32)
        if "bias" in name:
            return jnp.zeros(leaf.shape)
        fan_in = np.prod(leaf.shape[:-1])
        return jnp.asarray(rng.normal(0, np.sqrt(2 / fan_in), leaf.shape), jnp.float32)

    return module, jax.tree_util.tree_map_with_path(draw, shapes)


def test_projection_recovers_a_generated_latent(model, targets):
    """W space with the generator's own noise maps: the target is reachable exactly."""
    G, variables = model
    ws_true, target = targets
    config = stylegan2_projection.ProjectionConfig(
        num_steps=50, optimize_noise=False, w_avg_samples=2000, num_snapshots=5
    )
    result = stylegan2_projection.project(G, variables, target, config)
    psnr = np.asarray(metrics.psnr(result.images, target))
    w_avg = stylegan2_projection.sample_w_stats(G, variables, 2000)[0]
    start = np.asarray(metrics.psnr(gen.synthesize(G, variables, 0 * ws_true + w_avg), target))
    # Measured: 35.5 and 30.9 dB after 50 steps, from 20.2 and 16.3 dB at w_avg.
    assert psnr.min() > 28, f"reconstruction PSNR {psnr} dB after 50 steps"
    assert np.all(psnr > start + 10), (psnr, start)
    assert np.all(result.distances[-1] < result.distances[0] / 20)
    # The latent moved towards the true one, and W projection keeps all W+ rows equal.
    err = np.linalg.norm(result.ws - ws_true, axis=-1).mean()
    assert err < 0.9 * np.linalg.norm(w_avg - ws_true, axis=-1).mean()  # measured 3.27 vs 4.06
    np.testing.assert_array_equal(result.ws[:, 0], result.ws[:, -1])
    # The returned images are G(ws) (rendered by the loop's extra final pass).
    np.testing.assert_allclose(result.images, gen.synthesize(G, variables, result.ws), atol=1e-4)
    assert result.snapshots.shape == (5, 2, 64, 64, 3)
    np.testing.assert_array_equal(result.snapshot_steps, [10, 20, 30, 40, 50])
    assert result.distance == "mse"


def test_full_recipe_with_lpips_and_noise_maps(model, targets, random_lpips):
    G, variables = model
    _, target = targets
    config = stylegan2_projection.ProjectionConfig(
        num_steps=8, space="w+", w_avg_samples=2000, num_snapshots=2
    )
    result = stylegan2_projection.project(G, variables, target, config, lpips=random_lpips, seed=1)
    assert result.distance == "lpips"
    d = result.distances
    assert np.all(d[-2:].mean(0) < 0.7 * d[:2].mean(0)), d
    # The distance of the last step is LPIPS of that step's image (features computed once
    # for the target, as lpips_features/lpips_from_features split the formula).
    module, lpips_vars = random_lpips
    last = jax.jit(module.apply)(lpips_vars, result.snapshots[-1], target)
    np.testing.assert_allclose(d[-1], last, rtol=1e-4)
    assert result.ws.shape == (2, G.num_ws, G.w_dim)
    assert not np.allclose(result.ws[:, 0], result.ws[:, -1])  # W+: rows move separately
    names = stylegan2_projection.noise_names(variables)
    assert sorted(result.noise) == names and result.noise["b64/conv1"].shape == (2, 64, 64)
    for v in result.noise.values():  # re-normalised after every step
        np.testing.assert_allclose(v.mean(axis=(1, 2)), 0, atol=1e-4)
        np.testing.assert_allclose(v.std(axis=(1, 2)), 1, atol=1e-3)
    again = stylegan2_projection.synthesize_with_noise(G, variables, result.ws, result.noise)
    np.testing.assert_allclose(again, result.images, atol=1e-4)


def test_schedules_follow_the_official_projector():
    c = stylegan2_projection.ProjectionConfig(num_steps=1000)
    lr = np.asarray(
        [stylegan2_projection.learning_rate(s, c) for s in (0, 25, 50, 500, 750, 875, 1000)]
    )
    np.testing.assert_allclose(lr, [0, 0.05, 0.1, 0.1, 0.1, 0.05, 0], atol=1e-6)
    scale = [float(stylegan2_projection.w_noise_scale(s, 2.0, c)) for s in (0, 375, 750, 900)]
    np.testing.assert_allclose(scale, [0.1, 0.025, 0, 0], atol=1e-7)


def test_noise_regularization_and_normalization():
    ones = {"a": np.ones((1, 16, 16)), "b": np.ones((1, 4, 4))}
    reg = jax.jit(stylegan2_projection.noise_regularization)
    # Constant maps correlate fully: 2 per pyramid level (16 → 8: two levels; 4: one).
    np.testing.assert_allclose(reg(ones), [6.0], rtol=1e-6)
    white = np.random.default_rng(0).normal(size=(1, 128, 128))
    assert float(jax.jit(stylegan2_projection.noise_regularization)({"a": white})[0]) < 1e-3
    scaled = jax.jit(stylegan2_projection.normalize_noise)({"a": 3 * white + 2})["a"]
    np.testing.assert_allclose([scaled.mean(), scaled.std()], [0, 1], atol=1e-5)


def test_bad_targets_and_config(model):
    G, variables = model
    with pytest.raises(
        ValueError, match=r"targets must be \[N, 64, 64, 3\].*got shape \(1, 32, 32, 3\)"
    ):
        stylegan2_projection.project(G, variables, np.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="projection space must be 'w' or 'w\\+', got 'z'"):
        stylegan2_projection.ProjectionConfig(space="z")
