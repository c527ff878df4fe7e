"""LPIPS weight import (shared/reference/FORMATS.md §4): linear heads + torchvision backbone.

The `lpips` package ships only the heads (`weights/v0.1/alex.pth`, `vgg.pth`; keys
`lin{k}.model.1.weight` [1, C, 1, 1]); the backbone comes from torchvision
(`alexnet-owt-7be5be79.pth`, `vgg16-397923af.pth`; keys `features.{i}.weight/bias`, the
`classifier.*` keys are ignored). Also accepted: pSp's renamed heads (`{k}.1.weight`) and a
whole `lpips.LPIPS` state dict (heads plus `net.slice{s}.{i}.*`), which needs no backbone
file. Conv weights OIHW → HWIO `kernel`; `features.{i}` → `net/features_{i}`.
"""

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from stylejax import model_format
from stylejax.convert import common, readers
from stylejax.model_format import CheckpointError
from stylejax.models import lpips

# lpips package `lin{k}.model.1.weight`, pSp `{k}.1.weight`, and ModuleList copies `lins.{k}`.
_HEAD_KEY = re.compile(r"^(?:lin|lins\.)?(\d+)\.(?:model\.)?1\.weight$")
# torchvision `features.{i}.x`, or `net.slice{s}.{i}.x` inside a whole lpips.LPIPS state dict.
_BACKBONE_KEY = re.compile(r"^(?:features|net\.slice\d+)\.(\d+)\.(weight|bias)$")
_IGNORED = re.compile(r"^(classifier\.|scaling_layer\.)")
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


def _heads(sd) -> dict[int, np.ndarray]:
    if not isinstance(sd, dict):
        return {}
    return {int(m[1]): v for k, v in sd.items() if (m := _HEAD_KEY.match(str(k)))}


def _backbone(sd) -> dict[int, dict[str, np.ndarray]]:
    convs: dict = {}
    if isinstance(sd, dict):
        for k, v in sd.items():
            if m := _BACKBONE_KEY.match(str(k)):
                convs.setdefault(int(m[1]), {})[m[2]] = v
    return convs


def detect_format(obj) -> str:
    """'lpips' (heads, with or without a backbone), 'lpips_backbone' (torchvision AlexNet /
    VGG `features`) or 'unknown'."""
    if not isinstance(obj, dict):
        return "unknown"
    keys = [str(k) for k in obj]
    known = [bool(_HEAD_KEY.match(k) or _BACKBONE_KEY.match(k) or _IGNORED.match(k)) for k in keys]
    if _heads(obj) and all(known):
        return "lpips"
    if any(k.startswith("features.") for k in keys) and all(
        _BACKBONE_KEY.match(k) or _IGNORED.match(k) for k in keys
    ):
        return "lpips_backbone"
    return "unknown"


def _net_from_heads(heads: dict, source: str) -> str:
    channels = tuple(int(heads[k].shape[1]) for k in sorted(heads))
    for net in lpips.NETS:
        if channels == lpips.tap_channels(net):
            return net
    known = ", ".join(f"{net} {lpips.tap_channels(net)}" for net in lpips.NETS)
    raise CheckpointError(
        f"{source}: linear heads with input channels {channels} match no supported LPIPS "
        f"network (expected {known}; SqueezeNet LPIPS is not supported)"
    )


def _net_from_backbone(convs: dict) -> str | None:
    first = convs.get(0, {}).get("weight")
    if first is None or np.ndim(first) != 4:
        return None
    return {11: "alex", 3: "vgg"}.get(int(first.shape[-1]))


def lpips_to_flax(heads: dict, convs: dict) -> dict:
    """Head and backbone arrays → {'params': {'net': {'features_{i}': …}, 'lin{k}': …}}."""
    params: dict = {}
    for k, weight in heads.items():
        common.set_leaf(params, [f"lin{k}", "kernel"], common.oihw_to_hwio(weight))
    for index, leaves in convs.items():
        for leaf, value in leaves.items():
            path = ["net", f"features_{index}"]
            if leaf == "weight":
                common.set_leaf(params, path + ["kernel"], common.oihw_to_hwio(value))
            else:
                common.set_leaf(params, path + ["bias"], value)
    return {"params": params}


def read_lpips(path: str, backbone_path: str | None = None, obj=None) -> tuple[dict, dict]:
    """Loads LPIPS heads (+ the backbone from `backbone_path` unless `path` holds a whole
    lpips.LPIPS state dict); returns (config, Flax variables)."""
    sd = readers.load_checkpoint(path) if obj is None else obj
    fmt = detect_format(sd)
    if fmt == "lpips_backbone":
        raise CheckpointError(
            f"{path}: this is a torchvision backbone (features.* keys), not LPIPS heads: pass "
            f"the lpips package's heads file (weights/v0.1/alex.pth or vgg.pth) as the source "
            f"and this file as the backbone (--lpips-backbone)"
        )
    if fmt != "lpips":
        raise CheckpointError(
            f"{path}: not an LPIPS heads file: expected keys lin{{k}}.model.1.weight (lpips "
            f"package) or {{k}}.1.weight (pSp), found {common.describe(sd)}"
        )
    heads = _heads(sd)
    net = _net_from_heads(heads, path)
    convs, source = _backbone(sd), path
    if not convs:
        if backbone_path is None:
            raise CheckpointError(
                f"{path}: holds only the LPIPS linear heads ({net}); also give the "
                f"torchvision backbone weights ({BACKBONE_FILES[net]}) with --lpips-backbone"
            )
        backbone = readers.load_checkpoint(backbone_path)
        source = str(backbone_path)
        if detect_format(backbone) != "lpips_backbone":
            raise CheckpointError(
                f"{backbone_path}: not a torchvision AlexNet/VGG16 state dict: expected "
                f"features.{{i}}.weight/bias keys, found {common.describe(backbone)}"
            )
        convs = _backbone(backbone)
    elif backbone_path is not None:
        raise CheckpointError(
            f"{path}: already holds a backbone (a whole lpips.LPIPS state dict); drop "
            f"--lpips-backbone {backbone_path}"
        )
    found = _net_from_backbone(convs)
    if found != net:
        raise CheckpointError(
            f"{source}: the heads are {net}'s but this backbone is "
            f"{found or 'neither AlexNet nor VGG16'}'s (features.0.weight "
            f"{np.shape(convs.get(0, {}).get('weight'))}): use {BACKBONE_FILES[net]}"
        )
    config: dict[str, Any] = {"net": net}
    variables = lpips_to_flax(heads, convs)
    model = model_format.build("lpips", config)
    x = jnp.zeros((1, 64, 64, 3))
    expected = jax.eval_shape(lambda r: model.init(r, x, x), jax.random.PRNGKey(0))
    common.check_against_model(variables, expected, source, f"LPIPS-{net}", "torchvision")
    return config, variables
