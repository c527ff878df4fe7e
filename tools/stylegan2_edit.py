"""Edits StyleGAN2 latents along a direction and writes a strength sweep as a strip.

  # SeFa direction 0 on the coarse W+ entries, seeds 0-3, strengths -5 … 5 in 7 steps
  python tools/stylegan2_edit.py --seeds 0-3 --trunc 0.7 --sefa 0 --layers 0-3 --strengths=-5:5:7 \\
      --out out/sefa0.png
  # GANSpace PCA component 2 (strength in standard deviations) on projected latents
  python tools/stylegan2_edit.py --latents out/proj/latents.npy --pca 2 --strengths=-3:3:7 \\
      --out pca2.png
  # a direction file: .npy, or .pt (InterFaceGAN/e4e tensors, rosinality factor files with
  # --component, GANSpace dictionaries with --component)
  python tools/stylegan2_edit.py --seeds 5 --direction smile.pt --strengths=-3,0,3 --out smile.png
  # fit an InterFaceGAN-style direction from W codes [N, w_dim] and labels [N] (0/1, or
  # scores: the top and bottom --fit-fraction become the classes), save and apply it
  python tools/stylegan2_edit.py --seeds 0-3 --fit w.npy labels.npy --save-direction attr.npy \\
      --out a.png

  # a generator taught the renderer (configs/stylegan2.py:synthetic64): score the Smiling
  # directions fit_direction, SeFa and GANSpace find against the truth on 64 test faces
  python tools/stylegan2_edit.py --truth-report out/edit_truth.json --truth-faces 64

--truth-report (stylejax.ground_truth.editing_report) measures, for the direction fitted on
sampled W codes labelled by their factors, the SeFa and the GANSpace component closest to the
true smile axis, the axis itself and any direction chosen with --direction/--sefa/--pca/--fit:
the cosine with the true smile axis in W (the mean over the faces of G.map(z of the
smile-flipped factors) - G.map(z), signed towards smiling) and an edit of the faces' true
codes along it (one least-squares strength) scored against the renderer's smile_flipped
counterfactual: PSNR in the mouth region (also unedited, and for the exact edit's true code)
and outside it against the unedited face. Written as JSON and printed as a table.

Latents come from --seeds (mapped, optionally truncated) or --latents (z [N, z_dim] or W+
[N, num_ws, w_dim] from tools/stylegan2_project.py or an encoder). One row per latent, one
column per strength. --layers limits the edit to some W+ entries (as GANSpace edits are given).
"""

import argparse

import numpy as np

from stylejax import files, images, stylegan2_editing
from stylejax import stylegan2_generate as gen
from stylejax.model_format import CheckpointError


def parse_strengths(text: str) -> np.ndarray:
    """'-3:3:7' → 7 evenly spaced values from -3 to 3; '-2,0,2' → those values."""
    try:
        if ":" in text:
            start, stop, num = text.split(":")
            return np.linspace(float(start), float(stop), int(num))
        return np.asarray([float(t) for t in text.split(",")])
    except ValueError:
        raise ValueError(
            f"--strengths must be START:STOP:COUNT or a list a,b,c; got {text!r}"
        ) from None


def load_fit_data(latents_path, labels_path, fraction):
    lat = np.load(latents_path)
    scores = np.load(labels_path).reshape(-1)
    if np.isin(scores, (0, 1)).all():
        return lat, scores
    idx, labels = stylegan2_editing.labels_from_scores(scores, fraction)
    print(f"labels are scores: fitting on the top and bottom {fraction:.0%} ({len(idx)} codes)")
    return lat[idx], labels


