"""Input-pipeline throughput: images/s that `pipeline.make_dataset` delivers as numpy
batches, per resolution and task, on this machine's CPUs.

    python tools/benchmark_data.py [--resolutions 64 256] [--batch 32] [--batches 100]
"""

import argparse
import time

import tensorflow_datasets as tfds

from stylejax.data import pipeline


def measure(name, task, batch_size, batches, data_dir=None, warmup=10):
    """Images/s over `batches` batches after `warmup` batches (which fill the shuffle buffer
    and start the parallel maps)."""
    ds = pipeline.make_dataset(
        name, global_batch_size=batch_size, seed=0, task=task, data_dir=data_dir
    )
    iterator = iter(tfds.as_numpy(ds))
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def run_data_benchmark(
    resolutions=(64, 256),
    tasks=("encode", "seg_to_face"),
    batch_size=32,
    batches=100,
    data_dir=None,
):
    """Prints a table of images/s for synthetic_faces at each resolution and task (building
    a data set first if it is not there yet, and reporting how long that took). Returns the
    rows as dicts."""
    rows = []
    for resolution in resolutions:
        name = f"synthetic_faces/{resolution}"
        builder = tfds.builder(name, data_dir=data_dir)
        start = time.perf_counter()
        built_now = not builder.is_prepared()
        builder.download_and_prepare()
        build_s = time.perf_counter() - start if built_now else None
        for task in tasks:
            rows.append(
                dict(
                    dataset=name,
                    task=task,
                    batch=batch_size,
                    build_s=build_s,
                    images_per_s=measure(name, task, batch_size, batches, data_dir),
                )
            )
    print(f"{'dataset':<22} {'task':<14} {'batch':>5} {'images/s':>9} {'build (s)':>10}")
    for row in rows:
        build = f"{row['build_s']:.0f}" if row["build_s"] is not None else "cached"
        print(
            f"{row['dataset']:<22} {row['task']:<14} {row['batch']:>5} "
            f"{row['images_per_s']:>9.0f} {build:>10}"
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--tasks", nargs="+", default=["encode", "seg_to_face"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument(
        "--data_dir", default=None, help="default: $TFDS_DATA_DIR, else ~/tensorflow_datasets"
    )
    args = parser.parse_args(argv)
    run_data_benchmark(args.resolutions, args.tasks, args.batch, args.batches, args.data_dir)


if __name__ == "__main__":
    main()
