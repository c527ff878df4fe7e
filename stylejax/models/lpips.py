"""LPIPS perceptual distance (Zhang et al. 2018, v0.1) with AlexNet or VGG16 features.

d(x0, x1) = Σ_layers mean_hw( lin_l( (f̂_l(x0) − f̂_l(x1))² ) ), where f̂_l are the
backbone's ReLU outputs at the tap layers, unit-normalised over channels, and lin_l is a
learned 1×1 conv to one channel without bias. Inputs are NHWC images in [-1, 1]
(`normalize=True` takes [0, 1]); before the backbone they go through the v0.1 scaling layer.

Parameter names follow torchvision's `features` indices (`net/features_0`, …) and the
`lpips` package's heads (`lin0` … `lin4`), so importing official weights is a rename
(`stylejax/convert/lpips.py`). pSp, ReStyle and e4e train with `net="alex"`; the StyleGAN2
projector and PPL use `net="vgg"`.
"""

import flax.linen as nn
import jax.numpy as jnp

from stylejax.nn import torch_ops
from stylejax.nn.conv import Conv

# The v0.1 scaling layer: (x − shift) / scale per RGB channel, for inputs in [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # added to the channel norm before dividing

# torchvision `features` sequences, one entry per index:
# ("conv", out_channels, kernel, stride, pad) | ("relu",) | ("pool", window, stride).
_RELU = ("relu",)


def _conv3(channels):
    return ("conv", channels, 3, 1, 1)


# fmt: off
LAYOUTS = {
    "alex": (
        ("conv", 64, 11, 4, 2), _RELU, ("pool", 3, 2),
        ("conv", 192, 5, 1, 2), _RELU, ("pool", 3, 2),
        _conv3(384), _RELU, _conv3(256), _RELU, _conv3(256), _RELU, ("pool", 3, 2),
    ),
    "vgg": (
        _conv3(64), _RELU, _conv3(64), _RELU, ("pool", 2, 2),
        _conv3(128), _RELU, _conv3(128), _RELU, ("pool", 2, 2),
        _conv3(256), _RELU, _conv3(256), _RELU, _conv3(256), _RELU, ("pool", 2, 2),
        _conv3(512), _RELU, _conv3(512), _RELU, _conv3(512), _RELU, ("pool", 2, 2),
        _conv3(512), _RELU, _conv3(512), _RELU, _conv3(512), _RELU, ("pool", 2, 2),
    ),
}
# fmt: on
# Indices of the ReLU outputs LPIPS compares (relu1 … relu5 of each network).
TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
NETS = tuple(LAYOUTS)


def tap_channels(net: str) -> tuple[int, ...]:
    """Channel count at each tap, e.g. (64, 192, 384, 256, 256) for AlexNet."""
    channels, out = None, []
    for index, layer in enumerate(LAYOUTS[net]):
        if layer[0] == "conv":
            channels = layer[1]
        if index in TAPS[net]:
            out.append(channels)
    return tuple(out)


def _check_net(net: str):
    if net not in LAYOUTS:
        raise ValueError(f"LPIPS net must be one of {NETS}, got {net!r}")


class Features(nn.Module):
    """A torchvision `features` stack up to its last LPIPS tap; returns the tap outputs."""

    net: str = "alex"

    @nn.compact
    def __call__(self, x):
        _check_net(self.net)
        taps = []
        for index, layer in enumerate(LAYOUTS[self.net][: TAPS[self.net][-1] + 1]):
            if layer[0] == "conv":
                _, channels, kernel, stride, pad = layer
                # Explicit symmetric pads as torch uses them ('SAME' would differ at stride 4).
                x = Conv(
                    channels,
                    (kernel, kernel),
                    strides=stride,
                    padding=((pad, pad), (pad, pad)),
                    name=f"features_{index}",
                )(x)
            elif layer[0] == "relu":
                x = nn.relu(x)
            else:
                _, window, stride = layer
                x = torch_ops.max_pool2d(x, window, stride)
            if index in TAPS[self.net]:
                taps.append(x)
        return taps


def unit_normalize(f):
    """Divides each feature vector by its L2 norm over channels (+1e-10, as LPIPS does)."""
    return f / (jnp.sqrt(jnp.sum(f * f, axis=-1, keepdims=True)) + EPS)


class LPIPS(nn.Module):
    """Per-sample LPIPS distances [N] between two NHWC image batches.

    `return_layers=True` also returns each tap's contribution [N, 5] (their sum is the
    distance), like the `lpips` package's `retPerLayer`.
    """

    net: str = "alex"

    @nn.compact
    def __call__(self, x0, x1, normalize: bool = False, return_layers: bool = False):
        _check_net(self.net)
        if normalize:  # [0, 1] → [-1, 1]
            x0, x1 = 2 * x0 - 1, 2 * x1 - 1
        shift, scale = jnp.asarray(SHIFT), jnp.asarray(SCALE)
        n = x0.shape[0]
        # One backbone pass over both batches.
        x = (jnp.concatenate([x0, x1], axis=0) - shift) / scale
        feats = Features(self.net, name="net")(x)
        layers = []
        for k, f in enumerate(feats):
            diff = (unit_normalize(f[:n]) - unit_normalize(f[n:])) ** 2
            lin = Conv(1, (1, 1), use_bias=False, name=f"lin{k}")(diff)
            layers.append(jnp.mean(lin, axis=(1, 2, 3)))
        layers = jnp.stack(layers, axis=1)
        distance = jnp.sum(layers, axis=1)
        return (distance, layers) if return_layers else distance
