"""SEAN training: the step on 8 devices equals the step on 1 (batch norm synchronised over
the global batch), one trace across the learning-rate decay with the VGG19 frozen, the
export, the evaluation's metrics and FID, the configs, the VGG19 import and the logged
VGG-off switch."""

import logging

import flax.linen as nn
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, build_synthetic_faces
from tracing import counting_traces

from configs import sean as sean_config
from stylejax.convert import sean as convert_sean
from stylejax.data.labels import LABEL
from stylejax.model_format import CheckpointError, load_pretrained
from stylejax.models import sean, vgg19
from stylejax.train import loop
from stylejax.train import sean as train_sean

SIZE, LABEL_NC, BATCH = 32, 4, 8


def tiny_config():
    c = sean_config.get_config()
    c.model.resolution = SIZE
    c.model.label_nc = LABEL_NC
    c.model.ngf = 2
    c.model.style_length = 4
    c.model.zencoder_ngf = 2
    c.model.spade_hidden = 4
    c.model.ndf = 4
    c.model.n_layers_d = 2
    c.batch_size = BATCH
    c.train.lambda_vgg = 0.0
    # Adam's first steps are sign-like: float-noise-sized gradients (the unused style layers)
    # would flip between programs. A large eps makes the update proportional to the gradient.
    c.train.adam_eps = 1e-3
    return c


def host_state(task, G, D):
    """The initial state built on the host (numpy draws): no init program to compile."""
    abstract = jax.eval_shape(task.init_state, jax.random.PRNGKey(0))
    state = jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), abstract)
    rng = np.random.default_rng(0)
    segmap = np.zeros((1, SIZE, SIZE, LABEL_NC), np.float32)
    state["g"] = sean.init_variables(G, rng, segmap, np.zeros((1, SIZE, SIZE, 3), np.float32))
    state["d"] = sean.init_variables(D, rng, np.zeros((1, SIZE, SIZE, LABEL_NC + 3), np.float32))
    # SPADE's xavier(0.02) leaves activations ~1e-3 wide, where the instance norms
    # (var + 1e-5) amplify float rounding ~100×; O(1) weights keep the comparison meaningful.
    for net in ("g", "d"):
        state[net]["params"] = jax.tree_util.tree_map_with_path(
            lambda path, x: x * 25 if path[-1].key == "kernel" else x, state[net]["params"]
        )
    return abstract, state


def test_sync_batch_norm_statistics_are_global():
    """G in train mode on a batch sharded over 8 devices (one sample each) gives the
    running statistics and output of the 1-device global batch."""
    assert jax.device_count() >= 8
    config = tiny_config()
    G, _ = train_sean.build_models(config)
    rng = np.random.default_rng(2)
    segmap = np.zeros((1, SIZE, SIZE, LABEL_NC), np.float32)
    variables = sean.init_variables(G, rng, segmap, np.zeros((1, SIZE, SIZE, 3), np.float32))
    image = rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)).astype(np.float32)
    labels = rng.integers(0, LABEL_NC, (BATCH, SIZE, SIZE))

    def forward(v, labels, image):
        return G.apply(
            v,
            sean.one_hot(labels, LABEL_NC),
            image,
            train=True,
            mutable=["batch_stats", "spectral"],
            rngs={"noise": jax.random.PRNGKey(0)},
        )

    results = {}
    for n in (1, 8):
        mesh = loop.make_mesh(jax.devices()[:n])
        batch = loop.global_batch({"labels": labels, "image": image}, mesh)
        run = jax.jit(forward, out_shardings=loop.replicated(mesh))
        v = jax.device_put(variables, loop.replicated(mesh))
        results[n] = jax.device_get(run(v, batch["labels"], batch["image"]))
    (out1, stats1), (out8, stats8) = results[1], results[8]
    assert_close(out8, out1, 1e-5, 1e-5, "G output")
    flat = lambda t: jax.flatten_util.ravel_pytree(t)[0]
    assert_close(flat(stats8), flat(stats1), 1e-5, 1e-6, "running statistics and u, v")
    # The first ACE normalises fc(label map at 1×1): its input is W[1, 1]ᵀ·onehot + b. The
    # running mean after one step is 0.1 × its mean over all 8 samples, not over device 0's.
    fc = variables["params"]["fc"]
    first = sean.one_hot(labels[:, :1, :1], LABEL_NC)[:, 0, 0] @ np.asarray(fc["kernel"][1, 1])
    first = first + np.asarray(fc["bias"])
    running = stats1["batch_stats"]["head_0"]["ace_0"]["param_free_norm"]["running_mean"]
    np.testing.assert_allclose(running, 0.1 * first.mean(axis=0), rtol=1e-5, atol=1e-7)
    assert np.abs(0.1 * first[0] - running).max() > 1e-4


