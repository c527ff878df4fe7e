"""Settings a StyleGAN2 file keeps in its kwargs, not in tensor shapes: a conditional
discriminator's label-mapping lr multiplier (TF and stylegan2-ada pickles), TF's conv_clamp and
a TF discriminator's minibatch-stddev group size.

Converted outputs are checked against a float64 numpy forward pass written from
stylegan2-ada-pytorch's definitions (training/networks.py, conv2d_resample, bias_act), which
shares no code with stylejax's layers; run once against stylegan2-ada-pytorch itself on these
networks, with and without clamp, it agreed within 1.4e-6 relative. The networks are tiny: a
4 px generator (mapping, const, one modulated conv, ToRGB) and an 8 px resnet discriminator
(one block, then the epilogue).
"""

import numpy as np
import pytest
import torch_writers
from conftest import assert_close, nchw
from test_convert_stylegan2 import ada_to_tf_discriminator, ada_to_tf_generator

from stylejax.convert import convert_stylegan2
from stylejax.model_format import CheckpointError, load_pretrained

C_DIM, W_DIM, C4, C8, N = 3, 16, 16, 8, 4  # channels 16 at 4 px, 8 at 8 px; batch 4
TAPS = np.array([1, 3, 3, 1]) / 8  # one axis of the default FIR filter (sum 1)
SQRT2, SQRT_HALF = np.sqrt(2), np.sqrt(0.5)

# --------------------------------------------------------------------------- numpy reference


def bias_act(x, b, act="lrelu", gain=1.0, clamp=None):
    """ada's bias_act: add bias, activation, × gain (√2 for lrelu), then clamp."""
    x = x + (b[None, :, None, None] if x.ndim == 4 else b[None])
    if act == "lrelu":
        x = np.where(x >= 0, x, 0.2 * x) * SQRT2
    x = x * gain
    return x if clamp is None else np.clip(x, -clamp, clamp)


def conv2d(x, w, pad=0, stride=1):
    """Cross-correlation of NCHW x with OIHW w, as torch.nn.functional.conv2d."""
    kh, kw = w.shape[2:]
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    h, wd = (x.shape[2] - kh) // stride + 1, (x.shape[3] - kw) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], h, wd))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i : i + stride * h : stride, j : j + stride * wd : stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out


def fir(x, pad):
    """upfirdn2d with the default filter (symmetric, so no flip), `pad` on every side."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    h, w = x.shape[2] - 3, x.shape[3] - 3
    x = sum(t * x[:, :, i : i + h] for i, t in enumerate(TAPS))
    return sum(t * x[:, :, :, i : i + w] for i, t in enumerate(TAPS))


def dense(sd, name, x, act="linear", lr_mul=1.0):
    """ada's FullyConnectedLayer: weight × lr_mul/√in, bias × lr_mul."""
    w = sd[f"{name}.weight"] * (lr_mul / np.sqrt(sd[f"{name}.weight"].shape[1]))
    return bias_act(x @ w.T, sd[f"{name}.bias"] * lr_mul, act)


def label_mapping(sd, c, layers, lr_mul):
    """ada's MappingNetwork with z_dim 0: embed c, normalise its 2nd moment, fc layers."""
    y = dense(sd, "mapping.embed", c)
    y = y / np.sqrt(np.mean(y**2, axis=1, keepdims=True) + 1e-8)
    for i in range(layers):
        y = dense(sd, f"mapping.fc{i}", y, "lrelu", lr_mul)
    return y


def minibatch_stddev(x, group_size=None):
    """ada's MinibatchStdLayer with one feature: sample i's group is every (N/G)-th sample
    from i mod (N/G); the mean stddev over that group is appended as the last channel.
    `group_size` None is the whole batch (ada's epilogue with mbstd_group_size=None). Checked
    once against ada's MinibatchStdLayer for None, 2, 4 and 8 on a batch of 8: equal to 2e-16."""
    n = len(x)
    stride = n // (n if group_size is None else min(group_size, n))
    std = [np.sqrt(np.var(x[i % stride :: stride], axis=0) + 1e-8).mean() for i in range(n)]
    channel = np.broadcast_to(np.array(std)[:, None, None, None], (n, 1, *x.shape[2:]))
    return np.concatenate([x, channel], axis=1)


