"""Writes the Colab demos notebooks/*.ipynb (nbformat 4 JSON, no outputs) from the cell
sources below, so the notebooks are reviewed as code and regenerated, not edited by hand.

  python tools/make_notebooks.py            # rewrite notebooks/
  python tools/make_notebooks.py --check    # fail when a notebook differs from this script

Every notebook runs top to bottom offline against the shipped synthetic64 generator; with
STYLEJAX_NOTEBOOK_TINY=1 (what tests/test_notebooks.py sets) the expensive settings shrink.
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "notebooks"

SETUP = '''\
# Setup. In Colab: upload this repository (or mount Drive) to /content/stylejax, or set
# STYLEJAX_DIR; the cell installs it. Locally it uses the checkout the notebook is in.
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

try:
    import stylejax  # noqa: F401
except ImportError:
    repo = Path(os.environ.get("STYLEJAX_DIR", "/content/stylejax"))
    if not (repo / "setup.cfg").is_file():
        repo = Path.cwd().parent  # notebooks/ inside a checkout
    if not (repo / "setup.cfg").is_file():
        raise SystemExit("put the stylejax repository at /content/stylejax (or set STYLEJAX_DIR)")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", str(repo)], check=True)
    # The editable install's import hook is a .pth file, read when Python starts: read it
    # into this already running kernel too.
    site.addsitedir(sysconfig.get_paths()["purelib"])

import numpy as np
import stylejax
from stylejax import images

TINY = os.environ.get("STYLEJAX_NOTEBOOK_TINY") == "1"  # the tests' small settings
SHIPPED = Path(stylejax.__file__).parent / "pretrained" / "synthetic64"
OUT_DIR = Path(os.environ.get("STYLEJAX_NOTEBOOK_OUT", "notebook_outputs"))


def show(imgs, cols=None, name="image"):
    """Shows NHWC images in [-1, 1] (or one uint8 array) as a grid; also saves a PNG."""
    arr = np.asarray(imgs)
    grid = arr if arr.dtype == np.uint8 and arr.ndim == 3 else images.make_grid(arr, cols, pad=1)
    path = images.save_image(grid, OUT_DIR / f"{name}.png")
    try:
        from IPython.display import display
        from PIL import Image

        display(Image.fromarray(grid))
    except ImportError:
        print(f"saved {path}")
'''

QUICKSTART = [
    (
        "md",
        """\
# stylejax quickstart: convert, generate, mix styles, interpolate

StyleGAN2 in JAX/Flax. This notebook converts an official checkpoint if you give one (or
uses the small synthetic-faces generator shipped with the package), then generates images
with truncation, draws a style-mixing grid and interpolation strips. It runs offline, on a
CPU too. The same functions back `tools/stylegan2_generate.py` (see docs/tools.md).""",
    ),
    ("code", SETUP),
    (
        "md",
        """\
## A generator

Set `CHECKPOINT` to an uploaded file (`stylegan2-ffhq-config-f.pkl` from NVIDIA, a
stylegan2-ada-pytorch `.pkl` or a rosinality `.pt`; in Colab use the file browser or
`google.colab.files.upload()`). It is converted once (no torch needed) into
`converted/`. Left empty, the shipped 64 px synthetic-faces generator is used.""",
    ),
    (
        "code",
        """\
from stylejax.convert import convert
from stylejax.model_format import load_pretrained

CHECKPOINT = ""  # e.g. "/content/stylegan2-ffhq-config-f.pkl"
NETWORK = SHIPPED
if CHECKPOINT:
    NETWORK = Path("converted")
    if not NETWORK.exists():
        print(convert(CHECKPOINT, NETWORK)["networks"].keys())
G, variables = load_pretrained(NETWORK)
print(f"{NETWORK}: {G.img_resolution} px, z {G.z_dim}, w {G.w_dim}, {G.num_ws} W+ entries")""",
    ),
    (
        "md",
        """\
## Generate

Seeds name the same z as the official `generate.py`. Truncation ψ pulls w towards the
average w (less variety, fewer artefacts); the last image of each row is ψ = 0, the average
face.""",
    ),
    (
        "code",
        """\
from stylejax import stylegan2_generate as gen

