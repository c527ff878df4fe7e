"""StyleGAN2 model behaviour: API, truncation, mixing, noise, architectures, config-f size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch_writers

from stylejax.convert import convert_stylegan2
from stylejax.model_format import load_pretrained
from stylejax.models import stylegan2 as sg

TINY = dict(z_dim=16, w_dim=16, img_resolution=16, channels=(32, 16, 8), mapping_layers=2)


def n_params(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


@pytest.fixture(scope="module")
def tiny():
    G = sg.Generator(**TINY)
    variables = jax.jit(lambda r: sg.init_variables(G, r, jnp.zeros((1, 16))))(
        jax.random.PRNGKey(0)
    )
    # A non-zero w_avg and noise strengths so truncation and noise have visible effects.
    variables = jax.tree_util.tree_map(lambda x: x, variables)  # a copy we may edit
    variables["buffers"]["mapping"]["w_avg"] = jnp.linspace(-1, 1, 16)
    params = variables["params"]["synthesis"]
    for block in params.values():
        for layer in ("conv0", "conv1"):
            if layer in block:
                block[layer]["noise_strength"] = jnp.asarray(0.5)
    z = jax.random.normal(jax.random.PRNGKey(1), (4, 16))
    return G, variables, z


def test_z_w_and_wplus_inputs_agree(tiny):
    G, v, z = tiny
    img_z, ws = G.apply(v, z, noise_mode="const", return_latents=True)
    assert img_z.shape == (4, 16, 16, 3) and ws.shape == (4, G.num_ws, 16) == (4, 6, 16)
    np.testing.assert_allclose(ws[:, 0], ws[:, -1])  # z → one w broadcast to every layer
    img_w = G.apply(v, ws[:, 0], input_space="w", noise_mode="const")
    img_wp = G.apply(v, ws, input_space="w+", noise_mode="const")
    np.testing.assert_allclose(img_w, img_z, atol=1e-6)
    np.testing.assert_allclose(img_wp, img_z, atol=1e-6)
    with pytest.raises(ValueError, match=r"W\+ input must be \[N, 6, 16\]"):
        G.apply(v, ws[:, :3], input_space="w+")
    with pytest.raises(ValueError, match="input_space"):
        G.apply(v, z, input_space="s")


def test_truncation_and_cutoff(tiny):
    G, v, z = tiny
    w_avg = v["buffers"]["mapping"]["w_avg"]
    ws = G.apply(v, z, method=G.map)
    ws0 = G.apply(v, z, truncation_psi=0.0, method=G.map)
    np.testing.assert_allclose(ws0, jnp.broadcast_to(w_avg, ws.shape), atol=1e-6)
    half = G.apply(v, z, truncation_psi=0.5, truncation_cutoff=2, method=G.map)
    np.testing.assert_allclose(half[:, :2], w_avg + 0.5 * (ws[:, :2] - w_avg), atol=1e-6)
    np.testing.assert_allclose(half[:, 2:], ws[:, 2:])
    # Truncation applies in W+ as well (e.g. to encoder outputs).
    _, trunc_ws = G.apply(
        v, ws, input_space="w+", truncation_psi=0.0, return_latents=True, noise_mode="none"
    )
    np.testing.assert_allclose(trunc_ws, ws0, atol=1e-6)


def test_style_mixing_per_sample(tiny):
    G, v, z = tiny
    z2 = jnp.flip(z, axis=0)
    idx = jnp.asarray([0, 2, 5, 6])
    _, ws = G.apply(v, z, mix_latents=z2, inject_index=idx, return_latents=True, noise_mode="none")
    ws1, ws2 = G.apply(v, z, method=G.map), G.apply(v, z2, method=G.map)
    for i, k in enumerate(idx):
        np.testing.assert_allclose(ws[i, :k], ws1[i, :k])
        np.testing.assert_allclose(ws[i, k:], ws2[i, k:])
    with pytest.raises(ValueError, match="inject_index"):
        G.apply(v, z, mix_latents=z2)


def test_w_avg_tracks_the_mapping_output(tiny):
    G, v, z = tiny
    _, updated = G.apply(v, z, update_w_avg=True, method=G.map, mutable=["buffers"])
    w = G.apply(v, z, method=G.map)[:, 0]
    old = v["buffers"]["mapping"]["w_avg"]
    want = w.mean(0) + 0.995 * (old - w.mean(0))
    np.testing.assert_allclose(updated["buffers"]["mapping"]["w_avg"], want, atol=1e-6)


def test_noise_modes(tiny):
    G, v, z = tiny
    const = [G.apply(v, z, noise_mode="const") for _ in range(2)]
    np.testing.assert_array_equal(const[0], const[1])
    r1 = G.apply(v, z, noise_mode="random", rngs={"noise": jax.random.PRNGKey(1)})
    r2 = G.apply(v, z, noise_mode="random", rngs={"noise": jax.random.PRNGKey(2)})
    none = G.apply(v, z, noise_mode="none")
    assert float(jnp.abs(r1 - r2).mean()) > 1e-3 and float(jnp.abs(const[0] - none).mean()) > 1e-3
    zero = jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.zeros_like(x) if "noise_strength" in jax.tree_util.keystr(p) else x, v
    )
    np.testing.assert_allclose(G.apply(zero, z, noise_mode="const"), none, atol=1e-6)
    with pytest.raises(ValueError, match="noise_mode"):
        G.apply(v, z, noise_mode="fixed")


def test_random_noise_is_independent_per_layer():
    """The two convs of a block must not share a noise draw (a bug of earlier JAX ports)."""
    x = jnp.zeros((1, 8, 8, 4))
    w = jnp.zeros((1, 8))

    class Two(sg.nn.Module):
        @sg.nn.compact
        def __call__(self, x, w):
            a = sg.SynthesisLayer(4, 8, name="conv0")(x, w, "random")
            b = sg.SynthesisLayer(4, 8, name="conv1")(x, w, "random")
            return a, b

    two = Two()
    v = two.init({"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)}, x, w)
    v = jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.ones_like(x) if "noise_strength" in jax.tree_util.keystr(p) else x, v
    )
    a, b = two.apply(v, x, w, rngs={"noise": jax.random.PRNGKey(3)})
    assert not np.allclose(a, b)


def test_conditional_generator_needs_labels():
    G = sg.Generator(**dict(TINY, c_dim=3))
    c = jax.nn.one_hot(jnp.arange(2), 3)
    v = sg.init_variables(G, jax.random.PRNGKey(0), jnp.zeros((2, 16)), c)
    assert v["params"]["mapping"]["embed"]["weight"].shape == (3, 16)
    assert v["params"]["mapping"]["fc0"]["weight"].shape == (32, 16)
    with pytest.raises(ValueError, match="conditional"):
        G.apply(v, jnp.zeros((2, 16)))


@pytest.mark.parametrize("g_arch,d_arch", [("resnet", "skip"), ("skip", "resnet")])
def test_architectures_build_and_run(g_arch, d_arch):
    G = sg.Generator(**dict(TINY, architecture=g_arch))
    v = sg.init_variables(G, jax.random.PRNGKey(0), jnp.zeros((2, 16)))
    img = G.apply(v, jnp.ones((2, 16)), noise_mode="const")
    synth = v["params"]["synthesis"]
    assert ("skip" in synth["b16"]) == (g_arch == "resnet")
    assert ("torgb" in synth["b8"]) == (g_arch == "skip")
    D = sg.Discriminator(img_resolution=16, channels=(32, 16, 8), architecture=d_arch)
    dv = D.init(jax.random.PRNGKey(1), img)
    assert ("fromrgb" in dv["params"]["b8"]) == (d_arch == "skip")
    logits = D.apply(dv, img)
    assert logits.shape == (2, 1) and bool(jnp.all(jnp.isfinite(logits)))


def test_bad_configs_are_explained():
    with pytest.raises(ValueError, match="power of two"):
        sg.channels_from_base(48)
    G = sg.Generator(**dict(TINY, channels=(32, 16)))
    with pytest.raises(ValueError, match=r"one count per resolution 4…16 \(3 values\)"):
        sg.init_variables(G, jax.random.PRNGKey(0), jnp.zeros((1, 16)))
    D = sg.Discriminator(img_resolution=16, channels=(32, 16, 8))
    with pytest.raises(ValueError, match=r"expects images \[N, 16, 16, 3\] \(NHWC\)"):
        D.init(jax.random.PRNGKey(0), jnp.zeros((1, 3, 16, 16)))


def test_channel_rules():
    assert sg.channels_from_base(1024) == (512, 512, 512, 512, 512, 256, 128, 64, 32)
    assert sg.rosinality_channels(1024, 2) == sg.channels_from_base(1024)
    assert sg.rosinality_channels(256, 1) == (512, 512, 512, 512, 256, 128, 64)


# --------------------------------------------------------------------------- config-f


def test_config_f_parameter_counts():
    """The published config-f trainable counts (G 30,370,060; D 29,012,513)."""
    G, D = sg.Generator(), sg.Discriminator()
    g = jax.eval_shape(
        lambda r: sg.init_variables(G, r, jnp.zeros((1, 512))), jax.random.PRNGKey(0)
    )
    d = jax.eval_shape(lambda r: D.init(r, jnp.zeros((1, 1024, 1024, 3))), jax.random.PRNGKey(0))
    assert n_params(g["params"]) == 30_370_060
    assert n_params(d["params"]) == 29_012_513
    assert G.num_ws == 18 and n_params(g["buffers"]) == 512 + sum(
        r * r * (1 if r == 4 else 2) for r in sg.resolutions(1024)
    )


def rosinality_config_f(rng):
    """A full-size config-f checkpoint in rosinality's layout (random values), built from
    that code base's module structure, independently of the converter's name map."""
    ch = dict(zip(sg.resolutions(1024), sg.rosinality_channels(1024, 2)))
    f = lambda *shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
    kernel = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32) / 64
    g = {}
    for i in range(1, 9):
        g[f"style.{i}.weight"], g[f"style.{i}.bias"] = f(512, 512), f(512)

    def styled_conv(name, cin, cout, up):
        g[f"{name}.conv.weight"] = f(1, cout, cin, 3, 3)
        g[f"{name}.conv.modulation.weight"], g[f"{name}.conv.modulation.bias"] = f(cin, 512), f(cin)
        if up:
            g[f"{name}.conv.blur.kernel"] = kernel * 4
        g[f"{name}.noise.weight"], g[f"{name}.activate.bias"] = f(1), f(cout)

    def to_rgb(name, cin, up):
        g[f"{name}.conv.weight"] = f(1, 3, cin, 1, 1)
        g[f"{name}.conv.modulation.weight"], g[f"{name}.conv.modulation.bias"] = f(cin, 512), f(cin)
        g[f"{name}.bias"] = f(1, 3, 1, 1)
        if up:
            g[f"{name}.upsample.kernel"] = kernel * 4

    g["input.input"] = f(1, 512, 4, 4)
    styled_conv("conv1", 512, 512, False)
    to_rgb("to_rgb1", 512, False)
    for i, r in enumerate(sg.resolutions(1024)[1:]):
        styled_conv(f"convs.{2 * i}", ch[r // 2], ch[r], True)
        styled_conv(f"convs.{2 * i + 1}", ch[r], ch[r], False)
        to_rgb(f"to_rgbs.{i}", ch[r], True)
    for j in range(17):
        side = 2 ** ((j + 5) // 2)
        g[f"noises.noise_{j}"] = f(1, 1, side, side)
    d = {"convs.0.0.weight": f(ch[1024], 3, 1, 1), "convs.0.1.bias": f(ch[1024])}
    for k, r in enumerate(sg.resolutions(1024)[:0:-1], start=1):
        c, c2 = ch[r], ch[r // 2]
        d[f"convs.{k}.conv1.0.weight"], d[f"convs.{k}.conv1.1.bias"] = f(c, c, 3, 3), f(c)
        d[f"convs.{k}.conv2.0.kernel"] = kernel
        d[f"convs.{k}.conv2.1.weight"], d[f"convs.{k}.conv2.2.bias"] = f(c2, c, 3, 3), f(c2)
        d[f"convs.{k}.skip.0.kernel"], d[f"convs.{k}.skip.1.weight"] = kernel, f(c2, c, 1, 1)
    d["final_conv.0.weight"], d["final_conv.1.bias"] = f(512, 513, 3, 3), f(512)
    d["final_linear.0.weight"], d["final_linear.0.bias"] = f(512, 512 * 16), f(512)
    d["final_linear.1.weight"], d["final_linear.1.bias"] = f(1, 512), f(1)
    return g, d


def test_config_f_full_size_checkpoint_converts_and_runs(tmp_path):
    g, d = rosinality_config_f(np.random.default_rng(0))
    assert len(g) == 171  # rosinality g_ema state entries at 1024 (FORMATS.md §2.2)
    torch_writers.save_torch_zip(
        tmp_path / "f.pt", {"g_ema": g, "d": d, "latent_avg": np.zeros(512, np.float32)}
    )
    meta = convert_stylegan2(tmp_path / "f.pt", tmp_path / "out", which="all")
    del g, d
    assert meta["networks"]["g_ema"]["config"]["channels"] == list(sg.channels_from_base(1024))
    G, gv = load_pretrained(tmp_path / "out")
    D, dv = load_pretrained(tmp_path / "out", "d")
    assert n_params(gv["params"]) == 30_370_060 and n_params(dv["params"]) == 29_012_513
    img = jax.jit(lambda v, z: G.apply(v, z, noise_mode="const"))(gv, jnp.ones((1, 512)))
    assert img.shape == (1, 1024, 1024, 3) and bool(jnp.all(jnp.isfinite(img)))
    logits = jax.jit(D.apply)(dv, img)
    assert logits.shape == (1, 1) and bool(jnp.all(jnp.isfinite(logits)))
