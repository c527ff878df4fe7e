"""Sample grid and a quality proxy for a StyleGAN2 generator trained on synthetic faces.

  python tools/sample_quality.py stylejax/pretrained/synthetic64 --grid docs/synthetic64_samples.png
  python tools/sample_quality.py stylejax/pretrained/synthetic64 --ground-truth \
      --z-vs-render docs/synthetic64_z_vs_render.png

Without Inception weights there is no FID here; the proxy is the Fréchet distance between
16×16-downsampled pixels (stylejax.metrics.pixel_features) of N generated images and N test
images, next to the same distance between N training and N test images (the floor a
perfect generator would reach) and from a randomly initialised generator (a ceiling).

--ground-truth (a generator taught the renderer: configs/stylegan2.py:synthetic64) also
scores it against the truth (stylejax.ground_truth): PSNR/SSIM of G(z) against
render(factors(z)) on the --n first test faces' true latents, and on 1,000 samples the
attribute classifier's agreement with factors(z) on Smiling, Eyeglasses and hair colour (the
classifier trains on first use, 2,000 steps, and is cached).
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
    parser.add_argument("--ground-truth", action="store_true", help="score against the renderer")
    parser.add_argument(
        "--z-vs-render", help="write rows of G(z) over render(factors(z)) for test faces here"
    )
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
    if args.ground_truth:
        from stylejax import ground_truth

        factors = ground_truth.test_factors(G.img_resolution, args.n)
        scores = ground_truth.renderer_fidelity(G, variables, factors)
        clf = ground_truth.classifier(G.img_resolution)
        scores.update(ground_truth.attribute_agreement(G, variables, clf, 1000))
        print(f"\nagainst the renderer ({args.n} test faces; attributes on 1,000 samples):")
        print("| measure | value |\n|---|---|")
        for name, value in scores.items():
            print(f"| {name} | {value:.4f} |")
    if args.z_vs_render:
        from stylejax import ground_truth
        from stylejax.data import factor_latents

        factors = ground_truth.test_factors(G.img_resolution, 8)
        z = factor_latents.factors_to_z(factors, G.z_dim)
        fake = ground_truth.generate(G, variables, z)
        truth = ground_truth.render(factor_latents.z_to_factor_vectors(z), G.img_resolution)
        images.save_grid(np.concatenate([fake, truth]), args.z_vs_render, cols=8, pad=1)
        print(f"wrote {args.z_vs_render} (top: G(z), bottom: render(factors(z)))")
    if args.grid:
        grid = generate(G, variables, 36, seed=2, noise_mode="const")
        images.save_grid(grid, args.grid, cols=6, pad=1)
        print(f"wrote {args.grid}")


if __name__ == "__main__":
    main()
