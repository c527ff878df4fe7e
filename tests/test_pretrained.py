"""The models the package ships load with load_pretrained and do what they were trained for."""

import json
from pathlib import Path

import jax
import numpy as np

import stylejax
from stylejax.model_format import load_pretrained

SHIPPED = Path(stylejax.__file__).parent / "pretrained" / "synthetic64"


def test_shipped_adversarial_generator():
    G, variables = load_pretrained(SHIPPED.parent / "synthetic64_gan")
    assert (G.img_resolution, G.z_dim, tuple(G.channels)) == (64, 64, (32, 32, 32, 32, 32))
    z = jax.random.normal(jax.random.PRNGKey(0), (4, 64))
    img = np.asarray(jax.jit(lambda v, z: G.apply(v, z, noise_mode="const"))(variables, z))
    assert img.shape == (4, 64, 64, 3) and np.isfinite(img).all()
    assert img.std(axis=0).mean() > 0.05  # different latents, different faces
    # Trained, not random: the centre (skin, warm) differs in colour from the border
    # (background, cool).
    centre, border = img[:, 24:40, 24:40].mean(axis=(0, 1, 2)), img[:, :4].mean(axis=(0, 1, 2))
    assert centre[0] - border[0] > 0.1 and border[2] - centre[2] > 0.2


def test_shipped_generator_against_the_truth():
    """The shipped generator, taught the renderer (configs/stylegan2.py:synthetic64, issue
    19), reproduces render(factors) of test faces from their true latents: measured
    35.74 dB / SSIM 0.956 on these 64 faces (35.9 dB / 0.958 on 1,000), where issue 19's bars
    are 27 dB / 0.9; asserted with a 0.5 dB / 0.02 margin."""
    from stylejax import ground_truth
    from stylejax.data import face_renderer, synthetic_faces

    assert ground_truth.renderer_taught(SHIPPED)
    G, variables = load_pretrained(SHIPPED)
    factors = np.stack(
        [
            face_renderer.factors_to_vector(synthetic_faces.example_factors(0, "test", i))
            for i in range(64)
        ]
    )
    scores = ground_truth.renderer_fidelity(G, variables, factors)
    assert scores["renderer_psnr"] > 35.2 and scores["renderer_ssim"] > 0.93, scores


def test_shipped_sean_reconstructs_and_transfers_hair():
    """The SEAN model trained by configs/sean.py (issue 20) reconstructs 16 test faces from
    their masks and images, and moving another face's hair style changes little outside the
    hair. Measured on these 16 faces: 29.0 dB, SSIM 0.815, hair transfer
    32.3 dB outside; asserted with a 0.5 dB / 0.02 / 1 dB margin."""
    from stylejax import metrics
    from stylejax.data import face_renderer, synthetic_faces
    from stylejax.data.labels import LABEL
    from stylejax.train import sean as train_sean

    G, variables = load_pretrained(SHIPPED.parent / "sean_synthetic64")
    assert (G.label_nc, G.ngf) == (19, 8)
    rendered = [
        face_renderer.render(synthetic_faces.example_factors(0, "test", i), 64) for i in range(16)
    ]
    image = np.stack([r[0] for r in rendered]).astype(np.float32) / 127.5 - 1.0
    labels = np.stack([r[1] for r in rendered]).astype(np.int32)
    rng = jax.random.PRNGKey(0)
    out = jax.jit(train_sean.reconstruct, static_argnums=(0, 4))(
        G, variables, labels, image, G.label_nc, rng
    )
    psnr = float(np.mean(metrics.psnr(out, image)))
    ssim = float(np.mean(metrics.ssim(out, image)))
    assert psnr > 28.5 and ssim > 0.795, (psnr, ssim)
    b_labels, b_image = np.roll(labels, 1, axis=0), np.roll(image, 1, axis=0)
    hair = train_sean.region_transfer_scores(
        G, variables, labels, image, b_labels, b_image, LABEL["hair"], rng
    )
    assert hair["psnr_outside"] > 31.3, hair
    assert hair["colour_gap_after"] < 0.5 * hair["colour_gap_before"], hair


