"""One process of tests/test_multiprocess.py: joins the multi-process run the environment
describes (as `python -m stylejax.main` does), trains a tiny StyleGAN2 for a few steps with the
real engine on a fixed in-memory data set, and saves the resulting state as seen by this
process.

  python tests/multiprocess_driver.py --workdir=DIR --steps=3 --out=DIR/state_{process}.npz

Each process reads only its own rows of every global batch; the engine assembles them into the
global batch (loop.global_batch), so 2 processes × 4 devices and 1 process × 8 devices see the
same global batches.
"""

import argparse
import dataclasses
from pathlib import Path

import jax
import numpy as np

from configs import stylegan2 as stylegan2_configs
from stylejax.main import maybe_initialize_distributed


def tiny_config(steps: int):
    """configs/stylegan2.py's default shrunk until its step compiles in seconds."""
    c = stylegan2_configs.get_config()
    c.model.resolution = 16
    c.model.channel_max = 16
    c.model.z_dim = c.model.w_dim = 32
    c.model.mapping_layers = 1
    c.batch_size = 8
    c.num_steps = steps
    c.log_every = steps
    c.checkpoint_every = 10**9  # only the final save
    c.sample_every = 10**9
    return c


def global_images(config, seed=1234) -> np.ndarray:
    """Every step's global batch, fixed: (steps, batch, res, res, 3) in [-1, 1]."""
    r = config.model.resolution
    shape = (config.num_steps, config.batch_size, r, r, 3)
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def process_batches(images: np.ndarray):
    """This process's rows of each global batch, in process order (the mesh's device order)."""
    rows = images.shape[1] // jax.process_count()
    start = jax.process_index() * rows
    for batch in images:
        yield {"image": batch[start : start + rows]}


def local_copy(tree) -> dict[str, np.ndarray]:
    """The state is replicated: this process's first device holds all of it."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf.addressable_data(0)) for path, leaf in flat}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", required=True, help="npz path; {process} → process index")
    parser.add_argument(
        "--compilation_cache",
        default="",
        help="JAX persistent cache dir, for quick reruns of 1 process (reruns of 2 processes "
        "reading it have hung in a collective)",
    )
    parser.add_argument(
        "--unoptimized", action="store_true", help="compile ~3× faster, XLA optimisations off"
    )
    args = parser.parse_args(argv)

    maybe_initialize_distributed()
    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    if args.unoptimized:
        jax.config.update("jax_disable_most_optimizations", True)
    from stylejax.train import loop, stylegan2

    loop.setup_jax()
    config = tiny_config(args.steps)
    task = dataclasses.replace(stylegan2.make_task(config), samples=None)  # no sample compile
    data = process_batches(global_images(config))
    state, _ = loop.run(task, config, args.workdir, data)
    out = Path(args.out.format(process=jax.process_index()))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **local_copy(state))
    print(f"process {jax.process_index()}/{jax.process_count()}: saved {out}", flush=True)


if __name__ == "__main__":
    main()
