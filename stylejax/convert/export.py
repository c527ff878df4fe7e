"""Weight export: stylejax model folders → PyTorch `.pt` files, a StyleGAN2 folder as a
rosinality/stylegan2-pytorch checkpoint, pSp / e4e / ReStyle folders in their official layout.

    from stylejax.convert.export import to_rosinality
    to_rosinality("ffhq_ros", "ffhq.pt")   # {'g_ema', 'latent_avg'}, plus 'g' / 'd' if held

and then, in PyTorch, rosinality's model.py (which pSp, e4e and ReStyle load as well):

    g = Generator(size, style_dim, n_mlp, channel_multiplier)
    g.load_state_dict(torch.load("ffhq.pt")["g_ema"])

pSp, e4e and ReStyle model folders go back to the checkpoint their official coaches save
(`state_dict` with `encoder.*` / `decoder.*`, `opts`, `latent_avg`), which their code loads:

    to_psp("psp_ffhq", "psp_ffhq_encode.pt")

Each file is a `torch.save` zip archive written without torch (reference FORMATS.md §1.2,
the mirror image of readers.py). Names and layouts are the import run backwards: every
rosinality tensor is filled with its own element indices and sent through the import
(stylegan2.rosinality_to_ada_* then ada_to_flax); where each index lands says which
stylejax value goes back there, so the two directions cannot drift apart. The pSp
encoders' names are psp._flax_path's renames read backwards, their values found the same way
through psp.irse_to_flax.
"""

import collections
import io
import os
import pickle
import struct
import tempfile
import zipfile
from pathlib import Path

import jax
import numpy as np

from stylejax import model_format
from stylejax.convert import psp, stylegan2
from stylejax.models import stylegan2 as sg

__all__ = ["save_torch_zip", "to_psp", "to_rosinality"]

# ----------------------------------------------------------------------------------------
# rosinality state dicts: names and shapes in model.py's order, values by inverting the import


