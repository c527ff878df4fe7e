"""Seeded random AlexNet / VGG16 `features` weights in torchvision's state-dict layout.

Full-size backbones are 10 MB (AlexNet) and 59 MB (VGG16) of float32, too big to commit, so
the LPIPS fixture does not store them: tools/make_lpips_fixture.py loads these arrays into
the `lpips` package's torch model, and tests/test_lpips.py rebuilds the same arrays and
checks them against the SHA-256 digests stored in the fixture before using them.
"""

import hashlib

import numpy as np

from stylejax.models.lpips import LAYOUTS

SEEDS = {"alex": 2018, "vgg": 16}


def random_backbone(net: str, seed: int | None = None) -> dict[str, np.ndarray]:
    """{'features.{i}.weight': OIHW, 'features.{i}.bias': [O]} with He-uniform weights, so
    activations keep their scale through the ReLUs, and small non-zero biases."""
    rng = np.random.default_rng(SEEDS[net] if seed is None else seed)
    state, channels = {}, 3
    for index, layer in enumerate(LAYOUTS[net]):
        if layer[0] != "conv":
            continue
        _, out_channels, kernel, _, _ = layer
        bound = np.sqrt(6.0 / (channels * kernel * kernel))
        shape = (out_channels, channels, kernel, kernel)
        state[f"features.{index}.weight"] = rng.uniform(-bound, bound, shape).astype(np.float32)
        state[f"features.{index}.bias"] = rng.uniform(-0.1, 0.1, out_channels).astype(np.float32)
        channels = out_channels
    return state


def digest(state: dict[str, np.ndarray]) -> str:
    """SHA-256 over the keys, shapes and float32 bytes, in key order."""
    h = hashlib.sha256()
    for key in sorted(state):
        value = np.ascontiguousarray(state[key], np.float32)
        h.update(f"{key}{value.shape}".encode())
        h.update(value.tobytes())
    return h.hexdigest()
