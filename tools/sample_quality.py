"""Sample grid and a quality proxy for a StyleGAN2 generator trained on synthetic faces.

  python tools/sample_quality.py stylejax/pretrained/synthetic64 --grid docs/synthetic64_samples.png

Without Inception weights there is no FID here; the proxy is the Fréchet distance between
16×16-downsampled pixels (stylejax.metrics.pixel_features) of N generated images and N test
images, next to the same distance between N training and N test images (the floor a
perfect generator would reach) and from a randomly initialised generator (a ceiling).
"""

import argparse

import jax
import numpy as np

from stylejax import images, metrics
from stylejax.model_format import load_pretrained
from stylejax.models import stylegan2 as sg


def real_images(name, split, n):
    from stylejax.data import pipeline

    ds = pipeline.load(name, split, keys=("image",)).take(n).batch(256)
    batches = [b["image"].numpy() for b in ds]
    return np.concatenate(batches).astype(np.float32) / 127.5 - 1.0


def generate(G, variables, n, seed, noise_mode="random"):
    z = jax.random.normal(jax.random.PRNGKey(seed), (n, G.z_dim))
    fn = jax.jit(lambda v, z, k: G.apply(v, z, noise_mode=noise_mode, rngs={"noise": k}))
    out = [fn(variables, z[i : i + 100], jax.random.PRNGKey(i)) for i in range(0, n, 100)]
    return np.concatenate([np.asarray(o) for o in out])


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pretrained", help="converted or exported generator directory")
    parser.add_argument("--data", default=None, help="TFDS name, default synthetic_faces/<res>")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--grid", help="write a 6×6 sample grid PNG here (stored noise)")
    args = parser.parse_args()
    G, variables = load_pretrained(args.pretrained)
    name = args.data or f"synthetic_faces/{G.img_resolution}"
    test = metrics.pixel_features(real_images(name, "test", args.n))
    train = metrics.pixel_features(real_images(name, "train", args.n))
    fake = metrics.pixel_features(generate(G, variables, args.n, seed=1))
    random_vars = jax.jit(lambda r: sg.init_variables(G, r, np.zeros((1, G.z_dim))))(
        jax.random.PRNGKey(0)
    )
    random_fake = metrics.pixel_features(generate(G, random_vars, args.n, seed=1))
    print(f"pixel Fréchet distance (16x16 pixels, {args.n} images each) against {name} test:")
    print("| images | distance |\n|---|---|")
    print(f"| training split (floor) | {metrics.frechet_distance(train, test):.2f} |")
    print(f"| this generator | {metrics.frechet_distance(fake, test):.2f} |")
    print(
        f"| random-init generator (ceiling) | {metrics.frechet_distance(random_fake, test):.2f} |"
    )
    if args.grid:
        grid = generate(G, variables, 36, seed=2, noise_mode="const")
        images.save_grid(grid, args.grid, cols=6, pad=1)
        print(f"wrote {args.grid}")


if __name__ == "__main__":
    main()
