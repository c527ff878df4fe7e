"""pSp checkpoint and IR-SE50 ArcFace weight import (shared/reference/FORMATS.md §3, §5.1).

The official keys become Flax paths by a rename table: numeric children of body/styles
become `body_{i}` / `styles_{i}`, the indices inside `nn.Sequential` containers become the
names of `stylejax.models.irse` (`res_layer.3` → `res_layer/conv2`), style-block convs
`convs.{2k}` → `conv_{k}`. Leaves: conv weights OIHW → HWIO `kernel`; BatchNorm `weight` /
`bias` → params `scale` / `bias` and running stats → `batch_stats` `mean` / `var`
(`num_batches_tracked` dropped); ROS EqualLinear `weight` [out, in] → `weight` [in, out]
(gains stay at run time); plain Linear after an NCHW flatten → `kernel` with its input
axis permuted to our NHWC flatten order. The pSp decoder goes through the StyleGAN2
rosinality path with its stored noise buffers.
"""

import math
import re
from typing import Any

import jax.numpy as jnp
import numpy as np

from stylejax import model_format
from stylejax.convert import common, readers
from stylejax.convert import stylegan2 as sg_convert
from stylejax.model_format import CheckpointError
from stylejax.models import irse
from stylejax.models import psp as psp_models
from stylejax.models import stylegan2 as sg

# Names of the children of the official nn.Sequential containers (None: no parameters).
_SEQUENTIAL_NAMES = {
    "input_layer": ("conv", "bn", "prelu"),
    "res_layer": ("bn1", "conv1", "prelu", "conv2", "bn2", "se"),
    "shortcut_layer": ("conv", "bn"),
    "output_layer": ("bn2d", None, None, "linear", "bn1d"),  # BN, Dropout, Flatten, Linear, BN1d
    "output_layer_2": ("bn", None, None, "linear"),  # BN, AdaptiveAvgPool 7×7, Flatten, Linear
}
_UNITS_TO_LAYERS = {sum(units): layers for layers, units in irse.UNITS_PER_STAGE.items()}
_BN_LEAVES = {
    "weight": ("params", "scale"),
    "bias": ("params", "bias"),
    "running_mean": ("batch_stats", "mean"),
    "running_var": ("batch_stats", "var"),
}


def _flax_path(key: str) -> list[str]:
    """'body.3.res_layer.5.fc1.weight' → ['body_3', 'res_layer', 'se', 'fc1', 'weight']."""
    parts, out, i = key.split("."), [], 0
    while i < len(parts):
        part, nxt = parts[i], parts[i + 1] if i + 1 < len(parts) else ""
        if part in ("body", "styles") and nxt.isdigit():
            out.append(f"{part}_{nxt}")
            i += 2
        elif part == "convs" and nxt.isdigit():
            out.append(f"conv_{int(nxt) // 2}")  # odd indices are the LeakyReLUs
            i += 2
        elif part in _SEQUENTIAL_NAMES and nxt.isdigit():
            names = _SEQUENTIAL_NAMES[part]
            name = names[int(nxt)] if int(nxt) < len(names) else None
            if name is None:
                raise KeyError(f"{key} (no parameters expected at {part}.{nxt})")
            out += [part, name]
            i += 2
        else:
            out.append(part)
            i += 1
    return out


def _permute_nchw_dense(weight, channels: int):
    """torch Linear weight [out, C·H·W] (NCHW flatten) → Flax kernel [H·W·C, out] (NHWC)."""
    out_f, in_f = weight.shape
    hw = in_f // channels
    side = math.isqrt(hw)
    w = weight.reshape(out_f, channels, side, side).transpose(2, 3, 1, 0)
    return w.reshape(in_f, out_f)