def test_sean_edit_tool_runs_on_the_shipped_model(tmp_path, capsys):
    """tools/sean_edit.py needs no --network: it edits with the shipped SEAN model."""
    import json

    from conftest import build_synthetic_faces, load_tool

    from stylejax.data.synthetic_faces import SyntheticFacesConfig

    data = SyntheticFacesConfig(name="sean_tool64", resolution=64, num_train=1, num_test=4)
    data_dir = build_synthetic_faces(data, tmp_path / "tfds")
    out = tmp_path / "out"
    argv = ["--data", f"synthetic_faces/{data.name}", "--data-dir", data_dir, "--a", "0"]
    argv += ["--b", "3", "--regions", "hair", "--steps", "3", "--outdir", str(out)]
    load_tool("sean_edit").main(argv)
    for name in ("transfer", "interpolate", "paint", "crossover"):
        assert (out / f"{name}.png").is_file(), name
    printed = capsys.readouterr().out
    scores = json.loads(printed[printed.index("{\n") : printed.rindex("}") + 1])
    # One pair (faces 0 and 3): measured 26.7 dB outside the hair (the mean over 32 test
    # pairs is 33.9 dB, report.json's hair_transfer/psnr_outside).
    assert scores["hair"]["pairs"] == 1 and scores["hair"]["psnr_outside"] > 26


def test_shipped_l2m_edits_the_smile_and_keeps_the_rest():
    """The L2M-GAN model trained by configs/l2m.py (issue 20) with the evaluation's attribute
    classifier shipped beside it: 64 rendered test faces edited to the other Smiling value
    (α = 1). Measured on these 64 faces: edit accuracy 0.984, PSNR outside the mouth 25.7 dB
    against the input, mouth PSNR against smile_flipped 22.2 dB where the unedited input has
    19.4 (+2.9 dB; on 1,000 test faces +2.2). Asserted: accuracy ≥ 0.85 and a mouth gain
    > 2 dB (the issue's bars), outside > 25 dB (the bar is 24)."""
    from configs import l2m as l2m_configs
    from stylejax import attribute_classifier, metrics
    from stylejax.data import face_renderer, synthetic_faces
    from stylejax.train import l2m as train_l2m

    path = SHIPPED.parent / "l2m_synthetic64"
    model, variables = load_pretrained(path)
    settings = train_l2m.classifier_settings(l2m_configs.get_config())
    record = json.loads((path / "classifier.json").read_text())
    assert record["settings"] == settings.to_json(), "the shipped classifier's settings changed"
    clf = attribute_classifier.load_or_train(settings, path)  # loads: the settings match
    factors = [synthetic_faces.example_factors(0, "test", i) for i in range(64)]
    rendered = [face_renderer.render_example(f, 64) for f in factors]
    x, truth = (
        np.stack([r[k] for r in rendered]).astype(np.float32) / 127.5 - 1.0
        for k in ("image", "smile_flipped")
    )
    segmentation = np.stack([r["segmentation"][..., 0] for r in rendered])
    smiling = np.asarray([face_renderer.attributes(f)["Smiling"] for f in factors], np.int32)
    edit = jax.jit(lambda v, x, ys, yt: model.apply(v, x, ys, yt, 1.0))
    edited = np.asarray(edit(variables, x, smiling, 1 - smiling))
    accuracy = np.mean(clf.predict(edited)[:, 0] == (smiling == 0))
    region = synthetic_faces.smile_region(segmentation, x, truth)
    psnr = metrics.MaskedPSNR()
    psnr.add("outside", edited, x, ~region)
    psnr.add("mouth", edited, truth, region)
    psnr.add("mouth_input", x, truth, region)
    scores = {"accuracy": accuracy, **psnr.result()}
    assert accuracy >= 0.85 and scores["outside"] > 25.0, scores
    assert scores["mouth"] - scores["mouth_input"] > 2.0, scores