def test_train_step_on_8_devices_equals_1_device():
    # Compiles the whole step twice: 2 min on an idle 2-core CPU with a cold cache.
    assert jax.device_count() >= 8
    config = tiny_config()
    task = train_sean.make_task(config)
    G, D = train_sean.build_models(config)
    abstract, state = host_state(task, G, D)
    rng = np.random.default_rng(1)
    batch = {
        "image": rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)).astype(np.float32),
        "segmentation": rng.integers(0, LABEL_NC, (BATCH, SIZE, SIZE)).astype(np.int32),
    }
    results = {}
    for n in (1, 8):
        mesh = loop.make_mesh(jax.devices()[:n])
        repl = loop.replicated(mesh)
        sharding = jax.tree_util.tree_map(lambda _, r=repl: r, abstract)
        step = loop.compile_step(task, mesh, sharding)
        new_state, metrics = step(
            jax.device_put(state, loop.replicated(mesh)), loop.global_batch(batch, mesh)
        )
        results[n] = jax.device_get((new_state, metrics))
    (one, m1), (eight, m8) = results[1], results[8]
    for name in m1:  # some are near 0 (logit means ~3e-4): an absolute bound too
        np.testing.assert_allclose(m8[name], m1[name], rtol=1e-5, atol=1e-7, err_msg=name)

    # One sample per device: local statistics would differ completely from these.
    def flat(tree):
        return jax.flatten_util.ravel_pytree(tree)[0]

    stats = lambda s: flat(s["g"]["batch_stats"])
    assert_close(stats(eight), stats(one), 1e-5, 1e-5, "G batch-norm running statistics")
    assert np.abs(stats(one) - stats(state)).max() > 1e-3  # they did move
    for net in ("g", "d"):
        # Adam moves a parameter whose gradient is rounding noise by up to lr, so the two
        # summation orders may differ there by a fraction of lr.
        lr = config.train[f"{net}_lr"]
        assert_close(flat(eight[net]), flat(one[net]), 1e-5, 0.01 * lr, f"{net} after one step")
    assert int(one["step"]) == int(eight["step"]) == 1


def random_vgg():
    """A narrow VGG19 (1/16 of the widths) with random weights, for the perceptual loss."""
    model = vgg19.VGG19Features(width_divisor=16)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE, 3)))
    rng = np.random.default_rng(6)
    return model, jax.tree_util.tree_map(
        lambda s: (rng.normal(size=s.shape) * 0.3).astype(np.float32), shapes
    )


def test_step_traces_once_across_the_lr_decay_with_frozen_vgg(monkeypatch):
    """The engine's step, the VGG19 of the perceptual loss passed as Task.frozen (not in the
    state), is traced once over steps that cross the start of the learning-rate decay."""
    config = tiny_config()
    config.num_steps, config.train.decay_start_fraction = 3, 0.5  # constant lr, then decaying
    config.train.lambda_vgg = 10.0
    vgg, vgg_variables = random_vgg()
    monkeypatch.setattr(train_sean, "load_vgg", lambda c, frozen: (vgg, vgg_variables))
    task = train_sean.make_task(config)
    assert task.frozen is vgg_variables
    G, D = train_sean.build_models(config)
    abstract, state = host_state(task, G, D)
    assert set(abstract) == {"step", "g", "d", "g_opt", "d_opt"}
    assert {k: (v.shape, v.dtype) for k, v in task.batch_spec.items()} == {
        "image": ((BATCH, SIZE, SIZE, 3), jnp.float32),
        "segmentation": ((BATCH, SIZE, SIZE), jnp.int32),
    }
    counted, traces = counting_traces(task)
    mesh = loop.make_mesh(jax.devices()[:1])
    sharding = jax.tree_util.tree_map(lambda _: loop.replicated(mesh), abstract)
    step = loop.compile_step(counted, mesh, sharding)
    state = jax.device_put(state, loop.replicated(mesh))
    frozen = jax.device_put(task.frozen, loop.replicated(mesh))
    rng = np.random.default_rng(3)
    batch = {
        "image": rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)).astype(np.float32),
        "segmentation": rng.integers(0, LABEL_NC, (BATCH, SIZE, SIZE)).astype(np.int32),
    }
    for _ in range(config.num_steps):
        state, metrics = step(state, loop.global_batch(batch, mesh), frozen)
    assert len(traces) == 1
    assert int(state["step"]) == config.num_steps
    assert float(metrics["g_vgg"]) > 0


