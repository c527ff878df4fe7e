"""Writes the LPIPS parity fixture tests/data/lpips/ from the `lpips` pip package (run once).

Needs torch, torchvision and lpips==0.1.4; CI never runs it. The backbones are random
(`pnet_rand=True`), with weights replaced by the seeded arrays of tests/lpips_backbones.py
so the test can rebuild them instead of storing 70 MB; the linear heads are the package's
shipped v0.1 files, copied byte for byte. Writes:

  alex.pth, vgg.pth   the package's heads (legacy torch stream)
  lpips_ref.npz       inputs (NCHW in [-1, 1]), the package's distances and per-layer values
                      per net, the backbones' digests and the versions used

Setup used (torchvision's CPU wheel is not on every index: the CUDA wheel's pure-Python
model definitions are enough, installed with --no-deps; its compiled ops are not needed):

  python -m venv /tmp/lpips-venv
  /tmp/lpips-venv/bin/pip install torch==2.13.0 numpy jax flax tqdm scipy
  /tmp/lpips-venv/bin/pip install --no-deps torchvision==0.28.0 lpips==0.1.4
  /tmp/lpips-venv/bin/pip install --no-deps -e .   # stylejax, for tests/lpips_backbones.py
  /tmp/lpips-venv/bin/python tools/make_lpips_fixture.py
"""

import argparse
import importlib.metadata
import importlib.util
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def load_backbones():
    """tests/lpips_backbones.py, the seeded weights the test rebuilds (tests/ is no package)."""
    path = ROOT / "tests" / "lpips_backbones.py"
    spec = importlib.util.spec_from_file_location("lpips_backbones", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_lpips():
    import torch

    # The CUDA torchvision wheel cannot load its compiled ops on a CPU-only torch, and its
    # import then fails registering fake kernels for two ops it never defined; defining
    # their schemas first lets the pure-Python models import.
    for op in ("nms", "qnms"):
        if not torch._C._dispatch_has_kernel(f"torchvision::{op}"):
            try:
                torch.library.define(
                    f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou) -> Tensor"
                )
            except RuntimeError:
                pass  # already defined by a working extension
    import lpips

    return torch, lpips


def smooth_images(rng, n, h, w):
    """Coarse random colour fields upsampled with fine noise on top, clipped to [-1, 1]."""
    coarse = rng.uniform(-1, 1, (n, 3, h // 8 + 1, w // 8 + 1))
    big = coarse.repeat(8, axis=2).repeat(8, axis=3)[:, :, :h, :w]
    return np.clip(big + 0.3 * rng.standard_normal((n, 3, h, w)), -1, 1).astype(np.float32)


def make_inputs(rng):
    """Four 64×64 pairs (near, far, flipped, shifted) and two 50×66 pairs, where the pools'
    floor mode and a non-square input matter."""
    a = smooth_images(rng, 4, 64, 64)
    b = a.copy()
    b[0] += 0.05 * rng.standard_normal(b[0].shape).astype(np.float32)
    b[1] = smooth_images(rng, 1, 64, 64)[0]
    b[2] = a[2, :, :, ::-1]
    b[3] = np.roll(a[3], 3, axis=2)
    c = smooth_images(rng, 2, 50, 66)
    d = np.clip(c + 0.2 * rng.standard_normal(c.shape), -1, 1).astype(np.float32)
    # Quantised to 8-bit levels like decoded images, which also keeps the npz small.
    pairs = {"x0": a, "x1": b, "y0": c, "y1": d}
    return {
        k: (np.round((np.clip(v, -1, 1) + 1) * 127.5) / 127.5 - 1).astype(np.float32)
        for k, v in pairs.items()
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "tests" / "data" / "lpips"))
    args = parser.parse_args(argv)
    torch, lpips = import_lpips()
    import torchvision

    backbones = load_backbones()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arrays = make_inputs(np.random.default_rng(5))
    for net in ("alex", "vgg"):
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
        backbone = backbones.random_backbone(net)
        # slice{s}.{i}.{leaf} in the package's backbone is features.{i}.{leaf} in torchvision.
        state = {
            key: torch.from_numpy(backbone["features." + key.split(".", 1)[1]])
            for key in model.net.state_dict()
        }
        model.net.load_state_dict(state, strict=True)
        heads = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
        shutil.copyfile(heads, out / f"{net}.pth")
        with torch.no_grad():
            for pair in ("x", "y"):
                x0, x1 = (torch.from_numpy(arrays[f"{pair}{i}"]) for i in (0, 1))
                dist, layers = model(x0, x1, retPerLayer=True)
                arrays[f"{net}_{pair}_distance"] = dist.reshape(-1).numpy()
                arrays[f"{net}_{pair}_layers"] = torch.stack(
                    [v.reshape(-1) for v in layers], 1
                ).numpy()
        arrays[f"{net}_backbone_sha256"] = np.array(backbones.digest(backbone))
        arrays[f"{net}_seed"] = np.array(backbones.SEEDS[net])
        print(net, "x:", arrays[f"{net}_x_distance"], "y:", arrays[f"{net}_y_distance"])
    arrays["versions"] = np.array(
        f"lpips {importlib.metadata.version('lpips')}, "
        f"torch {torch.__version__}, torchvision {torchvision.__version__}"
    )
    np.savez_compressed(out / "lpips_ref.npz", **arrays)
    print("wrote", sorted(p.name for p in out.iterdir()))


if __name__ == "__main__":
    main()
