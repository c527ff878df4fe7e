"""L2M-GAN weight import: the `*_nets_ema.ckpt` files of rucmlcv/L2M-GAN (fixtures README,
`l2m_s64.ckpt`).

The file is a dict of state dicts: `generator`, `style_encoder`, `fan` (when w_hpf > 0) and
`vgg` (an ImageNet ResNet-18 the evaluation never runs: skipped). Keys become Flax paths by
joining numeric indices to the name before them (`decode.4.norm1.fc.weight` →
`decode_4/norm1/fc/kernel`, `transform2.1.4.bias` → `transform2_1_4/bias`). Leaves: conv
weights OIHW → HWIO `kernel`, Linear weights [out, in] → `kernel` [in, out], norm `weight` →
`scale`, BatchNorm running statistics → `batch_stats` `mean` / `var`. Never-used tensors
are dropped: the `attention` MLPs, and with w_hpf > 0 the decoder's `conv1x1` shortcuts.

The configuration is read from the shapes: img_size from the style encoder's depth, the
first width, style_dim and num_domains from the heads, max_conv_dim from the bottleneck, and
w_hpf > 0 from the generator's extra down-sampling level (its value, 1 in every official
setting, cannot be read from the weights: pass `w_hpf=` for another).
"""

import functools
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from stylejax import model_format
from stylejax.convert import common, readers
from stylejax.model_format import CheckpointError
from stylejax.models import stargan_v2

NETWORKS = ("generator", "style_encoder", "fan")
SKIPPED_NETWORKS = ("vgg",)
_UNUSED = re.compile(r"^attention\.")
_DECODER_SHORTCUT = re.compile(r"^decode\.\d+\.conv1x1\.")
_BN_STATS = {"running_mean": "mean", "running_var": "var"}


def detect_format(obj) -> str:
    """'l2m' for an official nets_ema dict (generator + L2M style encoder), else 'unknown'."""
    if not isinstance(obj, dict) or not {"generator", "style_encoder"} <= set(map(str, obj)):
        return "unknown"
    encoder = obj["style_encoder"]
    if isinstance(encoder, dict) and "transform1.0.weight" in encoder:
        return "l2m"
    return "unknown"


def flax_path(key: str) -> list[str]:
    """'transform2.1.4.weight' → ['transform2_1_4', 'weight']."""
    out: list[str] = []
    for part in key.split("."):
        if part.isdigit() and out:
            out[-1] = f"{out[-1]}_{part}"
        else:
            out.append(part)
    return out


def state_dict_to_flax(sd: dict, skip=None) -> tuple[dict, dict]:
    """One network's state dict → (params, batch_stats) nested dicts."""
    params: dict = {}
    stats: dict = {}
    for key, value in sd.items():
        if skip is not None and skip.search(key):
            continue
        *path, leaf = flax_path(key)
        value = np.asarray(value)
        if leaf == "num_batches_tracked":
            continue
        if leaf in _BN_STATS:
            common.set_leaf(stats, path + [_BN_STATS[leaf]], value)
        elif leaf == "weight" and value.ndim == 4:
            common.set_leaf(params, path + ["kernel"], common.oihw_to_hwio(value))
        elif leaf == "weight" and value.ndim == 2:
            common.set_leaf(params, path + ["kernel"], value.T)
        elif leaf == "weight" and value.ndim == 1:
            common.set_leaf(params, path + ["scale"], value)
        elif leaf == "bias":
            common.set_leaf(params, path + ["bias"], value)
        else:
            raise CheckpointError(f"unexpected tensor {key} with shape {value.shape}")
    return params, stats


