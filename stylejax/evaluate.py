r"""Evaluation metrics of a StyleGAN2 generator: FID, KID, precision/recall and PPL.

  python -m stylejax.evaluate --workdir=runs/s64 --config=configs/stylegan2.py:synthetic64 \
      --metrics=fid50k,kid50k,pr50k3,ppl_wend --inception=weights/inception \
      --lpips=weights/lpips_vgg
  python -m stylejax.evaluate --workdir=eval/ffhq --generator=ffhq_f --data=ffhq/1024 \
      --metrics=fid50k --inception=weights/inception

The generator is a converted checkpoint (`--generator`, see tools/convert_weights.py) or the
latest training checkpoint in --workdir (`--config` names the run's config; `--step` picks
another checkpoint). Metric names:

  fid{N}[k], kid{N}[k]   N generated images against min(N, split size) real ones
                         (fid50k, fid10k for quick checks, fid256 for a smoke test)
  pr{N}[k3]              improved precision and recall, k = 3 nearest neighbours (pr50k3)
  ppl_{w|z}{end|full}[N[k]]  perceptual path length; W or Z space, end-point or full-path
                         sampling, 50k samples unless N says otherwise (ppl_wend: StyleGAN2's)

FID, KID and precision/recall use the FID Inception's pool3 features (the real images' are
cached in WORKDIR/fid_stats by data set, split, resolution, count and weights); PPL uses
LPIPS-VGG. Results go to WORKDIR/metrics/metrics-<step>.json, to TensorBoard (eval/<name>)
in WORKDIR, and a grid of the first generated images to WORKDIR/metrics/samples-<step>.png.
Generated images: z ~ N(0, I) from --seed, random noise, no truncation (the papers'
protocol; --truncation_psi for other looks at a model). Everything runs data-parallel over
all devices of all processes.
"""

import dataclasses
import functools
import hashlib
import io
import json
import os
import re
import time
from pathlib import Path

import jax
import numpy as np
from absl import app, flags, logging

from stylejax import files, images, metrics, model_format
from stylejax.convert import inception as convert_inception
from stylejax.models import stylegan2 as sg

INCEPTION_ENV = "STYLEJAX_INCEPTION"  # default --inception
LPIPS_ENV = "STYLEJAX_LPIPS_VGG"  # default --lpips
GRID_IMAGES = 16  # generated images shown in metrics/samples-<step>.png

_FEATURE_METRIC = re.compile(r"^(fid|kid|pr)(\d+)(k?)(3?)$")
_PPL_METRIC = re.compile(r"^ppl_([wz])(end|full)(?:(\d+)(k?))?$")


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # fid, kid, pr, ppl
    num: int  # generated images (samples for PPL)
    space: str = "w"
    sampling: str = "end"


def parse_metrics(text: str) -> list[Metric]:
    """'fid50k,pr10k3,ppl_wend' → Metric specs; unknown names raise with the accepted forms."""
    out = []
    for name in [n.strip() for n in text.split(",") if n.strip()]:
        m = _FEATURE_METRIC.match(name)
        if m and (not m[4] or (m[1] == "pr" and m[3])):  # the k-NN '3' only after 'pr…k'
            out.append(Metric(name, m[1], int(m[2]) * (1000 if m[3] else 1)))
        elif m := _PPL_METRIC.match(name):
            num = 50_000 if m[3] is None else int(m[3]) * (1000 if m[4] else 1)
            out.append(Metric(name, "ppl", num, space=m[1], sampling=m[2]))
        else:
            raise ValueError(
                f"unknown metric {name!r}: expected fid<N>[k], kid<N>[k], pr<N>[k3] or "
                f"ppl_<w|z><end|full>[<N>[k]] (e.g. fid50k, kid50k, pr50k3, ppl_wend)"
            )
    if not out:
        raise ValueError("no metrics given: e.g. --metrics=fid50k,kid50k,pr50k3,ppl_wend")
    return out