def irse_to_flax(sd: dict[str, np.ndarray]) -> dict:
    """Official IR-SE-based state dict (encoder or ArcFace, prefix stripped) →
    {'params', 'batch_stats'} nested dicts in the layout of stylejax.models."""
    tree: dict = {"params": {}, "batch_stats": {}}
    for key, value in sd.items():
        *path, leaf = _flax_path(key)
        value = np.asarray(value)
        module = path[-1]
        if leaf == "num_batches_tracked":
            continue
        if module.startswith("bn"):
            collection, leaf = _BN_LEAVES[leaf]
            common.set_leaf(tree[collection], path + [leaf], value)
        elif leaf == "weight" and value.ndim == 4:
            common.set_leaf(tree["params"], path + ["kernel"], common.oihw_to_hwio(value))
        elif module == "linear" and path[0].startswith("output_layer"):
            if leaf == "weight":
                channels = sd[f"{key.split('.')[0]}.0.weight"].shape[0]  # the BN2d before it
                value = _permute_nchw_dense(value, channels)
                leaf = "kernel"
            common.set_leaf(tree["params"], path + [leaf], value)
        elif module == "linear" and leaf == "weight":  # ROS EqualLinear
            common.set_leaf(tree["params"], path + [leaf], value.T)
        else:  # conv / EqualLinear biases, PReLU slopes
            common.set_leaf(tree["params"], path + [leaf], value)
    return tree


def trunk_config(sd: dict, source: str) -> dict[str, Any]:
    """num_layers, mode, base_width and input channels of an IR / IR-SE trunk, from shapes."""
    if "input_layer.0.weight" not in sd:
        raise CheckpointError(
            f"{source}: expected an IR-SE trunk (input_layer.0.weight), not found"
        )
    units = len({m[1] for k in sd if (m := re.match(r"body\.(\d+)\.", k))})
    if units not in _UNITS_TO_LAYERS:
        raise CheckpointError(
            f"{source}: expected {sorted(_UNITS_TO_LAYERS)} body units (IR 50/100/152), "
            f"found {units}"
        )
    width, in_nc = sd["input_layer.0.weight"].shape[:2]
    return dict(
        num_layers=_UNITS_TO_LAYERS[units],
        mode="ir_se" if "body.0.res_layer.5.fc1.weight" in sd else "ir",
        base_width=int(width),
        input_nc=int(in_nc),
    )


# ---------------------------------------------------------------------------------------
# pSp


def detect_format(obj) -> str:
    """'psp', 'arcface' or 'unknown' for a loaded checkpoint object."""
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if isinstance(state, dict) and any(str(k).startswith("encoder.") for k in state):
        return "psp"
    if isinstance(obj, dict) and "output_layer.3.weight" in obj and "input_layer.0.weight" in obj:
        return "arcface"
    return "unknown"


def _encoder_config(sd: dict, opts: dict, source: str) -> tuple[str, dict]:
    if opts.get("encoder_type", psp_models.ENCODER_TYPES[0]) not in psp_models.ENCODER_TYPES:
        raise CheckpointError(
            f"{source}: opts say encoder_type={opts['encoder_type']!r}; this converter reads "
            f"the pSp encoders {psp_models.ENCODER_TYPES}; ReStyle and e4e files are read by "
            f"stylejax.convert.restyle (convert() and tools/convert_weights.py pick it)"
        )
    if "latlayer1.weight" in sd:
        detected = "GradualStyleEncoder"
    elif "output_layer_2.3.weight" in sd:
        detected = "BackboneEncoderUsingLastLayerIntoWPlus"
    elif "linear.weight" in sd:
        detected = "BackboneEncoderUsingLastLayerIntoW"
    else:
        raise CheckpointError(
            f"{source}: cannot tell the encoder head: expected latlayer1.* (GradualStyleEncoder), "
            f"output_layer_2.* (IntoWPlus) or linear.* (IntoW) under 'encoder.', found none"
        )
    encoder_type = opts.get("encoder_type", detected)
    if encoder_type != detected:
        raise CheckpointError(
            f"{source}: opts say encoder_type={encoder_type!r} but the tensors are those of "
            f"{detected}; expected them to agree"
        )
    trunk = trunk_config(sd, source + " (encoder)")
    trunk.pop("input_nc")
    if detected == "GradualStyleEncoder":
        n_styles = len({m[1] for k in sd if (m := re.match(r"styles\.(\d+)\.", k))})
        style_dim = sd["styles.0.linear.weight"].shape[0]
        trunk.update(n_styles=n_styles, style_dim=int(style_dim))
    elif detected == "BackboneEncoderUsingLastLayerIntoWPlus":
        style_dim = sd["output_layer_2.3.weight"].shape[0]
        n_styles = sd["linear.weight"].shape[0] // style_dim
        trunk.update(n_styles=int(n_styles), style_dim=int(style_dim))
    else:
        trunk.update(style_dim=int(sd["linear.weight"].shape[0]))
    return detected, trunk