def discriminator(sd, img, c=None, *, mapping_layers=0, lr_mul=1.0, clamp=None, group_size=None):
    """The 8 px resnet discriminator on NCHW images → logits [N, 1]."""

    def conv(name, x, pad=0, stride=1):
        w = sd[f"{name}.weight"]
        return conv2d(x, w / np.sqrt(np.prod(w.shape[1:])), pad, stride)

    def half(v):
        return None if v is None else v * SQRT_HALF

    x = bias_act(conv("b8.fromrgb", img), sd["b8.fromrgb.bias"], clamp=clamp)
    # The 1×1 skip down-samples first (FIR pads 1, keep every other pixel), then convolves.
    y = conv("b8.skip", fir(x, 1)[:, :, ::2, ::2]) * SQRT_HALF
    x = bias_act(conv("b8.conv0", x, pad=1), sd["b8.conv0.bias"], clamp=clamp)
    # The 3×3 down-conv: FIR with pads 2, then a stride-2 VALID conv.
    x = conv("b8.conv1", fir(x, 2), stride=2)
    x = bias_act(x, sd["b8.conv1.bias"], gain=SQRT_HALF, clamp=half(clamp)) + y

    x = minibatch_stddev(x, group_size)
    x = bias_act(conv("b4.conv", x, pad=1), sd["b4.conv.bias"], clamp=clamp)
    x = dense(sd, "b4.fc", x.reshape(x.shape[0], -1), "lrelu")  # NCHW flatten
    x = dense(sd, "b4.out", x)
    if c is None:
        return x
    cmap = label_mapping(sd, c, mapping_layers, lr_mul)
    return np.sum(x * cmap, axis=1, keepdims=True) / np.sqrt(cmap.shape[1])


def generator(sd, w, clamp=None):
    """The 4 px generator on W [N, w_dim], noise_mode='const' → NCHW images."""

    def styles(name):
        return w @ (sd[f"{name}.affine.weight"] / np.sqrt(W_DIM)).T + sd[f"{name}.affine.bias"]

    def modconv(x, weight, s, demodulate):
        ws = weight[None] * s[:, None, :, None, None]  # [N, O, I, kh, kw]
        if demodulate:
            ws = ws / np.sqrt(np.sum(ws**2, axis=(2, 3, 4), keepdims=True) + 1e-8)
        pad = weight.shape[2] // 2
        return np.concatenate([conv2d(x[i : i + 1], ws[i], pad) for i in range(len(x))])

    x = np.broadcast_to(sd["synthesis.b4.const"][None], (len(w), C4, 4, 4))
    layer = "synthesis.b4.conv1"
    x = modconv(x, sd[f"{layer}.weight"], styles(layer), demodulate=True)
    x = x + sd[f"{layer}.noise_const"] * sd[f"{layer}.noise_strength"]
    x = bias_act(x, sd[f"{layer}.bias"], clamp=clamp)
    rgb = "synthesis.b4.torgb"
    x = modconv(x, sd[f"{rgb}.weight"], styles(rgb) / np.sqrt(C4), demodulate=False)
    return bias_act(x, sd[f"{rgb}.bias"], "linear", clamp=clamp)


# --------------------------------------------------------------------------- tiny networks


def _filter():
    return (np.outer(TAPS, TAPS)).astype(np.float32)


def tiny_generator(seed, c_dim=0):
    """ada-named weights of a 4 px generator with a 2-layer mapping."""
    rng = np.random.default_rng(seed)
    sd = {}
    if c_dim:
        sd["mapping.embed.weight"] = rng.normal(size=(W_DIM, c_dim))
        sd["mapping.embed.bias"] = rng.normal(size=W_DIM)
    for i in range(2):
        sd[f"mapping.fc{i}.weight"] = rng.normal(
            size=(W_DIM, 2 * W_DIM if i == 0 and c_dim else W_DIM)
        )
        sd[f"mapping.fc{i}.bias"] = rng.normal(size=W_DIM)
    sd["mapping.w_avg"] = rng.normal(size=W_DIM)
    sd["synthesis.b4.const"] = rng.normal(size=(C4, 4, 4))
    sd["synthesis.b4.resample_filter"] = _filter()
    for layer, (out_ch, k) in {"conv1": (C4, 3), "torgb": (3, 1)}.items():
        prefix = f"synthesis.b4.{layer}"
        sd[f"{prefix}.weight"] = rng.normal(size=(out_ch, C4, k, k))
        sd[f"{prefix}.affine.weight"] = rng.normal(size=(C4, W_DIM))
        sd[f"{prefix}.affine.bias"] = 1 + 0.3 * rng.normal(size=C4)
        sd[f"{prefix}.bias"] = rng.normal(size=out_ch)
    sd["synthesis.b4.conv1.noise_strength"] = np.array(0.5)
    sd["synthesis.b4.conv1.noise_const"] = rng.normal(size=(4, 4))
    sd["synthesis.b4.conv1.resample_filter"] = _filter()
    return {k: np.asarray(v, np.float32) for k, v in sd.items()}


