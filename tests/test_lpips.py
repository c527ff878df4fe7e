"""LPIPS: parity with the `lpips` package (tests/data/lpips, made by tools/make_lpips_fixture.py)
through the real converter path, the formula's properties, and converter errors."""

import functools
import hashlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, load_tool
from lpips_backbones import digest, random_backbone
from torch_writers import save_torch_legacy, save_torch_zip

from stylejax.convert import convert, readers
from stylejax.convert import lpips as lpips_convert
from stylejax.model_format import CheckpointError, load_pretrained
from stylejax.models import lpips

DATA = Path(__file__).resolve().parent / "data" / "lpips"


@pytest.fixture(scope="module")
def ref():
    return np.load(DATA / "lpips_ref.npz")


def _nhwc(x):
    return np.asarray(x).transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def backbone_files(tmp_path_factory, ref):
    """The fixture's seeded torchvision-layout backbones, written as torch zip files."""
    folder = tmp_path_factory.mktemp("lpips_backbones")
    paths = {}
    for net in lpips.NETS:
        state = random_backbone(net, int(ref[f"{net}_seed"]))
        assert digest(state) == str(ref[f"{net}_backbone_sha256"]), (
            f"tests/lpips_backbones.py no longer rebuilds the {net} weights the fixture was "
            f"made with (numpy's stream changed?): rerun tools/make_lpips_fixture.py"
        )
        paths[net] = folder / lpips_convert.BACKBONE_FILES[net]
        save_torch_zip(paths[net], state)
    return paths


@pytest.fixture(scope="module")
def converted(tmp_path_factory, backbone_files):
    """(module, variables) per net, through convert() and load_pretrained()."""
    out = {}
    for net in lpips.NETS:
        out_dir = tmp_path_factory.mktemp("converted") / f"lpips_{net}"
        meta = convert(DATA / f"{net}.pth", out_dir, lpips_backbone=backbone_files[net])
        assert meta["family"] == "lpips" and meta["networks"]["lpips"]["config"] == {"net": net}
        out[net] = load_pretrained(out_dir)
    return out


_APPLY = jax.jit(
    lambda module, v, a, b: module.apply(v, a, b, return_layers=True), static_argnums=0
)


@pytest.mark.parametrize("net", lpips.NETS)
@pytest.mark.parametrize("pair", ["x", "y"])  # 4 pairs at 64×64, 2 at 50×66
def test_matches_lpips_package(converted, ref, net, pair):
    module, variables = converted[net]
    assert isinstance(module, lpips.LPIPS) and module.net == net
    x0, x1 = _nhwc(ref[f"{pair}0"]), _nhwc(ref[f"{pair}1"])
    distance, layers = _APPLY(module, variables, x0, x1)
    want = ref[f"{net}_{pair}_distance"]
    assert_close(distance, want, rel=1e-5, max_abs=1e-6, what=f"{net} distances")
    assert_close(layers, ref[f"{net}_{pair}_layers"], rel=1e-5, max_abs=1e-6, what="layers")
    np.testing.assert_allclose(layers.sum(1), distance, rtol=1e-6)


def test_heads_are_the_package_files(converted):
    # Byte-identical to lpips 0.1.4's weights/v0.1 files (digests in FORMATS.md §4.1).
    digests = {"alex": "df73285e35b2", "vgg": "a78928a0af1e"}
    for net, prefix in digests.items():
        assert hashlib.sha256((DATA / f"{net}.pth").read_bytes()).hexdigest().startswith(prefix)
        heads = readers.load_checkpoint(DATA / f"{net}.pth")
        params = converted[net][1]["params"]
        for k, c in enumerate(lpips.tap_channels(net)):
            kernel = np.asarray(params[f"lin{k}"]["kernel"])
            assert kernel.shape == (1, 1, c, 1) and kernel.min() >= 0  # trained non-negative
            np.testing.assert_array_equal(
                kernel[0, 0, :, 0], heads[f"lin{k}.model.1.weight"][0, :, 0, 0]
            )


def test_formula_properties(converted, ref):
    module, variables = converted["alex"]
    x0, x1 = _nhwc(ref["x0"]), _nhwc(ref["x1"])

    @functools.partial(jax.jit, static_argnames="normalize")
    def dist(a, b, normalize=False):
        return module.apply(variables, a, b, normalize=normalize)

    d = dist(x0, x1)
    assert d.shape == (4,) and np.all(d > 0)
    np.testing.assert_allclose(dist(x0, x0), 0.0, atol=1e-7)
    np.testing.assert_allclose(dist(x1, x0), d, rtol=1e-6)
    # Batch independence: each sample's distance alone equals its row in the batch.
    for i in (0, 3):
        np.testing.assert_allclose(dist(x0[i : i + 1], x1[i : i + 1]), d[i : i + 1], rtol=1e-5)
    # normalize=True takes [0, 1] images.
    np.testing.assert_allclose(dist((x0 + 1) / 2, (x1 + 1) / 2, normalize=True), d, rtol=1e-5)
    # The near pair (0) is closer than an unrelated image (1).
    assert d[0] < d[1] / 10


