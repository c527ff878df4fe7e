"""SEAN weight import (ZPdesu/SEAN `latest_net_G.pth` / `latest_net_D.pth`; the SEAN appendix
of shared/reference/FORMATS.md and the fixtures README).

Both files are plain state dicts. The renames:
- `Zencoder.model.{i}` → `Zencoder/model_{i}`; index 10 is a ConvTranspose2d whose weight
  [in, out, kh, kw] is flipped spatially and stored HWIO for a dilated correlation;
- conv `weight` OIHW → `kernel` HWIO; Linear `fc_mu{j}.weight` [out, in] → `kernel` [in, out];
- spectral-norm convs: σ = u·(W v) from the stored `weight_u` / `weight_v` (torch's
  eval-mode value, no power iteration) is baked in: `kernel` = weight_orig / σ, the weight
  the official network applies. u and v go to the 'spectral' collection, so the model's own
  σ of the baked kernel is 1 (to float rounding) and fine-tuning resumes power iterations
  from torch's vectors (spectral norm is scale-invariant in the kernel);
- `param_free_norm.running_mean/var` → the 'batch_stats' collection;
- ignored: `num_batches_tracked` and each ACE's unused `Spade.param_free_norm.*`.
Nothing in the files says the training crop size; the generator takes it from the label
map it is given (head at size / 32).
"""

import re
from typing import Any

import numpy as np

from stylejax import model_format
from stylejax.convert import common, readers
from stylejax.model_format import CheckpointError
from stylejax.models import sean

_IGNORED = re.compile(r"(num_batches_tracked$|\.Spade\.param_free_norm\.)")
_SPECTRAL = {"weight_orig": "kernel", "weight_u": "u", "weight_v": "v"}


def _strip(sd: dict) -> dict:
    return {str(k).removeprefix("module."): v for k, v in sd.items()}


def detect_format(obj) -> str:
    """'sean_generator', 'sean_discriminator' or 'unknown'."""
    if not isinstance(obj, dict):
        return "unknown"
    keys = _strip(obj)
    if "Zencoder.model.1.weight" in keys and "fc.weight" in keys:
        return "sean_generator"
    if "discriminator_0.model0.0.weight" in keys:
        return "sean_discriminator"
    return "unknown"


def _leaf(collections: dict, collection: str, path: list[str], value, transform=None):
    value = np.asarray(value, np.float32)
    common.set_leaf(
        collections.setdefault(collection, {}), path, transform(value) if transform else value
    )


def generator_config(sd: dict, source: str = "", **overrides) -> dict[str, Any]:
    sd = _strip(sd)
    try:
        fc = np.shape(sd["fc.weight"])
        config = {
            "label_nc": int(fc[1]),
            "ngf": int(fc[0]) // 16,
            "style_length": int(np.shape(sd["Zencoder.model.14.weight"])[0]),
            "zencoder_ngf": int(np.shape(sd["Zencoder.model.1.weight"])[0]),
            "spade_hidden": int(np.shape(sd["head_0.ace_0.Spade.mlp_shared.0.weight"])[0]),
            "num_upsampling_layers": "normal",
        }
    except KeyError as e:
        raise CheckpointError(
            f"{source}: not a SEAN generator state dict: missing {e.args[0]!r} "
            f"(found {common.describe(sd)})"
        ) from None
    config.update(overrides)
    return config


def generator_to_flax(sd: dict) -> dict:
    """Official generator state dict → {'params', 'batch_stats', 'spectral'}."""
    out: dict = {}
    for key, value in _strip(sd).items():
        if _IGNORED.search(key):
            continue
        parts = key.split(".")
        leaf = parts[-1]
        if parts[0] == "Zencoder":  # Zencoder.model.{i}.{weight,bias}
            path = ["Zencoder", f"model_{parts[2]}"]
            if leaf == "bias":
                _leaf(out, "params", path + ["bias"], value)
            elif parts[2] == "10":  # ConvTranspose2d [in, out, kh, kw] → flipped HWIO
                _leaf(
                    out,
                    "params",
                    path + ["kernel"],
                    value,
                    lambda w: w.transpose(2, 3, 0, 1)[::-1, ::-1],
                )
            else:
                _leaf(out, "params", path + ["kernel"], value, common.oihw_to_hwio)
            continue
        module = [p for p in parts[:-1] if p != "0"]  # mlp_shared.0 → mlp_shared
        if leaf in _SPECTRAL:
            if leaf == "weight_orig":
                _leaf(out, "params", module + ["kernel"], value, common.oihw_to_hwio)
            else:
                _leaf(out, "spectral", module + [_SPECTRAL[leaf]], value)
        elif leaf in ("running_mean", "running_var"):
            _leaf(out, "batch_stats", module + [leaf], value)
        elif leaf == "weight" and module[-1].startswith("fc_mu"):
            _leaf(out, "params", module + ["kernel"], value, np.transpose)
        elif leaf == "weight":
            _leaf(out, "params", module + ["kernel"], value, common.oihw_to_hwio)
        else:  # bias, noise_var, blending_gamma, blending_beta
            _leaf(out, "params", module + [leaf], value)
    return out


