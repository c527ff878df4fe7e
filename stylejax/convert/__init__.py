"""Weight import: official checkpoints → the stylejax model format (stylejax.model_format).

from stylejax.convert import convert, convert_stylegan2
from stylejax.model_format import load_pretrained
convert_stylegan2("stylegan2-ffhq-config-f.pkl", "ffhq_f")   # once
G, variables = load_pretrained("ffhq_f")                      # G_ema by default
img = G.apply(variables, z, truncation_psi=0.7, noise_mode="const")  # NHWC in [-1, 1]

convert("psp_ffhq_encode.pt", "psp_ffhq")                     # any supported format
psp, variables = load_pretrained("psp_ffhq")                  # stylejax.models.psp.PSP
convert("restyle_psp_ffhq_encode.pt", "restyle")              # ReStyle / e4e too
restyle_model, variables = load_pretrained("restyle")         # stylejax.models.restyle.ReStyle
convert("alex.pth", "lpips_alex", lpips_backbone="alexnet-owt-7be5be79.pth")  # LPIPS
convert("pt_inception-2015-12-05-6726825d.pth", "inception")  # the FID Inception
convert("100000_nets_ema.ckpt", "l2m_smile")                  # L2M-GAN (stylejax.models.l2m)
"""

import os
from typing import Any

from stylejax.convert import inception, l2m, lpips, psp, readers, restyle, sean, stylegan2
from stylejax.model_format import CheckpointError, save_model

NETWORK_NAMES = ("g_ema", "g", "d")


def convert(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    which: str = "g_ema",
    overwrite: bool = False,
    lpips_backbone: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Converts any supported file (format detected from its contents); `which` picks the
    StyleGAN2 network and is ignored by single-network formats (pSp, ArcFace, LPIPS).
    LPIPS heads files need the torchvision backbone file as `lpips_backbone`."""
    obj = readers.load_checkpoint(src)
    if inception.detect_format(obj) == "inception":
        return convert_inception(src, out_dir, overwrite, obj=obj)
    if l2m.detect_format(obj) == "l2m":
        return convert_l2m(src, out_dir, overwrite, obj=obj)
    if lpips.detect_format(obj) != "unknown" or lpips_backbone is not None:
        return convert_lpips(src, out_dir, lpips_backbone, overwrite, obj=obj)
    family = restyle.detect_format(obj)
    if family != "unknown":  # ReStyle / e4e: pSp-family files told apart by their opts
        return convert_restyle(src, out_dir, overwrite, obj=obj)
    if sean.detect_format(obj) != "unknown":
        return convert_sean(src, out_dir, overwrite, obj=obj)
    fmt = psp.detect_format(obj)
    if fmt == "psp":
        return convert_psp(src, out_dir, overwrite, obj=obj)
    if fmt == "arcface":
        return convert_arcface(src, out_dir, overwrite, obj=obj)
    return convert_stylegan2(src, out_dir, which, overwrite, obj=obj)


def convert_psp(src, out_dir, overwrite: bool = False, obj=None) -> dict[str, Any]:
    """pSp checkpoint → one network 'psp' (encoder + decoder + latent_avg)."""
    config, variables = psp.read_psp(str(src), obj)
    return _save_single(src, out_dir, "psp", config, variables, overwrite)


def convert_restyle(src, out_dir, overwrite: bool = False, obj=None) -> dict[str, Any]:
    """ReStyle (pSp or e4e flavour) → network 'restyle'; e4e → network 'e4e'."""
    obj = readers.load_checkpoint(src) if obj is None else obj
    family = restyle.detect_format(obj)
    read = restyle.read_e4e if family == "e4e" else restyle.read_restyle
    config, variables = read(str(src), obj)
    return _save_single(src, out_dir, config["family"], config, variables, overwrite)


def convert_l2m(src, out_dir, overwrite: bool = False, obj=None) -> dict[str, Any]:
    """L2M-GAN nets_ema checkpoint → one network 'l2m' (generator, style encoder, FAN)."""
    config, variables = l2m.read_l2m(str(src), obj)
    return _save_single(src, out_dir, "l2m", config, variables, overwrite)


def convert_arcface(src, out_dir, overwrite: bool = False, obj=None) -> dict[str, Any]:
    """IR-SE ArcFace state dict (model_ir_se50.pth) → one network 'arcface'."""
    config, variables = psp.read_arcface(str(src), obj)
    return _save_single(src, out_dir, "arcface", config, variables, overwrite)


def convert_lpips(src, out_dir, backbone=None, overwrite: bool = False, obj=None):
    """LPIPS heads (+ torchvision backbone file) → one network 'lpips'."""
    config, variables = lpips.read_lpips(str(src), backbone and str(backbone), obj)
    return _save_single(src, out_dir, "lpips", config, variables, overwrite)


def convert_sean(src, out_dir, overwrite: bool = False, obj=None) -> dict[str, Any]:
    """Official SEAN latest_net_G.pth → network 'g', latest_net_D.pth → network 'd'."""
    kind, config, variables = sean.read_sean(str(src), obj)
    name = "g" if kind == "sean_generator" else "d"
    meta = {
        "family": "sean",
        "format": kind,
        "source": os.path.abspath(str(src)),
        "networks": {name: {"kind": kind, "config": config}},
    }
    save_model(out_dir, {name: variables}, meta, overwrite=overwrite)
    return meta


def convert_inception(src, out_dir, overwrite: bool = False, obj=None) -> dict[str, Any]:
    """pytorch-fid's FID Inception state dict → one network 'inception'."""
    config, variables = inception.read_inception(str(src), obj)
    return _save_single(src, out_dir, "inception", config, variables, overwrite)


def _save_single(src, out_dir, family, config, variables, overwrite):
    meta = {
        "family": family,
        "format": family,
        "source": os.path.abspath(str(src)),
        "networks": {family: {"kind": family, "config": config}},
    }
    save_model(out_dir, {family: variables}, meta, overwrite=overwrite)
    return meta


def convert_stylegan2(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    which: str = "g_ema",
    overwrite: bool = False,
    obj=None,
) -> dict[str, Any]:
    """Converts a rosinality / stylegan2-ada / TF StyleGAN2 file; returns the written config."""
    src = str(src)
    wanted = NETWORK_NAMES if which == "all" else (which,)
    if any(w not in NETWORK_NAMES for w in wanted):
        raise ValueError(f"--which must be one of {NETWORK_NAMES + ('all',)}, got {which!r}")
    nets = stylegan2.read_networks(src, obj)
    networks, variables = {}, {}
    for name in wanted:
        if nets.get(name) is None:
            if which == "all":
                continue
            raise CheckpointError(
                f"{src}: has no '{name}' network (this {nets['format']} file "
                f"holds: {[n for n in NETWORK_NAMES if nets.get(n) is not None]})"
            )
        kind = "discriminator" if name == "d" else "generator"
        config = nets["d_config"] if name == "d" else nets["g_config"]
        variables[name] = stylegan2.convert_network(nets[name], config, kind, src, name)
        networks[name] = {"kind": kind, "config": config}
    meta = {
        "family": "stylegan2",
        "format": nets["format"],
        "source": os.path.abspath(src),
        "networks": networks,
    }
    if nets["notes"]:
        meta["notes"] = nets["notes"]
    save_model(out_dir, variables, meta, overwrite=overwrite)
    return meta