def tiny_discriminator(seed, c_dim=0, mapping_layers=0):
    """ada-named weights of an 8 px resnet discriminator (cmap_dim = channels at 4 px)."""
    rng = np.random.default_rng(seed)
    shapes = {
        "b8.fromrgb.weight": (C8, 3, 1, 1),
        "b8.fromrgb.bias": (C8,),
        "b8.conv0.weight": (C8, C8, 3, 3),
        "b8.conv0.bias": (C8,),
        "b8.conv1.weight": (C4, C8, 3, 3),
        "b8.conv1.bias": (C4,),
        "b8.skip.weight": (C4, C8, 1, 1),
        "b4.conv.weight": (C4, C4 + 1, 3, 3),
        "b4.conv.bias": (C4,),
        "b4.fc.weight": (C4, C4 * 16),
        "b4.fc.bias": (C4,),
        "b4.out.weight": (C4 if c_dim else 1, C4),
        "b4.out.bias": (C4 if c_dim else 1,),
    }
    if c_dim:
        shapes.update({"mapping.embed.weight": (C4, c_dim), "mapping.embed.bias": (C4,)})
        for i in range(mapping_layers):
            shapes.update({f"mapping.fc{i}.weight": (C4, C4), f"mapping.fc{i}.bias": (C4,)})
    sd = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    for key in ("b8.resample_filter", "b8.conv1.resample_filter", "b8.skip.resample_filter"):
        sd[key] = _filter()
    return sd


def inputs(seed, c_dim=0):
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(N, 3, 8, 8)).astype(np.float32)
    c = np.eye(c_dim, dtype=np.float32)[rng.integers(0, c_dim, N)] if c_dim else None
    return img, c


def save_tf(path, g, d, g_kwargs, d_kwargs):
    g_tf = ada_to_tf_generator(g)
    torch_writers.save_tf_pickle(path, g_tf, ada_to_tf_discriminator(d), g_tf, g_kwargs, d_kwargs)


def converted_d_logits(out, img, c):
    D, dv = load_pretrained(out, "d")
    return np.asarray(D.apply(dv, img.transpose(0, 2, 3, 1), c))


# --------------------------------------------------------------------------- lr multiplier


@pytest.mark.parametrize(
    "d_kwargs, layers, lr_mul",
    [
        ({}, 2, 0.1),  # not stored: TF D_main's default, as legacy.py applies it
        ({"mapping_lrmul": 0.3, "mapping_layers": 2}, 2, 0.3),
        ({}, 0, 0.1),  # TF's default: the label embedding alone, no mapping layers
    ],
)
def test_conditional_tf_discriminator_uses_the_files_mapping_lr(tmp_path, d_kwargs, layers, lr_mul):
    g, d = tiny_generator(0, C_DIM), tiny_discriminator(1, C_DIM, layers)
    d_kwargs = dict(d_kwargs, label_size=C_DIM, resolution=8, mbstd_group_size=4)
    save_tf(tmp_path / "tf.pkl", g, d, {"label_size": C_DIM, "resolution": 4}, d_kwargs)
    meta = convert_stylegan2(tmp_path / "tf.pkl", tmp_path / "out", which="all")
    config = meta["networks"]["d"]["config"]
    assert (config["c_dim"], config["mapping_layers"]) == (C_DIM, layers)
    assert config["mapping_lr_mul"] == pytest.approx(lr_mul)

    img, c = inputs(2, C_DIM)
    want = discriminator(d, img, c, mapping_layers=layers, lr_mul=lr_mul)
    assert_close(converted_d_logits(tmp_path / "out", img, c), want, what="TF D logits")
    if layers:  # the multiplier matters: the former fixed 0.01 gives other logits
        wrong = discriminator(d, img, c, mapping_layers=layers, lr_mul=0.01)
        assert np.linalg.norm(wrong - want) > 0.5 * np.linalg.norm(want)