def test_features_layout():
    assert lpips.tap_channels("alex") == (64, 192, 384, 256, 256)
    assert lpips.tap_channels("vgg") == (64, 128, 256, 512, 512)
    x = jnp.zeros((1, 64, 64, 3))
    for net, sizes in {"alex": (15, 7, 3, 3, 3), "vgg": (64, 32, 16, 8, 4)}.items():
        module = lpips.Features(net)
        taps = jax.eval_shape(lambda x, m=module: m.apply(m.init(jax.random.PRNGKey(0), x), x), x)
        assert [t.shape[1] for t in taps] == list(sizes)
    with pytest.raises(ValueError, match="squeeze"):
        lpips.LPIPS("squeeze").init(jax.random.PRNGKey(0), x, x)


def test_psp_renamed_heads_and_whole_lpips_state_dict(tmp_path, ref):
    heads = readers.load_checkpoint(DATA / "alex.pth")
    backbone = random_backbone("alex", int(ref["alex_seed"]))
    # A whole lpips.LPIPS state dict: the backbone as `net.slice{s}.{i}.*` beside the heads.
    whole = heads | {f"net.slice1.{k.removeprefix('features.')}": v for k, v in backbone.items()}
    _, want = lpips_convert.read_lpips("whole", obj=whole)
    # pSp's renamed copy of the heads: `lin{k}.model.1.weight` → `{k}.1.weight`.
    psp_heads = {k.replace("lin", "").replace("model.", ""): v for k, v in heads.items()}
    save_torch_legacy(tmp_path / "psp_alex.pth", psp_heads)
    save_torch_zip(tmp_path / "alexnet.pth", backbone | {"classifier.1.weight": np.ones((2, 3))})
    config, got = lpips_convert.read_lpips(tmp_path / "psp_alex.pth", tmp_path / "alexnet.pth")
    assert config == {"net": "alex"}
    jax.tree_util.tree_map(np.testing.assert_array_equal, got, want)


def test_converter_errors(tmp_path, backbone_files):
    heads = DATA / "alex.pth"
    with pytest.raises(CheckpointError, match="--lpips-backbone"):  # heads alone
        convert(heads, tmp_path / "a")
    with pytest.raises(CheckpointError, match="not LPIPS heads"):  # the backbone as SRC
        convert(backbone_files["alex"], tmp_path / "b")
    with pytest.raises(CheckpointError, match="alexnet-owt-7be5be79.pth"):  # VGG backbone
        convert(heads, tmp_path / "c", lpips_backbone=backbone_files["vgg"])
    with pytest.raises(CheckpointError, match="not a torchvision"):
        convert(heads, tmp_path / "d", lpips_backbone=DATA / "vgg.pth")
    with pytest.raises(CheckpointError, match="not an LPIPS heads file"):  # other file + flag
        save_torch_zip(tmp_path / "other.pt", {"w": np.ones(3, np.float32)})
        convert(tmp_path / "other.pt", tmp_path / "e", lpips_backbone=backbone_files["alex"])
    # A truncated backbone: conv 10 missing.
    state = random_backbone("alex")
    del state["features.10.weight"], state["features.10.bias"]
    save_torch_zip(tmp_path / "short.pth", state)
    with pytest.raises(CheckpointError, match="missing 2 tensors.*features_10"):
        convert(heads, tmp_path / "f", lpips_backbone=tmp_path / "short.pth")
    squeeze_channels = (64, 128, 256, 384, 384, 512, 512)
    squeeze = {
        f"lin{k}.model.1.weight": np.ones((1, c, 1, 1), np.float32)
        for k, c in enumerate(squeeze_channels)
    }
    save_torch_legacy(tmp_path / "squeeze.pth", squeeze)
    with pytest.raises(CheckpointError, match="SqueezeNet"):
        convert(tmp_path / "squeeze.pth", tmp_path / "g", lpips_backbone=backbone_files["alex"])
    assert not any(p.name in "abcdefg" for p in tmp_path.iterdir())  # nothing half-written


def test_convert_weights_tool(tmp_path, backbone_files, capsys):
    tool = load_tool("convert_weights")
    backbone, ref = str(backbone_files["vgg"]), str(DATA / "lpips_ref.npz")
    tool.main(
        [str(DATA / "vgg.pth"), str(tmp_path / "vgg"), "--lpips-backbone", backbone, "--ref", ref]
    )
    out = capsys.readouterr().out
    assert "LPIPS v0.1 with vgg features" in out and "parity check passed" in out
    with pytest.raises(SystemExit, match="--lpips-backbone"):
        tool.main([str(DATA / "vgg.pth"), str(tmp_path / "vgg2")])
