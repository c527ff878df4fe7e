"""VGG19 `features` (torchvision layout) for the pix2pixHD / SPADE / SEAN perceptual loss.

Parameters are named `features_{i}` after torchvision's `features.{i}` indices, so the
ImageNet weights (`vgg19-dcbb9e9d.pth`) import by renaming (`stylejax/convert/sean.py`,
`read_vgg19`). The loss compares the ReLU outputs relu1_1 … relu5_1 with weights
1/32, 1/16, 1/8, 1/4, 1 and an L1 distance; like SPADE's `VGGLoss`, it feeds the [-1, 1]
images to the network as they are (no ImageNet normalisation).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylejax.nn import torch_ops
from stylejax.nn.conv import Conv

# torchvision's vgg19 `features`: (index of each 3×3 conv, its width) — a ReLU follows each
# conv at index + 1 and 2×2 max pools sit at 4, 9, 18, 27 and 36.
CONVS = (
    (0, 64), (2, 64),
    (5, 128), (7, 128),
    (10, 256), (12, 256), (14, 256), (16, 256),
    (19, 512), (21, 512), (23, 512), (25, 512),
    (28, 512),
)  # fmt: skip
POOLS = (4, 9, 18, 27)
TAPS = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
LOSS_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


class VGG19Features(nn.Module):
    """The layers up to relu5_1; returns the five tap outputs. `width_divisor` shrinks every
    width (tests only; the ImageNet weights need 1)."""

    width_divisor: int = 1

    @nn.compact
    def __call__(self, x):
        widths = dict(CONVS)
        taps = []
        for index in range(TAPS[-1] + 1):
            if index in widths:
                x = Conv(
                    widths[index] // self.width_divisor,
                    (3, 3),
                    padding=((1, 1), (1, 1)),
                    name=f"features_{index}",
                )(x)
            elif index - 1 in widths:
                x = nn.relu(x)
            elif index in POOLS:
                x = torch_ops.max_pool2d(x, 2)
            if index in TAPS:
                taps.append(x)
        return taps


def perceptual_loss(vgg: VGG19Features, variables, fake, real):
    """Σ_i w_i · mean|φ_i(fake) − φ_i(real)| with the real features held constant."""
    n = fake.shape[0]
    feats = vgg.apply(variables, jnp.concatenate([fake, real], axis=0))
    loss = 0.0
    for weight, f in zip(LOSS_WEIGHTS, feats):
        loss = loss + weight * jnp.mean(jnp.abs(f[:n] - jax.lax.stop_gradient(f[n:])))
    return loss