def _generator_layout(G) -> dict[str, tuple]:
    """rosinality Generator's state-dict names and shapes, in its registration order."""
    ch = dict(zip(sg.resolutions(G.img_resolution), G.channels))
    w, k = G.w_dim, len(G.resample_taps)
    layout = {}
    for i in range(1, G.mapping_layers + 1):
        layout |= {f"style.{i}.weight": (w, w), f"style.{i}.bias": (w,)}
    layout["input.input"] = (1, ch[4], 4, 4)

    def styled_conv(name, cin, cout, up):
        layout[f"{name}.conv.weight"] = (1, cout, cin, 3, 3)
        if up:
            layout[f"{name}.conv.blur.kernel"] = (k, k)
        layout[f"{name}.conv.modulation.weight"] = (cin, w)
        layout[f"{name}.conv.modulation.bias"] = (cin,)
        layout[f"{name}.noise.weight"] = (1,)
        layout[f"{name}.activate.bias"] = (cout,)

    def to_rgb(name, cin, up):
        layout[f"{name}.bias"] = (1, 3, 1, 1)
        if up:
            layout[f"{name}.upsample.kernel"] = (k, k)
        layout[f"{name}.conv.weight"] = (1, 3, cin, 1, 1)
        layout[f"{name}.conv.modulation.weight"] = (cin, w)
        layout[f"{name}.conv.modulation.bias"] = (cin,)

    styled_conv("conv1", ch[4], ch[4], up=False)
    to_rgb("to_rgb1", ch[4], up=False)
    upper = sg.resolutions(G.img_resolution)[1:]
    for i, r in enumerate(upper):
        styled_conv(f"convs.{2 * i}", ch[r // 2], ch[r], up=True)
        styled_conv(f"convs.{2 * i + 1}", ch[r], ch[r], up=False)
    for i, r in enumerate(upper):
        to_rgb(f"to_rgbs.{i}", ch[r], up=True)
    for j in range(2 * len(upper) + 1):
        side = 2 ** ((j + 5) // 2)
        layout[f"noises.noise_{j}"] = (1, 1, side, side)
    return layout


def _discriminator_layout(D) -> dict[str, tuple]:
    """rosinality Discriminator's state-dict names and shapes, in its registration order."""
    res = sg.resolutions(D.img_resolution)
    ch = dict(zip(res, D.channels))
    k, top = len(D.resample_taps), D.img_resolution
    layout = {"convs.0.0.weight": (ch[top], 3, 1, 1), "convs.0.1.bias": (ch[top],)}
    for i, r in enumerate(res[:0:-1], start=1):
        cin, cout = ch[r], ch[r // 2]
        layout |= {
            f"convs.{i}.conv1.0.weight": (cin, cin, 3, 3),
            f"convs.{i}.conv1.1.bias": (cin,),
            f"convs.{i}.conv2.0.kernel": (k, k),
            f"convs.{i}.conv2.1.weight": (cout, cin, 3, 3),
            f"convs.{i}.conv2.2.bias": (cout,),
            f"convs.{i}.skip.0.kernel": (k, k),
            f"convs.{i}.skip.1.weight": (cout, cin, 1, 1),
        }
    c4 = ch[4]
    return layout | {
        "final_conv.0.weight": (c4, c4 + 1, 3, 3),
        "final_conv.1.bias": (c4,),
        "final_linear.0.weight": (c4, c4 * 16),
        "final_linear.0.bias": (c4,),
        "final_linear.1.weight": (1, c4),
        "final_linear.1.bias": (1,),
    }


def _fir_kernel(taps, gain: float) -> np.ndarray:
    """rosinality's make_kernel(taps) x gain, in float32 as it computes it."""
    k = np.asarray(taps, np.float32)
    k = np.outer(k, k)
    return k / k.sum() * np.float32(gain)


def _flat(tree, prefix=()) -> dict[str, np.ndarray]:
    if isinstance(tree, dict):
        return {p: v for key, sub in tree.items() for p, v in _flat(sub, prefix + (key,)).items()}
    return {"/".join(prefix): np.asarray(tree)}


def _invert(layout: dict, forward, variables, source: str, limit: int = 2**24) -> dict:
    """The tensors of `layout` (name → shape, the official file's) holding stylejax
    `variables`, where `forward` is the import (official state dict → Flax tree). Every
    element's place in the layout (all tensors back to back) is sent through `forward` as
    float32 probes, one per base-`limit` digit: float32 holds integers below 2**24 exactly,
    so any tensor size comes back exact. Tensors the import never reads (FIR kernels) stay
    absent."""
    assert 2 <= limit <= 2**24, limit
    names, shapes = list(layout), list(layout.values())
    starts = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
    total = int(starts[-1])
    places = [1]
    while places[-1] * limit < total:
        places.append(places[-1] * limit)
    where = {}  # Flax path → each element's place in the layout
    for place in places:
        probe = {
            n: (np.arange(a, b) // place % limit).astype(np.float32).reshape(s)
            for n, s, a, b in zip(names, shapes, starts, starts[1:])
        }
        for path, digit in _flat(forward(probe)).items():
            where[path] = where.get(path, 0) + digit.astype(np.int64) * place
    values = _flat(variables)
    if set(values) != set(where):
        raise ValueError(
            f"{source}: the variables do not match the official layout: missing "
            f"{sorted(set(where) - set(values))[:6]}, unexpected {sorted(set(values) - set(where))[:6]}"
        )
    out = np.zeros(total, np.float32)
    for path, value in values.items():
        if value.shape != where[path].shape:
            raise ValueError(
                f"{source}: {path} has shape {value.shape}, the official layout gives "
                f"{where[path].shape}"
            )
        out[where[path].ravel()] = np.asarray(value, np.float32).ravel()
    hits = np.bincount(np.concatenate([w.ravel() for w in where.values()]), minlength=total)
    sd = {}
    for n, s, a, b in zip(names, shapes, starts, starts[1:]):
        # The import is a pure re-arrangement: each element read once, or a tensor not read.
        assert (hits[a:b] == 1).all() or not hits[a:b].any(), f"{n} is read partly or twice"
        if hits[a:b].any():
            sd[n] = out[a:b].reshape(s)
    return sd


def _refuse_unless(module, wanted: dict, source: str):
    """ValueError naming each setting of `module` that rosinality's model cannot express."""
    problems = [
        f"{field}={getattr(module, field)!r} ({why})"
        for field, (ok, why) in wanted.items()
        if not ok(getattr(module, field))
    ]
    if problems:
        raise ValueError(
            f"{source} has no rosinality/stylegan2-pytorch equivalent: " + "; ".join(problems)
        )


def rosinality_generator(G, variables, source: str) -> tuple[dict, np.ndarray]:
    """(rosinality Generator state dict, latent_avg) of a stylejax generator."""
    _refuse_unless(
        G,
        {
            "c_dim": (lambda v: v == 0, "rosinality's Generator takes no labels"),
            "architecture": (lambda v: v == "skip", "rosinality's Generator is skip-only"),
            "img_channels": (lambda v: v == 3, "rosinality's ToRGB writes 3 channels"),
            "z_dim": (lambda v: v == G.w_dim, "rosinality has one style_dim for z and w"),
            "mapping_lr_mul": (lambda v: v == 0.01, "rosinality's lr_mlp is 0.01"),
            "conv_clamp": (lambda v: v is None, "rosinality has no activation clamp"),
        },
        source,
    )
    layout = _generator_layout(G) | {"latent_avg": (G.w_dim,)}

    def forward(sd):
        return stylegan2.ada_to_flax(stylegan2.rosinality_to_ada_generator(sd, sd["latent_avg"]))

    sd = _invert(layout, forward, variables, source)
    latent_avg = sd.pop("latent_avg")
    # The import drops the FIR kernels; rosinality folds the up-sampling gain 4 into them.
    kernel = _fir_kernel(G.resample_taps, 4)
    full = {n: sd[n] if n in sd else kernel.copy() for n in layout if n != "latent_avg"}
    return collections.OrderedDict(full), latent_avg


def rosinality_discriminator(D, variables, source: str) -> dict:
    """rosinality Discriminator state dict of a stylejax discriminator."""
    _refuse_unless(
        D,
        {
            "c_dim": (lambda v: v == 0, "rosinality's Discriminator takes no labels"),
            "architecture": (lambda v: v == "resnet", "rosinality's Discriminator is resnet-only"),
            "img_channels": (lambda v: v == 3, "rosinality's FromRGB reads 3 channels"),
            "conv_clamp": (lambda v: v is None, "rosinality has no activation clamp"),
            "mbstd_group_size": (lambda v: v == 4, "rosinality's stddev_group is 4"),
            "mbstd_num_channels": (lambda v: v == 1, "rosinality's stddev_feat is 1"),
        },
        source,
    )
    layout = _discriminator_layout(D)

    def forward(sd):
        return stylegan2.ada_to_flax(stylegan2.rosinality_to_ada_discriminator(sd))

    sd = _invert(layout, forward, variables, source)
    kernel = _fir_kernel(D.resample_taps, 1)
    return collections.OrderedDict((n, sd[n] if n in sd else kernel.copy()) for n in layout)


def to_rosinality(model_dir, out_path, overwrite: bool = False) -> dict:
    """Writes the StyleGAN2 model folder `model_dir` (converted or trained here) as a
    rosinality checkpoint `out_path`: {'g_ema', 'latent_avg'} plus 'g' and 'd' when the
    folder holds them. Returns what rosinality's Generator needs to load it: {'networks',
    'size', 'style_dim', 'n_mlp', 'channels', 'channel_multiplier' (None when the channels
    follow no multiplier), 'blur_kernel'}.

    Raises ValueError (naming the setting) for a network rosinality's model cannot express:
    conditioning, a resnet generator, activation clamping, other minibatch-stddev groups …
    """
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} already exists; pass --overwrite to replace it")
    meta = model_format.read_config(model_dir)
    networks = meta["networks"]
    if meta.get("family") != "stylegan2" or "g_ema" not in networks:
        raise ValueError(
            f"{model_dir}: expected a StyleGAN2 model folder with a g_ema network, found "
            f"family {meta.get('family')!r} with networks {sorted(networks)}"
        )
    ckpt = {}
    for name in ("g_ema", "g", "d"):
        if name not in networks:
            continue
        module, variables = model_format.load_pretrained(model_dir, name)
        variables = jax.tree_util.tree_map(np.asarray, variables)
        source = f"{model_dir}: network {name!r}"
        if name == "d":
            ckpt["d"] = rosinality_discriminator(module, variables, source)
            continue
        ckpt[name], latent_avg = rosinality_generator(module, variables, source)
        if name == "g_ema":
            ckpt["latent_avg"] = latent_avg
            G = module
    save_torch_zip(ckpt, out_path)
    multipliers = [
        m
        for m in (1, 2, 4, 8)
        if G.img_resolution <= 1024
        and sg.rosinality_channels(G.img_resolution, m, G.channels[0]) == tuple(G.channels)
    ]
    return {
        "networks": list(ckpt),
        "size": G.img_resolution,
        "style_dim": G.w_dim,
        "n_mlp": G.mapping_layers,
        "channels": list(G.channels),
        "channel_multiplier": multipliers[0] if multipliers else None,
        "blur_kernel": list(G.resample_taps),
    }


# ----------------------------------------------------------------------------------------
# pSp / e4e / ReStyle: the official coaches' checkpoint, the pSp import (convert/psp.py) run back

_PSP_FAMILIES = ("psp", "e4e", "restyle")
_TORCH_BN_LEAF = {flax: name for name, flax in psp._BN_LEAVES.items()}
# torch's state_dict lists a module's own parameters, then its buffers, then its children,
# each in the order __init__ registers them. This is that order among the names of the
# official encoders (pSp's psp_encoders.py and helpers.py, e4e's and ReStyle's encoders),
# which only ever compares siblings; numbered children (Sequential, ModuleList) go by index.
_REGISTRATION_ORDER = (
    *("weight", "bias", "running_mean", "running_var", "num_batches_tracked"),
    *("input_layer", "output_layer_2", "convs", "linear", "body", "styles"),
    *("latlayer1", "latlayer2", "shortcut_layer", "res_layer", "fc1", "fc2"),
)


def _registration_rank(name: str) -> list:
    """Sort key putting official encoder state-dict names in torch's registration order."""
    order = _REGISTRATION_ORDER
    return [
        (0, int(p), "") if p.isdigit() else (1, order.index(p) if p in order else len(order), p)
        for p in name.split(".")
    ]


def _official_module(path: tuple[str, ...]) -> str:
    """Flax module path → official key prefix: psp._flax_path's renames read backwards
    ('body_3', 'res_layer', 'se' → 'body.3.res_layer.5')."""
    out, rest = [], list(path)
    while rest:
        part = rest.pop(0)
        head, _, index = part.rpartition("_")
        if head in ("body", "styles") and index.isdigit():
            out += [head, index]
        elif head == "conv" and index.isdigit():
            out += ["convs", str(2 * int(index))]  # odd indices are the LeakyReLUs
        elif part in psp._SEQUENTIAL_NAMES:
            out += [part, str(psp._SEQUENTIAL_NAMES[part].index(rest.pop(0)))]
        else:
            out.append(part)
    return ".".join(out)


def _encoder_layout(variables) -> dict[str, tuple]:
    """Official encoder state-dict names and shapes of the stylejax encoder `variables`
    ({'params', 'batch_stats'}); torch layouts: conv OIHW, linear [out, in]."""
    layout = {}
    for path, value in _flat(variables).items():
        collection, *module, leaf = path.split("/")
        if (collection, leaf) in _TORCH_BN_LEAF:  # BatchNorm: scale/bias/mean/var
            leaf = _TORCH_BN_LEAF[collection, leaf]
        elif leaf == "kernel":
            leaf = "weight"
        shape = value.shape
        if len(shape) == 4:  # HWIO → OIHW
            shape = (shape[3], shape[2], shape[0], shape[1])
        elif len(shape) == 2:  # [in, out] → [out, in]
            shape = shape[::-1]
        layout[f"{_official_module(tuple(module))}.{leaf}"] = shape
    return layout


def psp_state_dict(model, variables, source: str) -> collections.OrderedDict:
    """The official `pSp.state_dict()` (e4e's and ReStyle's too) of a stylejax PSP / E4E /
    ReStyle model: `encoder.*` then `decoder.*`. BatchNorm's `num_batches_tracked`, which
    the import drops, comes back as a 0-d int64 tensor of 0 (eval-mode BatchNorm never
    reads it). Entries come in torch's registration order (_REGISTRATION_ORDER)."""
    encoder = {"params": variables["params"]["encoder"]}
    encoder["batch_stats"] = variables["batch_stats"]["encoder"]
    enc_sd = _invert(_encoder_layout(encoder), psp.irse_to_flax, encoder, source + " encoder")
    for name in [n for n in enc_sd if n.endswith(".running_var")]:
        enc_sd[name.removesuffix("running_var") + "num_batches_tracked"] = np.zeros((), np.int64)
    state = collections.OrderedDict(
        (f"encoder.{name}", enc_sd[name]) for name in sorted(enc_sd, key=_registration_rank)
    )
    decoder = {"params": variables["params"]["decoder"], "buffers": variables["buffers"]["decoder"]}
    dec_sd, _ = rosinality_generator(model.decoder, decoder, source + " decoder")
    state.update((f"decoder.{name}", value) for name, value in dec_sd.items())
    return state


def _psp_opts(family: str, config: dict) -> dict:
    """The options the file was converted with, or for a model trained here the ones the
    official loaders read."""
    if config.get("opts"):
        return dict(config["opts"])
    size = config["decoder"]["img_resolution"]
    opts = {"encoder_type": config["encoder_type"], "input_nc": config["input_nc"]}
    if family == "e4e":
        opts = {"encoder_type": config["encoder_type"], "stylegan_size": size}
    else:
        opts["output_size"] = size
    if family == "restyle":
        opts["n_iters_per_batch"] = config["n_iters"]
    else:
        opts["start_from_latent_avg"] = config["start_from_latent_avg"]
    if family == "psp":
        opts["learn_in_w"] = config.get("learn_in_w", False)
    return opts


def to_psp(model_dir, out_path, overwrite: bool = False) -> dict:
    """Writes the pSp, e4e or ReStyle model folder `model_dir` as the checkpoint the official
    coach saves: {'state_dict' (see psp_state_dict), 'opts' (a plain dict), 'latent_avg'
    (in the converted file's shape, else [n_styles, w_dim]; left out when the model does not
    start from it)}. Returns
    {'family', 'encoder_type', 'opts', 'keys' (the file's top-level keys)}."""
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} already exists; pass --overwrite to replace it")
    meta = model_format.read_config(model_dir)
    family = meta.get("family")
    if family not in _PSP_FAMILIES:
        raise ValueError(
            f"{model_dir}: expected a pSp, e4e or ReStyle model folder (family one of "
            f"{_PSP_FAMILIES}), found family {family!r}"
        )
    model, variables = model_format.load_pretrained(model_dir, family)
    variables = jax.tree_util.tree_map(np.asarray, variables)
    config = meta["networks"][family]["config"]
    # The official style blocks are sized for 256 px input; models trained here on smaller
    # images have fewer convs per block, which no official encoder class builds.
    official = {**config, "encoder": {**config["encoder"]}}
    official["encoder"].pop("block_spatial", None)
    default = getattr(model_format.build(family, official).encoder, "block_spatial", None)
    found = getattr(model.encoder, "block_spatial", None)
    if np.ravel(found).tolist() != np.ravel(default).tolist():
        raise ValueError(
            f"{model_dir}: has no official {family} equivalent: the encoder's style blocks "
            f"start at block_spatial={found!r}, the official encoder (256 px input) at "
            f"{default!r}"
        )
    opts = _psp_opts(family, config)
    ckpt = {"state_dict": psp_state_dict(model, variables, f"{model_dir}: network {family!r}")}
    ckpt["opts"] = opts
    if family == "restyle" or config.get("start_from_latent_avg", True):
        latent_avg = np.asarray(variables["buffers"]["latent_avg"], np.float32)
        shape = config.get("latent_avg_shape")  # the converted file's: [1, w] or [w] too
        if shape and np.prod(shape) < latent_avg.size and (latent_avg == latent_avg[0]).all():
            latent_avg = latent_avg[0].reshape(shape)
        ckpt["latent_avg"] = latent_avg
    save_torch_zip(ckpt, out_path)
    return {
        "family": family,
        "encoder_type": config["encoder_type"],
        "opts": opts,
        "keys": list(ckpt),
    }


# ----------------------------------------------------------------------------------------
# torch.save's zip archive, without torch


class _Global:
    """A name the pickle refers to (torch's own, which need not be importable here)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's REDUCE wants a callable; this one only names
        raise TypeError(f"{self.module}.{self.name} is written to pickles, not called")


_REBUILD_TENSOR = _Global("torch._utils", "_rebuild_tensor_v2")
# numpy dtype → torch storage class (readers.py's table, inverted; bfloat16 has no numpy dtype).
_STORAGE_TYPES = {
    np.dtype(dtype): _Global("torch", name)
    for name, dtype in {
        "DoubleStorage": "f8",
        "FloatStorage": "f4",
        "HalfStorage": "f2",
        "LongStorage": "i8",
        "IntStorage": "i4",
        "ShortStorage": "i2",
        "CharStorage": "i1",
        "ByteStorage": "u1",
        "BoolStorage": "?",
    }.items()
}


class _Storage:
    def __init__(self, array):
        self.array = array


class _TorchPickler(pickle._Pickler):  # the pure-Python pickler, to write torch's globals
    """Arrays → `_rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict())`, each
    with a storage of its own, written as the persistent id ('storage', type, key, 'cpu',
    numel) with keys '0', '1', … in first-seen order, as torch.save does."""

    def __init__(self, file):
        super().__init__(file, protocol=2)  # torch.save's DEFAULT_PROTOCOL
        self.storages = []

    def reducer_override(self, obj):
        if not isinstance(obj, np.ndarray):
            return NotImplemented
        if obj.dtype not in _STORAGE_TYPES:
            raise TypeError(f"cannot store a {obj.dtype} array as a torch tensor")
        array = np.array(obj, order="C")
        stride = tuple(s // array.itemsize for s in array.strides)
        args = (_Storage(array), 0, array.shape, stride, False, collections.OrderedDict())
        return _REBUILD_TENSOR, args

    def persistent_id(self, obj):
        if not isinstance(obj, _Storage):
            return None
        self.storages.append(obj.array)
        key = str(len(self.storages) - 1)
        return ("storage", _STORAGE_TYPES[obj.array.dtype], key, "cpu", obj.array.size)

    def save_torch_global(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, _Global: save_torch_global}


def save_torch_zip(obj, path):
    """Writes `obj` (dicts, lists, numbers, strings and numpy arrays as tensors) the way
    `torch.save` does since torch 1.6, atomically: the archive folder named after the
    file, data.pkl, one little-endian record per storage aligned to 64 bytes (for
    torch.load(mmap=True)), byteorder and version."""
    path = Path(path)
    buf = io.BytesIO()
    pickler = _TorchPickler(buf)
    pickler.dump(obj)
    records = [("data.pkl", buf.getvalue()), ("byteorder", b"little")]
    records += [
        (f"data/{key}", a.astype(a.dtype.newbyteorder("<")).tobytes())
        for key, a in enumerate(pickler.storages)
    ]
    records.append(("version", b"3\n"))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
            for name, data in records:
                info = zipfile.ZipInfo(f"{path.stem}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
                # Local header: 30 bytes, the name, then this extra field, then the data.
                start = f.tell() + 30 + len(info.filename.encode()) + 4
                info.extra = b"FB" + struct.pack("<H", -start % 64) + b"Z" * (-start % 64)
                zf.writestr(info, data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result should not be
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