def bake_spectral_norm(variables: dict) -> dict:
    """Divides every spectral-norm kernel by its eval-mode σ = u·(W v) (W: the kernel as an
    [out, in·kh·kw] matrix in torch's OIHW order), in float64, in place. Incomplete entries
    are left for check_against_model to name."""

    def walk(params, spectral):
        for name, sub in spectral.items():
            if not isinstance(sub, dict) or not isinstance(params.get(name), dict):
                continue
            if {"u", "v"} <= sub.keys() and "kernel" in params[name]:
                kernel = np.asarray(params[name]["kernel"], np.float64)
                w = kernel.transpose(3, 2, 0, 1).reshape(kernel.shape[3], -1)
                u, v = (np.asarray(sub[n], np.float64) for n in ("u", "v"))
                if u.shape == (w.shape[0],) and v.shape == (w.shape[1],):
                    params[name]["kernel"] = (kernel / np.dot(u, w @ v)).astype(np.float32)
            else:
                walk(params[name], sub)

    walk(variables.get("params", {}), variables.get("spectral", {}))
    return variables


def discriminator_config(sd: dict, source: str = "") -> dict[str, Any]:
    sd = _strip(sd)
    scales = sorted({int(m[1]) for k in sd if (m := re.match(r"discriminator_(\d+)\.", k))})
    layers = {int(m[1]) for k in sd if (m := re.match(r"discriminator_0\.model(\d+)\.", k))}
    first = sd.get("discriminator_0.model0.0.weight")
    if not scales or not layers or first is None:
        raise CheckpointError(
            f"{source}: not a SEAN multiscale discriminator: expected "
            f"discriminator_{{i}}.model{{k}}.* keys, found {common.describe(sd)}"
        )
    return {
        "label_nc": int(np.shape(first)[1]) - 3,
        "ndf": int(np.shape(first)[0]),
        "n_layers": max(layers),
        "num_D": len(scales),
    }


def discriminator_to_flax(sd: dict) -> dict:
    out: dict = {}
    for key, value in _strip(sd).items():
        parts = key.split(".")  # discriminator_i.model{k}.0[.0].leaf
        module, leaf = parts[:2], parts[-1]
        if leaf in _SPECTRAL:
            collection = "params" if leaf == "weight_orig" else "spectral"
            transform = common.oihw_to_hwio if leaf == "weight_orig" else None
            _leaf(out, collection, module + [_SPECTRAL[leaf]], value, transform)
        elif leaf == "weight":
            _leaf(out, "params", module + ["kernel"], value, common.oihw_to_hwio)
        else:
            _leaf(out, "params", module + [leaf], value)
    return out


def read_sean(path: str, obj=None) -> tuple[str, dict, dict]:
    """Loads an official SEAN G or D file; returns (kind, config, Flax variables), checked
    against the model's own variable tree (names and shapes)."""
    import jax

    sd = readers.load_checkpoint(path) if obj is None else obj
    kind = detect_format(sd)
    if kind == "sean_generator":
        config = generator_config(sd, path)
        variables = bake_spectral_norm(generator_to_flax(sd))
        model = model_format.build("sean_generator", config)
        init = lambda r: sean.init_generator(model, r, size=32 * 2)
        what = "SEAN generator"
    elif kind == "sean_discriminator":
        config = discriminator_config(sd, path)
        variables = bake_spectral_norm(discriminator_to_flax(sd))
        model = model_format.build("sean_discriminator", config)
        init = lambda r: sean.init_discriminator(model, r, config["label_nc"])
        what = "SEAN discriminator"
    else:
        raise CheckpointError(
            f"{path}: not a SEAN checkpoint: expected the official latest_net_G.pth "
            f"(Zencoder.*, fc.*, head_0.* …) or latest_net_D.pth (discriminator_0.*) "
            f"state dict, found {common.describe(sd)}"
        )
    expected = jax.eval_shape(init, jax.random.PRNGKey(0))
    common.check_against_model(variables, expected, path, what, "official SEAN")
    return kind, config, variables


def read_vgg19(path: str, obj=None) -> dict:
    """torchvision's VGG19 state dict (`vgg19-dcbb9e9d.pth`: features.{i}.weight/bias; the
    classifier is ignored) → VGG19Features variables, checked against the model."""
    import jax
    import jax.numpy as jnp

    from stylejax.models import vgg19

    sd = _strip(readers.load_checkpoint(path) if obj is None else obj)
    params: dict = {}
    for key, value in sd.items():
        m = re.match(r"features\.(\d+)\.(weight|bias)$", key)
        if m is None:
            if key.startswith("classifier."):
                continue
            raise CheckpointError(
                f"{path}: not a torchvision VGG19 state dict: unexpected key {key!r} "
                f"(expected features.{{i}}.weight/bias and classifier.*)"
            )
        leaf = "kernel" if m[2] == "weight" else "bias"
        transform = common.oihw_to_hwio if leaf == "kernel" else None
        _leaf(params, "params", [f"features_{m[1]}", leaf], value, transform)
    # Layers past relu5_1 (features.30 …) are not needed by the loss.
    used = {f"features_{i}" for i, _ in vgg19.CONVS}
    params = {"params": {k: v for k, v in params.get("params", {}).items() if k in used}}
    model = vgg19.VGG19Features()
    expected = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    common.check_against_model(params, expected, path, "VGG19", "torchvision VGG19")
    return params
