"""StyleGAN2 training: sharding, regulariser schedule and values, EMA, lazy Adam,
determinism, kill-and-resume, SIGTERM, NaN guard, configs and the entry point."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorflow as tf
from conftest import set_fields
from tracing import counting_traces

from configs import stylegan2 as stylegan2_configs
from stylejax import metrics
from stylejax.data.labels import LABEL
from stylejax.models import stylegan2 as sg
from stylejax.train import gan, loop
from stylejax.train import stylegan2 as trainer

ROOT = Path(__file__).resolve().parents[1]
RES, BATCH = 16, 8


def tiny_config(**overrides):
    c = stylegan2_configs.get_config()
    c.model.resolution = RES
    c.model.z_dim = c.model.w_dim = 16
    c.model.mapping_layers = 1
    c.model.channel_base = 128
    c.model.channel_max = 16
    c.batch_size = BATCH
    c.num_steps = 6
    c.log_every = 2
    c.checkpoint_every = 2
    c.sample_every = 1000
    c.num_samples = 4
    c.train.r1_gamma = 1.0
    return set_fields(c, **overrides)


def real_images(n=64, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, RES, RES, 3)).astype(np.float32)


def make_data(batch_size=BATCH, seed=0):
    """A checkpointable tf.data iterator over fixed images, and its numpy batches."""
    ds = tf.data.Dataset.from_tensor_slices({"image": real_images()})
    ds = ds.shuffle(64, seed=seed).repeat().batch(batch_size)
    iterator = iter(ds)

    def batches():
        for batch in iterator:
            yield {"image": batch["image"].numpy()}

    return batches(), iterator


def compiled_step(task, state, devices):
    mesh = loop.make_mesh(devices)
    sharding = jax.tree_util.tree_map(lambda _: loop.replicated(mesh), state)
    step = loop.compile_step(task, mesh, sharding)

    def run(state, batch):  # the engine's step donates its input: hand it a copy
        placed = jax.device_put(jax.tree_util.tree_map(jnp.copy, state), sharding)
        return step(placed, jax.device_put(batch, loop.batch_sharded(mesh)))

    return run


def task_setup(config, batch):
    """(config, task, fresh state, a one-device step that counts its traces, batch)."""
    loop.setup_jax()
    task = trainer.make_task(config)
    state = jax.jit(task.init_state)(jax.random.PRNGKey(0))
    counted, traces = counting_traces(task)
    step = compiled_step(counted, state, jax.devices()[:1])
    step.traces = traces
    return config, task, state, step, batch


@pytest.fixture(scope="module")
def setup():
    return task_setup(tiny_config(), {"image": jnp.asarray(real_images()[:BATCH])})


def test_one_trace_serves_every_regulariser_interval(setup):
    config, task, state, step, batch = setup
    assert {k: (v.shape, v.dtype) for k, v in task.batch_spec.items()} == {
        "image": (batch["image"].shape, batch["image"].dtype)
    }
    for k in (0, 1, config.train.pl_interval, config.train.r1_interval, 17):
        step(at_step(state, k), batch)
    assert len(step.traces) == 1


def at_step(state, k):
    return dict(state, step=jnp.asarray(k, jnp.int32))


def adam_count(opt_state):
    return int(opt_state[0].count)  # optax.adam = chain(scale_by_adam, scale_by_lr)


def test_regularisers_run_on_their_intervals_only(setup):
    config, _, state, step, batch = setup
    assert (config.train.pl_interval, config.train.r1_interval) == (4, 16)
    for k, pl_runs, r1_runs in (
        (0, True, True),
        (1, False, False),
        (4, True, False),
        (16, True, True),
        (17, False, False),
    ):
        new, metrics = step(at_step(state, k), batch)
        assert float(metrics["pl_penalty"][1]) == pl_runs, k
        assert float(metrics["r1_penalty"][1]) == r1_runs, k
        # Lazy regularisers take an extra optimizer step with the same Adam state.
        g_steps = adam_count(new["g_opt"]) - adam_count(state["g_opt"])
        d_steps = adam_count(new["d_opt"]) - adam_count(state["d_opt"])
        assert (g_steps, d_steps) == (1 + pl_runs, 1 + r1_runs), k
        if pl_runs:
            assert float(metrics["pl_penalty"][0]) > 0
            assert float(new["pl_mean"]) != float(state["pl_mean"])
        else:
            assert float(new["pl_mean"]) == float(state["pl_mean"])
        assert int(new["step"]) == k + 1


def test_one_step_on_eight_devices_equals_one_device(setup):
    config, task, state, step_one, batch = setup
    assert jax.device_count() == 8, "conftest must fake 8 CPU devices"
    step_eight = compiled_step(task, state, jax.devices())
    one = jax.device_get(step_one(at_step(state, 0), batch)[0])  # both regularisers run
    eight = jax.device_get(step_eight(at_step(state, 0), batch)[0])
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(one), jax.tree_util.tree_leaves(eight)
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))


def test_r1_matches_an_independent_forward_mode_computation(setup):
    config, task, state, _, batch = setup
    G, D = trainer.build_models(config)
    real = batch["image"][:4]
    got = gan.r1_penalty(lambda x: D.apply(state["d"], x), real)
    # Forward-mode Jacobian of the summed logits (mbstd couples the samples, so R1 uses
    # the gradient of the sum, as in the original).
    flat = real.reshape(-1)
    jac = jax.jacfwd(lambda x: D.apply(state["d"], x.reshape(real.shape)).sum())(flat)
    want = jnp.sum(jnp.square(jac.reshape(real.shape)), axis=(1, 2, 3))
    np.testing.assert_allclose(got, want, rtol=1e-4)
    assert float(got.min()) > 0


def test_path_lengths_match_forward_mode_and_use_pixel_noise_scale(setup):
    config, _, state, _, _ = setup
    G, _ = trainer.build_models(config)
    z = jax.random.normal(jax.random.PRNGKey(3), (2, 16))
    ws = G.apply(state["g"], z, method=G.map)
    k_noise, k_pl = jax.random.PRNGKey(4), jax.random.PRNGKey(5)
    got = trainer.path_lengths(G, state["g"], ws, k_noise, k_pl)
    img = trainer.synthesize(G, state["g"], ws, k_noise)
    y = jax.random.normal(k_pl, img.shape) / np.sqrt(RES * RES)  # 1/√(H·W), not batch-based
    jac = jax.jacfwd(lambda w: trainer.synthesize(G, state["g"], w, k_noise))(ws)
    jty = jnp.einsum("nhwc,nhwcmlk->mlk", y, jac)  # J^T y  [N, num_ws, w_dim]
    want = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(jty), axis=2), axis=1))
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_ema_uses_the_global_batch_and_ramps_up():
    beta = gan.ema_beta(32, 10**7, ema_kimg=10.0, rampup=None)
    np.testing.assert_allclose(beta, 0.5 ** (32 / 10_000), rtol=1e-6)
    # Half-life in images: after 10k images of batch 32 the weight of the start is 1/2.
    np.testing.assert_allclose(beta ** (10_000 / 32), 0.5, rtol=1e-5)
    assert float(gan.ema_beta(32, 0, 10.0, rampup=0.05)) == 0.0  # first step copies G
    np.testing.assert_allclose(gan.ema_beta(32, 1000, 10.0, rampup=0.05), 0.5 ** (32 / 50))


def test_lazy_adam_scales_lr_and_betas():
    params = {"w": jnp.ones(3)}
    grads = [{"w": jnp.asarray([1.0, -2.0, 0.5]) * (i + 1)} for i in range(3)]
    tx = gan.lazy_adam(0.002, (0.0, 0.99), interval=4)
    c = 4 / 5
    reference = optax.adam(0.002 * c, b1=0.0, b2=0.99**c, eps=1e-8)
    s1, s2, p1, p2 = tx.init(params), reference.init(params), params, params
    for g in grads:
        u1, s1 = tx.update(g, s1, p1)
        u2, s2 = reference.update(g, s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    np.testing.assert_array_equal(p1["w"], p2["w"])
    plain = optax.adam(0.002, b1=0.0, b2=0.99, eps=1e-8)
    u3, _ = plain.update(grads[0], plain.init(params), params)
    assert not np.allclose(u3["w"], tx.update(grads[0], tx.init(params), params)[0]["w"])


def test_nan_guard_names_the_step():
    class Writer:
        def write_scalars(self, step, scalars):
            pass

    log = loop.MetricsLog(Writer(), every=3)
    assert log.add(1, {"d_loss": jnp.asarray(0.5)}) is None
    log.add(2, {"d_loss": jnp.asarray(np.nan)})
    with pytest.raises(loop.NonFiniteError, match="'d_loss' is nan at step 2"):
        log.add(3, {"d_loss": jnp.asarray(0.4)})


def run_training(workdir, config, kill_at=None):
    data, iterator = make_data()
    if kill_at is not None:

        def killing(batches):
            for i, batch in enumerate(batches):
                if i == kill_at:
                    os.kill(os.getpid(), signal.SIGTERM)  # as a TPU preemption would
                yield batch

        data = killing(data)
    return loop.run(trainer.make_task(config), config, workdir, data, iterator)


def params_of(state):
    return jax.device_get({"g": state["g"], "g_ema": state["g_ema"], "d": state["d"]})


def test_training_is_deterministic_and_resumes_exactly(tmp_path):
    config = tiny_config()
    full, history = run_training(tmp_path / "full", config)
    assert int(full["step"]) == 6 and [s for s, _ in history] == [2, 4, 6]
    # A run sent SIGTERM during step 3 finishes that step, saves, exits cleanly, and the restarted run
    # (new process state, same workdir) ends exactly where the uninterrupted one did.
    stopped, _ = run_training(tmp_path / "resumed", config, kill_at=2)
    assert int(stopped["step"]) == 3
    steps = sorted(
        int(p.name) for p in (tmp_path / "resumed" / "checkpoints").iterdir() if p.name.isdigit()
    )
    assert steps[-1] == 3
    resumed, _ = run_training(tmp_path / "resumed", config)
    assert int(resumed["step"]) == 6
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(params_of(full)),
        jax.tree_util.tree_leaves(params_of(resumed)),
    ):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
    # Same config and seed → same losses.
    again, history2 = run_training(tmp_path / "again", config)
    assert history2 == history
    assert sorted((tmp_path / "full" / "samples").iterdir())[-1].name == "step_0000006.png"


def test_short_run_moves_the_discriminator_loss(tmp_path):
    config = tiny_config(num_steps=40, log_every=5, checkpoint_every=1000)
    _, history = run_training(tmp_path, config)
    losses = [m["d_loss"] for _, m in history]
    assert abs(losses[-1] - losses[0]) > 0.1, losses
    logits_gap = [m["d_real_logits"] - m["d_fake_logits"] for _, m in history]
    assert logits_gap[-1] > logits_gap[0], logits_gap


def test_configs_and_entry_point_errors():
    for variant in stylegan2_configs.VARIANTS:
        c = stylegan2_configs.get_config(variant)
        assert c.method == "stylegan2"
    f = stylegan2_configs.get_config("ffhq1024")
    assert (f.batch_size, f.train.r1_gamma, f.train.g_lr, f.train.ema_kimg) == (
        32,
        10.0,
        0.002,
        10.0,
    )
    assert (
        f.train.style_mixing_prob,
        f.train.pl_weight,
        f.train.r1_interval,
        f.train.pl_interval,
    ) == (0.9, 2.0, 16, 4)
    assert sg.channels_from_base(1024, f.model.channel_base, 512) == sg.channels_from_base(1024)
    with pytest.raises(ValueError, match="unknown variant 'ffhq512'.*'synthetic64'"):
        stylegan2_configs.get_config("ffhq512")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "stylejax.main",
            "--config=configs/stylegan2.py:nope",
            "--workdir=/tmp/x",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode != 0 and "unknown variant 'nope'" in run.stderr
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "stylejax.main",
            "--config=configs/stylegan2.py",
            "--workdir=/tmp/x",
            "--config.method=gan3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode != 0 and "config.method='gan3': unknown method" in run.stderr


def test_bfloat16_compute_trains_with_float32_parameters():
    config = tiny_config(**{"model.dtype": "bfloat16"})
    task = trainer.make_task(config)
    state = jax.jit(task.init_state)(jax.random.PRNGKey(0))
    step = jax.jit(task.train_step)
    batch = {"image": jnp.asarray(real_images()[:BATCH])}
    for k in (0, 1):
        state, metrics = step(at_step(state, k), batch)
        assert all(
            np.isfinite(np.asarray(v[0] if isinstance(v, tuple) else v)).all()
            for v in metrics.values()
        )
    assert {x.dtype for x in jax.tree_util.tree_leaves(state["g"]["params"])} == {
        np.dtype("float32")
    }
    G, _ = trainer.build_models(config)
    img = G.apply(state["g_ema"], jnp.ones((2, 16)), noise_mode="const")
    assert img.dtype == jnp.float32 and img.shape == (2, RES, RES, 3)


def test_model_and_train_step_path_imports_no_tensorflow():
    """The GPU machine the benchmarks run on has no tensorflow (nor clu): the models, the
    convolution routes, the engine and the StyleGAN2 step must import without it."""
    code = (
        "import sys; import stylejax.train.stylegan2, stylejax.nn.conv; "
        "print(sorted(m for m in ('tensorflow', 'clu') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_optimizers_keep_the_lazy_factor_when_a_regulariser_is_off():
    """As the official loop: G_reg_interval 4 and D_reg_interval 16 scale Adam's lr and betas
    even with pl_weight 0 or r1_gamma 0 (the empty phase only skips its update); the renderer
    objective, which has no regularisation phases, gets plain Adam."""
    params = {"w": jnp.ones(3)}
    grads = [{"w": jnp.asarray([1.0, -2.0, 0.5]) * (i + 1)} for i in range(3)]

    def after_updates(tx):
        state, p = tx.init(params), params
        for g in grads:
            u, state = tx.update(g, state, p)
            p = optax.apply_updates(p, u)
        return np.asarray(p["w"])

    off = tiny_config(**{"train.pl_weight": 0.0, "train.r1_gamma": 0.0})
    g_tx, d_tx = trainer.optimizers(off)
    t = off.train
    for tx, lr, interval in ((g_tx, t.g_lr, 4), (d_tx, t.d_lr, 16)):
        c = interval / (interval + 1)
        reference = optax.adam(lr * c, b1=t.betas[0] ** c, b2=t.betas[1] ** c, eps=1e-8)
        np.testing.assert_array_equal(after_updates(tx), after_updates(reference))
    r = renderer_config().train
    plain = optax.adam(r.g_lr, b1=r.betas[0], b2=r.betas[1], eps=1e-8)
    np.testing.assert_array_equal(
        after_updates(trainer.optimizers(renderer_config())[0]), after_updates(plain)
    )


def renderer_config(**overrides):
    renderer = {
        "train.objective": "renderer",
        "train.mapping_lr_scale": 100.0,
        "train.r1_gamma": 0.0,
        "train.pl_weight": 0.0,
        "train.style_mixing_prob": 0.0,
        "train.feature_weight": 5.0,
        "model.z_dim": 24,  # at least the 22 factors
    }
    return tiny_config(**renderer, **overrides)


@pytest.fixture(scope="module")
def renderer_setup():
    config = renderer_config()
    return task_setup(config, next(trainer.rendered_batches(config)))


def test_renderer_objective_learns_rendered_batches(renderer_setup):
    """G(z) is fitted to render(factors(z)) of the rendered batches; no discriminator; the
    mapping's updates are scaled by mapping_lr_scale; w_avg moves; one trace serves."""
    from stylejax.data import factor_latents

    config, task, state, step, batch = renderer_setup
    assert set(state) == {"step", "g", "g_ema", "g_opt"}
    assert set(task.batch_spec) == {"z", "image", "weight"}
    image, labels = factor_latents.render_batch(batch["z"], RES, with_labels=True)
    np.testing.assert_allclose(batch["image"], image)
    mouth = labels == LABEL["mouth"]
    assert mouth.any() and np.all(batch["weight"][..., 0][mouth] == 5.0)
    assert np.all(batch["weight"][..., 0][labels == LABEL["skin"]] == 1.0)
    losses, s = [], state
    for _ in range(8):
        s, metrics = step(s, batch)
        losses.append(float(metrics["loss"]))
    assert len(step.traces) == 1
    assert losses[-1] < 0.8 * losses[0], losses
    assert not np.allclose(s["g"]["buffers"]["mapping"]["w_avg"], 0.0)
    # Adam's first step moves each weight by lr·sign(grad); the mapping's by the scale more.
    once, _ = step(state, batch)
    moved = jax.tree_util.tree_map(
        lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
        once["g"]["params"],
        state["g"]["params"],
    )
    lr = config.train.g_lr
    assert moved["mapping"]["fc0"]["weight"] == pytest.approx(lr * 100.0, rel=1e-3)
    assert moved["synthesis"]["b8"]["conv0"]["weight"] == pytest.approx(lr, rel=1e-3)


