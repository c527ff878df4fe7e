"""Sharding rules as data (loop.make_mesh, loop.state_sharding) and FSDP: a StyleGAN2 step
on a data × fsdp mesh of the 8 fake CPU devices equals the 1-device step."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from test_train_stylegan2 import BATCH, real_images, tiny_config

from configs import stylegan2 as stylegan2_configs
from stylejax.train import loop
from stylejax.train import stylegan2 as trainer


def shapes(**leaves):
    return {name: jax.ShapeDtypeStruct(shape, jnp.float32) for name, shape in leaves.items()}


def test_make_mesh_resolves_the_leftover_axis():
    assert jax.device_count() == 8, "conftest must fake 8 CPU devices"
    assert dict(loop.make_mesh().shape) == {"data": 8}
    assert dict(loop.make_mesh(axes=(("data", -1), ("fsdp", 2))).shape) == {"data": 4, "fsdp": 2}
    assert dict(loop.make_mesh(jax.devices()[:2], (("fsdp", -1),)).shape) == {"fsdp": 2}
    with pytest.raises(ValueError, match="does not cover 8 devices"):
        loop.make_mesh(axes=(("data", 3),))


def test_batch_splits_over_data_and_fsdp():
    mesh = loop.make_mesh(axes=(("data", 2), ("fsdp", 4)))
    assert loop.batch_sharded(mesh).spec == P(("data", "fsdp"))
    batch = loop.global_batch({"x": np.arange(16.0).reshape(8, 2)}, mesh)
    assert {shard.data.shape for shard in batch["x"].addressable_shards} == {(1, 2)}


def test_rules_first_match_wins_and_leaves_that_do_not_divide_replicate(caplog):
    config = stylegan2_configs.get_config()
    config.sharding.rules = (
        (r"g/.*/weight", (None, "fsdp")),
        (r".*/weight", ("fsdp",)),
        (r".*/bias", (("data", "fsdp"),)),
    )
    mesh = loop.make_mesh(axes=(("data", 2), ("fsdp", 4)))
    abstract = {
        "g": {"conv": shapes(weight=(3, 8), bias=(8,))},
        "d": {
            "fc": shapes(weight=(12, 5), bias=(4,)),
            "scale": jax.ShapeDtypeStruct((), jnp.float32),
        },
        "e": shapes(weight=(6, 8), bias_scale=(8,)),  # 6 rows don't split 4 ways; no rule
        "f": {"weight": jax.ShapeDtypeStruct((), jnp.float32)},  # more spec than dimensions
    }
    with caplog.at_level(logging.INFO):
        got = loop.state_sharding(config, mesh, abstract)
    specs = jax.tree_util.tree_map(lambda s: s.spec, got)
    assert specs == {
        "g": {"conv": {"weight": P(None, "fsdp"), "bias": P(("data", "fsdp"))}},
        "d": {"fc": {"weight": P("fsdp"), "bias": P()}, "scale": P()},
        "e": {"weight": P(), "bias_scale": P()},
        "f": {"weight": P()},
    }
    assert all(s.mesh == mesh for s in jax.tree_util.tree_leaves(got))
    for name in ("d/fc/bias (4,)", "e/weight (6, 8)", "f/weight ()"):
        assert name in caplog.text


def test_default_rules_replicate_everything():
    config = stylegan2_configs.get_config()
    assert config.sharding.rules == () and config.sharding.mesh == (("data", -1),)
    mesh = loop.make_mesh()
    got = loop.state_sharding(config, mesh, shapes(a=(8, 8), b=(16,)))
    assert all(s.spec == P() for s in jax.tree_util.tree_leaves(got))


def test_fsdp_step_on_a_data_by_fsdp_mesh_equals_one_device():
    """ffhq1024's FSDP rules on the tiny model: data 2 × fsdp 4 against 1 device."""
    loop.setup_jax()
    config = tiny_config()
    config.sharding.rules = stylegan2_configs.get_config("ffhq1024").sharding.rules
    task = trainer.make_task(config)
    abstract = jax.eval_shape(task.init_state, jax.random.PRNGKey(0))
    state = jax.jit(task.init_state)(jax.random.PRNGKey(0))  # step 0: both regularisers run
    batch = {"image": jnp.asarray(real_images()[:BATCH])}

    def one_step(devices, axes):
        mesh = loop.make_mesh(devices, axes)
        shardings = loop.state_sharding(config, mesh, abstract)
        placed = jax.device_put(jax.tree_util.tree_map(jnp.copy, state), shardings)
        step = loop.compile_step(task, mesh, shardings)
        return step(placed, jax.device_put(batch, loop.batch_sharded(mesh)))[0]

    one = one_step(jax.devices()[:1], (("data", 1), ("fsdp", 1)))
    sharded = one_step(jax.devices(), (("data", 2), ("fsdp", 4)))

    g, d = sharded["g"]["params"], sharded["d"]["params"]
    g_mu = sharded["g_opt"][0].mu
    for leaf, spec in (
        (g["synthesis"]["b16"]["conv0"]["weight"], P(None, None, "fsdp")),
        (g["synthesis"]["b16"]["conv0"]["affine"]["weight"], P("fsdp")),
        (g["mapping"]["fc0"]["weight"], P("fsdp")),
        (g_mu["synthesis"]["b16"]["torgb"]["weight"], P(None, None, "fsdp")),
        (sharded["g_ema"]["params"]["synthesis"]["b8"]["conv1"]["weight"], P(None, None, "fsdp")),
        (d["b16"]["fromrgb"]["weight"], P(None, None, None, "fsdp")),
        (d["b4"]["out"]["weight"], P("fsdp")),
        (g["synthesis"]["b16"]["conv0"]["bias"], P()),
    ):
        assert leaf.sharding.spec == spec
        split = [n // 4 if axis == "fsdp" else n for n, axis in zip(leaf.shape, spec)]
        assert leaf.addressable_shards[0].data.shape == tuple(split + list(leaf.shape[len(spec) :]))

    one, sharded = jax.device_get((one, sharded))
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(one), jax.tree_util.tree_leaves(sharded)
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))
