"""The CPU upfirdn2d (pads + strided slices) equals the depthwise-convolution form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylejax.nn import ops


def _args(kw):
    return (
        kw.get("up", 1),
        kw.get("down", 1),
        kw["pad"],
        kw.get("gain", 1.0),
        kw.get("flip_filter", False),
    )


@pytest.mark.parametrize(
    "kw",
    [
        dict(down=2, pad=(1, 1, 1, 1)),
        dict(up=2, pad=(2, 1, 2, 1), gain=4),
        dict(pad=(1, 2, 1, 2)),
        dict(pad=(-1, 2, 0, -1), flip_filter=True),
    ],
)
def test_slices_equal_conv_form_values_and_grads(kw):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 8, 3))
    taps = ops.fir_filter((1, 2, 4, 1))  # asymmetric: catches a missing flip
    fast = ops._upfirdn2d_slices(x, taps, *_args(kw))
    ref = ops._upfirdn2d_conv(x, taps, *_args(kw))
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-6)
    w = jax.random.normal(jax.random.PRNGKey(1), ref.shape)
    g_fast = jax.grad(lambda x: jnp.sum(ops._upfirdn2d_slices(x, taps, *_args(kw)) * w))(x)
    g_ref = jax.grad(lambda x: jnp.sum(ops._upfirdn2d_conv(x, taps, *_args(kw)) * w))(x)
    np.testing.assert_allclose(g_fast, g_ref, rtol=1e-5, atol=1e-6)
