"""StyleGAN2 weight import: rosinality `.pt`, stylegan2-ada-pytorch `.pkl`, NVIDIA TF `.pkl`.

Every format is first renamed into stylegan2-ada-pytorch's flat state-dict names and
PyTorch layouts (the rules of ada-pytorch's `legacy.py` and rosinality's
`convert_weight.py`, see shared/reference/FORMATS.md §2), then one table turns that into
the Flax tree of `stylejax.models.stylegan2`. Architecture hyper-parameters are read
from tensor shapes (and, where shapes cannot tell, from the kwargs the file stores); the FIR
filters from the stored kernels (used when the models can represent them, refused naming
them otherwise); a missing w_avg (rosinality train.py files) is estimated as rosinality's
mean_latent(4096), and the output says so.
"""

import re
from typing import Any

import numpy as np

from stylejax import model_format
from stylejax.convert import common, readers
from stylejax.model_format import CheckpointError
from stylejax.models import stylegan2 as sg

# Buffers that are not weights: FIR filters (read into the config's resample_taps by
# resample_taps) and TF's progressive-growing lod.
_IGNORED = re.compile(r"(^|\.)(resample_filter|kernel)$|^lod$")
DEFAULT_TAPS = [1, 3, 3, 1]
# w_avg of a file without one: rosinality's mean_latent(4096) (generate.py's default).
W_AVG_SAMPLES = 4096


# ---------------------------------------------------------------------------------------
# rosinality → ada names


def rosinality_to_ada_generator(sd: dict[str, np.ndarray], latent_avg=None) -> dict:
    out = {}
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in sd:
        out[f"mapping.fc{n_mlp}.weight"] = sd[f"style.{n_mlp + 1}.weight"]
        out[f"mapping.fc{n_mlp}.bias"] = sd[f"style.{n_mlp + 1}.bias"]
        n_mlp += 1
    if latent_avg is not None:
        out["mapping.w_avg"] = np.asarray(latent_avg).reshape(-1)

    def modconv(src, dst, noise_key=None):
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        if noise_key is None:  # ToRGB
            out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(-1)
            return
        out[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"].reshape(())
        out[f"{dst}.bias"] = sd[f"{src}.activate.bias"]
        if noise_key in sd:
            out[f"{dst}.noise_const"] = sd[noise_key][0, 0]

    out["synthesis.b4.const"] = sd["input.input"][0]
    modconv("conv1", "synthesis.b4.conv1", "noises.noise_0")
    modconv("to_rgb1", "synthesis.b4.torgb")
    i = 0
    while f"convs.{2 * i}.conv.weight" in sd:
        log2 = i + 3
        r = 2**log2
        modconv(f"convs.{2 * i}", f"synthesis.b{r}.conv0", f"noises.noise_{2 * log2 - 5}")
        modconv(f"convs.{2 * i + 1}", f"synthesis.b{r}.conv1", f"noises.noise_{2 * log2 - 4}")
        modconv(f"to_rgbs.{i}", f"synthesis.b{r}.torgb")
        i += 1
    return out


def rosinality_to_ada_discriminator(sd: dict[str, np.ndarray]) -> dict:
    out = {}
    n_blocks = 0
    while f"convs.{n_blocks + 1}.conv1.0.weight" in sd:
        n_blocks += 1
    top = 2 ** (n_blocks + 2)
    out[f"b{top}.fromrgb.weight"] = sd["convs.0.0.weight"]
    out[f"b{top}.fromrgb.bias"] = sd["convs.0.1.bias"]
    for k in range(1, n_blocks + 1):
        r = top // 2 ** (k - 1)
        out[f"b{r}.conv0.weight"] = sd[f"convs.{k}.conv1.0.weight"]
        out[f"b{r}.conv0.bias"] = sd[f"convs.{k}.conv1.1.bias"]
        out[f"b{r}.conv1.weight"] = sd[f"convs.{k}.conv2.1.weight"]
        out[f"b{r}.conv1.bias"] = sd[f"convs.{k}.conv2.2.bias"]
        out[f"b{r}.skip.weight"] = sd[f"convs.{k}.skip.1.weight"]
    out["b4.conv.weight"] = sd["final_conv.0.weight"]
    out["b4.conv.bias"] = sd["final_conv.1.bias"]
    out["b4.fc.weight"] = sd["final_linear.0.weight"]
    out["b4.fc.bias"] = sd["final_linear.0.bias"]
    out["b4.out.weight"] = sd["final_linear.1.weight"]
    out["b4.out.bias"] = sd["final_linear.1.bias"]
    return out


# ---------------------------------------------------------------------------------------
# TensorFlow → ada names (legacy.py's rules: transpose, flip Conv0_up, +1 on mod_bias)


def _tf_conv(w, flip=False):
    w = np.asarray(w)
    if flip:
        w = w[::-1, ::-1]
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1))


