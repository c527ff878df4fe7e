"""ReStyle and e4e training on tiny models (a random 16 px generator, IR-18 trunk at 8
channels): every iteration's loss falls with training, scan and unrolled iterations agree,
one update per batch (or per iteration), bootstrapping, and e4e's progressive stages, pools,
delta loss and discriminator rules."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import e4e as e4e_configs
from configs import restyle as restyle_configs
from stylejax.models import e4e, restyle
from stylejax.models import stylegan2 as sg
from stylejax.train import e4e as e4e_train
from stylejax.train import gan
from stylejax.train import psp_family as family
from stylejax.train import restyle as restyle_train

RES = 16
BATCH = 8


def tiny_config(make, **restyle_fields):
    c = make.get_config("")
    c.loss.lpips = c.loss.id = 0.0
    c.optimizer.lr = 3e-3
    for key, value in restyle_fields.items():
        c.restyle[key] = value
    return c


@functools.cache
def generator():
    G = sg.Generator(
        z_dim=16, w_dim=16, img_resolution=RES, channels=(16, 16, 16), mapping_layers=2
    )
    variables = sg.init_variables(G, jax.random.PRNGKey(1), jnp.zeros((1, 16)))
    return G, variables


def frozen(G, g_vars):
    return {"decoder": g_vars, "latent_avg": family.latent_average(G, g_vars, n=2000)}


@functools.partial(jax.jit, static_argnums=0)
def targets(G, g_vars, key):
    """Faces the tiny generator can make: truncated samples with its constant noise."""
    z = jax.random.normal(key, (BATCH, G.z_dim))
    return G.apply(g_vars, z, truncation_psi=0.7, noise_mode="const")


def trunk(encoder_class, **kwargs):
    # 16 px input → 1×1 final map: map2style blocks are a single dense layer.
    return encoder_class(n_styles=6, style_dim=16, num_layers=18, mode="ir", base_width=8, **kwargs)


def restyle_task(config, encoder_class=restyle.BackboneEncoder):
    G, g_vars = generator()
    model = restyle.ReStyle(trunk(encoder_class, block_spatial=1), G)
    tx = family.optimizer(config)
    weights = family.loss_weights(config, False, False)
    step = jax.jit(
        functools.partial(
            restyle_train.train_step, config, model, None, tx, None, weights, {}, None
        )
    )
    state = family.init_encoder_state(config, model, tx, (RES, RES, 6), jax.random.PRNGKey(0))
    return model, step, state, frozen(G, g_vars)


# --------------------------------------------------------------------------- ReStyle


def config_a(**fields):
    """N = 2 iterations summed into one update under lax.scan (at this tiny size scan
    compiles and runs faster than unrolled), with Adam; the tests that use it share one
    compiled step (the persistent compilation cache)."""
    fields = {"scan": True, "update_each_iteration": False, **fields}
    config = tiny_config(restyle_configs, n_iters_per_batch=2, **fields)
    config.optimizer.name = "adam"
    return config


def largest_move(before, after) -> float:
    moved = jax.tree_util.tree_map(lambda a, b: np.abs(a - b).max(), after, before)
    return float(max(jax.tree_util.tree_leaves(moved)))


@pytest.fixture(scope="module")
def trained_restyle():
    """30 steps of ReStyle-pSp on fresh generated batches: (metrics per step, the largest
    parameter change of the first step)."""
    config = config_a()
    _, step, state, fz = restyle_task(config)
    G, g_vars = generator()
    history, first_move = [], None
    for i in range(30):
        before = jax.device_get(state["params"]) if i == 0 else None
        x = targets(G, g_vars, jax.random.PRNGKey(100 + i))
        state, metrics = step(state, {"source": x, "target": x}, fz)
        if i == 0:
            first_move = largest_move(before, jax.device_get(state["params"]))
        history.append(jax.device_get(metrics))
    assert step._cache_size() == 1  # one trace served all 30 steps
    return history, first_move


def test_restyle_training_lowers_the_loss_of_every_iteration(trained_restyle):
    history, _ = trained_restyle
    for t in (1, 2):
        first = np.mean([m[f"iter{t}/l2"] for m in history[:5]])
        last = np.mean([m[f"iter{t}/l2"] for m in history[-5:]])
        assert last < 0.7 * first, (t, first, last)
    assert all(np.isfinite(m["loss"]) for m in history)
    # The step's loss is the sum of the iterations' losses (one update from their gradients).
    assert history[-1]["loss"] == pytest.approx(
        history[-1]["iter1/loss"] + history[-1]["iter2/loss"], rel=1e-5
    )


def test_summed_gradients_make_one_update_per_batch(trained_restyle):
    """The public coach sums the N iterations' gradients into one optimiser step: with
    Adam's first step (−lr·g/(|g| + ε)) no weight moves by more than lr."""
    lr = config_a().optimizer.lr
    _, summed = trained_restyle
    assert 0.9 * lr < summed <= lr * 1.0001