def _latent_avg_rows(latent_avg, n_styles: int, w_dim: int, source: str):
    """[n_styles, w], [1, w] or [w] → [n_styles, w]."""
    la = np.asarray(latent_avg, np.float32)
    if la.shape[-1] != w_dim or la.ndim > 2 or (la.ndim == 2 and la.shape[0] not in (1, n_styles)):
        raise CheckpointError(
            f"{source}: latent_avg has shape {la.shape}; expected [{n_styles}, {w_dim}], "
            f"[1, {w_dim}] or [{w_dim}]"
        )
    return np.broadcast_to(la.reshape(-1, w_dim), (n_styles, w_dim)).copy()


def example_input(config: dict):
    return jnp.zeros((1, 256, 256, config["input_nc"]), jnp.float32)


def read_psp(path: str, obj=None) -> tuple[dict, dict]:
    """Loads a pSp checkpoint; returns (config, Flax variables of stylejax PSP)."""
    obj = readers.load_checkpoint(path) if obj is None else obj
    opts, enc_sd, dec_sd = split_checkpoint(obj, path, "pSp")
    try:
        encoder_type, enc_config = _encoder_config(enc_sd, opts, path)
        input_nc = trunk_config(enc_sd, path)["input_nc"]
    except KeyError as e:
        raise CheckpointError(f"{path}: pSp checkpoint is missing an expected tensor {e}") from None
    start_from_avg = bool(opts.get("start_from_latent_avg", obj.get("latent_avg") is not None))
    dec_config, decoder, latent_avg = read_decoder(
        dec_sd, obj.get("latent_avg"), start_from_avg, path, opts.get("output_size")
    )
    check_styles(enc_config, dec_config, path)
    config = dict(
        family="psp",
        encoder_type=encoder_type,
        encoder=enc_config,
        input_nc=input_nc,
        decoder=dec_config,
        start_from_latent_avg=start_from_avg,
        learn_in_w=bool(opts.get("learn_in_w", False)),
        **file_facts(opts, obj.get("latent_avg")),
    )
    variables = encoder_decoder_variables(enc_sd, decoder, latent_avg, path)
    expected = common.expected_shapes(model_format.build("psp", config), example_input(config))
    common.check_against_model(variables, expected, path, "pSp model", layout="pSp")
    return config, variables


def split_checkpoint(obj, path: str, what: str) -> tuple[dict, dict, dict]:
    """pSp-family checkpoint → (opts as a dict, encoder state dict, decoder state dict)."""
    if detect_format(obj) != "psp":
        raise CheckpointError(
            f"{path}: not a {what} checkpoint: expected a dict with 'state_dict' holding "
            f"'encoder.*' and 'decoder.*' keys (and 'opts', 'latent_avg'), found "
            f"{common.describe(obj)}"
        )
    state = obj["state_dict"]
    opts = obj.get("opts") or {}
    if not isinstance(opts, dict):  # an argparse.Namespace read as a stub object
        opts = dict(getattr(opts, "__dict__", {}))
    enc_sd = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    dec_sd = {k[len("decoder.") :]: v for k, v in state.items() if k.startswith("decoder.")}
    if not dec_sd:
        raise CheckpointError(f"{path}: expected 'decoder.*' keys in state_dict, found none")
    return opts, enc_sd, dec_sd


def read_decoder(
    dec_sd, latent_avg, start_from_avg: bool, path: str, output_size=None, size_option="output_size"
):
    """The ROS-layout decoder (with its noise buffers) and the per-style latent average →
    (decoder config, decoder variables, latent_avg [n_styles, w])."""
    try:
        ada = sg_convert.rosinality_to_ada_generator(dec_sd)
        filters = sg_convert.stored_filters({"decoder": dec_sd}, ".kernel")
        taps = sg_convert.resample_taps(filters, 4, path, "decoder")
        dec_config = sg_convert.generator_config(ada, resample_taps=taps)
    except KeyError as e:
        raise CheckpointError(f"{path}: decoder is missing an expected tensor {e}") from None
    res = dec_config["img_resolution"]
    if output_size is not None and output_size != res:
        raise CheckpointError(
            f"{path}: opts say {size_option}={output_size} but the decoder tensors are "
            f"those of a {res} px generator"
        )
    n_ws, w_dim = sg.num_ws(res), dec_config["w_dim"]
    if latent_avg is not None:
        latent_avg = _latent_avg_rows(latent_avg, n_ws, w_dim, path)
    elif start_from_avg:
        raise CheckpointError(
            f"{path}: opts say start_from_latent_avg=True but the file has no 'latent_avg'"
        )
    # The decoder's w_avg (for truncation) is pSp's latent average when there is one.
    ada["mapping.w_avg"] = np.zeros(w_dim, np.float32) if latent_avg is None else latent_avg[0]
    decoder = sg_convert.convert_network(ada, dec_config, "generator", path, "decoder")
    if latent_avg is None:  # pSp's own fallback: the mean of many mapped z
        mean = sg_convert.estimate_w_avg(ada, dec_config, n=10_000)
        latent_avg = np.broadcast_to(mean, (n_ws, mean.shape[0])).copy()
        decoder["buffers"]["mapping"]["w_avg"] = latent_avg[0]
    return dec_config, decoder, latent_avg


