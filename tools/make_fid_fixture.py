"""Writes the metrics fixtures under tests/data/fid/ from the reference packages (run once).

CI never runs it (it needs torch, torchvision, pytorch-fid and scikit-image); the tests read
only what it writes:

  ssim_ref.npz   image pairs and skimage's SSIM / PSNR for them

Setup used (torchvision's CUDA wheel with --no-deps is enough: only its Python model code is
imported, not its compiled ops):

  python -m venv --system-site-packages /tmp/fid-venv   # torch 2.13.0+cpu, numpy, jax
  /tmp/fid-venv/bin/pip install --no-deps torchvision==0.28.0 pytorch-fid==0.3.0
  /tmp/fid-venv/bin/pip install scikit-image==0.26.0
  /tmp/fid-venv/bin/python tools/make_fid_fixture.py
"""

import argparse
import importlib.metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "fid"


def ssim_cases(rng):
    """(x, y, data_range) triples, NHWC: noise, a noisy copy, smooth fields, odd sizes, and
    the smallest size skimage accepts (11×11)."""
    cases = []
    for shape in [(3, 16, 16, 3), (2, 11, 11, 3), (2, 23, 17, 1)]:
        x = rng.uniform(-1, 1, shape)
        y = np.clip(x + 0.3 * rng.standard_normal(shape), -1, 1)
        cases.append((x, y, 2.0))
    smooth = np.cumsum(rng.standard_normal((2, 20, 24, 3)), axis=1) / 5
    cases.append((np.tanh(smooth), np.tanh(smooth + 0.2 * rng.standard_normal(smooth.shape)), 2.0))
    x01 = rng.uniform(0, 1, (2, 16, 16, 3))  # images in [0, 1] with data_range 1
    cases.append((x01, np.clip(x01 + 0.1 * rng.standard_normal(x01.shape), 0, 1), 1.0))
    return [(x.astype(np.float32), y.astype(np.float32), r) for x, y, r in cases]


def write_ssim():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    arrays = {"skimage_version": np.array(importlib.metadata.version("scikit-image"))}
    for i, (x, y, data_range) in enumerate(ssim_cases(np.random.default_rng(0))):
        kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
        arrays[f"x{i}"], arrays[f"y{i}"], arrays[f"range{i}"] = x, y, np.float64(data_range)
        arrays[f"ssim{i}"] = np.array(
            [
                structural_similarity(a, b, data_range=data_range, channel_axis=-1, **kw)
                for a, b in zip(x, y)
            ]
        )
        arrays[f"psnr{i}"] = np.array(
            [peak_signal_noise_ratio(a, b, data_range=data_range) for a, b in zip(x, y)]
        )
    np.savez_compressed(OUT / "ssim_ref.npz", **arrays)
    print("wrote", OUT / "ssim_ref.npz", {k: v for k, v in arrays.items() if k[:4] == "ssim"})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["ssim"], help="write one fixture (default all)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "ssim"):
        write_ssim()


if __name__ == "__main__":
    main()
