"""L2M-GAN and StarGAN v2 models: parity with the official code through the converter
(../shared/fixtures/l2m_s64.*), converter errors, and the decomposition's properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, fixture_file

from stylejax import model_format
from stylejax.convert import convert
from stylejax.convert import l2m as l2m_convert
from stylejax.convert.readers import load_checkpoint
from stylejax.model_format import CheckpointError, load_pretrained
from stylejax.models import fan, l2m, stargan_v2
from stylejax.nn import torch_ops

ALPHAS = (0.0, 0.5, 1.0, 1.25)


def nhwc(x):
    return np.asarray(x).transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def checkpoint():
    return load_checkpoint(fixture_file("l2m_s64.ckpt"))


@pytest.fixture(scope="module")
def converted(checkpoint):
    return l2m_convert.read_l2m("l2m_s64.ckpt", checkpoint)


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(fixture_file("l2m_s64_ref.npz")))


@pytest.fixture(scope="module")
def outputs(converted, ref):
    """Everything the parity tests compare, from one compiled function with one FAN and
    two generator instances (compiling them is most of this file's time)."""
    config, variables = converted
    model = model_format.build("l2m", config)

    def parts(m, x, y_src, y_trg, styles, mask0, mask1):
        s, s1, s2, s3 = m.encode(x, y_src, y_trg)
        fan_in = torch_ops.resize_bilinear(x, fan.INPUT_SIZE) * 0.5 + 0.5
        fan_out = m.fan(fan_in)
        heatmaps = torch_ops.resize_bilinear(
            fan_out[..., : fan.NUM_LANDMARKS], 256, align_corners=True
        )
        masks = fan.heatmap_masks(heatmaps)
        # The stored styles and masks at every α, then our own styles and masks at α = 1.
        k = len(ALPHAS)
        images = m.generate(
            jnp.tile(x, (k + 1, 1, 1, 1)),
            jnp.concatenate([styles.reshape(-1, styles.shape[-1]), s1 + s3]),
            (
                jnp.concatenate([jnp.tile(mask0, (k, 1, 1, 1)), masks[0]]),
                jnp.concatenate([jnp.tile(mask1, (k, 1, 1, 1)), masks[1]]),
            ),
        )
        images = images.reshape(k + 1, x.shape[0], *images.shape[1:])
        return {
            "style_s": s,
            "style_s1_irrelevant": s1,
            "style_s2_relevant": s2,
            "style_s3_transformed": s3,
            "style_all": m.style_encoder.styles(x),
            "s3_all": m.style_encoder.transform_all(s2),
            "edited": jnp.stack([l2m.edit_style(s1, s2, s3, a) for a in ALPHAS]),
            "images": images[:k],
            "end_to_end": images[k],
            "nomask": m.generate(x, styles[ALPHAS.index(1.0)]),
            "fan_in": fan_in,
            "fan_out": fan_out,
            "masks": masks,
        }

    @jax.jit
    def run(variables, *args):
        return model.apply(variables, *args, method=parts)

    styles = np.stack([ref[f"style_a{round(a * 100):03d}"] for a in ALPHAS])
    out = run(
        variables,
        nhwc(ref["x"]),
        ref["y_src"].astype(np.int32),
        ref["y_trg"].astype(np.int32),
        styles,
        nhwc(ref["mask0"]),
        nhwc(ref["mask1"]),
    )
    return jax.tree_util.tree_map(np.asarray, out)


def test_config_read_from_the_shapes(converted):
    config, variables = converted
    assert config == {
        "img_size": 64,
        "style_dim": 16,
        "num_domains": 2,
        "max_conv_dim": 64,
        "w_hpf": 1.0,
        "dim_in": None,
    }
    params = variables["params"]
    assert set(params) == {"generator", "style_encoder", "fan"}
    assert "attention" not in params["generator"] and "attention" not in params["style_encoder"]
    assert "conv1x1" not in params["generator"]["decode_4"]  # unused with w_hpf > 0
    assert params["style_encoder"]["transform2_1_4"]["kernel"].shape == (16, 16)
    assert params["fan"]["l0"]["kernel"].shape == (1, 1, 256, 99)
    assert params["fan"]["conv1"]["conv"]["kernel"].shape == (7, 7, 6, 64)
    n_fan = sum(np.size(v) for v in jax.tree_util.tree_leaves(params["fan"]))
    assert 6.2e6 < n_fan < 6.4e6  # the README's 6.33 M (running statistics aside)


@pytest.mark.parametrize(
    "key", ["style_s", "style_s1_irrelevant", "style_s2_relevant", "style_s3_transformed"]
)
def test_style_codes_and_parts(outputs, ref, key):
    assert_close(outputs[key], ref[key], rel=1e-5, max_abs=5e-5, what=key)


def test_every_head_and_transformer(outputs, ref):
    assert_close(outputs["style_all"], ref["style_all"], rel=1e-5, max_abs=5e-5, what="style_all")
    assert_close(outputs["s3_all"], ref["s3_all"], rel=1e-5, max_abs=5e-5, what="s3_all")


@pytest.mark.parametrize("i", range(len(ALPHAS)))
def test_edits_at_each_strength(outputs, ref, i):
    key = f"a{round(ALPHAS[i] * 100):03d}"
    assert_close(outputs["edited"][i], ref[f"style_{key}"], 1e-5, 5e-5, f"style_{key}")
    # The strict test: the generator fed the stored styles and masks.
    assert_close(outputs["images"][i], nhwc(ref[f"img_{key}"]), 1e-5, 2e-4, f"img_{key}")


def test_generator_without_masks(outputs, ref):
    assert_close(outputs["nomask"], nhwc(ref["img_nomask_a100"]), 1e-5, 2e-4, "img_nomask_a100")


def test_fan_heatmaps(outputs, ref):
    assert_close(outputs["fan_in"], nhwc(ref["fan_in"]), 1e-6, 1e-5, "fan_in (resize to 256)")
    assert_close(outputs["fan_out"], nhwc(ref["fan_out"]), 1e-5, 5e-5, "fan_out")


def test_masks(outputs, ref):
    for got, key in zip(outputs["masks"], ("mask0", "mask1")):
        want = nhwc(ref[key])
        # A few upsampled heatmap values sit within 1e-5 of the 0.1 threshold (README).
        assert np.sum(np.abs(got - want) > 1e-3) <= 8, key
        assert_close(got, want, rel=2e-5, max_abs=5e-2, what=key)


def test_end_to_end_edit(outputs, ref):
    assert_close(outputs["end_to_end"], nhwc(ref["img_a100"]), 2e-5, 5e-4, "x edited at α = 1")


def test_convert_and_load_pretrained(tmp_path, converted):
    meta = convert(fixture_file("l2m_s64.ckpt"), tmp_path / "l2m")
    assert meta["family"] == "l2m" and meta["networks"]["l2m"]["config"] == converted[0]
    model, variables = load_pretrained(tmp_path / "l2m")
    assert isinstance(model, l2m.L2MGAN) and model.w_hpf == 1.0
    got = jax.tree_util.tree_leaves(variables)
    want = jax.tree_util.tree_leaves(converted[1])
    assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want))