def tf_to_ada_generator(tf: dict[str, np.ndarray]) -> dict:
    out = {}
    for key, value in tf.items():
        m = re.fullmatch(r"mapping/Dense(\d+)/(weight|bias)", key)
        if m:
            out[f"mapping.fc{m[1]}.{m[2]}"] = value.T if m[2] == "weight" else value
            continue
        m = re.fullmatch(r"mapping/LabelEmbed/(weight|bias)", key)
        if m:
            out[f"mapping.embed.{m[1]}"] = value.T if m[1] == "weight" else value
            continue
        if key == "dlatent_avg":
            out["mapping.w_avg"] = value
            continue
        if key == "mapping/LabelConcat/weight":
            raise ValueError(
                "conditional TF StyleGAN2 generators with LabelConcat are not supported "
                "(stylegan2-ada's legacy.py does not support them either)"
            )
        m = re.fullmatch(r"synthesis/noise(\d+)", key)
        if m:
            j = int(m[1])
            log2 = (j + 5) // 2
            layer = "conv1" if j == 0 or j % 2 == 0 else "conv0"
            out[f"synthesis.b{2**log2}.{layer}.noise_const"] = value[0, 0]
            continue
        if key == "synthesis/4x4/Const/const":
            out["synthesis.b4.const"] = value[0]
            continue
        m = re.fullmatch(r"synthesis/(\d+)x\d+/(Conv|Conv0_up|Conv1|ToRGB|Skip)/(\w+)", key)
        if m:
            r, layer, var = m[1], m[2], m[3]
            name = {
                "Conv": "conv1",
                "Conv0_up": "conv0",
                "Conv1": "conv1",
                "ToRGB": "torgb",
                "Skip": "skip",
            }[layer]
            prefix = f"synthesis.b{r}.{name}"
            if var == "weight":
                out[f"{prefix}.weight"] = _tf_conv(value, flip=layer in ("Conv0_up", "Skip"))
            elif var == "mod_weight":
                out[f"{prefix}.affine.weight"] = value.T
            elif var == "mod_bias":
                out[f"{prefix}.affine.bias"] = value + 1
            elif var in ("bias", "noise_strength"):
                out[f"{prefix}.{var}"] = value
            else:
                raise KeyError(key)
            continue
        if not _IGNORED.search(key):
            raise KeyError(key)
    return {k: np.array(v, np.float32) for k, v in out.items()}


def tf_to_ada_discriminator(tf: dict[str, np.ndarray]) -> dict:
    out = {}
    for key, value in tf.items():
        m = re.fullmatch(r"(\d+)x\d+/(FromRGB|Conv0|Conv1_down|Skip)/(weight|bias)", key)
        if m:
            name = {"FromRGB": "fromrgb", "Conv0": "conv0", "Conv1_down": "conv1", "Skip": "skip"}
            out[f"b{m[1]}.{name[m[2]]}.{m[3]}"] = _tf_conv(value) if m[3] == "weight" else value
            continue
        m = re.fullmatch(r"FromRGB_lod(\d+)/(weight|bias)", key)
        if m:
            raise ValueError(
                "TF discriminators of the 'orig' architecture (FromRGB_lod*) are not "
                "supported; expected a resnet or skip discriminator"
            )
        m = re.fullmatch(r"4x4/(Conv|Dense0)/(weight|bias)", key)
        if m:
            name = "conv" if m[1] == "Conv" else "fc"
            if m[2] == "bias":
                out[f"b4.{name}.bias"] = value
            else:
                out[f"b4.{name}.weight"] = _tf_conv(value) if name == "conv" else value.T
            continue
        m = re.fullmatch(r"Output/(weight|bias)", key)
        if m:
            out[f"b4.out.{m[1]}"] = value.T if m[1] == "weight" else value
            continue
        m = re.fullmatch(r"(LabelEmbed|Mapping(\d+))/(weight|bias)", key)
        if m:
            name = "embed" if m[1] == "LabelEmbed" else f"fc{m[2]}"
            out[f"mapping.{name}.{m[3]}"] = value.T if m[3] == "weight" else value
            continue
        if not _IGNORED.search(key):
            raise KeyError(key)
    return {k: np.array(v, np.float32) for k, v in out.items()}