seeds = list(range(4 if TINY else 8))
z = gen.z_from_seeds(seeds, G.z_dim)
rows = [gen.generate(G, variables, z, truncation_psi=psi, batch_size=4) for psi in (1.0, 0.7, 0.0)]
show(np.concatenate(rows), cols=len(seeds), name="truncation")  # rows: ψ = 1, 0.7, 0""",
    ),
    (
        "md",
        """\
## Style mixing

Each cell takes the W+ entries in `layers` from its column's seed and the rest from its
row's seed. Low entries (coarse, 4–8 px) carry pose and head shape, high ones colours and
fine texture.""",
    ),
    (
        "code",
        """\
coarse = list(range(0, G.num_ws // 2 - 1))
tiles = gen.style_mixing_grid(G, variables, [3, 4], [10, 11] if TINY else [10, 11, 12, 13],
                              layers=coarse, truncation_psi=0.8)
show(tiles.reshape(-1, *tiles.shape[2:]), cols=tiles.shape[1], name="style_mixing")""",
    ),
    (
        "md",
        """\
## Interpolation

Linear interpolation in W (what the StyleGAN videos show) and spherical interpolation in
Z between the same seeds.""",
    ),
    (
        "code",
        """\
steps = 2 if TINY else 6
key_z = gen.z_from_seeds([3, 7, 12], G.z_dim)
w_strip = gen.interpolate(G, variables, key_z, steps=steps, space="w", batch_size=4)
z_strip = gen.interpolate(G, variables, key_z, steps=steps, space="z", batch_size=4)
show(np.concatenate([w_strip, z_strip]), cols=len(w_strip), name="interpolation")""",
    ),
    (
        "md",
        """\
Next: `inversion_and_editing.ipynb` projects an image into the generator and edits it.
From the shell:
`python tools/stylegan2_generate.py images --seeds 0-15 --trunc 0.7 --grid out.png`.""",
    ),
]