def test_detect_and_errors(checkpoint):
    assert l2m_convert.detect_format(checkpoint) == "l2m"
    assert l2m_convert.detect_format({"generator": {}, "style_encoder": {}}) == "unknown"
    with pytest.raises(CheckpointError, match="not an L2M-GAN checkpoint.*style_encoder"):
        l2m_convert.read_l2m("x.ckpt", {"g": {}})
    no_fan = {k: v for k, v in checkpoint.items() if k != "fan"}
    with pytest.raises(CheckpointError, match="x.ckpt.*w_hpf > 0.*no 'fan' entry"):
        l2m_convert.read_l2m("x.ckpt", no_fan)
    with pytest.raises(CheckpointError, match="w_hpf=0.0 does not match"):
        l2m_convert.read_l2m("x.ckpt", checkpoint, w_hpf=0.0)
    broken = dict(checkpoint, style_encoder=dict(checkpoint["style_encoder"]))
    broken["style_encoder"]["unshared.0.weight"] = np.zeros((16, 32), np.float32)
    with pytest.raises(CheckpointError, match=r"unshared_0/kernel.*\(32, 16\)"):
        l2m_convert.read_l2m("x.ckpt", broken)
    extra = dict(checkpoint, generator=dict(checkpoint["generator"]))
    extra["generator"]["decode.9.conv1.weight"] = np.zeros((4, 4, 3, 3), np.float32)
    with pytest.raises(CheckpointError, match="unexpected 1 tensors.*decode_9"):
        l2m_convert.read_l2m("x.ckpt", extra)