# ---------------------------------------------------------------------------------------
# Hyper-parameters from shapes


def generator_config(sd: dict, **overrides) -> dict[str, Any]:
    """Generator kwargs read from an ada-named state dict; overrides fill what shapes can't."""
    n_mlp = sum(1 for k in sd if re.fullmatch(r"mapping\.fc\d+\.weight", k))
    blocks = sorted({int(m[1]) for k in sd if (m := re.match(r"synthesis\.b(\d+)\.", k))})
    if not n_mlp or not blocks:
        raise KeyError("mapping.fc0.weight / synthesis.b4.*")
    res = blocks[-1]
    channels = [sd["synthesis.b4.const"].shape[0]]
    channels += [sd[f"synthesis.b{r}.conv1.weight"].shape[0] for r in blocks[1:]]
    embed = sd.get("mapping.embed.weight")
    c_dim = 0 if embed is None else embed.shape[1]
    fc0_in = sd["mapping.fc0.weight"].shape[1]
    z_dim = fc0_in - (embed.shape[0] if embed is not None else 0)
    has_all_torgb = all(f"synthesis.b{r}.torgb.weight" in sd for r in blocks)
    config = dict(
        z_dim=int(z_dim),
        c_dim=int(c_dim),
        w_dim=int(sd[f"mapping.fc{n_mlp - 1}.weight"].shape[0]),
        img_resolution=int(res),
        img_channels=int(sd[f"synthesis.b{res}.torgb.weight"].shape[0]),
        channels=[int(c) for c in channels],
        mapping_layers=int(n_mlp),
        architecture="skip" if has_all_torgb else "resnet",
        mapping_lr_mul=0.01,
        conv_clamp=None,
        w_avg_beta=0.995,
    )
    config.update(overrides)
    return config


def discriminator_config(sd: dict, **overrides) -> dict[str, Any]:
    blocks = sorted({int(m[1]) for k in sd if (m := re.match(r"b(\d+)\.", k))})
    res = blocks[-1]
    channels = {4: sd["b4.conv.weight"].shape[0]}
    for r in blocks[1:]:
        channels[r] = sd[f"b{r}.conv0.weight"].shape[0]
    mbstd_channels = sd["b4.conv.weight"].shape[1] - channels[4]
    n_map = sum(1 for k in sd if re.fullmatch(r"mapping\.fc\d+\.weight", k))
    embed = sd.get("mapping.embed.weight")
    config = dict(
        c_dim=0 if embed is None else int(embed.shape[1]),
        img_resolution=int(res),
        img_channels=int(sd[f"b{res}.fromrgb.weight"].shape[1]),
        channels=[int(channels[r]) for r in sorted(channels)],
        architecture="resnet" if f"b{res}.skip.weight" in sd else "skip",
        conv_clamp=None,
        mbstd_group_size=4,
        mbstd_num_channels=int(mbstd_channels),
        cmap_dim=None if embed is None else int(sd["b4.out.weight"].shape[0]),
        # Label mapping layers after the embedding: NVIDIA's TF networks default to none.
        mapping_layers=int(n_map) if embed is not None else 8,
        mapping_lr_mul=0.01,
    )
    config.update(overrides)
    return config


# ---------------------------------------------------------------------------------------
# Stored FIR filters and w_avg: what shapes can't tell either


