"""L2M-GAN training configs.

  python -m stylejax.main --config=configs/l2m.py --workdir=runs/l2m
  python -m stylejax.main --config=configs/l2m.py:multi --workdir=runs/l2m_multi
  python -m stylejax.main --config=configs/l2m.py:celebahq_smile --workdir=gs://bucket/l2m

Variants:
  (default)       synthetic faces 64 px, Smiling (2 domains); a small StarGAN v2 backbone,
                  our warm-up, λ_dom, λ_keep, part weights and mouth discriminator
                  (docs/l2m.md): 7,500 steps, 46 min on an idle 2-core CPU;
                  stylejax/pretrained/l2m_synthetic64 is its run.
  multi           the same with two attributes, ⟨Smiling, Eyeglasses⟩ → 4 domains, no
                  mouth discriminator, the same 7,500 steps (46 min here): each attribute
                  edits (0.96 / 0.995) and keeps the other (0.998 / 0.989) on 1,000 test
                  faces (docs/l2m.md).
  celebahq_smile  the paper's setting: CelebA-HQ 256 px (27,176 train / 2,824 test),
                  Smiling, style_dim 64, max_conv_dim 512, batch 8, 100k steps, lr 1e-4.
Any field can be overridden: --config.train.lambda_ort=2 --config.batch_size=16.
"""

from ml_collections import config_dict

from configs import common
from stylejax.data.real_faces import CELEBA_ATTRIBUTES

VARIANTS = ("", "multi", "celebahq_smile")


def get_config(variant: str = ""):
    c = common.base_config(
        "l2m",
        variant,
        VARIANTS,
        num_steps=7500,
        log_every=25,
        checkpoint_every=500,
        keep_checkpoints=2,
        sample_every=500,
        data_name="synthetic_faces/64",
        shuffle_buffer=2000,
    )
    c.num_samples = 5  # strips of input + 4 strengths: a 5 × 5 sample grid

    # Domains are attribute combinations: attribute k is bit k of the domain index.
    c.data.attributes = ("Smiling",)

    c.model = config_dict.ConfigDict()
    c.model.img_size = 64
    c.model.style_dim = 16
    c.model.latent_dim = 16
    c.model.hidden_dim = 64  # mapping network width (512 in StarGAN v2)
    c.model.max_conv_dim = 64
    c.model.dim_in = config_dict.placeholder(int)  # None: the official 2**14 // img_size
    c.model.dim_in = 8  # 8 channels at 64 px, 16 at 32, 32 at 16, 64 below: ~1 CPU-s/step
    c.model.d_dim_in = config_dict.placeholder(int)  # the discriminator's (None: dim_in)
    # Ours: a second discriminator on this (top, left, size) crop, each domain's logit the
    # sum of both (stargan_v2.GlobalLocalDiscriminator); () for none. The box holds the
    # mouth of the aligned 64 px faces (the smile region spans rows 30-46): mouth PSNR
    # against smile_flipped +2.2 dB over the input (seeds 1, 2: +1.7, +2.0), +1.6 without
    # (docs/l2m.md).
    c.model.d_local_box = (22, 16, 32)
    c.model.d_local_dim_in = 16
    c.model.w_hpf = 0.0  # the FAN masks are for real faces; training supports w_hpf = 0

    c.train = config_dict.ConfigDict()
    c.train.lr = 5e-4
    c.train.f_lr = 5e-6  # the mapping network's (StarGAN v2: lr / 100)
    c.train.betas = (0.0, 0.99)
    c.train.weight_decay = 1e-4
    c.train.adam_eps = 1e-8  # torch's default
    c.train.lambda_reg = 1.0  # R1 on reals
    c.train.lambda_sty = 1.0
    c.train.lambda_ds = 1.0
    c.train.ds_iter = 7500  # λ_ds decays linearly to 0 over this many steps
    # Cycle and reconstruction at 10 (StarGAN v2: cycle 1): with both at 1 the small CPU
    # model maps every input to one blurred face (docs/l2m.md#evaluation).
    c.train.lambda_cyc = 10.0
    c.train.lambda_ort = 1.0
    # Ours: G(x, s(x)) ≈ x, the α = 0 edit; the paper setting leaves it out.
    c.train.lambda_rec = 10.0
    # Ours: ‖edit − x‖₁ for both edits (keeps what the attribute does not need); 0: the paper.
    c.train.lambda_keep = 10.0
    # Ours, from the data's part labels (train/l2m.py pixel_weights): λ_rec's L1 of eyes,
    # brows, nose, mouth, lips and glasses weighed part_weight×, and λ_keep not applied on
    # keep_free_parts grown by keep_free_grow px (where the edit must redraw the face).
    # Mouth PSNR against smile_flipped +1.6 dB over the input, +1.1 without (docs/l2m.md).
    c.train.part_weight = 10.0
    c.train.keep_free_parts = ("mouth", "u_lip", "l_lip")
    c.train.keep_free_grow = 3
    c.train.ema_beta = 0.99
    # Ours: D's head for any other domain calls a real image fake (d_loss_fn); 0: the paper.
    c.train.lambda_dom = 1.0
    # Ours: the first steps train G/E as an autoencoder and D as a domain classifier of
    # real images (train/l2m.py warmup_step); 0: the paper.
    c.train.warmup_steps = 2500

    c.eval = config_dict.ConfigDict()
    c.eval.split = "test"
    c.eval.alphas = (0.25, 0.5, 0.75, 1.0)
    c.eval.max_images = 1000  # test images edited (0: the whole split)
    # The attribute classifier (stylejax/attribute_classifier.py): 0.997 Smiling test
    # accuracy on the synthetic faces; with batch 8 and width 8 it stayed at chance.
    c.eval.classifier_steps = 600
    c.eval.classifier_lr = 1e-3
    c.eval.classifier_batch_size = 32
    c.eval.classifier_dim_in = 16  # its first width (the discriminator's architecture)
    # Attributes the classifier also predicts (the edited ones always come first).
    c.eval.classifier_attributes = ()

    if variant == "multi":
        # 5,000 steps edited Smiling on only 0.632 of 4-domain faces; 7,500 reach 0.96.
        c.data.attributes = ("Smiling", "Eyeglasses")
        # Measured without the part weights (an Eyeglasses edit redraws more than the mouth).
        c.train.part_weight = 1.0
        c.train.keep_free_parts = ()
        c.model.d_local_box = ()  # measured without it (a mouth box; glasses are elsewhere)
    elif variant == "celebahq_smile":
        c.data.name = "celeba_hq/256"
        c.data.shuffle_buffer = 10_000
        c.model.img_size = 256
        c.model.style_dim = 64
        c.model.latent_dim = 16
        c.model.hidden_dim = 512
        c.model.max_conv_dim = 512
        c.model.dim_in = None
        c.model.d_local_box = ()
        c.train.lr = 1e-4
        c.train.lambda_rec = 0.0
        c.train.lambda_keep = 0.0
        c.train.part_weight = 1.0
        c.train.keep_free_parts = ()
        c.train.lambda_dom = 0.0
        c.train.warmup_steps = 0
        c.train.lambda_cyc = 1.0
        c.train.f_lr = 1e-6
        c.train.ds_iter = 100_000
        c.train.ema_beta = 0.999
        c.num_steps = 100_000
        c.log_every = 100
        c.checkpoint_every = 5000
        c.sample_every = 5000
        c.eval.max_images = 0
        c.eval.classifier_steps = 5000
        c.eval.classifier_attributes = CELEBA_ATTRIBUTES
    return c
