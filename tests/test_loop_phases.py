"""The engine's optional warm-up phase (loop.Task.warmup_step): it runs the first
warmup_steps steps, its metrics are logged apart from the main phase's, and a run resumed
after it goes straight on with the main step."""

import jax.numpy as jnp
import numpy as np

from configs import common
from stylejax.train import loop


def toy_config(num_steps):
    c = common.base_config(
        "toy",
        "",
        ("",),
        num_steps=num_steps,
        log_every=2,
        checkpoint_every=1,
        keep_checkpoints=2,
        sample_every=1000,
        data_name="none",
        shuffle_buffer=1,
    )
    c.eval_every = 1000
    return c


def toy_task(warmup_steps):
    def step_adding(amount):
        def step(state, batch):
            new = {"step": state["step"] + 1, "w": state["w"] + amount + 0 * batch["x"].sum()}
            return new, {"amount": jnp.float32(amount)}

        return step

    return loop.Task(
        init_state=lambda rng: {"step": jnp.zeros((), jnp.int32), "w": jnp.zeros(())},
        train_step=step_adding(10.0),
        samples=None,
        global_batch_size=8,
        parameters=lambda s: {"w": {"w": s["w"]}},
        warmup_step=step_adding(1.0),
        warmup_steps=warmup_steps,
    )


def batches():
    while True:
        yield {"x": np.zeros((8, 1), np.float32)}


def test_warmup_phase_runs_first_and_is_logged_apart(tmp_path):
    state, history = loop.run(toy_task(3), toy_config(6), tmp_path, batches())
    assert float(state["w"]) == 3 * 1 + 3 * 10
    # Logged every 2 steps, and at the phase change: step 3 closes the warm-up's interval.
    assert history == [
        (2, {"amount": 1.0}),
        (3, {"amount": 1.0}),
        (5, {"amount": 10.0}),
        (6, {"amount": 10.0}),
    ]
    # Resumed past the warm-up (a longer run in the same workdir): main steps only.
    state, _ = loop.run(toy_task(3), toy_config(8), tmp_path, batches())
    assert float(state["w"]) == 33 + 2 * 10
