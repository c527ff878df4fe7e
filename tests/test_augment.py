"""ADA augmentation: parity with the official AugmentPipe on recorded draws, gradients, p = 0,
one compile for every p, the adaptive-p update."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close

from stylejax import augment as A
from stylejax.nn import conv, ops

FIXTURE = Path(__file__).parent / "data" / "augment_ada.npz"  # tools/make_augment_fixture.py


@pytest.fixture(scope="module")
def ada():
    with np.load(FIXTURE) as z:
        return dict(z)


def _case(ada, case):
    """(images NHWC, p, recorded draws keyed by our names, spec, official output NCHW)."""
    k = list(ada["cases"]).index(case)
    spec = json.loads(str(ada["specs"][k]))
    spec = (
        A.AugmentSpec(**spec)
        if isinstance(spec, dict)
        else A.AugmentSpec(**A.PRESETS.get(spec, {spec: 1}))
    )
    images = ada["images_gray" if ada["gray"][k] else "images"].transpose(0, 2, 3, 1)
    kinds = str(ada[f"{case}/kinds"]).split(",")
    plan = A.draw_plan(spec, images.shape)
    assert [kind for _, kind, _ in plan] == [
        {"rand": "uniform", "randn": "normal"}[k] for k in kinds
    ]
    draws = {}
    for i, (name, _, shape) in enumerate(plan):
        d = ada[f"{case}/draw{i:02d}"]
        draws[name] = d.transpose(0, 2, 3, 1) if name == "noise" else d.reshape(shape)
    return images, float(ada["ps"][k]), draws, spec, ada[f"{case}/out"]


def _cases():
    with np.load(FIXTURE) as z:
        return [str(c) for c in z["cases"]]


# Measured (relative L2 / max-abs): colour transforms and cutout 0 to 1e-7, noise 2e-8,
# imgfilter 3.5e-7, every geometric transform alone 3e-7 to 8e-7, presets up to 2.3e-6 and
# max-abs 1.3e-5 (float32 rounding in resampling at 2x, torch and XLA sum in other orders).
# The max-abs bound also catches a missing zero beyond the official pad (2.6e-5 on zoom_out).
@pytest.mark.parametrize("case", _cases())
def test_parity_with_official_pipe(ada, case):
    images, p, draws, spec, want = _case(ada, case)
    got = jax.jit(A.apply, static_argnums=3)(images, p, draws, spec)
    assert_close(np.asarray(got).transpose(0, 3, 1, 2), want, rel=1e-5, max_abs=2e-5, what=case)


def test_fixture_covers_every_preset(ada):
    specs = [_case(ada, str(c))[3] for c in ada["cases"]]
    for name in A.PRESETS:
        assert A.AugmentSpec.preset(name) in specs, name
    with pytest.raises(ValueError, match="bgcx"):
        A.AugmentSpec.preset("bgcx")


@pytest.mark.parametrize("upfirdn", ["slices", "conv"])
@pytest.mark.parametrize("case", ["preset_bgcfnc", "zoom_out"])
def test_parity_on_the_xla_route(ada, case, upfirdn, monkeypatch):
    """Off the CPU the resampling runs through upfirdn2d (convolutions on GPU/TPU), not
    through per-axis matrices: the same values."""
    if upfirdn == "conv":
        monkeypatch.setattr(ops, "_upfirdn2d_slices", ops._upfirdn2d_conv)
    images, p, draws, spec, want = _case(ada, case)
    with conv.route("xla"):  # read while tracing: a fresh function, so no cached trace
        got = jax.jit(lambda x, d: A.apply(x, p, d, spec))(images, draws)
    assert_close(np.asarray(got).transpose(0, 3, 1, 2), want, rel=1e-5, max_abs=2e-5, what=case)


def test_filter_bank_bands_sum_to_identity():
    bank = A.filter_bank()
    delta = np.zeros(bank.shape[1])
    delta[bank.shape[1] // 2] = 1
    np.testing.assert_allclose(bank.sum(0), delta, atol=1e-6)


def test_gradients_match_finite_differences():
    """d/dx sum(w * augment(x)): for fixed draws the pipe is affine in x, so central
    differences are exact up to float32 rounding at any step."""
    spec = A.AugmentSpec.preset("bgcfnc")
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 24, 24, 3), minval=-1, maxval=1)
    draws = A.sample_draws(jax.random.PRNGKey(1), spec, x.shape)
    w = jax.random.normal(jax.random.PRNGKey(2), x.shape)
    f = jax.jit(lambda x: jnp.sum(w * A.apply(x, 0.8, draws, spec)))
    grad = jax.grad(f)(x)
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0.1
    for i in range(3):
        v = jax.random.normal(jax.random.PRNGKey(10 + i), x.shape)
        fd = (f(x + v) - f(x - v)) / 2
        assert float(fd) == pytest.approx(float(jnp.vdot(grad, v)), rel=1e-4, abs=1e-3)


def test_p_zero_is_the_identity():
    """At p = 0 nothing is drawn to happen; the geometric path still runs (as there), so the
    output is the input to float32 rounding."""
    spec = A.AugmentSpec.preset("bgcfnc")
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 32, 32, 3), minval=-1, maxval=1)
    got = jax.jit(A.augment, static_argnums=3)(x, 0.0, jax.random.PRNGKey(1), spec)
    np.testing.assert_allclose(got, x, atol=1e-5)  # measured 4e-6 on uniform noise


def test_traced_p_compiles_once_and_matters():
    spec = A.AugmentSpec.preset("bgc")
    traces = []

    @jax.jit
    def step(x, p, rng):
        traces.append(1)
        return A.augment(x, p, rng, spec)

    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 32, 32, 3), minval=-1, maxval=1)
    outs = [step(x, jnp.float32(p), jax.random.PRNGKey(3)) for p in (0.0, 0.5, 1.0)]
    assert len(traces) == 1
    assert float(jnp.abs(outs[0] - x).max()) < 1e-5
    assert float(jnp.abs(outs[2] - x).max()) > 0.1


def test_sampled_xflip_flips_half():
    """Our own draws: xflip at p = 1 mirrors each image or leaves it, about half of each.
    The mirror is not exact: sym6 is not symmetric, so a flip between the up- and
    down-sampler shifts by about 0.2 px (the official pipe too); smooth images show it little."""
    y, x = np.mgrid[0:32, 0:32] / 32
    phase = np.random.default_rng(0).uniform(0, 6, (64, 1, 1, 1))
    x = jnp.asarray(np.sin(2 * np.pi * (x + 0.5 * y)[None, :, :, None] + phase), jnp.float32)
    got = jax.jit(A.augment, static_argnums=3)(
        x, 1.0, jax.random.PRNGKey(5), A.AugmentSpec(xflip=1)
    )
    same = jnp.abs(got - x).max(axis=(1, 2, 3)) < 1e-5
    flipped = jnp.abs(got - x[:, :, ::-1]).max(axis=(1, 2, 3)) < 0.05
    assert bool(jnp.all(same ^ flipped)) and 16 < int(flipped.sum()) < 48


def test_update_p_by_hand():
    # batch 64, every 4 steps, 500 kimg per unit: a step of 64 * 4 / 500,000 = 5.12e-4.
    p, rt = A.update_p(0.5, rt_sum=204.8, rt_count=256, batch_size=64, interval=4)
    assert float(rt) == pytest.approx(0.8) and float(p) == pytest.approx(0.500512)
    p, _ = A.update_p(0.5, rt_sum=-12.0, rt_count=256, batch_size=64, interval=4)
    assert float(p) == pytest.approx(0.499488)
    p, _ = A.update_p(0.0003, rt_sum=0.0, rt_count=256, batch_size=64, interval=4)
    assert float(p) == 0.0  # clipped at 0
    p, _ = A.update_p(1.0, rt_sum=256.0, rt_count=256, batch_size=64, interval=4)
    assert float(p) == pytest.approx(1.000512)  # the official loop has no upper clip
    p, _ = A.update_p(0.25, rt_sum=0.0, rt_count=0, batch_size=64, interval=4)
    assert float(p) == 0.25  # nothing counted: unchanged