def test_export_writes_the_generator_for_load_pretrained(tmp_path):
    config = tiny_config()
    task = train_sean.make_task(config)
    G, D = train_sean.build_models(config)
    _, state = host_state(task, G, D)
    meta = train_sean.export(config, state, tmp_path / "model")
    assert meta["family"] == "sean" and meta["networks"]["g"]["kind"] == "sean_generator"
    loaded, variables = load_pretrained(tmp_path / "model")
    assert isinstance(loaded, sean.Generator) and loaded.label_nc == LABEL_NC
    for (path, want), got in zip(
        jax.tree_util.tree_leaves_with_path(state["g"]), jax.tree_util.tree_leaves(variables)
    ):
        np.testing.assert_array_equal(got, want, err_msg=jax.tree_util.keystr(path))


def test_configs():
    c = sean_config.get_config()
    assert (c.method, c.model.label_nc, c.data.name) == ("sean", 19, "synthetic_faces/64")
    # The CPU default's own choices: G's lr and the pyramid L1.
    assert (c.train.g_lr, c.train.d_lr, c.train.beta1, c.train.lambda_l1) == (4e-4, 4e-4, 0, 10)
    assert (c.train.lambda_feat, c.train.lambda_vgg) == (10.0, 10.0)
    big = sean_config.get_config("celebamaskhq")
    assert (big.model.resolution, big.model.ngf, big.model.style_length) == (256, 64, 512)
    # The official recipe: TTUR lr, no pixel loss.
    assert (big.train.g_lr, big.train.d_lr, big.train.lambda_l1) == (1e-4, 4e-4, 0.0)
    with pytest.raises(ValueError, match="unknown variant 'ffhq'"):
        sean_config.get_config("ffhq")


def test_vgg_loss_off_without_weights_is_logged(caplog):
    config = tiny_config()
    config.train.lambda_vgg = 10.0
    with caplog.at_level(logging.WARNING):
        assert train_sean.load_vgg(config) is None
    assert "VGG perceptual loss switched OFF" in caplog.text
    config.train.lambda_vgg = 0.0
    caplog.clear()
    assert train_sean.load_vgg(config) is None and "VGG" not in caplog.text


def test_vgg_as_shapes_reads_no_weights_file():
    """frozen="abstract" (AOT compilation) gives the VGG19's shapes without the file."""
    config = tiny_config()
    config.train.lambda_vgg = 10.0
    config.train.vgg_weights = "/nonexistent/vgg19.pth"
    _, shapes = train_sean.load_vgg(config, "abstract")
    kernel = shapes["params"]["features_28"]["kernel"]
    assert (kernel.shape, kernel.dtype) == ((3, 3, 512, 512), jnp.float32)
    assert train_sean.make_task(config, frozen="abstract").frozen == shapes
    with pytest.raises(ValueError, match="frozen='lazy'"):
        train_sean.load_vgg(config, "lazy")


def torchvision_vgg19(rng):
    """A state dict in torchvision's vgg19 layout; only features.0 holds real values, the
    rest are zero-stride broadcasts (shapes without the memory)."""
    sd = {}
    in_ch = 3
    for index, (i, width) in enumerate(vgg19.CONVS + ((30, 512), (32, 512), (34, 512))):
        weight = np.broadcast_to(np.float32(0.01), (width, in_ch, 3, 3))
        if index == 0:
            weight = rng.normal(size=(width, in_ch, 3, 3)).astype(np.float32)
        sd[f"features.{i}.weight"] = weight
        sd[f"features.{i}.bias"] = np.broadcast_to(np.float32(0.1), (width,))
        in_ch = width
    sd["classifier.0.weight"] = np.broadcast_to(np.float32(0), (4096, 25088))
    return sd


def test_vgg19_import_from_torchvision_layout():
    rng = np.random.default_rng(4)
    sd = torchvision_vgg19(rng)
    variables = convert_sean.read_vgg19("vgg19.pth", sd)
    assert "features_30" not in variables["params"]  # past relu5_1: not needed
    x = rng.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)
    model = vgg19.VGG19Features()
    relu1_1 = np.asarray(jax.jit(model.apply)(variables, x)[0])
    # relu1_1 at pixel (5, 7) by hand: correlation of the OIHW kernel with the 3×3 patch.
    patch = x[0, 4:7, 6:9, :]  # [kh, kw, in]
    want = np.maximum(np.einsum("oihw,hwi->o", sd["features.0.weight"], patch) + 0.1, 0)
    np.testing.assert_allclose(relu1_1[0, 5, 7], want, rtol=1e-5, atol=1e-5)
    with pytest.raises(CheckpointError, match=r"x\.pth: not a torchvision VGG19.*'fc\.weight'"):
        convert_sean.read_vgg19("x.pth", {"fc.weight": np.zeros((2, 2))})
    del sd["features.28.bias"]
    with pytest.raises(CheckpointError, match=r"missing 1 tensors.*features_28/bias"):
        convert_sean.read_vgg19("vgg19.pth", sd)


