"""The map between z and the synthetic faces' factors (stylejax.data.factor_latents)."""

import numpy as np
import pytest

from stylejax.data import face_renderer as renderer
from stylejax.data import factor_latents as fl

N = 4000


@pytest.fixture(scope="module")
def draws():
    z = np.random.default_rng(0).standard_normal((N, 64))
    data = np.stack(
        [
            renderer.factors_to_vector(renderer.sample_factors(np.random.default_rng(i)))
            for i in range(N)
        ]
    )
    return z, fl.z_to_factor_vectors(z), data


def test_uniforms_are_uniform_for_any_z_dim():
    for z_dim in (22, 64, 512):
        z = np.random.default_rng(z_dim).standard_normal((N, z_dim)) * 3.0  # scale is ignored
        u = np.sort(fl.z_to_uniforms(z), axis=0)
        ks = np.max(np.abs(u - (np.arange(1, N + 1) / N)[:, None]))
        assert ks < 1.63 / np.sqrt(N) * 1.5, (z_dim, ks)  # well inside KS at 1 %, 22 columns


def test_sampled_factors_follow_the_renderer_prior(draws):
    _, f, data = draws
    for i, name in enumerate(renderer.FACTOR_NAMES):
        kind, *args = fl.PRIOR[name]
        if kind == "uniform":
            lo, hi = args
            assert lo <= f[:, i].min() and f[:, i].max() <= hi, name
            assert data[:, i].min() >= lo and data[:, i].max() <= hi, name
            assert abs(f[:, i].mean() - data[:, i].mean()) < 0.05 * (hi - lo), name
        else:
            values = np.unique(data[:, i]) if kind != "smile" else None
            if values is not None:
                assert set(np.unique(f[:, i])) == set(values), name
                for v in values:
                    assert abs(np.mean(f[:, i] == v) - np.mean(data[:, i] == v)) < 0.03, (name, v)
    smile = f[:, renderer.FACTOR_NAMES.index("smile")]
    assert not np.any((smile > fl.SMILE_LOW) & (smile < fl.SMILE_HIGH))
    assert abs(np.mean(smile > 0.5) - 0.5) < 0.03


def test_factors_to_z_inverts_and_gives_unit_rms(draws):
    _, f, _ = draws
    z = fl.factors_to_z(f[:200], 64)
    np.testing.assert_allclose(np.sqrt(np.mean(z**2, axis=1)), 1.0, rtol=1e-5)
    back = fl.z_to_factor_vectors(z)
    scale = np.array([np.ptp(f[:, i]) for i in range(f.shape[1])])
    assert np.max(np.abs(back - f[:200]) / scale) < 1e-4
    # A categorical factor sits at the centre of its bin, so it survives a small push.
    nudged = fl.z_to_factor_vectors(z + 0.01)
    hair = renderer.FACTOR_NAMES.index("hair_color")
    np.testing.assert_array_equal(nudged[:, hair], f[:200, hair])


def test_errors_and_renders():
    with pytest.raises(ValueError, match="z_dim 16 is below the 22 factors"):
        fl.factors_to_z(np.zeros((1, 22)), 16)
    z = np.random.default_rng(1).standard_normal((2, 32)).astype(np.float32)
    images = fl.render_batch(z, 32)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.float32
    expected = renderer.render(renderer.vector_to_factors(fl.z_to_factor_vectors(z)[1]), 32)[0]
    np.testing.assert_allclose(images[1], expected / 127.5 - 1.0, atol=1e-6)
