"""e4e ("Designing an Encoder for StyleGAN Image Manipulation") training configs.

  python -m stylejax.main --config=configs/e4e.py --workdir=runs/e4e
  python -m stylejax.main --config=configs/e4e.py:ffhq_encode --workdir=runs/e4e_ffhq \
      --config.model.generator=converted/ffhq1024 --config.model.encoder_init=converted/ir_se50 \
      --config.loss.lpips_weights=converted/lpips_alex --config.loss.id_weights=converted/ir_se50

Everything of configs/psp.py (data, generator, losses, Ranger, evaluation) plus `e4e`:
progressive offsets, delta regularisation and the latent discriminator (with R1 and the
history pools). Variants:
  (default)    inversion of the 64 px synthetic faces into the generator the project ships;
               the offsets unlock every 50 steps from step 100; minutes on a CPU.
  ffhq_encode  the public FFHQ recipe: w-discriminator 0.1, progressive start 20k, every 2k.
"""

from ml_collections import config_dict

from configs import common, psp

VARIANTS = ("", "ffhq_encode")


def add_e4e_fields(c, variant: str):
    """The e4e options (public e4e train options, with CPU-sized progressive steps for the
    synthetic variants)."""
    c.e4e = config_dict.ConfigDict()
    c.e4e.w_discriminator_lambda = 0.1  # 0: no latent discriminator
    c.e4e.w_discriminator_lr = 2e-5
    c.e4e.r1 = 10.0
    c.e4e.d_reg_every = 16
    c.e4e.use_w_pool = True
    c.e4e.w_pool_size = 50
    c.e4e.delta_norm = 2.0
    c.e4e.delta_norm_lambda = 2e-4
    # Stage i starts at progressive_steps[i]; empty: [0, start, start + every, ...]; a
    # negative start: every offset trains from step 0 (no delta regularisation).
    c.e4e.progressive_steps = ()
    c.e4e.progressive_start = 20_000 if variant.startswith("ffhq") else 100
    c.e4e.progressive_step_every = 2_000 if variant.startswith("ffhq") else 50
    return c


def get_config(variant: str = ""):
    common.check_variant("e4e", variant, VARIANTS)
    c = psp.get_config(variant)
    c.method = "e4e"
    # 2,400 steps (at 1,200 the reconstructions were too blurry for the mouth-region bar),
    # with the facial features' L2 weighed 10× so that the reconstructions draw the mouth
    # the editing proof compares (docs/restyle_e4e.md).
    if not variant.startswith("ffhq"):
        c.num_steps, c.eval_every, c.checkpoint_every, c.sample_every = 2400, 800, 800, 800
        c.loss.part_weight = 10.0
    c.model.encoder_type = "Encoder4Editing"
    # The editing proof after training (synthetic faces): a direction for this attribute
    # fitted on fit_examples codes, applied to num_examples encoded test faces and judged by
    # an attribute classifier and by smile_flipped. fit_on "samples": the generator's W
    # samples labelled by the classifier (InterFaceGAN); "encoded": encoded training faces
    # with their labels (on the shipped generator their codes carry no smile the fit can
    # find: the classifier reads the reconstructions' Smiling at chance).
    c.edit = config_dict.ConfigDict()
    c.edit.attribute = "" if variant.startswith("ffhq") else "Smiling"  # "": no proof
    c.edit.fit_on = "samples"
    # "mean_difference" (the classes' mean codes) or "logistic" (InterFaceGAN's separating
    # normal). On an earlier shipped generator the first was 0.88 from the true smile axis in
    # cosine, the second 0.48 (docs/restyle_e4e.md#editing-encoded-faces).
    c.edit.direction = "mean_difference"
    # Each encoded test face moves to this signed distance from the boundary (in the unit
    # direction's units), on the other class's side (the samples' class means lie at ±0.33;
    # encoded W+ codes sit off the W samples' manifold and need more): 0.926 of them flip
    # with the default run (docs/restyle_e4e.md has the sweep).
    c.edit.distance = 1.0
    c.edit.fit_examples = 2000
    c.edit.num_examples = 256
    return add_e4e_fields(c, variant)