def resample_taps(filters: dict[str, Any], gain: float, source: str, what: str) -> list:
    """The 1-D taps behind a network's stored FIR filters ({file name: filter}), which the
    models take as `resample_taps`; [1, 3, 3, 1] when the file stores none.

    A filter is the outer product of the taps normalised to sum 1, times `gain` (rosinality
    folds the up-sampling gain 4 into its generator's kernels), or the 1-D taps themselves
    (stylegan2-ada stores filters of 8 taps or more separably). Filters the models cannot
    run exactly are refused, naming the filter: not separable, scaled otherwise, or not
    the same in every layer.
    """
    found = None
    for name, value in filters.items():
        f = np.asarray(value, np.float64) / gain
        shown = np.asarray(value, np.float64).round(6).tolist()
        if f.ndim not in (1, 2) or not np.isclose(f.sum(), 1, rtol=1e-5, atol=0):
            raise CheckpointError(
                f"{source}: the {what}'s FIR filter {name} = {shown} is not a filter of sum "
                f"{gain:g}: stylejax cannot represent it"
            )
        taps = f if f.ndim == 1 else f.sum(axis=0)
        if f.ndim == 2 and not np.allclose(np.outer(taps, taps), f, rtol=1e-5, atol=1e-7):
            raise CheckpointError(
                f"{source}: the {what}'s FIR filter {name} = {shown} is not separable (the "
                f"outer product of one set of 1-D taps with itself): stylejax models take "
                f"1-D taps (resample_taps) and cannot represent it"
            )
        if found is None:
            found = name, shown, taps
        elif found[2].shape != taps.shape or not np.allclose(found[2], taps, rtol=1e-5, atol=1e-7):
            raise CheckpointError(
                f"{source}: the {what}'s FIR filters differ between layers ({found[0]} = "
                f"{found[1]}, {name} = {shown}): stylejax models use one filter per network"
            )
    if found is None:
        return list(DEFAULT_TAPS)
    taps = found[2]
    # Proportional to small integers (the usual [1, 3, 3, 1], [1, 2, 1] …): keep those.
    scaled = taps / taps[0] if taps[0] else taps
    if np.allclose(scaled, np.round(scaled), rtol=0, atol=1e-4):
        return [int(t) for t in np.round(scaled)]
    return [float(t) for t in taps]


def stored_filters(networks: dict[str, dict | None], suffix: str) -> dict[str, np.ndarray]:
    """{'net.key': filter} of the entries ending with `suffix` in the given state dicts."""
    return {
        f"{net}.{key}": value
        for net, sd in networks.items()
        if sd is not None
        for key, value in sd.items()
        if key.endswith(suffix)
    }


def tf_filters(static_kwargs: dict) -> dict[str, np.ndarray]:
    """TF's `resample_kernel` kwarg as the filter TF builds from it (outer product, sum 1)."""
    kernel = static_kwargs.get("resample_kernel")
    if kernel is None:
        return {}
    f = np.asarray(kernel, np.float64)
    f = np.outer(f, f) if f.ndim == 1 else f
    return {"resample_kernel": f / f.sum()}


def estimate_w_avg(sd: dict, config: dict, n: int = W_AVG_SAMPLES, seed: int = 0) -> np.ndarray:
    """rosinality's `mean_latent(n)`: the mean of the mapping of n seeded z ~ N(0, I)."""
    import jax

    mapping = sg.MappingNetwork(
        config["z_dim"],
        0,
        config["w_dim"],
        None,
        num_layers=config["mapping_layers"],
        lr_mul=config["mapping_lr_mul"],
        w_avg_beta=None,
    )
    params = ada_to_flax({k: v for k, v in sd.items() if k.startswith("mapping.fc")})["params"]
    z = jax.random.normal(jax.random.PRNGKey(seed), (n, config["z_dim"]))
    w = jax.jit(mapping.apply)({"params": params["mapping"]}, z)
    return np.asarray(w.mean(axis=0), np.float32)


# ---------------------------------------------------------------------------------------
# ada names → Flax tree


def ada_to_flax(sd: dict[str, np.ndarray]) -> dict:
    """Maps ada-named tensors to {'params': …, 'buffers': …} nested dicts."""
    params, buffers = {}, {}
    for key, value in sd.items():
        if _IGNORED.search(key):
            continue
        *path, leaf = key.split(".")
        value = np.asarray(value)
        if leaf in ("w_avg", "noise_const"):
            common.set_leaf(buffers, path + [leaf], value)
        elif leaf == "const":
            common.set_leaf(params, path + [leaf], value.transpose(1, 2, 0))
        elif leaf == "weight" and value.ndim == 4:
            common.set_leaf(params, path + [leaf], common.oihw_to_hwio(value))
        elif leaf == "weight" and path[-1] == "fc" and path[0] == "b4":
            # Dense after an NCHW flatten: reorder the input axis to our NHWC flatten.
            out_f, in_f = value.shape
            c = in_f // 16
            w = value.T.reshape(c, 4, 4, out_f).transpose(1, 2, 0, 3).reshape(in_f, out_f)
            common.set_leaf(params, path + [leaf], w)
        elif leaf == "weight":
            common.set_leaf(params, path + [leaf], value.T)
        else:
            common.set_leaf(params, path + [leaf], value)
    return {"params": params, "buffers": buffers}


# ---------------------------------------------------------------------------------------
# Whole files