def check_styles(enc_config: dict, dec_config: dict, path: str):
    n_ws, w_dim = sg.num_ws(dec_config["img_resolution"]), dec_config["w_dim"]
    if enc_config.get("n_styles", n_ws) != n_ws or enc_config["style_dim"] != w_dim:
        raise CheckpointError(
            f"{path}: the encoder outputs {enc_config.get('n_styles')} styles of "
            f"{enc_config['style_dim']}, but the {dec_config['img_resolution']} px decoder "
            f"expects {n_ws} of {w_dim}"
        )


_SCALARS = (str, int, float, bool, type(None))


def plain_opts(opts: dict) -> dict:
    """The JSON-friendly options kept in the config: strings, numbers, booleans, None, and
    lists or tuples of them (as lists), such as e4e's progressive_steps."""
    kept = {}
    for k, v in opts.items():
        if isinstance(v, _SCALARS):
            kept[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, _SCALARS) for x in v):
            kept[k] = list(v)
    return kept


def file_facts(opts: dict, latent_avg) -> dict:
    """What a converted model's config keeps of its file for the export to write back: the
    plain opts and the stored latent_avg's shape ([n_styles, w], [1, w] or [w])."""
    facts = {"opts": plain_opts(opts)}
    if latent_avg is not None:
        facts["latent_avg_shape"] = list(np.shape(latent_avg))
    return facts


def encoder_decoder_variables(enc_sd: dict, decoder: dict, latent_avg, path: str) -> dict:
    try:
        enc_tree = irse_to_flax(enc_sd)
    except KeyError as e:
        raise CheckpointError(f"{path}: unexpected encoder tensor {e}") from None
    return {
        "params": {"encoder": enc_tree["params"], "decoder": decoder["params"]},
        "batch_stats": {"encoder": enc_tree["batch_stats"]},
        "buffers": {"decoder": decoder["buffers"], "latent_avg": latent_avg},
    }


# ---------------------------------------------------------------------------------------
# ArcFace IR-SE50 (TreB1eN `model_ir_se50.pth`)


def read_arcface(path: str, obj=None) -> tuple[dict, dict]:
    """Loads an ArcFace Backbone state dict; returns (config, Flax variables)."""
    sd = readers.load_checkpoint(path) if obj is None else obj
    if detect_format(sd) != "arcface":
        raise CheckpointError(
            f"{path}: not an IR-SE ArcFace state dict: expected a plain dict with "
            f"input_layer.0.weight, body.*, output_layer.3.weight, found {common.describe(sd)}"
        )
    config = trunk_config(sd, path)
    out_f, in_f = sd["output_layer.3.weight"].shape
    side = math.isqrt(in_f // (config["base_width"] * 8))
    if side not in (7, 14):
        raise CheckpointError(
            f"{path}: output_layer.3.weight has {in_f} inputs: expected C·7·7 (112 px input) "
            f"or C·14·14 (224 px) with C = {config['base_width'] * 8}"
        )
    config.update(input_size=16 * side, embedding_dim=int(out_f))
    try:
        variables = irse_to_flax(sd)
    except KeyError as e:
        raise CheckpointError(f"{path}: unexpected ArcFace tensor {e}") from None
    model = model_format.build("arcface", config)
    x = jnp.zeros((1, config["input_size"], config["input_size"], config["input_nc"]))
    common.check_against_model(
        variables, common.expected_shapes(model, x), path, "ArcFace", "IR-SE ArcFace"
    )
    return config, variables
