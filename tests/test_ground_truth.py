"""Scores against the synthetic faces' truth (stylejax.ground_truth) on tiny random
generators exported as renderer-taught: true codes and W+ distances, the true smile axis and
edits scored against smile_flipped, projection recovery, the encoders' report.json keys and
the tools' reports. Values are checked against direct numpy computations."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import build_synthetic_faces, load_tool
from ml_collections import config_dict

from configs import e4e as e4e_configs
from configs import psp as psp_configs
from configs import restyle as restyle_configs
from stylejax import ground_truth as gt
from stylejax import metrics, model_format, stylegan2_editing, stylegan2_projection
from stylejax.data import face_renderer as renderer
from stylejax.data import factor_latents, synthetic_faces
from stylejax.data.synthetic_faces import SyntheticFacesConfig
from stylejax.models import stylegan2 as sg
from stylejax.train import e4e as e4e_train
from stylejax.train import loop
from stylejax.train import psp as psp_train
from stylejax.train import psp_family as family
from stylejax.train import restyle as restyle_train

RES = 16
# The shipped generator's z size: far above the 22 factors, so every true latent lies on the
# sphere the mapping normalises onto (near 22, bin-centred factors can overshoot it).
Z = 64
DATA = SyntheticFacesConfig(name="truth16", resolution=RES, num_train=8, num_test=16)
# w = z: no mapping layers, and the true latents have unit rms, which the mapping's
# normalisation keeps.
IDENTITY = dict(z_dim=Z, w_dim=Z, img_resolution=RES, channels=(8, 8, 8), mapping_layers=0)
RANDOM = dict(z_dim=Z, w_dim=16, img_resolution=RES, channels=(8, 8, 8), mapping_layers=2)


def export(folder, g_config, variables, taught=True):
    """A model folder of the generator, marked renderer-taught (or not) as stylegan2's
    export marks it."""
    config = config_dict.ConfigDict(dict(method="stylegan2", variant="test"))
    extra = {"latents": factor_latents.LATENTS} if taught else {}
    networks = {"g_ema": ("generator", g_config, variables)}
    model_format.save_trained(folder, config, 0, "stylegan2", networks, **extra)
    return str(folder)


def random_variables(g_config, seed):
    G = sg.Generator(**g_config)
    return sg.init_variables(G, jax.random.PRNGKey(seed), jnp.zeros((1, Z)))


@pytest.fixture(scope="module")
def generators(tmp_path_factory):
    root = tmp_path_factory.mktemp("generators")
    random = random_variables(RANDOM, 1)
    return dict(
        identity=export(root / "identity", IDENTITY, random_variables(IDENTITY, 0)),
        random=export(root / "random", RANDOM, random),
        untaught=export(root / "untaught", RANDOM, random, taught=False),
    )


@pytest.fixture(scope="module")
def assets(generators, tmp_path_factory):
    """The generators and a tiny synthetic_faces build (for the encoders and the tools)."""
    return dict(generators, data=build_synthetic_faces(DATA, tmp_path_factory.mktemp("data")))


def loaded(path):
    return model_format.load_pretrained(path)


def faces(n, start=0):
    """The factors of test faces start … start + n - 1 (the TFDS test split's, unbuilt)."""
    return np.stack(
        [
            renderer.factors_to_vector(synthetic_faces.example_factors(0, "test", i))
            for i in range(start, start + n)
        ]
    )


def test_true_codes_are_the_mapped_true_latents_and_their_distance_is_zero(generators):
    G, v = loaded(generators["random"])
    f = faces(6)
    true = gt.true_ws(G, v, f)
    z = factor_latents.factors_to_z(f, Z)
    direct = np.asarray(G.apply(v, jnp.asarray(z), method=G.map))
    np.testing.assert_allclose(true, direct, rtol=1e-6, atol=1e-6)
    assert true.shape == (6, G.num_ws, G.w_dim)
    np.testing.assert_array_equal(gt.w_distance(true, true), 0.0)
    other = np.random.default_rng(0).normal(size=true.shape)
    want = [
        np.mean([np.linalg.norm(o[k] - t[k]) for k in range(G.num_ws)]) for o, t in zip(other, true)
    ]
    np.testing.assert_allclose(gt.w_distance(other, true), want, rtol=1e-12)
    avg = other[0]  # one [num_ws, w_dim] code for every face, as a latent average
    want = [np.mean(np.linalg.norm(avg - t, axis=-1)) for t in true]
    np.testing.assert_allclose(gt.w_distance(avg, true), want, rtol=1e-12)


def test_the_smile_axis_of_a_generator_with_w_equal_z_is_the_smile_coordinate(generators):
    G, v = loaded(generators["identity"])
    f = faces(12)
    assert 0 < gt.smiling(f).sum() < len(f)
    np.testing.assert_allclose(
        gt.true_ws(G, v, f)[:, 0], factor_latents.factors_to_z(f, Z), atol=1e-5
    )
    axis = gt.true_smile_axis(G, v, f)
    e_smile = np.eye(Z)[gt.SMILE]
    assert gt.axis_cosine(axis, e_smile) == pytest.approx(1.0, abs=1e-6)
    # A W+ direction is compared with the axis on every layer.
    assert gt.axis_cosine(np.tile(e_smile, (G.num_ws, 1)), axis) == pytest.approx(1.0, abs=1e-6)
    d = np.random.default_rng(1).normal(size=(G.num_ws, Z))
    want = np.sum(d * axis) / (np.linalg.norm(d) * np.linalg.norm(axis) * np.sqrt(G.num_ws))
    assert gt.axis_cosine(d, axis) == pytest.approx(want, rel=1e-9)
    rows = np.stack([d[0], -e_smile, d[1]])
    k, cos = gt.best_component(rows, axis)
    assert k == 1 and cos == pytest.approx(1.0, abs=1e-6)


def test_an_edit_along_the_true_edit_lands_on_the_counterfactual_code(generators):
    """One face, the direction its own true edit w_flip - w: the least-squares strength
    moves w exactly onto w_flip, whichever way the direction points."""
    G, v = loaded(generators["random"])
    f = faces(1, start=3)
    edits = gt.SmileEdits(G, v, f)
    delta = gt.true_ws(G, v, gt.flip_smile(f))[0] - gt.true_ws(G, v, f)[0]
    scores = edits.score(delta)
    flipped = edits.score(-delta)
    assert scores["psnr_mouth"] == pytest.approx(edits.baselines["psnr_mouth_true_edit"], abs=1e-3)
    assert flipped["psnr_mouth"] == pytest.approx(scores["psnr_mouth"], abs=1e-3)
    assert flipped["strength"] == pytest.approx(-scores["strength"], rel=1e-6)
    per_layer = np.linalg.norm(delta) / np.sqrt(G.num_ws)
    assert abs(scores["strength"]) == pytest.approx(per_layer, rel=1e-5)
    # The regions and PSNRs against the stored counterfactual, directly.
    example = renderer.render_example(renderer.vector_to_factors(f[0]), RES)
    image, truth = (
        example[k][None].astype(np.float32) / 127.5 - 1 for k in ("image", "smile_flipped")
    )
    region = synthetic_faces.smile_region(example["segmentation"][None, ..., 0], image, truth)
    np.testing.assert_array_equal(edits.region, region)
    unedited = np.clip(gt.synthesize(G, v, gt.true_ws(G, v, f)), -1, 1)
    mse = np.mean(
        (unedited.astype(np.float64) - truth)[np.broadcast_to(region[..., None], truth.shape)] ** 2
    )
    assert edits.baselines["psnr_mouth_unedited"] == pytest.approx(10 * np.log10(4 / mse), rel=1e-9)
    edit = np.clip(gt.synthesize(G, v, gt.true_ws(G, v, f) + delta[None]), -1, 1)
    outside = np.broadcast_to(~region[..., None], truth.shape)
    mse = np.mean((edit.astype(np.float64) - unedited)[outside] ** 2)
    assert scores["psnr_outside_mouth"] == pytest.approx(10 * np.log10(4 / mse), abs=1e-3)


def test_editing_report_names_the_components_closest_to_the_axis(generators):
    G, v = loaded(generators["random"])
    f = faces(8)
    chosen = np.random.default_rng(2).normal(size=G.w_dim)
    report = gt.editing_report(
        G, v, f, fit_samples=300, num_components=4, pca_samples=500, directions={"mine": chosen}
    )
    axis = gt.true_smile_axis(G, v, f)
    sefa, _ = stylegan2_editing.sefa(G, v)
    cos = np.abs(sefa[:4] @ axis)
    assert report["sefa/component"] == int(np.argmax(cos))
    assert report["sefa/true_axis_cosine"] == pytest.approx(cos.max(), rel=1e-5)
    assert report["true_axis/true_axis_cosine"] == pytest.approx(1.0, abs=1e-9)
    assert report["mine/true_axis_cosine"] == pytest.approx(
        chosen @ axis / np.linalg.norm(chosen), rel=1e-6
    )
    boundary = gt.fit_smile_direction(G, v, 300)
    assert report["fit/true_axis_cosine"] == pytest.approx(gt.axis_cosine(boundary.direction, axis))
    for method in ("fit", "sefa", "ganspace", "true_axis", "mine"):
        assert {f"{method}/{k}" for k in ("psnr_mouth", "psnr_outside_mouth", "strength")} <= set(
            report
        )
    assert {"psnr_mouth_unedited", "psnr_mouth_true_edit", "ganspace/component"} <= set(report)
    assert all(np.isfinite(x) for x in report.values())


def test_inversion_scores_are_zero_for_the_true_codes(generators):
    G, v = loaded(generators["random"])
    f = faces(8)
    target = gt.render(f, RES)
    batches = [
        {"source": target[:4], "target": target[:4], "factors": f[:4]},
        {"source": target[4:], "target": target[4:], "factors": f[4:]},
    ]
    codes = dict(zip(map(bytes, target), gt.true_ws(G, v, f)))
    avg = np.random.default_rng(3).normal(size=(G.num_ws, G.w_dim))

    def encode(x):  # an exact encoder, and one off by a known amount
        exact = np.stack([codes[bytes(i)] for i in x])
        return {"": exact, "off/": exact + 0.5}

    scores = gt.inversion_scores(G, v, batches, encode, avg, baseline="step0/")
    true = gt.true_ws(G, v, f)
    assert scores["true_w_distance"] == pytest.approx(0.0, abs=1e-6)
    assert scores["off/true_w_distance"] == pytest.approx(0.5 * np.sqrt(G.w_dim), rel=1e-5)
    assert scores["step0/true_w_distance"] == pytest.approx(
        gt.w_distance(avg, true).mean(), rel=1e-6
    )
    drawn = np.clip(gt.synthesize(G, v, true), -1, 1)
    assert scores["true_code/psnr"] == pytest.approx(
        float(np.mean(metrics.psnr(drawn, target))), rel=1e-5
    )
    assert scores["true_code/ssim"] == pytest.approx(
        float(np.mean(metrics.ssim(drawn, target))), rel=1e-5
    )


def test_projection_scores_measure_the_projected_codes(generators):
    G, v = loaded(generators["random"])
    f = faces(3)
    true = gt.true_ws(G, v, f)
    ws = true + np.random.default_rng(4).normal(size=true.shape).astype(np.float32)
    images = gt.synthesize(G, v, ws)
    result = stylegan2_projection.ProjectionResult(ws, {}, images, None, None, None, "mse")
    targets = gt.render(f, RES)
    means, per_face = gt.projection_scores(G, v, f, result, targets, w_avg_samples=500)
    want = np.linalg.norm(ws - true, axis=-1).mean(-1)
    np.testing.assert_allclose(per_face["true_w_distance"], want, rtol=1e-5)
    w_avg, _ = stylegan2_projection.sample_w_stats(G, v, 500)
    want = [np.linalg.norm(w_avg - t, axis=-1).mean() for t in true]
    np.testing.assert_allclose(per_face["baseline/true_w_distance"], want, rtol=1e-5)
    np.testing.assert_allclose(per_face["psnr"], metrics.psnr(images, targets), rtol=1e-5)
    drawn = gt.synthesize(G, v, true)
    np.testing.assert_allclose(per_face["true_code/psnr"], metrics.psnr(drawn, targets), rtol=1e-5)
    assert means["psnr"] == pytest.approx(float(np.mean(per_face["psnr"])))
    assert (
        set(means)
        == set(per_face)
        == {
            "true_w_distance",
            "baseline/true_w_distance",
            "psnr",
            "ssim",
            "true_code/psnr",
            "true_code/ssim",
        }
    )


# ----------------------------------------------------------------------------- report.json


@pytest.fixture
def quick_evaluator(monkeypatch):
    """The image metrics' evaluator (tested with each method) answers at once, so these
    tests time the truth pass alone: {psnr, step0..2/psnr: 0} and a blank grid."""

    def evaluate(self, state, baseline=False):
        names = ["psnr"] + [f"step{t}/psnr" for t in range(3)]
        return dict.fromkeys(names, 0.0), np.zeros((4, 4, 3), np.uint8)

    monkeypatch.setattr(family.Evaluator, "__call__", evaluate)


def encoder_config(make, assets, generator, **fields):
    c = make.get_config("")
    c.data.name = f"synthetic_faces/{DATA.name}"
    c.data.directory = assets["data"]
    c.model.generator = assets[generator]
    c.model.num_layers = 18
    c.model.mode = "ir"  # SE blocks need 16 channels
    c.model.base_width = 8
    c.loss.lpips = c.loss.id = 0.0
    c.eval.num_examples = 16
    c.eval.batch_size = 8
    c.eval.grid_examples = 2
    for key, value in fields.items():
        c[key.split(".")[0]][key.split(".")[1]] = value
    return c


def state_of(config, task):
    """The task's initial state, replicated over the mesh evaluate's task builds."""
    mesh = loop.make_mesh(axes=config.sharding.mesh)
    init = jax.jit(task.init_state, out_shardings=loop.replicated(mesh))
    return init(jax.random.PRNGKey(0))


def test_psp_report_has_the_w_distance_to_the_true_codes(assets, tmp_path, quick_evaluator):
    config = encoder_config(psp_configs, assets, "random")
    task = psp_train.make_task(config)
    state = state_of(config, task)
    result = psp_train.evaluate(config, state, tmp_path)
    G, v = loaded(assets["random"])
    factors = gt.test_factors(RES, 16, assets["data"], config.data.name)
    true = gt.true_ws(G, v, factors)
    latent_avg = np.asarray(task.frozen["latent_avg"])
    assert result["baseline/true_w_distance"] == pytest.approx(
        gt.w_distance(latent_avg, true).mean(), rel=1e-5
    )
    codes = family.inference_model(psp_train.build, config, task, state).encode(
        gt.render(factors, RES)
    )
    assert result["true_w_distance"] == pytest.approx(gt.w_distance(codes, true).mean(), rel=1e-4)
    assert {"psnr", "baseline/psnr", "true_code/psnr", "true_code/ssim"} <= set(result)
    # Not taught the renderer: no truth, silently.
    config.model.generator = assets["untaught"]
    assert not family.truth_applies(config)
    assert family.inversion_truth(config, task, G, None) == {}


def test_restyle_reports_the_distance_at_every_step(assets, tmp_path, quick_evaluator):
    config = encoder_config(restyle_configs, assets, "random")
    config.restyle.n_iters_eval = 2
    task = restyle_train.make_task(config)
    result = restyle_train.evaluate(config, state_of(config, task), tmp_path)
    for t in range(3):
        assert np.isfinite(result[f"step{t}/true_w_distance"]) and f"step{t}/psnr" in result
    G, v = loaded(assets["random"])
    true = gt.true_ws(G, v, gt.test_factors(RES, 16, assets["data"], config.data.name))
    want = gt.w_distance(np.asarray(task.frozen["latent_avg"]), true).mean()
    assert result["step0/true_w_distance"] == pytest.approx(want, rel=1e-5)
    assert "true_w_distance" in restyle_train.format_steps(result)


def test_e4e_reports_the_distance_and_the_fitted_axis_cosine(assets, tmp_path, quick_evaluator):
    config = encoder_config(e4e_configs, assets, "random", **{"edit.attribute": ""})
    task = e4e_train.make_task(config)
    state = state_of(config, task)
    result = e4e_train.evaluate(config, state, tmp_path)
    assert {"true_w_distance", "baseline/true_w_distance", "true_code/psnr"} <= set(result)
    assert not any(k.startswith("edit/") for k in result)
    trained = family.inference_model(e4e_train.build, config, task, state)
    G, v = loaded(assets["random"])
    axis = gt.true_smile_axis(G, v, gt.test_factors(RES, 16, assets["data"], config.data.name))
    direction = np.tile(axis, (G.num_ws, 1))
    assert e4e_train.true_axis_cosine(config, trained, direction) == pytest.approx(1.0, abs=1e-6)


# ----------------------------------------------------------------------------- the tools


def test_project_tool_scores_test_faces(assets, tmp_path, capsys):
    tool = load_tool("stylegan2_project")
    common = ["--test-faces", "2", "--steps", "2", "--snapshots", "1"]
    common += ["--data", f"synthetic_faces/{DATA.name}", "--data-dir", assets["data"]]
    tool.main([*common, "--network", assets["random"], "--outdir", str(tmp_path / "p")])
    report = json.loads((tmp_path / "p" / "truth.json").read_text())
    assert report["faces"] == 2 and len(report["per_face"]["true_w_distance"]) == 2
    assert report["metrics"]["psnr"] == pytest.approx(np.mean(report["per_face"]["psnr"]))
    G, v = loaded(assets["random"])
    factors = gt.test_factors(RES, 2, assets["data"], f"synthetic_faces/{DATA.name}")
    ws = np.load(tmp_path / "p" / "latents.npy")
    want = gt.w_distance(ws, gt.true_ws(G, v, factors))
    np.testing.assert_allclose(report["per_face"]["true_w_distance"], want, rtol=1e-5)
    assert (tmp_path / "p" / "test_0001_proj.png").is_file()
    assert "true_w_distance" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="not taught the renderer"):
        tool.main([*common, "--network", assets["untaught"], "--outdir", str(tmp_path / "q")])


def test_edit_tool_writes_the_truth_report(assets, tmp_path, capsys):
    tool = load_tool("stylegan2_edit")
    out = tmp_path / "edit.json"
    args = ["--network", assets["random"], "--truth-report", str(out), "--truth-faces", "4"]
    args += ["--fit-samples", "200", "--components", "3", "--pca-samples", "300", "--sefa", "1"]
    args += ["--data", f"synthetic_faces/{DATA.name}", "--data-dir", assets["data"]]
    tool.main(args)
    report = json.loads(out.read_text())
    assert report["faces"] == 4 and report["chosen"] == "SeFa direction 1"
    G, v = loaded(assets["random"])
    sefa, _ = stylegan2_editing.sefa(G, v)
    axis = gt.true_smile_axis(
        G, v, gt.test_factors(RES, 4, assets["data"], f"synthetic_faces/{DATA.name}")
    )
    assert report["metrics"]["chosen/true_axis_cosine"] == pytest.approx(sefa[1] @ axis, abs=1e-5)
    assert "| sefa |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="pass --out"):
        tool.main(["--network", assets["random"]])
