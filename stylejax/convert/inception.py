"""FID Inception weight import: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`.

The file is a plain state dict of torchvision's Inception3 layout with pytorch-fid's FID
blocks (no AuxLogits, a 1008-class `fc`). Every `X.conv.weight` (OIHW) becomes
`params/X/conv/kernel` (HWIO); `X.bn.weight/bias` → `params/X/bn/scale/bias`;
`X.bn.running_mean/var` → `batch_stats/X/bn/mean/var`, with the dots of X turned into Flax
module levels. `fc.*` (the classifier, unused by FID) and `num_batches_tracked` are skipped.
"""

from typing import Any

import numpy as np

from stylejax import model_format
from stylejax.convert import common, readers
from stylejax.model_format import CheckpointError
from stylejax.models import inception

FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"
URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FILE_NAME}"
_MARKERS = ("Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.conv.weight")
_BN_LEAVES = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def detect_format(obj) -> str:
    """'inception' for a torchvision-layout Inception-v3 state dict, else 'unknown'."""
    if isinstance(obj, dict) and all(k in obj for k in _MARKERS):
        return "inception"
    return "unknown"


def inception_to_flax(sd: dict[str, np.ndarray]) -> dict:
    """Maps the torch keys to {'params': …, 'batch_stats': …}; raises KeyError on a key that
    is not part of the layout."""
    params, stats = {}, {}
    for key, value in sd.items():
        *path, layer, leaf = key.split(".")
        if (not path and layer == "fc") or leaf == "num_batches_tracked":
            continue
        value = np.asarray(value)
        if layer == "conv" and leaf == "weight" and value.ndim == 4:
            common.set_leaf(params, path + ["conv", "kernel"], value.transpose(2, 3, 1, 0))
        elif layer == "bn" and leaf in ("weight", "bias"):
            common.set_leaf(params, path + ["bn", _BN_LEAVES[leaf]], value)
        elif layer == "bn" and leaf in ("running_mean", "running_var"):
            common.set_leaf(stats, path + ["bn", _BN_LEAVES[leaf]], value)
        else:
            raise KeyError(key)
    return {"params": params, "batch_stats": stats}


def flax_to_state_dict(variables) -> dict[str, np.ndarray]:
    """The inverse map (Flax variables → torch keys and layouts), for writing test files."""
    import jax

    sd = {}
    leaves = jax.tree_util.tree_flatten_with_path(variables)[0]
    torch_leaf = {v: k for k, v in _BN_LEAVES.items()}
    for path, value in leaves:
        _, *path, leaf = [p.key for p in path]
        value = np.asarray(value, np.float32)
        if leaf == "kernel":
            sd[".".join(path) + ".weight"] = value.transpose(3, 2, 0, 1)
        else:
            sd[".".join(path) + "." + torch_leaf[leaf]] = value
    return sd


def read_inception(path: str, obj=None) -> tuple[dict[str, Any], dict]:
    """Loads the FID Inception state dict; returns (config, Flax variables)."""
    sd = readers.load_checkpoint(path) if obj is None else obj
    if detect_format(sd) != "inception":
        raise CheckpointError(
            f"{path}: not an Inception-v3 state dict: expected keys {list(_MARKERS)} "
            f"(pytorch-fid's {FILE_NAME}, from {URL}), found {common.describe(sd)}"
        )
    fc = sd.get("fc.weight")
    if any(k.startswith("AuxLogits.") for k in sd) or (fc is not None and fc.shape[0] != 1008):
        raise CheckpointError(
            f"{path}: this is torchvision's ImageNet Inception-v3 (AuxLogits, 1000 classes), "
            f"whose FID numbers are not comparable with published ones: use pytorch-fid's "
            f"{FILE_NAME} ({URL})"
        )
    try:
        variables = inception_to_flax(sd)
    except KeyError as e:
        raise CheckpointError(f"{path}: unexpected Inception tensor {e}") from None
    config = {"resize_input": True}
    expected = inception.abstract_variables(model_format.build("inception", config))
    common.check_against_model(variables, expected, path, "Inception-v3", "FID Inception")
    return config, variables