def test_flax_path():
    assert l2m_convert.flax_path("transform2.1.4.weight") == ["transform2_1_4", "weight"]
    assert l2m_convert.flax_path("conv2.downsample.0.bias") == ["conv2", "downsample_0", "bias"]
    assert l2m_convert.flax_path("m0.b2_plus_1.bn1.weight") == ["m0", "b2_plus_1", "bn1", "weight"]


# --------------------------------------------------------------------- model properties


@pytest.fixture(scope="module")
def tiny_encoder():
    enc = l2m.StyleEncoder(img_size=16, style_dim=8, num_domains=4, max_conv_dim=16, dim_in=8)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 16, 16, 3))
    y = jnp.array([0, 1, 3])
    return enc, stargan_v2.he_init(enc, jax.random.PRNGKey(1), x, y, y), x, y


def test_decomposition_reassembles_the_style(tiny_encoder):
    enc, variables, x, y = tiny_encoder
    s, s1, s2, s3 = enc.apply(variables, x, y, y)
    np.testing.assert_allclose(s1 + s2, s, rtol=1e-6, atol=1e-6)
    # Source = target at α = 0 gives back the source style, whatever the transformer does.
    np.testing.assert_allclose(l2m.edit_style(s1, s2, s3, 0.0), s, rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(s3 - s2)).max() > 1e-3  # (the transformer is not the identity)
    np.testing.assert_allclose(l2m.edit_style(s1, s2, s3, 1.0), s1 + s3, rtol=1e-5, atol=1e-6)
    per_sample = l2m.edit_style(s1, s2, s3, jnp.array([0.0, 1.0, 0.5]))
    np.testing.assert_allclose(per_sample[0], s[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(per_sample[2], (s1 + s2 + 0.5 * (s3 - s2))[2], rtol=1e-6)


def test_orthogonality():
    a = jnp.array([[1.0, 2.0, 0.0, -1.0], [0.5, 0.0, 0.0, 0.0]])
    perpendicular = jnp.array([[2.0, -1.0, 3.0, 0.0], [0.0, 4.0, -2.0, 1.0]])
    np.testing.assert_allclose(l2m.orthogonality(a, perpendicular), [0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(l2m.orthogonality(a, 3 * a), [1.0, 1.0], rtol=1e-6)
    oblique = l2m.orthogonality(a, perpendicular + 0.3 * a)
    assert np.all(np.asarray(oblique) > 0.01) and np.all(np.asarray(oblique) < 1)


def test_domains_from_attributes():
    attributes = {"Smiling": np.array([0, 1, 0, 1]), "Eyeglasses": np.array([0, 0, 1, 1])}
    np.testing.assert_array_equal(l2m.domain_index(attributes, ["Smiling"]), [0, 1, 0, 1])
    np.testing.assert_array_equal(
        l2m.domain_index(attributes, ["Smiling", "Eyeglasses"]), [0, 1, 2, 3]
    )
    assert l2m.domain_names(["Smiling", "Eyeglasses"]) == [
        "no Smiling/Eyeglasses",
        "Smiling",
        "Eyeglasses",
        "Smiling+Eyeglasses",
    ]


def test_stargan_v2_shapes():
    """Our own mapping network and discriminator (no official weights exist for L2M)."""
    m = stargan_v2.MappingNetwork(style_dim=8, num_domains=3, hidden_dim=16)
    z, y = jnp.ones((2, 4)), jnp.array([2, 0])
    v = jax.eval_shape(m.init, jax.random.PRNGKey(0), z, y)
    assert set(v["params"]) == {f"shared_{i}" for i in (0, 2, 4, 6)} | {
        f"unshared_{d}_{i}" for d in range(3) for i in (0, 2, 4, 6)
    }
    d = stargan_v2.Discriminator(img_size=16, num_domains=3, max_conv_dim=16, dim_in=8)
    x = jnp.ones((2, 16, 16, 3))
    assert jax.eval_shape(lambda: d.init_with_output(jax.random.PRNGKey(0), x, y)[0]).shape == (2,)
    g = stargan_v2.Generator(img_size=16, style_dim=8, max_conv_dim=16, w_hpf=0.0, dim_in=8)
    out = jax.eval_shape(lambda: g.init_with_output(jax.random.PRNGKey(0), x, jnp.ones((2, 8)))[0])
    assert out.shape == (2, 16, 16, 3)
    with pytest.raises(ValueError, match="masks were given but w_hpf = 0"):
        g.init(jax.random.PRNGKey(0), x, jnp.ones((2, 8)), (x[..., :1], x[..., :1]))