def test_perceptual_loss_is_zero_for_equal_images_only():
    model = vgg19.VGG19Features(width_divisor=16)
    x = jnp.asarray(np.random.default_rng(5).uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)  # no init program
    rng = np.random.default_rng(6)
    variables = jax.tree_util.tree_map(
        lambda s: jnp.asarray(rng.normal(size=s.shape).astype(np.float32) * 0.3), shapes
    )
    loss = jax.jit(lambda a, b: vgg19.perceptual_loss(model, variables, a, b))
    assert float(loss(x, x)) < 1e-6 * float(loss(x, x[::-1]))


class _Features(nn.Module):
    """A small feature network in the FID Inception's place: NHWC → [N, 8]."""

    @nn.compact
    def __call__(self, x):
        return jnp.mean(nn.relu(nn.Conv(8, (3, 3), strides=2)(x)), axis=(1, 2))


def test_evaluation_scores_reconstructions_and_their_fid(tmp_path, monkeypatch):
    """evaluate() on a tiny synthetic-faces split, with a stand-in reconstruction (the
    generator's own parity is tested elsewhere): PSNR / SSIM / RMSE and the FID between the
    outputs' and the images' features, each equal to a direct computation; the grid."""
    from stylejax import metrics
    from stylejax.data.synthetic_faces import SyntheticFacesConfig

    def reconstruct(G, g_vars, segmentation, image, label_nc, rng):
        return 0.5 * image + 0.1 * jax.random.normal(rng, image.shape)

    transfers = []

    def region_transfer_scores(G, g_vars, labels_a, image_a, labels_b, image_b, region, rng):
        transfers.append((labels_a, image_a, labels_b, image_b, region))
        return {"pairs": len(image_a), "psnr_outside": 30.0}

    monkeypatch.setattr(train_sean, "reconstruct", reconstruct)
    monkeypatch.setattr(train_sean, "region_transfer_scores", region_transfer_scores)
    data = SyntheticFacesConfig(name="sean_eval32", resolution=SIZE, num_train=8, num_test=24)
    c = tiny_config()
    c.model.label_nc = 19  # with a hair class: the evaluation scores the hair transfer
    c.data.name = f"synthetic_faces/{data.name}"
    c.data.directory = build_synthetic_faces(data, tmp_path / "tfds")
    c.eval.batch_size = 8
    feat = _Features()
    feat_vars = feat.init(jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE, 3)))
    state = {"g": None}  # the stand-in reconstruction needs no generator
    result = train_sean.evaluate(c, state, tmp_path, num_examples=16, inception=(feat, feat_vars))

    batches = list(train_sean.fixed_batches(c, "test", 8))[:2]
    x = np.concatenate([b["image"] for b in batches])
    out = np.concatenate(
        [
            reconstruct(None, None, None, b["image"], LABEL_NC, jax.random.PRNGKey(i))
            for i, b in enumerate(batches)
        ]
    )
    assert result["num_examples"] == 16
    assert result["psnr"] == pytest.approx(float(np.mean(metrics.psnr(out, x))), rel=1e-5)
    assert result["ssim"] == pytest.approx(float(np.mean(metrics.ssim(out, x))), rel=1e-4)
    rmse = np.sqrt(np.mean(np.square(out - x), axis=(1, 2, 3))) * 127.5
    assert result["rmse"] == pytest.approx(float(np.mean(rmse)), rel=1e-5)
    features = jax.jit(lambda v: feat.apply(feat_vars, v))
    want = metrics.frechet_distance(np.asarray(features(x)), np.asarray(features(out)))
    assert result["fid"] == pytest.approx(want, rel=1e-4) and result["fid"] > 0
    assert (tmp_path / "eval" / "reconstructions.png").is_file()
    # The first batch's hair styles move to each image from its batch-mate.
    ((labels_a, image_a, labels_b, image_b, region),) = transfers
    assert region == LABEL["hair"]
    np.testing.assert_array_equal(image_a, batches[0]["image"])
    np.testing.assert_array_equal(image_b, np.roll(batches[0]["image"], 1, axis=0))
    np.testing.assert_array_equal(labels_b, np.roll(batches[0]["segmentation"], 1, axis=0))
    assert result["hair_transfer/pairs"] == 8 and result["hair_transfer/psnr_outside"] == 30