def choose_direction(args, G, variables) -> tuple[np.ndarray, str]:
    given = [args.direction, args.sefa, args.pca, args.fit]
    if sum(x is not None for x in given) != 1:
        raise ValueError("pass exactly one of --direction, --sefa, --pca and --fit")
    if args.direction:
        d = stylegan2_editing.load_direction(args.direction, args.component)
        return stylegan2_editing.check_direction(d, G), f"direction {args.direction}"
    if args.sefa is not None:
        layers = gen.parse_range(args.layers) if args.layers else None
        dirs, eig = stylegan2_editing.sefa(G, variables, layers)
        print(f"SeFa eigenvalues (top 5): {[round(float(e), 3) for e in eig[:5]]}")
        return dirs[args.sefa], f"SeFa direction {args.sefa}"
    if args.pca is not None:
        pca = stylegan2_editing.ganspace_pca(G, variables, args.pca_samples)
        print(f"GANSpace PCA stds (top 5): {[round(float(s), 3) for s in pca.stds[:5]]}")
        return pca.direction(args.pca), f"PCA component {args.pca} (strength in σ)"
    latents, labels = load_fit_data(*args.fit, args.fit_fraction)
    if latents.ndim == 3:
        latents = latents[:, 0]
    b = stylegan2_editing.fit_direction(latents, labels)
    print(f"fitted direction: training accuracy {b.accuracy:.1%} on {len(labels)} codes")
    return b.direction, "fitted direction"


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--network",
        default=str(gen.SHIPPED),
        help="converted generator directory (default: the shipped synthetic64 generator)",
    )
    parser.add_argument("--which", default=None, help="network in the checkpoint (default g_ema)")
    src = parser.add_argument_group("latents to edit (one of)")
    src.add_argument("--seeds", help="seeds, e.g. 0-3")
    src.add_argument("--latents", help=".npy/.npz with z or W+ latents")
    src.add_argument("--trunc", type=float, default=1.0, help="truncation ψ for --seeds")
    how = parser.add_argument_group("direction (one of)")
    how.add_argument("--direction", help="direction file (.npy/.npz/.pt)")
    how.add_argument("--component", type=int, help="row of a stacked direction file")
    how.add_argument("--sefa", type=int, metavar="K", help="SeFa eigenvector K (0 = strongest)")
    how.add_argument("--pca", type=int, metavar="K", help="GANSpace principal component K")
    how.add_argument("--pca-samples", type=int, default=20000, help="samples for the PCA")
    how.add_argument(
        "--fit", nargs=2, metavar=("LATENTS", "LABELS"), help="fit from codes and labels (.npy)"
    )
    how.add_argument("--fit-fraction", type=float, default=0.02, help="for score labels")
    parser.add_argument("--strengths", default="-3:3:7", help="START:STOP:COUNT or a,b,c")
    parser.add_argument("--layers", help="W+ entries to edit (default all), e.g. 0-5")
    parser.add_argument("--noise-mode", default="const", choices=["const", "random", "none"])
    parser.add_argument("--out", help="strip PNG: rows latents, columns strengths")
    truth = parser.add_argument_group("scores against the truth (a renderer-taught network)")
    truth.add_argument("--truth-report", metavar="JSON", help="write the Smiling scores here")
    truth.add_argument("--truth-faces", type=int, default=64, help="test faces to edit")
    truth.add_argument("--fit-samples", type=int, default=2000, help="samples to fit on")
    truth.add_argument("--components", type=int, default=16, help="SeFa/PCA components searched")
    truth.add_argument("--data", help="TFDS name of the test faces (synthetic_faces/<res>)")
    truth.add_argument("--data-dir", help="TFDS data directory")
    parser.add_argument("--save-direction", help="write the direction used as .npy")
    parser.add_argument("--save-latents", help="write the edited W+ codes [S, N, …] as .npy")
    args = parser.parse_args(argv)
    try:
        run(args)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None


def run(args):
    G, variables = gen.load_generator(args.network, args.which)
    if not args.out and not args.truth_report:
        raise ValueError("pass --out (an edit strip) and/or --truth-report (truth scores)")
    chosen = [args.direction, args.sefa, args.pca, args.fit]
    direction, what = None, None
    if args.out or any(x is not None for x in chosen):
        direction, what = choose_direction(args, G, variables)
    if args.out:
        write_strip(args, G, variables, direction, what)
    if args.truth_report:
        write_truth_report(args, G, variables, direction, what)


def write_truth_report(args, G, variables, direction, what):
    from stylejax import ground_truth

    factors = ground_truth.tool_test_factors(
        args.network, G.img_resolution, args.truth_faces, args.data, args.data_dir
    )
    report = ground_truth.editing_report(
        G,
        variables,
        factors,
        fit_samples=args.fit_samples,
        num_components=args.components,
        pca_samples=args.pca_samples,
        directions=None if direction is None else {"chosen": direction},
    )
    meta = {"network": str(args.network), "faces": len(factors), "chosen": what}
    files.write_json(args.truth_report, {**meta, "metrics": report})
    columns = ("true_axis_cosine", "psnr_mouth", "psnr_outside_mouth", "strength")
    methods = [k[: -len("/true_axis_cosine")] for k in report if k.endswith("/true_axis_cosine")]
    print(f"Smiling directions against the truth ({len(factors)} test faces):")
    print("| direction | " + " | ".join(columns) + " |\n" + "|---" * (len(columns) + 1) + "|")
    for m in methods:
        print(f"| {m} | " + " | ".join(f"{report[f'{m}/{c}']:.3f}" for c in columns) + " |")
    print(
        f"mouth PSNR unedited {report['psnr_mouth_unedited']:.3f}, with the true edit's code "
        f"{report['psnr_mouth_true_edit']:.3f}; wrote {args.truth_report}"
    )


def write_strip(args, G, variables, direction, what):
    if (args.seeds is None) == (args.latents is None):
        raise ValueError("pass exactly one of --seeds and --latents")
    if args.seeds is not None:
        z = gen.z_from_seeds(gen.parse_range(args.seeds), G.z_dim)
        ws = gen.map_to_ws(G, variables, z, truncation_psi=args.trunc)
    else:
        latents, space = gen.load_latents(args.latents, G)
        ws = gen.to_ws(G, variables, latents, space, truncation_psi=args.trunc)
    strengths = parse_strengths(args.strengths)
    layers = gen.parse_range(args.layers) if args.layers else None
    imgs = stylegan2_editing.strength_sweep(
        G,
        variables,
        ws,
        direction,
        strengths,
        layers,
        args.noise_mode,
        progress=gen.Progress(len(ws) * len(strengths), "editing", "images"),
    )
    images.save_grid(imgs.reshape(-1, *imgs.shape[2:]), args.out, cols=len(strengths), pad=1)
    if args.save_direction:
        gen.save_npy(args.save_direction, direction)
    if args.save_latents:
        gen.save_npy(
            args.save_latents, stylegan2_editing.apply_direction(ws, direction, strengths, layers)
        )
    print(
        f"wrote {args.out}: {len(ws)} latents × strengths {np.round(strengths, 3).tolist()} "
        f"along the {what}"
    )


if __name__ == "__main__":
    main()