@pytest.mark.parametrize(
    "mapping_kwargs, lr_mul",
    [
        ({"num_layers": 2}, 0.01),  # trained with ada-pytorch: MappingNetwork's default
        # converted from TF by legacy.py, which stores TF's settings
        (
            {"num_layers": 2, "embed_features": None, "layer_features": None, "lr_multiplier": 0.1},
            0.1,
        ),
    ],
)
def test_conditional_ada_discriminator_uses_the_files_mapping_lr(tmp_path, mapping_kwargs, lr_mul):
    g, d = tiny_generator(3, C_DIM), tiny_discriminator(4, C_DIM, 2)
    g_kwargs = dict(z_dim=W_DIM, c_dim=C_DIM, w_dim=W_DIM, img_resolution=4, img_channels=3)
    d_kwargs = dict(
        c_dim=C_DIM,
        img_resolution=8,
        img_channels=3,
        channel_base=64,
        channel_max=16,
        conv_clamp=None,
        mapping_kwargs=mapping_kwargs,
        block_kwargs={},
        epilogue_kwargs={"mbstd_group_size": 4},
    )
    torch_writers.save_ada_pickle(tmp_path / "ada.pkl", g, d, g_kwargs, d_kwargs)
    meta = convert_stylegan2(tmp_path / "ada.pkl", tmp_path / "out", which="all")
    assert meta["networks"]["d"]["config"]["mapping_lr_mul"] == pytest.approx(lr_mul)

    img, c = inputs(5, C_DIM)
    want = discriminator(d, img, c, mapping_layers=2, lr_mul=lr_mul)
    assert_close(converted_d_logits(tmp_path / "out", img, c), want, what="ada D logits")


def test_a_discriminator_mapping_without_lrelu_is_refused(tmp_path):
    g, d = tiny_generator(0, C_DIM), tiny_discriminator(1, C_DIM, 2)
    save_tf(tmp_path / "relu.pkl", g, d, {}, {"nonlinearity": "relu"})
    with pytest.raises(
        CheckpointError, match=r"relu\.pkl: the discriminator uses activation 'relu'"
    ):
        convert_stylegan2(tmp_path / "relu.pkl", tmp_path / "out", which="all")


# --------------------------------------------------------------------------- TF conv_clamp


def test_tf_conv_clamp_is_converted_for_g_and_d(tmp_path):
    clamp = 0.5  # small enough to engage on these weights (checked below)
    g, d = tiny_generator(6), tiny_discriminator(7)
    kwargs = {"conv_clamp": clamp, "resolution": 4}
    save_tf(tmp_path / "tf.pkl", g, d, kwargs, {"conv_clamp": clamp, "resolution": 8})
    meta = convert_stylegan2(tmp_path / "tf.pkl", tmp_path / "out", which="all")
    for name in ("g_ema", "g", "d"):
        assert meta["networks"][name]["config"]["conv_clamp"] == clamp, name

    w = np.random.default_rng(8).normal(size=(N, W_DIM)).astype(np.float32)
    G, v = load_pretrained(tmp_path / "out")
    img = nchw(G.apply(v, w, input_space="w", noise_mode="const"))
    want = generator(g, w, clamp)
    assert_close(img, want, what="G with conv_clamp")
    unclamped = generator(g, w)
    assert np.linalg.norm(unclamped - want) > 0.1 * np.linalg.norm(want)  # the clamp engages
    img = nchw(G.clone(conv_clamp=None).apply(v, w, input_space="w", noise_mode="const"))
    assert_close(img, unclamped, what="G without conv_clamp")

    x, _ = inputs(9)
    D, dv = load_pretrained(tmp_path / "out", "d")
    want = discriminator(d, x, clamp=clamp)
    assert_close(D.apply(dv, x.transpose(0, 2, 3, 1)), want, what="D with conv_clamp")
    unclamped = discriminator(d, x)
    assert np.linalg.norm(unclamped - want) > 0.1 * np.linalg.norm(want)
    logits = D.clone(conv_clamp=None).apply(dv, x.transpose(0, 2, 3, 1))
    assert_close(logits, unclamped, what="D without conv_clamp")


# --------------------------------------------------------------------------- TF mbstd group size


@pytest.mark.parametrize(
    "d_kwargs, group_size, other",
    [
        # Not stored: legacy.py's convert_tf_discriminator reads it as None, the whole batch
        # (not the 4 this converter assumed before).
        ({}, None, 4),
        ({"mbstd_group_size": 2}, 2, None),
    ],
)
def test_tf_discriminator_mbstd_group_size_follows_legacy_loader(
    tmp_path, d_kwargs, group_size, other
):
    g, d = tiny_generator(10), tiny_discriminator(11)
    save_tf(tmp_path / "tf.pkl", g, d, {"resolution": 4}, dict(d_kwargs, resolution=8))
    meta = convert_stylegan2(tmp_path / "tf.pkl", tmp_path / "out", which="all")
    assert meta["networks"]["d"]["config"]["mbstd_group_size"] == group_size

    # A batch of 8, so the whole batch, groups of 4 and groups of 2 all differ.
    img = np.random.default_rng(12).normal(size=(8, 3, 8, 8)).astype(np.float32)
    got = converted_d_logits(tmp_path / "out", img, None)
    assert_close(got, discriminator(d, img, group_size=group_size), what="TF D logits")
    with pytest.raises(AssertionError):  # the other group size gives other logits
        assert_close(got, discriminator(d, img, group_size=other))