INVERSION = [
    (
        "md",
        """\
# Inversion and editing

Project an image into the generator (the StyleGAN2 paper's optimisation: W or W+ plus the
noise maps), then edit the latent along SeFa, GANSpace and fitted directions. The photo is
yours (set `IMAGE` to an uploaded file; aligned with dlib when installed) or
`skimage.data.astronaut()` when scikit-image is installed (aligned with the FFHQ recipe from
stored landmarks); the first target is always an image of the generator itself, whose
latent is known. With the shipped synthetic-faces
generator a real photo cannot be reproduced: the results mean something only with real
converted weights (FFHQ config-f); the mechanics are the same.""",
    ),
    ("code", SETUP),
    (
        "code",
        """\
from stylejax import align, stylegan2_editing, stylegan2_projection
from stylejax import stylegan2_generate as gen
from stylejax.model_format import load_pretrained

NETWORK = SHIPPED  # or a converted FFHQ generator directory
G, variables = load_pretrained(NETWORK)
R = G.img_resolution

from PIL import Image

# An uploaded photo, e.g. "/content/me.jpg"; empty: the astronaut or generated images.
IMAGE = ""  # @param {type:"string"}
photo = None
if IMAGE:
    face = Image.open(IMAGE).convert("RGB")
    try:  # FFHQ alignment with dlib's landmarks when the align extra is installed
        face = align.align_face(face, align.detect_landmarks(face)[0], output_size=256)
    except (align.AlignmentError, IndexError) as e:
        print(f"not aligned, centre-cropped instead ({e})")
        side = min(face.size)
        face = face.crop(((face.width - side) // 2, (face.height - side) // 2,
                          (face.width + side) // 2, (face.height + side) // 2))
else:
    try:
        from skimage import data

        landmarks = Path(stylejax.__file__).parents[1] / "tests/data/align/astronaut_landmarks.txt"
        lm = align.read_landmarks(landmarks)[0]
        face = align.align_face(data.astronaut(), lm, output_size=256)
        print("target: skimage's astronaut photo, FFHQ-aligned from stored landmarks")
    except (ImportError, FileNotFoundError):
        face = None
        print("scikit-image not installed: projecting generated images only")
if face is not None:
    photo = np.asarray(face.resize((R, R), Image.Resampling.LANCZOS), np.float32) / 127.5 - 1

# A generated image has a known latent: projection should find it again.
ws_true = gen.map_to_ws(G, variables, gen.z_from_seeds([101, 202], G.z_dim), truncation_psi=0.7)
targets = gen.synthesize(G, variables, ws_true)
if photo is not None:
    targets[1] = photo
show(targets, name="targets")""",
    ),
    (
        "md",
        """\
## Projection

`projection.project` runs all steps of all images in one compiled loop. Pass
`lpips=load_pretrained("weights/lpips_vgg")` (converted from the `lpips` package's
`vgg.pth` and torchvision's VGG16) for the paper's LPIPS distance; without it the distance is
the pixel MSE, and a warning says so.""",
    ),
    (
        "code",
        """\
from stylejax import metrics

config = stylegan2_projection.ProjectionConfig(
    num_steps=50 if TINY else 300, optimize_noise=False, w_avg_samples=2000, num_snapshots=5
)
result = stylegan2_projection.project(G, variables, targets, config)
print("PSNR (dB):", np.round(np.asarray(metrics.psnr(result.images, targets)), 2))
strip = np.concatenate([targets[:, None], result.snapshots.transpose(1, 0, 2, 3, 4),
                        result.images[:, None]], axis=1)
show(strip.reshape(-1, *strip.shape[2:]), cols=strip.shape[1], name="projection")""",
    ),
    (
        "md",
        """\
## Edits

SeFa directions come in closed form from the generator's style weights; GANSpace
directions are principal axes of W; strengths sweep from −STRENGTH to +STRENGTH (a slider
in Colab). Rows: SeFa direction 0 on the coarse W+ entries, PCA component 0 (in σ).""",
    ),
    (
        "code",
        """\
ws = result.ws
STRENGTH = 5.0  # @param {type:"slider", min:0.5, max:10, step:0.5}
strengths = np.linspace(-STRENGTH, STRENGTH, 4 if TINY else 7)
dirs, eigenvalues = stylegan2_editing.sefa(G, variables, layers=range(4))
sefa_strip = stylegan2_editing.strength_sweep(
    G, variables, ws[:1], dirs[0], strengths, layers=range(4)
)
pca = stylegan2_editing.ganspace_pca(G, variables, num_samples=2000 if TINY else 20000)
pca_strip = stylegan2_editing.strength_sweep(G, variables, ws[:1], pca.direction(0), strengths / 2)
show(np.concatenate([sefa_strip[0], pca_strip[0]]), cols=len(strengths), name="edits")""",
    ),
    (
        "md",
        """\
## A direction fitted from labels (InterFaceGAN-style)

Label sampled faces with any attribute score, keep the extremes and fit a linear boundary
in W; its normal is the edit. Here the score is a measurable stand-in for an attribute
classifier: how much brighter the top of the image (hair) is than its centre (face).""",
    ),
    (
        "code",
        """\
n = 64 if TINY else 1000
z, w = stylegan2_editing.sample_w(G, variables, n, seed=5)
imgs = gen.synthesize(G, variables, np.repeat(w[:, None], G.num_ws, axis=1), batch_size=4)
score = imgs[:, : R // 5].mean(axis=(1, 2, 3)) - imgs[:, 2 * R // 5 : 3 * R // 5].mean(axis=(1, 2, 3))
idx, labels = stylegan2_editing.labels_from_scores(score, fraction=0.1)
boundary = stylegan2_editing.fit_direction(w[idx], labels)
print(f"boundary fitted on {len(idx)} codes, training accuracy {boundary.accuracy:.0%}")
fit_strip = stylegan2_editing.strength_sweep(G, variables, ws[:1], boundary.direction, strengths)
show(fit_strip[0], cols=len(strengths), name="fitted_edit")""",
    ),
    (
        "md",
        """\
## Encoders: pSp and ReStyle

An encoder inverts in one forward pass (pSp) or a few refining passes (ReStyle) instead of
an optimisation. No encoder weights ship with the package: set `PSP_MODEL` to a converted
pSp checkpoint (`python tools/convert_weights.py psp_ffhq_encode.pt converted/psp_ffhq`) or
a model trained with `configs/psp.py` (`<workdir>/model`), and `RESTYLE_MODEL` to a
converted ReStyle checkpoint (`restyle_psp_ffhq_encode.pt`). Each model generates with its
own decoder, and the edits below use that decoder's SeFa directions. Left empty, the cells
only say so.""",
    ),
    (
        "code",
        """\
import jax
from PIL import Image


def resized(batch, size):
    \"\"\"[-1, 1] images to the encoder's input size.\"\"\"
    out = [Image.fromarray(u).resize((size, size), Image.Resampling.BILINEAR)
           for u in images.to_uint8(batch)]
    return np.stack([np.asarray(o, np.float32) / 127.5 - 1 for o in out])


PSP_MODEL = os.environ.get("STYLEJAX_PSP_MODEL", "")  # @param {type:"string"}
if PSP_MODEL:
    from stylejax import psp_inference

    psp = psp_inference.load_psp(PSP_MODEL)
    x = resized(targets, psp.input_size)
    recon, codes = psp.reconstruct(x)
    show(np.concatenate([x, np.asarray(recon)]), cols=len(x), name="psp_reconstruction")
    # Multi-modal outputs: the fine styles from random latents.
    show(np.asarray(psp.multimodal(x[:1], jax.random.PRNGKey(0), n_outputs=4))[0],
         name="psp_multimodal")
    decoder = psp.module.decoder
    dec_vars = {"params": psp.variables["params"]["decoder"],
                "buffers": psp.variables["buffers"]["decoder"]}
    dirs, _ = stylegan2_editing.sefa(decoder, dec_vars, layers=range(4))
    sweep = stylegan2_editing.strength_sweep(decoder, dec_vars, np.asarray(codes)[:1], dirs[0],
                                             strengths, layers=range(4))
    show(sweep[0], cols=len(strengths), name="psp_edit")
else:
    print("PSP_MODEL not set: skipping pSp inversion")""",
    ),
    (
        "code",
        """\
RESTYLE_MODEL = os.environ.get("STYLEJAX_RESTYLE_MODEL", "")  # @param {type:"string"}
if RESTYLE_MODEL:
    from stylejax.models import restyle

    model, restyle_vars = load_pretrained(RESTYLE_MODEL)
    run = jax.jit(restyle.run_iterations, static_argnums=(0, 3))
    steps_images, steps_codes = run(model, restyle_vars, resized(targets, 256), 5)
    # Per-step strip: each row an input, then the reconstruction after steps 1 … 5.
    per_step = np.concatenate([resized(targets, steps_images.shape[2])[:, None],
                               np.asarray(steps_images).transpose(1, 0, 2, 3, 4)], axis=1)
    show(per_step.reshape(-1, *per_step.shape[2:]), cols=per_step.shape[1],
         name="restyle_steps")
else:
    print("RESTYLE_MODEL not set: skipping ReStyle inversion")""",
    ),
    (
        "md",
        """\
## SEAN region styles and L2M attribute edits

SEAN (`SEAN_MODEL`: the shipped synthetic-faces model, a converted `latest_net_G.pth` or an
exported training run) encodes one style per segmentation region; here the hair style of one
synthetic test face is moved onto another (both rendered with their 19-class masks).
L2M-GAN (`L2M_MODEL`: the shipped synthetic-faces Smiling model, a converted
`*_nets_ema.ckpt` or an exported run) edits each face's smile to the other value with
strength `ALPHA`, then shows the α = 0, 0.5, 1 strips.""",
    ),
    (
        "code",
        """\
# The shipped SEAN model; set STYLEJAX_SEAN_MODEL (or this line) to use another.
SEAN_MODEL = os.environ.get("STYLEJAX_SEAN_MODEL", str(SHIPPED.parent / "sean_synthetic64"))
if SEAN_MODEL:
    from stylejax.data import face_renderer, synthetic_faces
    from stylejax.data.labels import LABEL
    from stylejax.models import sean

    G_sean, sean_vars = load_pretrained(SEAN_MODEL)
    faces = [face_renderer.render(synthetic_faces.example_factors(0, "test", i), 64)
             for i in (0, 3)]
    img = np.stack([f[0] for f in faces]).astype(np.float32) / 127.5 - 1.0
    lab = np.stack([f[1] for f in faces]).astype(np.int32)
    # A model with fewer than the data set's 19 classes sees the rest merged into its last.
    lab = np.minimum(lab, G_sean.label_nc - 1)
    hair = LABEL["hair"] if LABEL["hair"] < G_sean.label_nc else G_sean.label_nc - 1
    one_hot = sean.one_hot(lab, G_sean.label_nc)
    codes, present = jax.jit(lambda v, i, m: G_sean.apply(v, i, m, method=G_sean.encode))(
        sean_vars, img, one_hot)
    mixed = sean.transfer_regions(codes[:1], codes[1:], [hair], present[1:])
    synth = jax.jit(lambda v, m, c: G_sean.apply(v, m, style_codes=c,
                                                 rngs={"noise": jax.random.PRNGKey(0)}))
    rows = [img[:1], img[1:], synth(sean_vars, one_hot[:1], codes[:1]),
            synth(sean_vars, one_hot[:1], mixed)]
    show(np.concatenate(rows), cols=4, name="sean_hair_transfer")  # A, B, G(A), A + B's hair
else:
    print("SEAN_MODEL empty: skipping SEAN")

# The shipped L2M-GAN (Smiling); set STYLEJAX_L2M_MODEL (or this line) to use another.
L2M_MODEL = os.environ.get("STYLEJAX_L2M_MODEL", str(SHIPPED.parent / "l2m_synthetic64"))
ALPHA = 1.0  # @param {type:"slider", min:0, max:1.5, step:0.05}
if L2M_MODEL:
    from stylejax.data import face_renderer, synthetic_faces

    l2m, l2m_vars = load_pretrained(L2M_MODEL)
    factors = [synthetic_faces.example_factors(0, "test", i) for i in range(6)]
    x = np.stack([face_renderer.render(f, l2m.img_size)[0] for f in factors])
    x = x.astype(np.float32) / 127.5 - 1.0
    # Each face from its own Smiling value to the other (a 2-domain model's domains).
    y_src = np.asarray([face_renderer.attributes(f)["Smiling"] for f in factors], np.int32)
    y_trg = 1 - y_src
    edit = jax.jit(lambda v, x, a: l2m.apply(v, x, y_src, y_trg, a))
    alphas = (0.0, 0.5, 1.0)
    sweep = jax.jit(lambda v, x: l2m.apply(v, x, y_src, y_trg, alphas, method=l2m.sweep))
    show(np.concatenate([x, np.asarray(edit(l2m_vars, x, ALPHA))]), cols=len(x), name="l2m_edit")
    strips = np.asarray(sweep(l2m_vars, x))  # [N, len(alphas), H, W, 3]
    show(strips.reshape(-1, *strips.shape[2:]), cols=len(alphas), name="l2m_sweep")
else:
    print("L2M_MODEL not set: skipping L2M-GAN")""",
    ),
    (
        "md",
        """\
From the shell: `tools/stylegan2_project.py`,
`tools/stylegan2_edit.py --sefa/--pca/--fit/--direction` and `tools/align_faces.py` do the
same (docs/tools.md).""",
    ),
]

NOTEBOOKS = {"quickstart.ipynb": QUICKSTART, "inversion_and_editing.ipynb": INVERSION}


def notebook(cells) -> dict:
    out = []
    for kind, source in cells:
        lines = source.splitlines(keepends=True)
        if kind == "md":
            out.append({"cell_type": "markdown", "metadata": {}, "source": lines})
        else:
            out.append(
                {
                    "cell_type": "code",
                    "execution_count": None,
                    "metadata": {},
                    "outputs": [],
                    "source": lines,
                }
            )
    return {
        "cells": out,
        "metadata": {
            "accelerator": "GPU",
            "colab": {"provenance": []},
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 4,
    }


def render(cells) -> str:
    return json.dumps(notebook(cells), indent=1, ensure_ascii=False) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for name, cells in NOTEBOOKS.items():
        path, text = OUT / name, render(cells)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
            continue
        OUT.mkdir(exist_ok=True)
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        print(f"wrote {path}")
    if stale:
        sys.exit(f"stale notebooks (run python tools/make_notebooks.py): {stale}")


if __name__ == "__main__":
    main()