def detect_format(obj) -> str:
    if (
        isinstance(obj, tuple)
        and len(obj) == 3
        and all(isinstance(o, readers.TFNetwork) for o in obj)
    ):
        return "tf"
    if (
        isinstance(obj, dict)
        and "G_ema" in obj
        and isinstance(obj["G_ema"], readers.PersistentModule)
    ):
        return "ada"
    if isinstance(obj, dict) and "g_ema" in obj and isinstance(obj["g_ema"], dict):
        return "rosinality"
    return "unknown"


def read_networks(path: str, obj=None) -> dict[str, Any]:
    """Loads a StyleGAN2 file of any supported format into ada-named state dicts
    (`obj`: the file's already loaded contents, to avoid reading it twice).

    Returns {'format', 'g_ema', 'g', 'd' (state dicts or None), 'g_config', 'd_config',
    'notes' (lines saying what was estimated rather than read)}.
    """
    obj = readers.load_checkpoint(path) if obj is None else obj
    fmt = detect_format(obj)
    nets: dict[str, Any] = {"format": fmt}
    try:
        if fmt == "rosinality":
            latent_avg = obj.get("latent_avg")
            for name in ("g_ema", "g"):
                sd = obj.get(name)
                nets[name] = None if sd is None else rosinality_to_ada_generator(sd, latent_avg)
            nets["d"] = None if obj.get("d") is None else rosinality_to_ada_discriminator(obj["d"])
            # rosinality folds the up-sampling gain 4 into its generator's Blur/Upsample kernels.
            g_filters = stored_filters({n: obj.get(n) for n in ("g_ema", "g")}, ".kernel")
            d_filters = stored_filters({"d": obj.get("d")}, ".kernel")
            g_over = dict(resample_taps=resample_taps(g_filters, 4, path, "generator"))
            d_over = dict(resample_taps=resample_taps(d_filters, 1, path, "discriminator"))
        elif fmt == "ada":
            nets["g_ema"] = readers.module_state_dict(obj["G_ema"])
            nets["g"] = readers.module_state_dict(obj["G"]) if obj.get("G") is not None else None
            nets["d"] = readers.module_state_dict(obj["D"]) if obj.get("D") is not None else None
            d_kwargs = readers.module_init_kwargs(obj["D"]) if nets["d"] else {}
            g_over, d_over = ada_overrides(readers.module_init_kwargs(obj["G_ema"]), d_kwargs)
            d_mapping = d_kwargs.get("mapping_kwargs") or {}
            refuse_other_activation(d_mapping.get("activation"), path, "discriminator's mapping")
            g_filters = stored_filters({"G_ema": nets["g_ema"], "G": nets["g"]}, "resample_filter")
            d_filters = stored_filters({"D": nets["d"]}, "resample_filter")
            g_over["resample_taps"] = resample_taps(g_filters, 1, path, "generator")
            d_over["resample_taps"] = resample_taps(d_filters, 1, path, "discriminator")
        elif fmt == "tf":
            g, d, gs = obj
            nets["g_ema"] = tf_to_ada_generator(readers.tf_variables(gs))
            nets["g"] = tf_to_ada_generator(readers.tf_variables(g))
            nets["d"] = tf_to_ada_discriminator(readers.tf_variables(d))
            g_kw, d_kw = readers.tf_static_kwargs(gs), readers.tf_static_kwargs(d)
            g_over = dict(
                mapping_lr_mul=float(g_kw.get("mapping_lrmul", 0.01)),
                w_avg_beta=float(g_kw.get("dlatent_avg_beta", 0.995)),
                conv_clamp=g_kw.get("conv_clamp"),
            )
            # TF's D_main defaults, as legacy.py's convert_tf_discriminator applies them to
            # every TF pickle it accepts (version >= 4): label mapping lrmul 0.1, and no stored
            # mbstd_group_size means None, one group of the whole minibatch (StyleGAN2-TF's
            # own D_stylegan2 defaulted to 4, but legacy.py, our reference, reads it as None).
            group = d_kw.get("mbstd_group_size")
            d_over = dict(
                mbstd_group_size=None if group is None else int(group),
                conv_clamp=d_kw.get("conv_clamp"),
                mapping_lr_mul=float(d_kw.get("mapping_lrmul", 0.1)),
            )
            refuse_other_activation(d_kw.get("nonlinearity"), path, "discriminator")
            g_over["resample_taps"] = resample_taps(tf_filters(g_kw), 1, path, "generator")
            d_over["resample_taps"] = resample_taps(tf_filters(d_kw), 1, path, "discriminator")
        else:
            raise CheckpointError(
                f"{path}: not a StyleGAN2 checkpoint: expected a rosinality .pt (dict with g_ema), "
                f"a stylegan2-ada-pytorch .pkl (dict with G_ema) or an NVIDIA TF .pkl (tuple G, D, "
                f"Gs), found {common.describe(obj)}"
            )
        nets["g_config"] = generator_config(nets["g_ema"], **g_over)
        nets["d_config"] = discriminator_config(nets["d"], **d_over) if nets["d"] else None
        nets["notes"] = []
        if fmt == "rosinality" and obj.get("latent_avg") is None:  # e.g. train.py checkpoints
            for name in ("g_ema", "g"):
                if nets[name] is not None:
                    nets[name]["mapping.w_avg"] = estimate_w_avg(nets[name], nets["g_config"])
            nets["notes"].append(
                f"no latent_avg in the file: w_avg estimated as the mean of the mapping over "
                f"{W_AVG_SAMPLES} seeded z (rosinality's mean_latent({W_AVG_SAMPLES}))"
            )
    except KeyError as e:
        raise CheckpointError(
            f"{path}: {fmt} StyleGAN2 checkpoint is missing or has an unexpected tensor {e}"
        ) from None
    return nets