# ---------------------------------------------------------------------------------------------
# Frozen networks: clear errors naming the file to fetch and the command that converts it


def load_inception(path):
    """(module, variables) of a converted FID Inception; says how to make one if missing."""
    how = (
        f"FID, KID and precision/recall need the FID Inception weights: download "
        f"{convert_inception.FILE_NAME} from {convert_inception.URL} and convert them once "
        f"with `python tools/convert_weights.py {convert_inception.FILE_NAME} "
        f"weights/inception`, then pass --inception=weights/inception (or set "
        f"{INCEPTION_ENV})"
    )
    return model_format.load_kind(path, "inception", how)


def load_lpips_vgg(path):
    """(module, variables) of a converted LPIPS-VGG; says how to make one if missing."""
    how = (
        "PPL needs LPIPS-VGG: the lpips package's linear heads (lpips/weights/v0.1/vgg.pth) "
        "and torchvision's VGG16 (vgg16-397923af.pth, "
        "https://download.pytorch.org/models/vgg16-397923af.pth), converted once with "
        "`python tools/convert_weights.py vgg.pth weights/lpips_vgg --lpips-backbone "
        f"vgg16-397923af.pth`, then pass --lpips=weights/lpips_vgg (or set {LPIPS_ENV})"
    )
    module, variables = model_format.load_kind(path, "lpips", how)
    if module.net != "vgg":
        raise ValueError(f"{path}: is LPIPS-{module.net}; PPL is defined with LPIPS-VGG. {how}")
    return module, variables


def weights_tag(variables) -> str:
    """A short digest of the weights, so cached statistics never mix two networks."""
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(variables):
        h.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
    return h.hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# Features


def real_batches(data: str, split: str, batch_size: int, resolution: int, data_dir=None):
    """This process's [n, H, W, 3] images in [-1, 1] of `split`, in stored order, unflipped;
    they must have the generator's `resolution`."""
    import tensorflow_datasets as tfds

    from stylejax.data import pipeline

    ds = pipeline.make_dataset(
        data,
        global_batch_size=batch_size,
        split=split,
        seed=None,
        keys=["image"],
        flip=False,
        shuffle=False,
        repeat=False,
        data_dir=data_dir,
    )
    for batch in tfds.as_numpy(ds):
        if batch["image"].shape[1:3] != (resolution, resolution):
            raise ValueError(
                f"{data} ({split}): images are {batch['image'].shape[1]}x"
                f"{batch['image'].shape[2]} but the generator makes {resolution}x{resolution}: "
                f"compare with the data set at the generator's resolution"
            )
        yield batch["image"]


def real_features(
    workdir, data, split, resolution, num, inception, batch_size, mesh=None, data_dir=None
):
    """pool3 features [min(num, split size), 2048] of the real images and their (μ, Σ),
    computed once and cached as WORKDIR/fid_stats/<data>-<split>-<res>px-<num>-<weights>.npz."""
    module, variables = inception
    name = f"{data.replace('/', '_')}-{split}-{resolution}px-{num}-{weights_tag(variables)}.npz"
    path = Path(workdir) / "fid_stats" / name
    if path.is_file():
        logging.info("real-image statistics from %s", path)
        cached = np.load(path)
        return cached["features"], (cached["mu"], cached["sigma"])
    parallel = metrics.DataParallel(module.apply, batch_size, mesh)
    batches = real_batches(data, split, batch_size, resolution, data_dir)
    feats = metrics.collect(parallel, variables, batches, num, f"Inception features of {data}")
    mu, sigma = metrics.feature_stats(feats)
    if jax.process_index() == 0:
        _save_npz(path, features=feats, mu=mu, sigma=sigma)
    return feats, (mu, sigma)


