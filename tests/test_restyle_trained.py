"""ReStyle's defining property on a trained model: on the synthetic faces' test split the
reconstruction error falls with every refinement step. The model is the small one
tools/make_restyle_fixture.py trains (400 steps of the default config with an IR-18 trunk at
width 8, against the shipped 64 px generator, which it stores with it)."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylejax.data import face_renderer, synthetic_faces
from stylejax.model_format import load_pretrained
from stylejax.models import restyle

FIXTURE = Path(__file__).parent / "data" / "restyle_synthetic64"
NUM_FACES = 64


def render_test_split(n: int) -> np.ndarray:
    """The first n faces of synthetic_faces/64's test split, in [-1, 1] (rendered directly:
    the same pixels the TFDS build stores)."""
    faces = []
    for index in range(n):
        factors = synthetic_faces.example_factors(0, "test", index)
        faces.append(face_renderer.render_example(factors, 64)["image"])
    return np.stack(faces).astype(np.float32) / 127.5 - 1.0


@pytest.fixture(scope="module")
def per_step_mse():
    """MSE of G(w_avg) (step 0) and of steps 1…5."""
    module, variables = load_pretrained(FIXTURE)
    x = jnp.asarray(render_test_split(NUM_FACES))

    @jax.jit
    def run(x):
        _, start = module.apply(variables, x, method=restyle.ReStyle.start)
        images, _ = restyle.run_iterations(module, variables, x, 5)
        return jnp.concatenate([start[None], images])

    outputs = run(x)
    return np.asarray(jnp.mean(jnp.square(outputs - x[None]), axis=(1, 2, 3, 4)))


def test_the_fixture_is_a_stored_restyle_model():
    module, _ = load_pretrained(FIXTURE)
    assert isinstance(module, restyle.ReStyle)
    assert type(module.encoder).__name__ == "BackboneEncoder"


def test_error_falls_with_each_of_the_first_three_steps(per_step_mse):
    mse = per_step_mse
    # Each step refines the last: strictly lower error through step 3 ...
    for t in range(1, 4):
        assert mse[t] < mse[t - 1], (t, mse.tolist())
    # ... by a clear margin, not rounding: step 1 removes most of the w_avg error, and
    # steps 2 and 3 together remove at least a fifth of what is left.
    assert mse[1] < 0.5 * mse[0], mse.tolist()
    assert mse[3] < 0.8 * mse[1], mse.tolist()
    # Later steps may plateau but do not undo the refinement.
    assert mse[5] < mse[1], mse.tolist()
