"""Writes the metrics fixtures under tests/data/fid/ from the reference packages (run once).

CI never runs it (it needs torch, torchvision, pytorch-fid and scikit-image); the tests read
only what it writes:

  ssim_ref.npz   image pairs and skimage's SSIM / PSNR for them
  fid_ref.npz    pytorch-fid's InceptionV3 (FID blocks, resize to 299) pool3 features of
                 small uint8 images under the seeded random weights of
                 stylejax.models.inception.random_variables(SEED) (rebuilt by the test, not
                 stored: 95 MB), their digest; F.interpolate(bilinear, align_corners=False)
                 resizes (shrinking included); pytorch-fid's calculate_frechet_distance on
                 two (μ, Σ) pairs

Setup used (torchvision's CUDA wheel with --no-deps is enough: only its Python model code is
imported, not its compiled ops):

  python -m venv --system-site-packages /tmp/fid-venv   # torch 2.13.0+cpu, numpy, jax
  /tmp/fid-venv/bin/pip install --no-deps torchvision==0.28.0 pytorch-fid==0.3.0
  /tmp/fid-venv/bin/pip install scikit-image==0.26.0
  /tmp/fid-venv/bin/pip install --no-deps -e .   # stylejax
  /tmp/fid-venv/bin/python tools/make_fid_fixture.py
"""

import argparse
import contextlib
import hashlib
import importlib.metadata
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the random weights are drawn with numpy
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "fid"
SEED = 0  # of the random Inception weights


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


def import_pytorch_fid():
    import torch

    # The CUDA torchvision wheel's compiled ops do not load on a CPU-only torch, and its
    # import then stops at registering fake kernels for nms/qnms: give them schemas first.
    for op in ("nms", "qnms"):
        with contextlib.suppress(RuntimeError):  # already there: a working extension
            torch.library.define(
                f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou) -> Tensor"
            )
    import pytorch_fid.fid_score
    import pytorch_fid.inception

    return torch, pytorch_fid


def weights_digest(state_dict) -> str:
    h = hashlib.sha256()
    for k in sorted(state_dict):
        h.update(k.encode() + np.ascontiguousarray(state_dict[k], np.float32).tobytes())
    return h.hexdigest()


def write_fid():
    torch, pytorch_fid = import_pytorch_fid()
    import torch.nn.functional as F

    from stylejax.convert import inception as convert_inception
    from stylejax.models import inception

    sd = convert_inception.flax_to_state_dict(inception.random_variables(SEED))
    rng = np.random.default_rng(1)
    # The FID file also holds the 1008-class classifier, which FID never uses.
    sd["fc.weight"] = rng.standard_normal((1008, 2048)).astype(np.float32) * 0.01
    sd["fc.bias"] = np.zeros(1008, np.float32)
    # pytorch-fid downloads its weights; hand it these instead (strict load_state_dict).
    pytorch_fid.inception.load_state_dict_from_url = lambda *a, **k: {
        n: torch.from_numpy(v) for n, v in sd.items()
    }
    model = pytorch_fid.inception.InceptionV3([3]).eval()  # resize to 299, [0, 1] → [-1, 1]

    arrays = {
        "torch_version": np.array(torch.__version__),
        "pytorch_fid_version": np.array(importlib.metadata.version("pytorch-fid")),
        "weights_seed": np.int64(SEED),
        "weights_sha256": np.array(weights_digest({k: v for k, v in sd.items() if "fc" not in k})),
    }
    # Smooth colour fields with noise, quantised like real images (uint8 NHWC).
    coarse = rng.uniform(0, 255, (4, 5, 5, 3)).repeat(8, 1).repeat(8, 2)[:, :32, :32]
    images = np.clip(coarse + 40 * rng.standard_normal(coarse.shape), 0, 255).astype(np.uint8)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    with torch.no_grad():
        feats = model(x)[0].squeeze(3).squeeze(2).numpy()
    arrays.update(images=images, pool3=feats)

    # The resize alone, growing and shrinking along each axis (no antialiasing).
    small = rng.uniform(-1, 1, (2, 3, 40, 37)).astype(np.float32)
    arrays["resize_in"] = small
    for h, w in ((29, 17), (61, 80), (40, 37)):
        out = F.interpolate(torch.from_numpy(small), (h, w), mode="bilinear", align_corners=False)
        arrays[f"resize_{h}x{w}"] = out.numpy()

    # The Fréchet distance of two Gaussians fitted to correlated features.
    a = rng.standard_normal((600, 64)) @ rng.standard_normal((64, 64)) * 0.3
    b = rng.standard_normal((600, 64)) @ rng.standard_normal((64, 64)) * 0.3 + 0.2
    stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in (a, b)]
    arrays.update(mu1=stats[0][0], sigma1=stats[0][1], mu2=stats[1][0], sigma2=stats[1][1])
    arrays["fid"] = np.float64(
        pytorch_fid.fid_score.calculate_frechet_distance(*stats[0], *stats[1])
    )
    np.savez_compressed(OUT / "fid_ref.npz", **arrays)
    print(
        "wrote", OUT / "fid_ref.npz", "pool3 mean |f|", np.abs(feats).mean(), "fid", arrays["fid"]
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["ssim", "fid"], help="write one fixture (default all)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "ssim"):
        write_ssim()
    if args.only in (None, "fid"):
        write_fid()


if __name__ == "__main__":
    main()