def _latents(seed: int, num: int, local_batch: int, z_dim: int):
    """This process's z batches: a stream per (seed, process), so every process draws its own."""
    rng = np.random.default_rng([seed, jax.process_index()])
    for _ in range(-(-num // (local_batch * jax.process_count()))):
        yield rng.standard_normal((local_batch, z_dim)).astype(np.float32)


def batch_parallel(G):
    """G with the per-sample (unfused) modulated convolutions: the same function, but the
    fused form's grouped convolution cannot be split over the batch axis."""
    return G.clone(fused_modconv=False)


def fake_features(G, g_vars, inception, num, batch_size, seed, truncation_psi=1.0, mesh=None):
    """pool3 features of `num` generated images (z from `seed`, random noise) and the first
    GRID_IMAGES images, for a sample grid."""
    module, inc_vars = inception
    G = batch_parallel(G)

    def features(constants, z):
        g, inc, key = constants
        img = G.apply(g, z, truncation_psi=truncation_psi, rngs={"noise": key})
        return {"features": module.apply(inc, img), "image": img}

    parallel = metrics.DataParallel(features, batch_size, mesh)
    g_vars, inc_vars = parallel.put((g_vars, inc_vars))
    key = jax.random.key(seed)
    progress = metrics.Progress("Inception features of generated images", num)
    feats, first = [], []
    for i, z in enumerate(_latents(seed, num, parallel.local_batch, G.z_dim)):
        out = parallel((g_vars, inc_vars, jax.random.fold_in(key, i)), z)
        feats.append(out["features"])
        if sum(map(len, first)) < GRID_IMAGES:
            first.append(out["image"])
        progress.update(len(z) * jax.process_count())
    return np.concatenate(feats)[:num], np.concatenate(first)[: min(num, GRID_IMAGES)]


def path_lengths(G, g_vars, lpips, metric: Metric, batch_size, seed, epsilon=1e-4, mesh=None):
    """`metric.num` PPL samples (see metrics.path_length_samples), face crop on."""
    module, lpips_vars = lpips
    G = batch_parallel(G)
    fn = functools.partial(_ppl_batch, G, module, epsilon=epsilon, space=metric.space, crop=True)
    parallel = metrics.DataParallel(fn, batch_size, mesh)
    g_vars, lpips_vars = parallel.put((g_vars, lpips_vars))
    rng = np.random.default_rng([seed, jax.process_index(), 1])
    key = jax.random.key(seed + 1)
    progress = metrics.Progress(f"{metric.name} path lengths", metric.num)
    out = []
    for i in range(-(-metric.num // batch_size)):
        n = parallel.local_batch
        z = rng.standard_normal((2, n, G.z_dim)).astype(np.float32)
        t = rng.uniform(size=n).astype(np.float32) * (metric.sampling == "full")
        out.append(parallel((g_vars, lpips_vars, jax.random.fold_in(key, i)), z[0], z[1], t))
        progress.update(n * jax.process_count())
    return np.concatenate(out)[: metric.num]


def _ppl_batch(G, lpips_module, constants, z0, z1, t, **kwargs):
    return metrics.path_length_samples(G, lpips_module, constants, z0, z1, t, **kwargs)


# ---------------------------------------------------------------------------------------------
# Driver


def evaluate(
    G,
    g_vars,
    wanted: list[Metric],
    workdir,
    *,
    data: str | None = None,
    split: str = "train",
    data_dir=None,
    inception=None,
    lpips=None,
    batch_size: int = 64,
    seed: int = 0,
    truncation_psi: float = 1.0,
    mesh=None,
    step: int = 0,
    source: str = "",
) -> dict:
    """Computes `wanted` for generator (G, g_vars); writes JSON, TensorBoard scalars and a
    sample grid into `workdir`; returns the JSON's content. `inception` and `lpips` are
    (module, variables) pairs, needed by the feature metrics and by PPL respectively."""
    from clu import metric_writers

    if G.c_dim:
        raise ValueError("evaluate: conditional generators (c_dim > 0) are not supported")
    start = time.perf_counter()
    results: dict[str, float] = {}
    counts: dict[str, int] = {}
    feature_metrics = [m for m in wanted if m.kind != "ppl"]
    first_images = None
    if feature_metrics:
        if inception is None:
            load_inception(None)  # raises, saying which file is needed
        if not data:
            raise ValueError("FID, KID and precision/recall need the real data set: --data")
        num_fake = max(m.num for m in feature_metrics)
        fake, first_images = fake_features(
            G, g_vars, inception, num_fake, batch_size, seed, truncation_psi, mesh
        )
        real, real_stats = real_features(
            workdir,
            data,
            split,
            G.img_resolution,
            num_fake,
            inception,
            batch_size,
            mesh,
            data_dir,
        )
        counts.update(real_images=len(real), generated_images=len(fake))
        for m in feature_metrics:
            n_real = min(m.num, len(real))
            if n_real < m.num:
                logging.warning("%s: the %s split has only %d images", m.name, split, len(real))
            r, f = real[:n_real], fake[: m.num]
            if m.kind == "fid":
                # The cached (μ, Σ) when all real features take part: the 2048² Σ is costly.
                real_stats = real_stats if n_real == len(real) else metrics.feature_stats(r)
                results[m.name] = metrics.frechet_distance_from_stats(
                    *real_stats, *metrics.feature_stats(f)
                )
            elif m.kind == "kid":
                results[m.name] = metrics.kernel_inception_distance(r, f, seed=seed)
            else:
                precision, recall = metrics.precision_recall(r, f, k=3)
                results[f"{m.name}_precision"] = precision
                results[f"{m.name}_recall"] = recall
            logging.info("%s done: %s", m.name, {k: results[k] for k in results})
    for m in wanted:
        if m.kind == "ppl":
            if lpips is None:
                load_lpips_vgg(None)  # raises, saying which files are needed
            samples = path_lengths(G, g_vars, lpips, m, batch_size, seed, mesh=mesh)
            results[m.name] = metrics.perceptual_path_length(samples)
            counts[f"{m.name}_samples"] = len(samples)
            logging.info("%s = %.4g", m.name, results[m.name])
    report = {
        "metrics": results,
        "step": step,
        "generator": source,
        "data": data,
        "split": split,
        "counts": counts,
        "seed": seed,
        "truncation_psi": truncation_psi,
        "devices": jax.device_count(),
        "seconds": round(time.perf_counter() - start, 1),
    }
    writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    writer.write_scalars(step, {f"eval/{k}": v for k, v in results.items()})
    if jax.process_index() == 0:
        out = Path(workdir) / "metrics"
        files.write_json(out / f"metrics-{step:07d}.json", report)
        if first_images is not None:
            grid = images.make_grid(first_images, pad=1)
            images.save_image(grid, out / f"samples-{step:07d}.png")
            writer.write_images(step, {"eval/samples": grid[None]})
    writer.flush()
    return report


def _save_npz(path: Path, **arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    files.write_atomic(path, buffer.getvalue())


def load_generator(generator, config, workdir, step=None):
    """(G, variables, source, step): a converted checkpoint, or the EMA generator of the
    training run in `workdir` (config: the run's ml_collections config)."""
    if generator:
        G, variables = model_format.load_pretrained(
            generator, "g_ema" if _has_g_ema(generator) else None
        )
        if not isinstance(G, sg.Generator):
            raise ValueError(f"{generator}: not a StyleGAN2 generator checkpoint")
        return G, variables, str(generator), 0 if step is None else step
    if config is None:
        raise ValueError(
            "evaluate: give --generator=CONVERTED_DIR, or --config (the training run's config) "
            "to evaluate the latest checkpoint in --workdir"
        )
    if config.get("method") != "stylegan2":
        raise ValueError(f"evaluate: config.method={config.get('method')!r}: needs stylegan2")
    from stylejax.train import loop
    from stylejax.train import stylegan2 as trainer

    abstract = jax.eval_shape(trainer.make_task(config).init_state, jax.random.PRNGKey(0))
    state, found = loop.restore_checkpoint(workdir, abstract, step)
    G = model_format.build("generator", trainer.generator_kwargs(config))
    # float32 numpy, as the exported model would load
    variables = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), state["g_ema"])
    source = (
        f"{workdir} step {found} ({config.variant or 'default'} variant, "
        f"{found * config.batch_size} images)"
    )
    return G, variables, source, found


def _has_g_ema(path) -> bool:
    return "g_ema" in model_format.read_config(path)["networks"]


# ---------------------------------------------------------------------------------------------
# Command line


def define_flags():
    """The command's flags, defined only when run as a program. --config and --workdir are
    stylejax.main's (imported for its multi-process start-up); --config is optional here."""
    import stylejax.main  # noqa: F401  (defines --config and --workdir)

    flags.FLAGS["config"].validators.clear()  # --generator needs no training config
    flags.DEFINE_string("metrics", "fid50k", "Comma-separated metric names.")
    flags.DEFINE_string("generator", None, "A converted generator checkpoint.")
    flags.DEFINE_integer("step", None, "Training checkpoint step (default: latest).")
    flags.DEFINE_string("data", None, "TFDS data set (default: the config's data.name).")
    flags.DEFINE_string("split", "train", "Split of the real images.")
    flags.DEFINE_string("data_dir", None, "TFDS data_dir.")
    flags.DEFINE_string(
        "inception", os.environ.get(INCEPTION_ENV), f"Converted FID Inception (${INCEPTION_ENV})."
    )
    flags.DEFINE_string(
        "lpips", os.environ.get(LPIPS_ENV), f"Converted LPIPS-VGG, for PPL (${LPIPS_ENV})."
    )
    flags.DEFINE_integer("batch_size", 64, "Global batch (a multiple of the devices).")
    flags.DEFINE_integer("seed", 0, "Seed of the latents and noise.")
    flags.DEFINE_float("truncation_psi", 1.0, "Truncation of the generated images.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from stylejax.main import maybe_initialize_distributed

    FLAGS = flags.FLAGS
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required (results, caches and checkpoints live there)")
    maybe_initialize_distributed()
    config = FLAGS.config
    try:  # set-up errors are messages for the user, not tracebacks
        if config is not None:  # data.folder -> data.directory: the folder's own data_dir
            from stylejax.data import image_folder

            image_folder.resolve_config(config)
        wanted = parse_metrics(FLAGS.metrics)
        # The frozen networks first: a missing file should not wait for the generator.
        needs_features = any(m.kind != "ppl" for m in wanted)
        inception = load_inception(FLAGS.inception) if needs_features else None
        lpips = load_lpips_vgg(FLAGS.lpips) if any(m.kind == "ppl" for m in wanted) else None
        G, g_vars, source, step = load_generator(FLAGS.generator, config, FLAGS.workdir, FLAGS.step)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"stylejax.evaluate: {e}") from None
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")  # TensorFlow only reads the data
    from stylejax.train import loop

    loop.setup_jax()  # sharding-independent random draws, quiet orbax
    data = FLAGS.data or (config.data.name if config is not None else None)
    data_dir = FLAGS.data_dir or (config.data.get("directory") or None if config else None)
    report = evaluate(
        G,
        g_vars,
        wanted,
        FLAGS.workdir,
        data=data,
        split=FLAGS.split,
        data_dir=data_dir,
        inception=inception,
        lpips=lpips,
        batch_size=FLAGS.batch_size,
        seed=FLAGS.seed,
        truncation_psi=FLAGS.truncation_psi,
        step=step,
        source=source,
    )
    print(json.dumps(report["metrics"], indent=2, sort_keys=True))


if __name__ == "__main__":
    define_flags()
    app.run(main)
