"""ReStyle (pSp and e4e flavours) and e4e checkpoint import (shared/reference/FORMATS.md §3).

All three are pSp-family files (`state_dict` with `encoder.*` / `decoder.*`, `opts`,
`latent_avg`) whose encoders share pSp's key names, so the keys cannot tell them apart: the
forward is chosen by `opts['encoder_type']`. The rename table, the trunk reader and the
decoder import are pSp's (`stylejax.convert.psp`). ReStyle-e4e and e4e training files may
also carry optimiser and latent-discriminator state; it is ignored.
"""

import re

import jax
import jax.numpy as jnp

from stylejax import model_format
from stylejax.convert import common, psp, readers
from stylejax.model_format import CheckpointError
from stylejax.models import e4e, restyle

RESTYLE_TYPES = restyle.ENCODER_TYPES
E4E_TYPES = e4e.ENCODER_TYPES
# Public encoder types this converter names but cannot build (torchvision ResNet-34 trunks).
UNSUPPORTED_TYPES = (
    "ResNetBackboneEncoder",
    "ResNetGradualStyleEncoder",
    "ResNetProgressiveBackboneEncoder",
)


def detect_format(obj) -> str:
    """'restyle', 'e4e' or 'unknown' (a plain pSp file, or not pSp-family at all).

    ReStyle files say `n_iters_per_batch` in their opts; e4e's say `stylegan_size`."""
    if psp.detect_format(obj) != "psp":
        return "unknown"
    opts = _opts(obj)
    encoder_type = opts.get("encoder_type")
    if "n_iters_per_batch" in opts or encoder_type in RESTYLE_TYPES[:2] + UNSUPPORTED_TYPES:
        return "restyle"
    if "stylegan_size" in opts or encoder_type in E4E_TYPES:
        return "e4e"
    return "unknown"


def _opts(obj) -> dict:
    opts = obj.get("opts") or {}
    return opts if isinstance(opts, dict) else dict(getattr(opts, "__dict__", {}))


def _head_config(enc_sd: dict, path: str) -> dict:
    trunk = psp.trunk_config(enc_sd, path + " (encoder)")
    trunk.pop("input_nc")
    heads = {m[1] for k in enc_sd if (m := re.match(r"styles\.(\d+)\.", k))}
    if "styles.0.linear.weight" not in enc_sd:
        raise CheckpointError(f"{path}: expected style heads 'encoder.styles.{{i}}.*', found none")
    style_dim = enc_sd["styles.0.linear.weight"].shape[0]
    return dict(trunk, n_styles=len(heads), style_dim=int(style_dim))


def _check_heads(encoder_type: str, enc_sd: dict, path: str):
    has_pyramid = "latlayer1.weight" in enc_sd
    wants_pyramid = encoder_type in ("GradualStyleEncoder", "Encoder4Editing")
    if has_pyramid != wants_pyramid:
        raise CheckpointError(
            f"{path}: opts say encoder_type={encoder_type!r}, which "
            f"{'reads' if wants_pyramid else 'has no'} feature pyramid (latlayer1/latlayer2), "
            f"but the tensors {'lack' if wants_pyramid else 'have'} one"
        )


def read_restyle(path: str, obj=None) -> tuple[dict, dict]:
    """Loads a ReStyle-pSp / ReStyle-e4e checkpoint; returns (config, variables of
    stylejax.models.restyle.ReStyle)."""
    obj = readers.load_checkpoint(path) if obj is None else obj
    opts, enc_sd, dec_sd = psp.split_checkpoint(obj, path, "ReStyle")
    encoder_type = opts.get("encoder_type", "BackboneEncoder")
    if encoder_type not in RESTYLE_TYPES:
        raise CheckpointError(
            f"{path}: opts say encoder_type={encoder_type!r}; expected one of {RESTYLE_TYPES}"
            + (
                " (the ResNet-34 trunks are not supported)"
                if encoder_type in UNSUPPORTED_TYPES
                else ""
            )
        )
    _check_heads(encoder_type, enc_sd, path)
    enc_config = _head_config(enc_sd, path)
    input_nc = psp.trunk_config(enc_sd, path)["input_nc"]
    if input_nc != 2 * 3 or opts.get("input_nc", input_nc) != input_nc:
        raise CheckpointError(
            f"{path}: a ReStyle encoder reads the image and the reconstruction (6 channels); "
            f"input_layer.0.weight has {input_nc} (opts: input_nc={opts.get('input_nc')})"
        )
    if obj.get("latent_avg") is None:
        raise CheckpointError(f"{path}: a ReStyle checkpoint always stores 'latent_avg'; not found")
    dec_config, decoder, latent_avg = psp.read_decoder(
        dec_sd, obj["latent_avg"], True, path, opts.get("output_size")
    )
    psp.check_styles(enc_config, dec_config, path)
    config = dict(
        family="restyle",
        encoder_type=encoder_type,
        encoder=enc_config,
        input_nc=input_nc,
        decoder=dec_config,
        n_iters=int(opts.get("n_iters_per_batch", 5)),
        **psp.file_facts(opts, obj["latent_avg"]),
    )
    variables = psp.encoder_decoder_variables(enc_sd, decoder, latent_avg, path)
    image = jnp.zeros((1, 256, 256, input_nc - 3), jnp.float32)  # the other 3: reconstruction
    model = model_format.build("restyle", config)
    expected = jax.eval_shape(lambda r: model.init(r, image, 1), jax.random.PRNGKey(0))
    common.check_against_model(variables, expected, path, "ReStyle model", "ReStyle")
    return config, variables


def read_e4e(path: str, obj=None) -> tuple[dict, dict]:
    """Loads an e4e checkpoint; returns (config, variables of stylejax.models.e4e.E4E).
    The progressive stage is not stored: the model runs the final stage unless given one."""
    obj = readers.load_checkpoint(path) if obj is None else obj
    opts, enc_sd, dec_sd = psp.split_checkpoint(obj, path, "e4e")
    encoder_type = opts.get("encoder_type", "Encoder4Editing")
    if encoder_type != "Encoder4Editing":
        raise CheckpointError(
            f"{path}: opts say encoder_type={encoder_type!r}; this converter reads e4e's "
            f"'Encoder4Editing' (e4e's GradualStyleEncoder and SingleStyleCodeEncoder files "
            f"are not supported)"
        )
    _check_heads(encoder_type, enc_sd, path)
    enc_config = _head_config(enc_sd, path)
    input_nc = psp.trunk_config(enc_sd, path)["input_nc"]
    start_from_avg = bool(opts.get("start_from_latent_avg", obj.get("latent_avg") is not None))
    dec_config, decoder, latent_avg = psp.read_decoder(
        dec_sd,
        obj.get("latent_avg"),
        start_from_avg,
        path,
        opts.get("stylegan_size"),
        "stylegan_size",
    )
    psp.check_styles(enc_config, dec_config, path)
    config = dict(
        family="e4e",
        encoder_type=encoder_type,
        encoder=enc_config,
        input_nc=input_nc,
        decoder=dec_config,
        start_from_latent_avg=start_from_avg,
        **psp.file_facts(opts, obj.get("latent_avg")),
    )
    variables = psp.encoder_decoder_variables(enc_sd, decoder, latent_avg, path)
    expected = common.expected_shapes(model_format.build("e4e", config), psp.example_input(config))
    common.check_against_model(variables, expected, path, "e4e model", "e4e")
    return config, variables