def test_pyramid_l1_matches_numpy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 2, 16, 16, 3)).astype(np.float32)
    weight = rng.uniform(1, 5, (2, 16, 16, 1)).astype(np.float32)
    pool = lambda a, f: a.reshape(2, 16 // f, f, 16 // f, f, a.shape[-1]).mean((2, 4))
    expected = uniform = 0.0
    for f in metrics.PYRAMID:
        error = np.abs(pool(x, f) - pool(y, f))
        uniform += np.mean(error)
        expected += np.mean(pool(weight, f) * error) / np.mean(pool(weight, f))
    assert float(metrics.pyramid_l1(x, y)) == pytest.approx(uniform, rel=1e-5)
    assert float(metrics.pyramid_l1(x, y, weight)) == pytest.approx(expected, rel=1e-5)


def test_renderer_lr_decays_by_a_cosine_over_the_last_part():
    config = renderer_config(**{"train.lr_decay_start": 0.5, "num_steps": 100})
    factors = [float(trainer.lr_factor(config, jnp.asarray(s))) for s in (0, 50, 75, 100)]
    np.testing.assert_allclose(factors, [1.0, 1.0, 0.5, 0.0], atol=1e-6)


# ----------------------------------------------------------------------------- ADA, freezeD,
# labels, transfer learning (issue 21)

BEFORE_ADA = "6278c16d88ace107bad05d399acb80689961b808"  # the trainer before ADA was wired in


def test_without_augmentation_the_step_is_bit_identical_to_before_ada(setup):
    """augment.preset "" (the default): the step is the pre-ADA trainer's, bit for bit (state
    keys, every leaf, every metric), read from the git history."""
    import importlib.util

    run = subprocess.run(
        ["git", "show", f"{BEFORE_ADA}:stylejax/train/stylegan2.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        pytest.skip(f"the pre-ADA trainer is not in this checkout's history: {run.stderr}")
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"stylegan2_before_ada_{os.getpid()}.py"
    path.write_text(run.stdout)
    spec = importlib.util.spec_from_file_location("stylegan2_before_ada", path)
    before = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(before)
    path.unlink()
    config, task, state, step, batch = setup
    assert config.augment.preset == "" and "ada" not in state
    old_task = before.make_task(config)
    old_step = compiled_step(old_task, state, jax.devices()[:1])
    for k in (0, 1):  # every regulariser, then none
        new, new_metrics = jax.device_get(step(at_step(state, k), batch))
        old, old_metrics = jax.device_get(old_step(at_step(state, k), batch))
        assert set(new) == set(old) and set(new_metrics) == set(old_metrics)
        for (p, a), b in zip(
            jax.tree_util.tree_leaves_with_path((new, new_metrics)),
            jax.tree_util.tree_leaves((old, old_metrics)),
        ):
            np.testing.assert_array_equal(a, b, err_msg=f"step {k}: {jax.tree_util.keystr(p)}")


CLASSES = 3


def ada_config(**overrides):
    """Tiny model with bgc ADA, freezeD of 5 layers and 3 classes."""
    ada = {
        "augment.preset": "bgc",
        "augment.p": 0.4,
        "train.freeze_d": 5,
        "model.c_dim": CLASSES,
    }
    return tiny_config(**{**ada, **overrides})


def labelled_batch():
    labels = np.arange(BATCH) % CLASSES
    return {
        "image": jnp.asarray(real_images()[:BATCH]),
        "c": jnp.asarray(np.eye(CLASSES, dtype=np.float32)[labels]),
    }


@pytest.fixture(scope="module")
def ada_setup():
    return task_setup(ada_config(), labelled_batch())


def test_augmented_step_on_eight_devices_equals_one_device(ada_setup):
    config, task, state, step_one, batch = ada_setup
    assert set(task.batch_spec) == {"image", "c"} and task.batch_spec["c"].shape == (BATCH, 3)
    assert float(state["ada"]["p"]) == pytest.approx(0.4)
    step_eight = compiled_step(task, state, jax.devices())
    one, m_one = jax.device_get(step_one(at_step(state, 0), batch))  # R1 through the pipe
    eight, m_eight = jax.device_get(step_eight(at_step(state, 0), batch))
    assert float(m_one["r1_penalty"][1]) == 1 and float(m_one["ada_rt"][1]) == 2 * BATCH
    # Losses, gradient norms, R1, r_t: equal to float32 rounding.
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(m_one), jax.tree_util.tree_leaves(m_eight)
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))
    # The state: the pipeline's resampling sums in another order over 8 shards, and Adam's
    # update is about lr * g / |g|, so the rare weight whose gradient is near zero shows that
    # rounding (measured up to 1e-4 on single weights, against steps of lr = 2.5e-3). All
    # but a few elements agree to 1e-5, and none by half an Adam step.
    flat = lambda t: np.concatenate(  # noqa: E731
        [np.ravel(x).astype(np.float64) for x in jax.tree_util.tree_leaves(t)]
    )
    a, b = flat(one), flat(eight)
    np.testing.assert_allclose(a, b, atol=1.25e-3)
    off = ~np.isclose(a, b, rtol=1e-5, atol=1e-6)
    assert off.mean() < 1e-3, f"{off.sum()} of {off.size} state values differ"
    # The same step at another p is the same compiled function, and p changes what D sees.
    other, _ = step_one(dict(at_step(state, 0), ada={**state["ada"], "p": jnp.float32(0.9)}), batch)
    assert len(step_one.traces) == 1
    assert not np.allclose(
        other["d"]["params"]["b4"]["out"]["weight"], one["d"]["params"]["b4"]["out"]["weight"]
    )


def test_freeze_d_keeps_the_first_layers_as_the_official_code_counts_them(ada_setup):
    config, task, state, step, batch = ada_setup
    # resnet D at 16 px: b16 fromrgb conv0 conv1 skip, then b8 conv0 conv1 skip.
    assert trainer.d_layers(config) == [
        "b16/fromrgb", "b16/conv0", "b16/conv1", "b16/skip", "b8/conv0", "b8/conv1", "b8/skip",
    ]  # fmt: skip
    assert trainer.frozen_d_layers(config) == trainer.d_layers(config)[:5]
    skip_d = set_fields(ada_config(), **{"model.d_architecture": "skip"})
    assert trainer.d_layers(skip_d)[:4] == ["b16/fromrgb", "b16/conv0", "b16/conv1", "b8/fromrgb"]
    new, _ = step(at_step(state, 0), batch)  # D main and R1 both update D
    before, after = (jax.device_get(s["d"]["params"]) for s in (state, new))
    frozen = {"b16/fromrgb", "b16/conv0", "b16/conv1", "b16/skip", "b8/conv0"}
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(before), jax.tree_util.tree_leaves(after)
    ):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        layer = "/".join(name.split("/")[:2])
        if layer in frozen:
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            assert not np.array_equal(a, b), name
    with pytest.raises(ValueError, match="freeze_d=-1"):
        trainer.frozen_d_layers(set_fields(ada_config(), **{"train.freeze_d": -1}))