def test_an_update_per_iteration_with_unrolled_iterations():
    """update_each_iteration with the other schedule (unrolled): N Adam updates move
    consistently-signed weights by up to N·lr (a second compiled step: a minute cold)."""
    lr = config_a().optimizer.lr
    _, step, state, fz = restyle_task(config_a(update_each_iteration=True, scan=False))
    before = jax.device_get(state["params"])
    G, g_vars = generator()
    x = targets(G, g_vars, jax.random.PRNGKey(100))
    state, metrics = step(state, {"source": x, "target": x}, fz)
    assert largest_move(before, jax.device_get(state["params"])) > 1.5 * lr
    assert np.isfinite(float(metrics["iter2/l2"]))


def test_encoder_bootstrapping_starts_from_the_given_codes():
    """With init (another encoder's codes), step 1 adds its residual to init, and the
    result depends on where it started."""
    G, g_vars = generator()
    model, _, state, fz = restyle_task(config_a())
    variables = family.encoder_variables(fz, state["params"], state["batch_stats"])
    x = targets(G, g_vars, jax.random.PRNGKey(5))
    run = jax.jit(lambda v, x, init: model.apply(v, x, 2, init=init, return_residuals=True))
    init = fz["latent_avg"][None] + 0.3 * jax.random.normal(jax.random.PRNGKey(6), (BATCH, 6, 16))
    _, codes, residuals = run(variables, x, init)
    np.testing.assert_allclose(codes[0], init + residuals[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(codes[1], codes[0] + residuals[1], rtol=1e-6, atol=1e-6)
    _, _codes_avg, residuals_avg = run(variables, x, jnp.broadcast_to(fz["latent_avg"], init.shape))
    # The encoder saw G(init) rather than the average image: other residuals.
    assert np.abs(np.asarray(residuals[0]) - np.asarray(residuals_avg[0])).max() > 1e-4


def test_each_variant_gets_its_recipes_encoder():
    """The synthetic default inverts with pSp's feature pyramid; the public FFHQ recipes keep their BackboneEncoder / ProgressiveBackboneEncoder."""
    types = {v: restyle_configs.get_config(v).model.encoder_type for v in restyle_configs.VARIANTS}
    assert types == {
        "": "GradualStyleEncoder",
        "e4e": "ProgressiveBackboneEncoder",
        "ffhq_encode": "BackboneEncoder",
        "ffhq_encode_e4e": "ProgressiveBackboneEncoder",
    }
    config = restyle_configs.get_config("")
    assert config.restyle.update_each_iteration and config.num_steps == 800  # README's run
    assert not restyle_configs.get_config("ffhq_encode").restyle.update_each_iteration
    G, g_vars = generator()
    kwargs = restyle_train.encoder_kwargs(config, G, RES)
    assert kwargs["block_spatial"] == [1, 2, 4]  # its 1/16, 1/8 and 1/4 maps, not the last map
    encoder = restyle.build_encoder(config.model.encoder_type, **kwargs)
    assert type(encoder).__name__ == "GradualStyleEncoder"


def test_the_lr_schedule_counts_updates_when_each_iteration_updates():
    """With restyle.update_each_iteration a batch makes N optimiser updates: the cosine
    decay must stretch over num_steps × N updates, not end after num_steps of them."""
    c = restyle_configs.get_config("")
    c.num_steps, c.restyle.n_iters_per_batch = 100, 5
    c.restyle.update_each_iteration = False
    summed = family.learning_rate(c)
    assert float(summed(49)) == pytest.approx(c.optimizer.lr) and float(summed(100)) == 0.0
    c.restyle.update_each_iteration = True
    each = family.learning_rate(c)
    assert float(each(249)) == pytest.approx(c.optimizer.lr)
    assert float(each(375)) == pytest.approx(c.optimizer.lr / 2, rel=1e-5)
    assert float(each(500)) == 0.0


# --------------------------------------------------------------------------- e4e rules


def test_progressive_steps_and_stage():
    c = tiny_config(e4e_configs)
    assert e4e_train.progressive_steps(c, 4) == [0, 100, 150, 200]
    stages = [int(e4e_train.stage_at([0, 100, 150, 200], s)) for s in (0, 99, 100, 149, 150, 10**6)]
    assert stages == [0, 0, 1, 1, 2, 3]
    c.e4e.progressive_steps = (0, 5, 9, 20)
    assert e4e_train.progressive_steps(c, 4) == [0, 5, 9, 20]
    with pytest.raises(ValueError, match="expected 6 increasing steps"):
        e4e_train.progressive_steps(c, 6)
    c.e4e.progressive_steps = ()
    c.e4e.progressive_start = -1
    assert e4e_train.progressive_steps(c, 4) is None and e4e_train.stage_at(None, 3) is None


def test_latent_pool_fills_then_swaps_half_the_time():
    pool, count = jnp.zeros((4, 2)), jnp.int32(0)
    ws = jnp.arange(12, dtype=jnp.float32).reshape(6, 2)
    pool, count, out = e4e_train.pool_query(pool, count, ws[:4], jax.random.PRNGKey(0))
    np.testing.assert_array_equal(out, ws[:4])  # while filling: returned unchanged
    np.testing.assert_array_equal(pool, ws[:4])
    assert int(count) == 4
    many = jnp.arange(2000, dtype=jnp.float32)[:, None] * jnp.ones((1, 2)) + 100
    _, _, out = e4e_train.pool_query(pool, count, many, jax.random.PRNGKey(1))
    swapped = np.mean(np.asarray(out[:, 0]) != np.asarray(many[:, 0]))
    assert 0.45 < swapped < 0.55


def test_discriminator_step_applies_lazy_r1_on_its_interval():
    c = tiny_config(e4e_configs)
    c.e4e.use_w_pool = False
    D, d_tx = e4e_train.build_discriminator(c, 16)
    base = {
        "step": jnp.int32(0),
        **e4e_train.init_discriminator(c, D, d_tx, 16, jax.random.PRNGKey(0)),
    }
    real = jax.random.normal(jax.random.PRNGKey(1), (BATCH, 16))
    fake = jax.random.normal(jax.random.PRNGKey(2), (BATCH, 6, 16)) + 1.0
    step = jax.jit(functools.partial(e4e_train.discriminator_step, c, D, d_tx))
    on, m_on = step(base, real, fake, None, jax.random.PRNGKey(3))
    off, m_off = step(dict(base, step=jnp.int32(1)), real, fake, None, jax.random.PRNGKey(3))
    assert float(m_on["d_r1_penalty"][1]) == 1.0 and float(m_off["d_r1_penalty"][1]) == 0.0
    want = jnp.mean(gan.r1_penalty(lambda w: D.apply({"params": base["d_params"]}, w), real))
    assert float(m_off["d_loss"]) == pytest.approx(float(m_on["d_loss"]), rel=1e-6)
    assert float(m_on["d_r1_penalty"][0]) > 0 and np.isfinite(float(want))
    leaves_on = jax.tree_util.tree_leaves(on["d_params"])
    leaves_off = jax.tree_util.tree_leaves(off["d_params"])
    assert any(np.abs(a - b).max() > 0 for a, b in zip(leaves_on, leaves_off))


def test_e4e_step_leaves_locked_offsets_untouched():
    """At stage 1 only styles_0 (w0) and styles_1 train: the other heads get zero gradient,
    so Ranger leaves them exactly as they were; the delta loss covers row 1 only."""
    config = tiny_config(e4e_configs)
    config.e4e.progressive_steps = (0, 0, 50, 60, 70, 80)  # stage 1 from step 0
    config.e4e.r1 = 0.0  # R1 and the pools have their own tests; a smaller program here
    config.e4e.use_w_pool = False
    G, g_vars = generator()
    encoder = trunk(e4e.Encoder4Editing, block_spatial=(1, 2, 4), taps=(3, 5, 7))
    model = e4e.E4E(encoder, G, start_from_latent_avg=True)
    tx = family.optimizer(config)
    D, d_tx = e4e_train.build_discriminator(config, 16)
    weights = family.loss_weights(config, False, False)
    steps = e4e_train.progressive_steps(config, 6)
    state = family.init_encoder_state(config, model, tx, (RES, RES, 3), jax.random.PRNGKey(0))
    state.update(e4e_train.init_discriminator(config, D, d_tx, 16, jax.random.PRNGKey(1)))
    traces = []

    def train_step(*args):  # runs once per trace
        traces.append(len(traces))
        return e4e_train.train_step(*args)

    step = jax.jit(functools.partial(train_step, config, model, D, tx, d_tx, weights, {}, steps))
    x = targets(G, g_vars, jax.random.PRNGKey(8))
    new, metrics = step(state, {"source": x, "target": x}, frozen(G, g_vars))
    assert float(metrics["stage"]) == 1.0
    # Later stages come from the traced step counter: the same compiled step serves them.
    for k, stage in ((50, 2), (60, 3), (85, 5)):
        _, later = step(
            dict(state, step=jnp.int32(k)), {"source": x, "target": x}, frozen(G, g_vars)
        )
        assert float(later["stage"]) == stage
    assert len(traces) == 1
    for i in range(6):
        changed = jax.tree_util.tree_map(
            lambda a, b: np.abs(np.asarray(a) - np.asarray(b)).max(),
            new["params"][f"styles_{i}"],
            state["params"][f"styles_{i}"],
        )
        assert (max(jax.tree_util.tree_leaves(changed)) > 0) == (i <= 1), i
    assert np.isfinite(float(metrics["grad_norm"]))
    assert float(metrics["loss_delta"]) > 0 and float(metrics["loss_adversarial"]) > 0
    assert float(metrics["d_loss"]) > 0
