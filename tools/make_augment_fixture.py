"""Records NVIDIA's official ADA AugmentPipe on a fixed batch for tests/test_augment.py.

    /work/torchenv/bin/python tools/make_augment_fixture.py --ada /path/to/stylegan2-ada-pytorch

DIR is a local checkout of https://github.com/NVlabs/stylegan2-ada-pytorch, put on sys.path at
run time; nothing from it is copied here. For every transform alone, every preset of its
train.py (augpipe_specs, restated in stylejax.augment.PRESETS; filter, noise and cutout are
single transforms, covered by those cases) and three extra cases (bgcfnc at p = 0.3 and on a
1-channel batch, a strong zoom-out that reaches the padding's clamp), the pipe runs once on 4 fixed 32x32 images, seeded, with torch.rand and
torch.randn wrapped so that every random tensor it draws is recorded in call order. Saved
(compressed, 1.5 MB) to tests/data/augment_ada.npz, NCHW as torch holds them:

    images, images_gray         the inputs in [-1, 1]
    CASE/out                    the pipe's output
    CASE/draw00, draw01, ...    the draws in call order; CASE/kinds: "rand,randn,..."
    cases, specs, ps, gray      per case: its name, JSON preset name or kwargs, p, 1-channel?
"""

import argparse
import importlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "augment_ada.npz"
SINGLE = [
    "xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac",
    "brightness", "contrast", "lumaflip", "hue", "saturation", "imgfilter", "noise", "cutout",
]  # fmt: skip
PRESETS = [
    "blit",
    "geom",
    "color",
    "filter",
    "noise",
    "cutout",
    "bg",
    "bgc",
    "bgcf",
    "bgcfn",
    "bgcfnc",
]
# filter, noise and cutout are one transform each: their single-transform cases cover them.
PRESET_IS_SINGLE = {"filter": "imgfilter", "noise": "noise", "cutout": "cutout"}
# (case name, spec, p, 1-channel input)
CASES = (
    [(t, t, 1.0, False) for t in SINGLE]
    + [(f"preset_{s}", s, 1.0, False) for s in PRESETS if s not in PRESET_IS_SINGLE]
    + [("bgcfnc_p0.3", "bgcfnc", 0.3, False), ("bgcfnc_gray", "bgcfnc", 1.0, True)]
    # Strong anisotropic scaling (one axis always shrinks): the pad reaches its clamp
    # (size - 1) and samples land outside it.
    + [("zoom_out", dict(aniso=1, aniso_std=1.5, rotate=1), 1.0, False)]
)


def make_images(channels, seed):
    """Smooth gradients, a checkerboard and noise: edges in every direction for the resampler."""
    g = np.random.default_rng(seed)
    y, x = np.mgrid[0:32, 0:32] / 31.0
    base = []
    for b in range(4):
        chans = []
        for c in range(channels):
            a = g.uniform(0, 2 * np.pi)
            wave = np.sin(2 * np.pi * (b + 1) * (np.cos(a) * x + np.sin(a) * y) + c)
            check = ((np.floor(x * 8) + np.floor(y * 8)) % 2) * 2 - 1
            chans.append(
                0.5 * wave + 0.3 * check * (c == b % channels) + 0.2 * g.uniform(-1, 1, x.shape)
            )
        base.append(chans)
    return np.clip(np.asarray(base), -1, 1).astype(np.float32)


def record(pipe, images, seed):
    """Runs the pipe with torch.rand/randn wrapped; returns its output and the draws in order."""
    draws = []
    originals = {"rand": torch.rand, "randn": torch.randn}

    def wrap(kind):
        def drawn(*args, **kwargs):
            t = originals[kind](*args, **kwargs)
            draws.append((kind, t.detach().numpy().copy()))
            return t

        return drawn

    torch.manual_seed(seed)
    torch.rand, torch.randn = wrap("rand"), wrap("randn")
    try:
        with torch.no_grad():
            out = pipe(torch.from_numpy(images))
    finally:
        torch.rand, torch.randn = originals["rand"], originals["randn"]
    return out.numpy(), draws


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ada", required=True, help="stylegan2-ada-pytorch checkout")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    # dnnlib/util.py imports requests and distutils (gone from Python >= 3.12); neither is used.
    for name in ("requests", "distutils", "distutils.util"):
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    sys.modules["distutils.util"].strtobool = lambda v: v.lower() in ("y", "yes", "true", "1")
    sys.path.insert(0, args.ada)
    from training.augment import AugmentPipe

    specs = {
        "blit": dict(xflip=1, rotate90=1, xint=1),
        "geom": dict(scale=1, rotate=1, aniso=1, xfrac=1),
        "color": dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
        "filter": dict(imgfilter=1),
        "noise": dict(noise=1),
        "cutout": dict(cutout=1),
    }
    specs["bg"] = {**specs["blit"], **specs["geom"]}
    specs["bgc"] = {**specs["bg"], **specs["color"]}
    specs["bgcf"] = {**specs["bgc"], **specs["filter"]}
    specs["bgcfn"] = {**specs["bgcf"], **specs["noise"]}
    specs["bgcfnc"] = {**specs["bgcfn"], **specs["cutout"]}

    torch.set_num_threads(1)
    arrays = {"images": make_images(3, 0), "images_gray": make_images(1, 1)}
    for seed, (case, spec, p, gray) in enumerate(CASES):
        kwargs = spec if isinstance(spec, dict) else specs.get(spec, {spec: 1})
        pipe = AugmentPipe(**kwargs)
        pipe.p.copy_(torch.as_tensor(p))
        out, draws = record(pipe, arrays["images_gray" if gray else "images"], seed)
        arrays[f"{case}/out"] = out
        arrays[f"{case}/kinds"] = np.asarray(",".join(kind for kind, _ in draws))
        for i, (_, d) in enumerate(draws):
            arrays[f"{case}/draw{i:02d}"] = d
        print(f"{case}: {len(draws)} draws, output range [{out.min():.3f}, {out.max():.3f}]")
    arrays["cases"] = np.asarray([c[0] for c in CASES])
    arrays["specs"] = np.asarray([json.dumps(c[1]) for c in CASES])
    arrays["ps"] = np.asarray([c[2] for c in CASES], np.float32)
    arrays["gray"] = np.asarray([c[3] for c in CASES])
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