def test_conditional_step_uses_the_labels(ada_setup):
    """G and D take the one-hot labels: D's label mapping is trained, and the samples
    cycle through the classes."""
    config, task, state, step, batch = ada_setup
    G, D = trainer.build_models(config)
    assert (G.c_dim, D.c_dim) == (CLASSES, CLASSES)
    assert trainer.generator_kwargs(config)["c_dim"] == CLASSES  # exported with the model
    new, metrics = step(at_step(state, 1), batch)
    assert np.isfinite(float(metrics["d_loss"]))
    moved = jax.tree_util.tree_map(
        lambda a, b: not np.array_equal(a, b),
        state["d"]["params"]["mapping"],
        new["d"]["params"]["mapping"],
    )
    assert all(jax.tree_util.tree_leaves(moved))
    # Other labels, other D outputs.
    img = batch["image"][:4]
    c0, c1 = (jnp.asarray(np.eye(CLASSES)[[k] * 4], jnp.float32) for k in (0, 1))
    assert not np.allclose(D.apply(new["d"], img, c0), D.apply(new["d"], img, c1))
    assert task.samples(state).shape == (4, RES, RES, 3)


def test_p_follows_the_logged_signs_and_is_checkpointed(tmp_path):
    """p's update by hand from the logged r_t (one step per log line): every ada_interval
    steps, p += sign(r_t - target) * batch * interval / (ada_kimg * 1000), clipped to [0, 1];
    r_t counts D main's reals and, on R1 steps, R1's reals. p is in the checkpoint."""
    config = tiny_config(
        **{
            "augment.preset": "color",  # any preset; the cheapest to compile
            "augment.p": 0.5,
            "augment.ada_interval": 2,
            "augment.ada_kimg": 0.1,  # 8 * 2 / 100 = 0.16 per update
            "num_steps": 4,
            "log_every": 1,
            "checkpoint_every": 1000,
        }
    )
    state, history = run_training(tmp_path, config)
    logged = dict(history)
    p, total, count = 0.5, 0.0, 0
    for k in range(4):
        m = logged[k + 1]
        assert m["augment_p"] == pytest.approx(p, abs=1e-7), k
        n = BATCH * (2 if k % config.train.r1_interval == 0 else 1)
        assert m["ada_rt"] * n == pytest.approx(round(m["ada_rt"] * n), abs=1e-4)  # signs
        total, count = total + m["ada_rt"] * n, count + n
        if (k + 1) % 2 == 0:
            p = float(np.clip(p + np.sign(total / count - 0.6) * 0.16, 0, 1))
            total, count = 0.0, 0
    assert float(state["ada"]["p"]) == pytest.approx(p, abs=1e-6)
    abstract = jax.eval_shape(trainer.make_task(config).init_state, jax.random.PRNGKey(0))
    restored, _ = loop.restore_checkpoint(tmp_path, abstract)
    assert float(restored["ada"]["p"]) == float(state["ada"]["p"])
    assert float(restored["ada"]["rt_count"]) == 0.0  # the sums restart with each update


