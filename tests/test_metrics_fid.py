"""FID Inception parity with pytorch-fid (tests/data/fid/fid_ref.npz, made once by
tools/make_fid_fixture.py from the pip package, under seeded random weights that this test
rebuilds), the Inception converter, the Fréchet distance, KID, precision/recall and
data-parallel evaluation on the 8 fake CPU devices."""

import functools
import hashlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close
from torch_writers import save_torch_zip

from stylejax import metrics, model_format
from stylejax.convert import convert
from stylejax.convert import inception as convert_inception
from stylejax.model_format import CheckpointError
from stylejax.models import inception
from stylejax.nn import torch_ops

DATA = Path(__file__).resolve().parent / "data" / "fid"


@pytest.fixture(scope="module")
def ref():
    return np.load(DATA / "fid_ref.npz")


def _digest(state_dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state_dict):
        h.update(k.encode() + np.ascontiguousarray(state_dict[k], np.float32).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def weights(ref):
    """The fixture's random Inception weights as Flax variables and as a torch state dict."""
    variables = inception.random_variables(int(ref["weights_seed"]))
    state_dict = convert_inception.flax_to_state_dict(variables)
    assert _digest(state_dict) == str(ref["weights_sha256"]), (
        "inception.random_variables no longer rebuilds the weights the fixture was made with "
        "(numpy's random stream changed?): rerun tools/make_fid_fixture.py"
    )
    return variables, state_dict


def test_inception_matches_pytorch_fid_sharded_over_8_devices(ref, weights):
    # pytorch-fid: F.interpolate to 299 (bilinear, align_corners=False), 2x − 1, FID blocks,
    # pool3. Here: 4 images padded to a batch of 8, one per fake CPU device.
    assert jax.device_count() == 8
    parallel = metrics.DataParallel(inception.FIDInceptionV3().apply, batch_size=8)
    images = ref["images"].astype(np.float32) / 127.5 - 1
    feats = parallel(weights[0], images)
    assert_close(feats, ref["pool3"], rel=1e-5, max_abs=1e-4, what="pool3 features")


def test_resize_matches_torch_bilinear_without_antialiasing(ref):
    x = ref["resize_in"].transpose(0, 2, 3, 1)
    resize = jax.jit(
        functools.partial(torch_ops.resize_bilinear, positions_dtype=np.float32), static_argnums=1
    )
    for h, w in ((29, 17), (61, 80), (40, 37)):  # shrink, grow, same size
        got = resize(x, (h, w)).transpose(0, 3, 1, 2)
        # Sample positions round differently from torch's float32 ones by a few ulps.
        assert_close(got, ref[f"resize_{h}x{w}"], rel=2e-6, max_abs=1e-5, what=f"{h}x{w}")


def test_frechet_distance_matches_pytorch_fid(ref):
    got = metrics.frechet_distance_from_stats(ref["mu1"], ref["sigma1"], ref["mu2"], ref["sigma2"])
    assert got == pytest.approx(float(ref["fid"]), rel=1e-9)
    # Singular covariances (fewer samples than features) stay finite and symmetric.
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((20, 64)), rng.standard_normal((20, 64)) + 0.5
    d_ab, d_ba = metrics.frechet_distance(a, b), metrics.frechet_distance(b, a)
    assert np.isfinite(d_ab) and d_ab == pytest.approx(d_ba, rel=1e-7)
    with pytest.raises(ValueError, match="different feature sizes"):
        metrics.frechet_distance_from_stats(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_converter_maps_the_pytorch_fid_state_dict(weights):
    variables, state_dict = weights
    sd = dict(state_dict)
    sd["fc.weight"] = np.zeros((1008, 2048), np.float32)  # the FID file's unused classifier
    sd["fc.bias"] = np.zeros(1008, np.float32)
    sd["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.int64(0)
    config, got = convert_inception.read_inception("pt_inception.pth", obj=sd)
    assert config == {"resize_input": True}
    jax.tree_util.tree_map(np.testing.assert_array_equal, got, jax.device_get(variables))
    assert model_format.build("inception", config) == inception.FIDInceptionV3()

    aux = dict(sd, **{"AuxLogits.fc.weight": np.zeros((1000, 768), np.float32)})
    with pytest.raises(CheckpointError, match="torchvision's ImageNet Inception"):
        convert_inception.read_inception("inception_v3_google.pth", obj=aux)
    missing = {k: v for k, v in sd.items() if k != "Mixed_6b.branch7x7_2.conv.weight"}
    with pytest.raises(CheckpointError, match=r"missing 1 tensors.*Mixed_6b/branch7x7_2/conv"):
        convert_inception.read_inception("cut.pth", obj=missing)
    bad = dict(sd, **{"Mixed_7c.branch_pool.conv.weight": np.zeros((192, 2048, 3, 3))})
    with pytest.raises(CheckpointError, match="shape mismatch for params/Mixed_7c/branch_pool"):
        convert_inception.read_inception("bad.pth", obj=bad)
    with pytest.raises(CheckpointError, match="pt_inception-2015-12-05-6726825d.pth"):
        convert_inception.read_inception("other.pth", obj={"conv.weight": np.zeros(1)})


def test_convert_detects_an_inception_file(tmp_path):
    # A file with the Inception markers routes to the Inception converter (whose error names
    # the layout), not to another family's.
    src = tmp_path / "pt_inception.pth"
    save_torch_zip(
        src,
        {
            "Conv2d_1a_3x3.conv.weight": np.zeros((32, 3, 3, 3), np.float32),
            "Mixed_7c.branch_pool.conv.weight": np.zeros((192, 2048, 1, 1), np.float32),
        },
    )
    with pytest.raises(CheckpointError, match=r"pt_inception.pth: the Inception-v3 does not"):
        convert(src, tmp_path / "out")


def _naive_mmd(x, y, d):
    k = lambda a, b: (a @ b.T / d + 1) ** 3
    m = len(x)
    off = lambda g: (g.sum() - np.trace(g)) / (m * (m - 1))
    return off(k(x, x)) + off(k(y, y)) - 2 * k(x, y).mean()


def test_kid_is_the_unbiased_polynomial_mmd():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((40, 16))
    fake = rng.standard_normal((40, 16)) * 1.2 + 0.3
    # One subset of all 40 samples: a permutation of each set, so exactly the full MMD².
    got = metrics.kernel_inception_distance(real, fake, num_subsets=1, max_subset_size=1000)
    assert got == pytest.approx(_naive_mmd(fake, real, 16), rel=1e-9)
    same = metrics.kernel_inception_distance(real[:20], real[20:], num_subsets=50)
    far = metrics.kernel_inception_distance(real, fake, num_subsets=50, max_subset_size=20)
    assert abs(same) < 0.05 < far
    with pytest.raises(ValueError, match="one D"):
        metrics.kernel_inception_distance(real, fake[:, :8])


def _naive_precision_recall(real, fake, k):
    def share(manifold, probes):
        d_mm = np.linalg.norm(manifold[:, None] - manifold[None], axis=-1)
        radii = np.sort(d_mm, axis=1)[:, k]
        d_pm = np.linalg.norm(probes[:, None] - manifold[None], axis=-1)
        return np.mean(np.any(d_pm <= radii[None], axis=1))

    return share(real, fake), share(fake, real)


def test_precision_recall_match_the_knn_definition():
    rng = np.random.default_rng(1)
    real = rng.standard_normal((300, 8)).astype(np.float32)
    fake = (rng.standard_normal((250, 8)) * 0.6 + 0.8).astype(np.float32)
    got = metrics.precision_recall(real, fake, k=3, row_batch=128)  # uneven last blocks
    want = _naive_precision_recall(real.astype(np.float64), fake.astype(np.float64), 3)
    assert got == pytest.approx(want, abs=1e-9)
    assert 0.3 < got[0] < 1 and 0 < got[1] < got[0]  # a narrow, shifted fake set
    far = metrics.precision_recall(real, real + 100.0, k=3)
    assert far == (0.0, 0.0)


def test_data_parallel_pads_and_matches_one_device():
    def fn(w, x, y):
        return {"a": jnp.tanh(x @ w) + y[:, None], "b": jnp.sum(x, axis=1)}

    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 3)).astype(np.float32)
    x = rng.standard_normal((13, 5)).astype(np.float32)
    y = rng.standard_normal(13).astype(np.float32)
    eight = metrics.DataParallel(fn, batch_size=16)
    one = metrics.DataParallel(fn, batch_size=16, mesh=metrics.data_mesh(jax.devices()[:1]))
    got8, got1 = eight(w, x, y), one(w, x, y)
    assert got8["a"].shape == (13, 3) and got8["b"].shape == (13,)
    # Equal up to float32 rounding: XLA vectorises a 2-row and a 16-row matmul differently.
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), got8, got1
    )
    np.testing.assert_allclose(got8["a"], np.tanh(x @ w) + y[:, None], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of the 8 devices"):
        metrics.DataParallel(fn, batch_size=12)
    with pytest.raises(ValueError, match="1 to 16 rows"):
        eight(w, np.zeros((17, 5), np.float32), np.zeros(17, np.float32))
    # collect(): batches until the total, trimmed, in order.
    batches = ((x[i : i + 4], y[i : i + 4]) for i in range(0, 13, 4))
    out = metrics.collect(eight, w, batches, total=10, what="test")
    np.testing.assert_array_equal(out["b"], got8["b"][:10])
