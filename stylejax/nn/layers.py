"""Equalized-learning-rate layers (StyleGAN's runtime weight scaling).

Parameters are stored raw, exactly as the official checkpoints store them; the gains
(lr_mul / sqrt(fan_in) for weights, lr_mul for biases) are applied at run time. That keeps
weight import a pure rename-and-transpose and keeps Adam's effective learning rates
identical to the originals'.
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylejax.nn import ops


def _normal_init(scale):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.normal(key, shape, dtype) * scale

    return init


class EqualDense(nn.Module):
    """Dense layer y = act(x @ (W·lr_mul/√in) + b·lr_mul). `weight` is [in, out]."""

    features: int
    lr_mul: float = 1.0
    bias_init: float = 0.0
    use_bias: bool = True
    act: str = "linear"
    clamp: float | None = None

    @nn.compact
    def __call__(self, x):
        in_features = x.shape[-1]
        weight = self.param("weight", _normal_init(1.0 / self.lr_mul), (in_features, self.features))
        x = x @ (weight * (self.lr_mul / math.sqrt(in_features))).astype(x.dtype)
        bias = None
        if self.use_bias:
            bias = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))
            bias = bias * self.lr_mul
        return ops.bias_act(x, bias, self.act, clamp=self.clamp)


class EqualConv2d(nn.Module):
    """Conv with equalized lr, optional FIR up/down-sampling by 2, bias, activation.

    `gain` scales the activation output (stylegan2-ada uses √0.5 inside resnet blocks) and
    the clamp scales with it, as in the reference.
    """

    features: int
    kernel_size: int
    up: int = 1
    down: int = 1
    use_bias: bool = True
    act: str = "linear"
    clamp: float | None = None
    resample_taps: Sequence[float] = (1, 3, 3, 1)

    @nn.compact
    def __call__(self, x, gain: float = 1.0):
        k = self.kernel_size
        in_ch = x.shape[-1]
        weight = self.param("weight", _normal_init(1.0), (k, k, in_ch, self.features))
        weight = weight * (1.0 / math.sqrt(in_ch * k * k))
        taps = ops.fir_filter(self.resample_taps)
        x = ops.conv2d_resample(x, weight.astype(x.dtype), taps, up=self.up, down=self.down)
        bias = (
            self.param("bias", nn.initializers.zeros, (self.features,)) if self.use_bias else None
        )
        act_gain = (ops.SQRT2 if self.act == "lrelu" else 1.0) * gain
        clamp = None if self.clamp is None else self.clamp * gain
        return ops.bias_act(x, bias, self.act, gain=act_gain, clamp=clamp)