def save_stylegan2_folder(path, config, state, names=("g_ema", "g", "d")):
    from stylejax import model_format

    kinds = {"g_ema": "generator", "g": "generator", "d": "discriminator"}
    configs = {
        "g_ema": trainer.generator_kwargs(config),
        "g": trainer.generator_kwargs(config),
        "d": trainer.discriminator_kwargs(config),
    }
    meta = {
        "family": "stylegan2",
        "format": "test",
        "source": "test",
        "networks": {n: {"kind": kinds[n], "config": configs[n]} for n in names},
    }
    model_format.save_model(path, {n: jax.device_get(state[n]) for n in names}, meta)


def test_resume_initialises_g_g_ema_and_d_from_a_model_folder(tmp_path, caplog):
    config = tiny_config()
    task = trainer.make_task(config)
    init = jax.jit(task.init_state)
    source, fresh = init(jax.random.PRNGKey(1)), init(jax.random.PRNGKey(0))
    save_stylegan2_folder(tmp_path / "all", config, source)
    save_stylegan2_folder(tmp_path / "g_ema", config, source, names=("g_ema",))
    resumed = trainer.make_task(
        set_fields(tiny_config(), **{"model.resume": str(tmp_path / "all")})
    )
    state = resumed.prepare_state(fresh)
    for name in ("g", "g_ema", "d"):
        for a, b in zip(
            jax.tree_util.tree_leaves(state[name]), jax.tree_util.tree_leaves(source[name])
        ):
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert state["g_opt"] is fresh["g_opt"] and int(state["step"]) == 0
    # A folder with only G_ema (a model exported here, or converted with the default --which):
    # G starts from G_ema, D stays random, and the log says so.
    only = trainer.make_task(set_fields(tiny_config(), **{"model.resume": str(tmp_path / "g_ema")}))
    with caplog.at_level("WARNING"):
        state = only.prepare_state(fresh)
    assert "has no discriminator" in caplog.text
    for a, b in zip(
        jax.tree_util.tree_leaves(state["g"]), jax.tree_util.tree_leaves(source["g_ema"])
    ):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree_util.tree_leaves(state["d"]), jax.tree_util.tree_leaves(fresh["d"])):
        np.testing.assert_array_equal(a, b)
    # A folder whose architecture differs names the fields and the flags to set.
    wide = set_fields(
        tiny_config(), **{"model.channel_max": 32, "model.resume": str(tmp_path / "all")}
    )
    with pytest.raises(ValueError, match=r"channels: the folder's \[16, 16, 8\], the config's"):
        trainer.make_task(wide).prepare_state(fresh)
    try:
        trainer.make_task(wide).prepare_state(fresh)
    except ValueError as e:
        assert "--config.model.channel_base=128 --config.model.channel_max=16" in str(e)


