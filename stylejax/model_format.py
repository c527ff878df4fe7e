"""The stylejax model format: a folder with config.json (what each network is) and an orbax
checkpoint variables/ (its weights). Converted official checkpoints and the models every
trainer exports are written this way and loaded back the same way:

    from stylejax import model_format
    G, variables = model_format.load_pretrained("ffhq_f")      # g_ema by default
    model_format.save_model(out_dir, {"psp": variables}, meta)   # meta: see save_model

config.json holds {"family", "format", "source", "networks": {name: {"kind", "config"}}};
`kind` names the builder in BUILDERS that turns `config` into the Flax module.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from stylejax.models import e4e, inception, irse, l2m, lpips, restyle, sean
from stylejax.models import psp as psp_models
from stylejax.models import stylegan2 as sg

CONFIG_FILE = "config.json"
VARIABLES_DIR = "variables"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message names the file, the expected and the found."""


def _stylegan2(module_class):
    def build_stylegan2(config: dict):
        # JSON gives lists; modules keep tuples so that they stay hashable.
        tuples = {k: tuple(config[k]) for k in ("channels", "resample_taps") if k in config}
        return module_class(**{**config, **tuples})

    return build_stylegan2


def _psp(config: dict) -> psp_models.PSP:
    encoder = psp_models.build_encoder(config["encoder_type"], **config["encoder"])
    decoder = build("generator", config["decoder"])
    return psp_models.PSP(encoder, decoder, config["start_from_latent_avg"])


def _restyle(config: dict) -> restyle.ReStyle:
    encoder = restyle.build_encoder(config["encoder_type"], **config["encoder"])
    return restyle.ReStyle(encoder, build("generator", config["decoder"]))


def _e4e(config: dict) -> e4e.E4E:
    encoder = e4e.Encoder4Editing(**config["encoder"])
    decoder = build("generator", config["decoder"])
    return e4e.E4E(encoder, decoder, config["start_from_latent_avg"])


def _sean_discriminator(config: dict) -> sean.MultiscaleDiscriminator:
    # label_nc sizes the example input only: the module reads it from its input.
    return sean.MultiscaleDiscriminator(**{k: v for k, v in config.items() if k != "label_nc"})


def _arcface(config: dict) -> irse.Backbone:
    return irse.Backbone(**{k: v for k, v in config.items() if k != "input_nc"})


# Model kind (config.json's networks[name]["kind"]) → builder(config) → Flax module.
BUILDERS = {
    "generator": _stylegan2(sg.Generator),
    "discriminator": _stylegan2(sg.Discriminator),
    "psp": _psp,
    "arcface": _arcface,
    "lpips": lambda config: lpips.LPIPS(net=config["net"]),
    "inception": lambda config: inception.FIDInceptionV3(**config),
    "restyle": _restyle,
    "e4e": _e4e,
    "sean_generator": lambda config: sean.Generator(**config),
    "sean_discriminator": _sean_discriminator,
    "l2m": lambda config: l2m.L2MGAN(**config),
}


def build(kind: str, config: dict):
    """The Flax module of model `kind` described by `config` (as config.json stores it)."""
    if kind not in BUILDERS:
        raise CheckpointError(f"unknown model kind {kind!r}; known: {sorted(BUILDERS)}")
    return BUILDERS[kind](config)


def save_model(out_dir, variables: dict, meta: dict, overwrite: bool = False):
    """Writes meta as config.json and `variables` ({network name: variables}) as the orbax
    checkpoint into a temp dir, then renames it into place, so an interrupted or failed
    write never leaves a half-written out_dir."""
    import orbax.checkpoint as ocp

    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass --overwrite to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        tree = {name: _to_numpy(v) for name, v in variables.items()}
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(tmp / VARIABLES_DIR, tree)
        checkpointer.wait_until_finished()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result should not be
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_trained(out_dir, config, step: int, family: str, networks: dict, **extra) -> dict:
    """Writes networks trained here, {name: (kind, model config, variables)}, with the
    provenance every method's export records (method, variant, step); returns the meta."""
    meta = {
        "family": family,
        "format": "stylejax-train",
        "source": f"stylejax {config.method} ({config.variant or 'default'} variant), step {step}",
        **extra,
        "networks": {
            name: {"kind": kind, "config": cfg} for name, (kind, cfg, _) in networks.items()
        },
    }
    variables = {name: tree for name, (_, _, tree) in networks.items()}
    save_model(out_dir, variables, meta, overwrite=True)
    return meta


def _to_numpy(tree):
    if isinstance(tree, dict):
        return {k: _to_numpy(v) for k, v in tree.items()}
    return np.asarray(tree, np.float32)


def read_config(path) -> dict:
    """The parsed config.json of a model folder."""
    path = Path(path)
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise CheckpointError(
            f"{path}: not a converted stylejax checkpoint: expected "
            f"{CONFIG_FILE} and {VARIABLES_DIR}/ inside (make one with "
            f"tools/convert_weights.py)"
        )
    return json.loads(config_file.read_text())


def load_pretrained(path, which: str | None = None):
    """Loads a model folder: returns (flax module, variables) for network `which`
    (default: g_ema for StyleGAN2 files, the only network otherwise)."""
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    meta = read_config(path)
    if which is None:
        which = "g_ema" if "g_ema" in meta["networks"] else next(iter(meta["networks"]))
    if which not in meta["networks"]:
        raise CheckpointError(
            f"{path}: has no '{which}' network; it holds "
            f"{sorted(meta['networks'])} (convert with --which all)"
        )
    net = meta["networks"][which]
    module = build(net["kind"], net["config"])
    restored = ocp.StandardCheckpointer().restore(path / VARIABLES_DIR)
    return module, restored[which]


def load_kind(path, kind: str, hint: str = ""):
    """(module, variables) of the `kind` network (BUILDERS' names) in model folder `path`:
    for frozen networks a method loads from a config field. Errors name the path, what it
    holds instead, and `hint` (e.g. which file to convert, and how)."""
    hint = f" {hint}" if hint else ""
    if not path:
        raise FileNotFoundError(f"no {kind} model folder given.{hint}")
    path = Path(path)
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{path}: no converted checkpoint there ({CONFIG_FILE}).{hint}")
    networks = read_config(path)["networks"]
    names = [name for name, net in networks.items() if net["kind"] == kind]
    if not names:
        kinds = sorted({net["kind"] for net in networks.values()})
        raise ValueError(f"{path}: holds {kinds} networks, not a {kind}.{hint}")
    return load_pretrained(path, names[0])