def ada_overrides(g_kwargs: dict, d_kwargs: dict) -> tuple[dict, dict]:
    """What shapes can't tell, from ada's stored constructor kwargs (with its defaults)."""
    syn = dict(g_kwargs.get("synthesis_kwargs") or {})
    syn.update({k: v for k, v in g_kwargs.items() if k in ("conv_clamp", "architecture")})
    mapping = g_kwargs.get("mapping_kwargs") or {}
    g_over = dict(
        conv_clamp=syn.get("conv_clamp"),
        mapping_lr_mul=float(mapping.get("lr_multiplier", 0.01)),
        w_avg_beta=float(mapping.get("w_avg_beta", 0.995)),
    )
    epi = d_kwargs.get("epilogue_kwargs") or {}
    d_mapping = d_kwargs.get("mapping_kwargs") or {}
    d_over = dict(
        conv_clamp=d_kwargs.get("conv_clamp"),
        mbstd_group_size=epi.get("mbstd_group_size", 4),
        mbstd_num_channels=int(epi.get("mbstd_num_channels", 1)),
        mapping_lr_mul=float(d_mapping.get("lr_multiplier", 0.01)),
    )
    return g_over, d_over


def refuse_other_activation(activation, source: str, what: str) -> None:
    """stylejax's StyleGAN2 layers implement lrelu only: refuse a file built otherwise."""
    if activation not in (None, "lrelu"):
        raise CheckpointError(
            f"{source}: the {what} uses activation {activation!r}; stylejax's StyleGAN2 "
            f"models implement 'lrelu' only"
        )


def expected_variables(module, kind: str) -> dict:
    """Shapes of a freshly initialised module (no compute: jax.eval_shape)."""
    import jax
    import jax.numpy as jnp

    def init(rng):
        if kind == "generator":
            z = jnp.zeros((1, module.z_dim))
            c = jnp.zeros((1, module.c_dim)) if module.c_dim else None
            return sg.init_variables(module, rng, z, c)
        img = jnp.zeros((1, module.img_resolution, module.img_resolution, module.img_channels))
        c = jnp.zeros((1, module.c_dim)) if module.c_dim else None
        return module.init(rng, img, c)

    return jax.eval_shape(init, jax.random.PRNGKey(0))


def convert_network(sd: dict, config: dict, kind: str, source: str, what: str) -> dict:
    """ada-named state dict → checked Flax variables for the model `config` describes."""
    module = model_format.build(kind, config)
    tree = ada_to_flax(sd)
    if not tree["buffers"]:
        tree.pop("buffers")
    expected = expected_variables(module, kind)
    missing_noise = common.check_against_model(tree, expected, source, what)
    if missing_noise:
        # No stored noise in the file: keep deterministic fresh noise so 'const' mode works.
        import jax

        fresh = jax.jit(
            lambda r: sg.init_variables(
                module,
                r,
                *(
                    [np.zeros((1, module.z_dim), np.float32)]
                    + ([np.zeros((1, module.c_dim), np.float32)] if module.c_dim else [])
                ),
            )
        )(jax.random.PRNGKey(0))
        for key in missing_noise:
            parts = key.split("/")
            node = fresh
            for p in parts:
                node = node[p]
            common.set_leaf(tree, parts, np.asarray(node))
    return tree