def test_ada_folder_variants_follow_the_auto_rules_and_need_a_folder():
    c = stylegan2_configs.get_config("ada_folder")
    assert (c.data.name, c.model.resolution, c.batch_size) == ("image_folder/256", 256, 16)
    assert c.train.r1_gamma == pytest.approx(0.0002 * 256**2 / 16)  # 0.8192
    assert (c.train.ema_kimg, c.train.ema_rampup, c.train.g_lr) == (5.0, 0.05, 0.0025)
    assert (c.model.channel_base, c.model.mapping_layers, c.model.mbstd_group_size) == (
        16384,
        2,
        4,
    )
    assert (c.augment.preset, c.augment.ada_target, c.eval.split, c.data.flip) == (
        "bgc",
        0.6,
        "train",
        True,
    )
    big = stylegan2_configs.get_config("ada_folder1024")
    assert (big.batch_size, big.train.g_lr, big.model.channel_base) == (4, 0.002, 32768)
    with pytest.raises(ValueError, match="--config.data.folder=/path/to/images"):
        trainer.make_data(c)


def test_labelled_folder_gives_one_hot_batches(tmp_path):
    """data.use_labels: c_dim from the folder's classes (one sub-folder each), batches carry
    one-hot labels; an image without a class is refused before training."""
    from PIL import Image

    from stylejax.data import image_folder

    folder = tmp_path / "images"
    for k, name in enumerate(("cats", "dogs")):
        for i in range(4):
            (folder / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((32, 32, 3), 60 * k + 10 * i, np.uint8)).save(
                folder / name / f"{i}.png"
            )
    config = tiny_config(
        **{
            "data.name": "image_folder/32",
            "data.folder": str(folder),
            "data.directory": str(tmp_path / "tfds"),
            "data.use_labels": True,
            "data.flip": False,
        }
    )
    image_folder.resolve_config(config)
    task = trainer.make_task(config)
    assert config.model.c_dim == 2 and task.batch_spec["c"].shape == (BATCH, 2)
    batches, _ = trainer.make_data(config)
    batch = next(batches)
    assert batch["c"].shape == (BATCH, 2) and set(batch["c"].sum(1)) == {1.0}
    # Brightness tells the class apart here (cats 0-30, dogs 60-90).
    dark = batch["image"].mean((1, 2, 3)) < (45 / 127.5 - 1)
    np.testing.assert_array_equal(batch["c"][:, 0], dark.astype(np.float32))
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "stray.png")
    config.model.c_dim = 0
    with pytest.raises(ValueError, match="1 of 9 examples"):
        trainer.make_data(config)


def test_rendered_batches_refuse_a_z_too_small_for_the_factors():
    config = renderer_config()
    config.model.z_dim = 16
    batches = trainer.rendered_batches(config)
    with pytest.raises(ValueError, match="z_dim 16 is below the 22 factors"):
        next(batches)