def _count(sd: dict, pattern: str) -> int:
    found = {int(m[1]) for k in sd if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def read_config(obj: dict, source: str, w_hpf: float | None = None) -> dict[str, Any]:
    gen, enc = obj["generator"], obj["style_encoder"]
    try:
        dim_in = int(gen["from_rgb.weight"].shape[0])
        style_dim = int(enc["unshared.0.weight"].shape[0])
        num_domains = _count(enc, r"^unshared\.(\d+)\.weight$")
        trunk_blocks = _count(enc, r"^shared\.(\d+)\.conv1\.weight$") - 1
        encode_blocks = _count(gen, r"^encode\.(\d+)\.conv1\.weight$")
        bottleneck = int(gen[f"encode.{encode_blocks - 1}.conv2.weight"].shape[0])
    except (KeyError, AttributeError, IndexError) as e:
        raise CheckpointError(
            f"{source}: an L2M-GAN checkpoint needs generator.from_rgb, encode.* and "
            f"style_encoder.shared.* / unshared.* tensors; missing {e}"
        ) from None
    img_size = 2 ** (trunk_blocks + 2)
    extra_level = encode_blocks - 2 - stargan_v2.generator_repeat(img_size, 0.0)
    if extra_level not in (0, 1):
        raise CheckpointError(
            f"{source}: the generator has {encode_blocks} encoder blocks, but a {img_size} px "
            f"style encoder ({trunk_blocks} down-sampling blocks) implies "
            f"{stargan_v2.generator_repeat(img_size, 0.0) + 2} (w_hpf = 0) or one more "
            f"(w_hpf > 0)"
        )
    if w_hpf is None:
        w_hpf = 1.0 if extra_level else 0.0
    elif (w_hpf > 0) != bool(extra_level):
        raise CheckpointError(
            f"{source}: w_hpf={w_hpf} does not match the generator, which was built with "
            f"w_hpf {'> 0' if extra_level else '= 0'} ({encode_blocks} encoder blocks)"
        )
    if w_hpf > 0 and "fan" not in obj:
        raise CheckpointError(
            f"{source}: the generator uses the high-pass path (w_hpf > 0) but the file has no "
            f"'fan' entry (its entries: {sorted(map(str, obj))})"
        )
    return {
        "img_size": img_size,
        "style_dim": style_dim,
        "num_domains": num_domains,
        "max_conv_dim": bottleneck,
        "w_hpf": float(w_hpf),
        "dim_in": None if dim_in == stargan_v2.default_dim_in(img_size) else dim_in,
    }


@functools.lru_cache(maxsize=8)
def _expected(config_items: tuple):
    model = model_format.build("l2m", dict(config_items))
    x = jnp.zeros((1, model.img_size, model.img_size, 3))
    y = jnp.zeros((1,), jnp.int32)
    return jax.eval_shape(lambda r: model.init(r, x, y, y), jax.random.PRNGKey(0))


def expected_variables(config: dict):
    """Variable shapes of the model `config` describes (cached: tracing the FAN is slow)."""
    return _expected(tuple(sorted(config.items())))


def read_l2m(path: str, obj=None, w_hpf: float | None = None) -> tuple[dict, dict]:
    """Official nets_ema checkpoint → (config, Flax variables of stylejax.models.l2m.L2MGAN)."""
    obj = readers.load_checkpoint(path) if obj is None else obj
    if detect_format(obj) != "l2m":
        raise CheckpointError(
            f"{path}: not an L2M-GAN checkpoint: expected a dict with 'generator' and "
            f"'style_encoder' state dicts (with transform1.* decomposer weights), found "
            f"{common.describe(obj)}"
        )
    config = read_config(obj, path, w_hpf)
    params: dict = {}
    stats: dict = {}
    skip_generator = _DECODER_SHORTCUT if config["w_hpf"] > 0 else None
    for name in NETWORKS:
        if name == "fan" and config["w_hpf"] <= 0:
            continue
        sd = {k: v for k, v in obj[name].items() if not _UNUSED.search(k)}
        params[name], network_stats = state_dict_to_flax(
            sd, skip_generator if name == "generator" else None
        )
        if network_stats:
            stats[name] = network_stats
    variables = {"params": params, "batch_stats": stats} if stats else {"params": params}
    expected = expected_variables(config)
    common.check_against_model(variables, expected, path, "L2M-GAN", "L2M-GAN nets_ema")
    return config, variables
