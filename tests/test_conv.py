"""The CPU route's convolution rewrites (stylejax/nn/conv.py) against XLA's convolution:
values, reverse- and forward-mode derivatives, and second-order derivatives (R1 and path
length differentiate through gradients), for every form the models use."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close
from jax import lax

from stylejax.models import stylegan2 as sg
from stylejax.nn import conv, ops
from stylejax.train import gan
from stylejax.train import stylegan2 as trainer

CASES = {
    # StyleGAN2's up-sampling conv: the transposed conv of a 3×3 kernel (and 1×1, 4×4).
    "transposed 2x, full pad": dict(padding=((2, 2), (2, 2)), lhs_dilation=(2, 2)),
    # SEAN's ConvTranspose2d(k3, s2, p1, output_padding 1).
    "transposed 2x, SEAN pads": dict(padding=((1, 2), (1, 2)), lhs_dilation=(2, 2)),
    "transposed 3x2, uneven pads": dict(padding=((0, 0), (3, 1)), lhs_dilation=(3, 2)),
    "transposed 2x, grouped": dict(
        padding=((2, 2), (2, 2)), lhs_dilation=(2, 2), feature_group_count=2
    ),
    # The fused modulated conv: batch folded into groups.
    "grouped, same": dict(padding=((1, 1), (1, 1)), feature_group_count=2),
    "grouped, strided, uneven pads": dict(
        window_strides=(2, 1), padding=((0, 1), (1, 0)), feature_group_count=4
    ),
    "depthwise, SAME": dict(padding="SAME", feature_group_count=8),
    # StyleGAN2's down-sampling conv (after the blur), and the encoders' strided convs.
    "strided 2, valid": dict(window_strides=(2, 2), padding=((0, 0), (0, 0))),
    "strided 2x3, uneven pads": dict(window_strides=(2, 3), padding=((1, 0), (2, 1))),
}


def close(got, want, what=""):
    """Float32 rounding: relative L2 error ≤ 1e-5 and max-abs ≤ 1e-5 of the largest entry
    (second derivatives reach 1e3 here)."""
    scale = float(np.abs(np.asarray(want)).max())
    assert_close(got, want, rel=1e-5, max_abs=1e-5 * max(scale, 1.0), what=what)


def _conv(route_name, x, k, kw):
    kw = {"window_strides": (1, 1), **kw}
    with conv.route(route_name):
        return conv.conv_general_dilated(x, k, dimension_numbers=conv.NHWC, **kw)


def _inputs(kernel_size, groups):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 6, 8))
    k = jax.random.normal(jax.random.PRNGKey(1), (kernel_size, kernel_size, 8 // groups, 8))
    return x, k


@pytest.mark.parametrize("kernel_size", [1, 3])
@pytest.mark.parametrize("case", sorted(CASES))
def test_rewrite_matches_xla_in_value_and_every_derivative(case, kernel_size):
    check_every_derivative(CASES[case], kernel_size)


def test_wide_convolution_takes_its_weight_gradient_as_matmuls(monkeypatch):
    """Wide stride-1 convolutions (thresholds lowered to this test's 8 channels) keep XLA's
    forward but differentiate their kernel as one product per tap, to every order."""
    monkeypatch.setattr(conv, "WIDE_MIN_CHANNELS", 8)
    monkeypatch.setattr(conv, "WIDE_MIN_PIXELS", 1)
    kw = {"padding": ((1, 1), (1, 1))}
    check_every_derivative(kw, 3)
    x, k = _inputs(3, 1)
    with conv.route("cpu"):
        text = str(jax.make_jaxpr(jax.grad(lambda k: jnp.sum(_conv("cpu", x, k, kw)) ** 2))(k))
    assert "custom_jvp_call" in text and "dot_general" in text
    monkeypatch.setattr(conv, "WIDE_MIN_CHANNELS", 9)  # narrower than that: XLA's own
    with conv.route("cpu"):
        text = str(jax.make_jaxpr(lambda k: _conv("cpu", x, k, kw))(k))
    assert "custom_jvp_call" not in text


def check_every_derivative(kw, kernel_size):
    x, k = _inputs(kernel_size, kw.get("feature_group_count", 1))

    def loss(route_name):
        return lambda x, k: jnp.sum(jnp.sin(_conv(route_name, x, k, kw)))

    def grad_norm(route_name):  # a gradient penalty: second order, as R1 is
        return lambda x, k: jnp.sum(jnp.square(jax.grad(loss(route_name))(x, k)))

    close(_conv("cpu", x, k, kw), _conv("xla", x, k, kw), what="value")
    for arg in (0, 1):
        want = jax.grad(loss("xla"), arg)(x, k)
        close(jax.grad(loss("cpu"), arg)(x, k), want, what=f"grad {arg}")
        # forward mode through the rewrite (the tests' Jacobians use it)
        jac = jax.jacfwd(loss("cpu"), arg)(x, k)
        close(jac, want, what=f"jacfwd {arg}")
        got2 = jax.grad(grad_norm("cpu"), arg)(x, k)
        close(got2, jax.grad(grad_norm("xla"), arg)(x, k), what=f"2nd order {arg}")


def _conv_params(route_name, fn, *args):
    """The parameter block of every convolution in fn's jaxpr, traced under a route."""
    with conv.route(route_name):
        text = str(jax.make_jaxpr(fn)(*args))
    return [" ".join(p.split()) for p in re.findall(r"conv_general_dilated\[([^\]]*)\]", text)]


def _tiny_gan(fused):
    """A 16 px G and D with their variables, and a batch of 2 latents."""
    G = sg.Generator(
        z_dim=8,
        w_dim=8,
        img_resolution=16,
        channels=(8, 8, 8),
        mapping_layers=1,
        fused_modconv=fused,
    )
    D = sg.Discriminator(img_resolution=16, channels=(8, 8, 8), mbstd_group_size=2)
    z = jax.random.normal(jax.random.PRNGKey(2), (2, 8))
    gv = sg.init_variables(G, jax.random.PRNGKey(0), z)
    dv = D.init(jax.random.PRNGKey(1), jnp.zeros((2, 16, 16, 3)))
    return G, D, gv, dv, z


def test_cpu_route_leaves_no_slow_form_in_a_training_gradient():
    """With the CPU route the G+D gradient holds no input-dilated or grouped convolution
    (XLA:CPU's slow forms); with XLA's route it does (the rewrite is really taken)."""
    G, D, gv, dv, z = _tiny_gan(fused=False)

    def loss(gp, dp):
        img = G.apply({**gv, "params": gp}, z, noise_mode="const")
        return jnp.sum(D.apply({"params": dp}, img))

    def slow(route_name, fn, *args):
        # A fresh function per trace: jit caches traces by function, not by route.
        lines = _conv_params(route_name, lambda *a: fn(*a), *args)
        return [
            ln
            for ln in lines
            if "lhs_dilation=(2, 2)" in ln or not re.search(r"feature_group_count=1\b", ln)
        ]

    grad = jax.grad(loss, (0, 1))
    assert slow("xla", grad, gv["params"], dv["params"])
    assert not slow("cpu", grad, gv["params"], dv["params"])
    G_fused = G.clone(fused_modconv=True)
    fused = jax.grad(lambda gp: jnp.sum(G_fused.apply({**gv, "params": gp}, z, noise_mode="const")))
    assert slow("xla", fused, gv["params"])
    assert not slow("cpu", fused, gv["params"])


@pytest.mark.parametrize("fused, wide", [(False, False), (True, False), (False, True)])
def test_r1_and_path_length_gradients_equal_the_xla_forms(fused, wide, monkeypatch):
    """R1 and path length differentiate through gradients: their values and parameter
    gradients agree on both routes, in float64 to 1e-12 (measured 2.5e-16 and 5e-16). Not in
    float32: this tiny D's R1 gradient is ill-conditioned there (each route 1.1–1.5e-4 from
    the float64 value, 2.6e-4 apart). `wide`: every 3×3 convolution takes the matmul weight
    gradient (thresholds lowered to these 8 channels)."""
    if wide:
        monkeypatch.setattr(conv, "WIDE_MIN_CHANNELS", 8)
        monkeypatch.setattr(conv, "WIDE_MIN_PIXELS", 1)
    with jax.enable_x64(True):
        G, D, gv, dv, z = _tiny_gan(fused)
        G, D = G.clone(dtype=jnp.float64), D.clone(dtype=jnp.float64)
        gv, dv, z = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), (gv, dv, z))
        real = jax.random.normal(jax.random.PRNGKey(3), (2, 16, 16, 3), jnp.float64)
        ws = G.apply(gv, z, method=G.map)
        k_noise, k_pl = jax.random.PRNGKey(4), jax.random.PRNGKey(5)

        def r1(dp):
            return jnp.mean(gan.r1_penalty(lambda x: D.apply({"params": dp}, x), real))

        def pl(gp):
            return jnp.mean(trainer.path_lengths(G, {**gv, "params": gp}, ws, k_noise, k_pl))

        results = {}
        for route_name in ("cpu", "xla"):
            with conv.route(route_name):  # fresh functions: jit caches traces by function
                results[route_name] = (
                    jax.value_and_grad(lambda p: r1(p))(dv["params"]),
                    jax.value_and_grad(lambda p: pl(p))(gv["params"]),
                )
    for (got_value, got_grad), (want_value, want_grad) in zip(results["cpu"], results["xla"]):
        assert_close(got_value, want_value, rel=1e-12, what="value")
        # The whole gradient as one vector: single near-zero leaves carry no precision.
        got, want = (
            np.concatenate([np.ravel(leaf) for leaf in jax.tree_util.tree_leaves(g)])
            for g in (got_grad, want_grad)
        )
        assert got.dtype == np.float64
        assert_close(got, want, rel=1e-12, max_abs=1e-12 * float(np.abs(want).max()), what="grad")
    assert float(results["cpu"][0][0]) > 0 and float(results["cpu"][1][0]) > 0


def test_conv2d_resample_up_and_down_match_xla_on_the_cpu_route():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 4))
    k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 4, 5))
    taps = ops.fir_filter()
    for kw in (dict(up=2), dict(down=2), dict()):
        outs = []
        for route_name in ("cpu", "xla"):
            with conv.route(route_name):
                outs.append(ops.conv2d_resample(x, k, taps, **kw))
        close(outs[0], outs[1], what=str(kw))


def test_route_rejects_an_unknown_name():
    with pytest.raises(ValueError, match="unknown convolution route 'gpu'"):
        with conv.route("gpu"):
            pass


def test_non_nhwc_convolutions_are_left_to_xla():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 7, 6))  # NCHW
    k = jax.random.normal(jax.random.PRNGKey(1), (8, 4, 1, 1))  # OIHW, grouped by 2
    with conv.route("cpu"):
        got = conv.conv_general_dilated(x, k, (1, 1), "VALID", feature_group_count=2)
    want = lax.conv_general_dilated(x, k, (1, 1), "VALID", feature_group_count=2)
    np.testing.assert_array_equal(got, want)
