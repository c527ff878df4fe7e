"""SEAN training configs.

  python -m stylejax.main --config=configs/sean.py --workdir=runs/sean
  python -m stylejax.main --config=configs/sean.py:celebamaskhq --workdir=gs://bucket/sean \
      --config.train.vgg_weights=vgg19-dcbb9e9d.pth

Variants:
  (default)     synthetic faces at 64 px with their 19-class segmentation; a small model that
                trains here in 47.5 min on the idle 2-core CPU. Ours, not the paper's: a pyramid L1 to
                the style image (λ 10) and G's lr 4e-4 (the official 1e-4 with D's 4e-4).
  celebamaskhq  the official CelebAMask-HQ setup: 256 px, 19 classes, ngf 64, 512-wide
                styles, batch 32 (the paper's 8 GPUs × 4), 50 epochs constant lr + 50 decaying.
Other data sets: set data.name and model.label_nc (≤ 19: SEAN has 19 per-region style layers),
e.g. --config.data.name=image_folder --config.model.label_nc=8.
The VGG19 perceptual loss needs torchvision's ImageNet weights (train.vgg_weights); without
them it is switched off with a warning in the log.
"""

from ml_collections import config_dict

from configs import common

VARIANTS = ("", "celebamaskhq")


def get_config(variant: str = ""):
    c = common.base_config(
        "sean",
        variant,
        VARIANTS,
        num_steps=4000,
        log_every=50,
        checkpoint_every=500,
        keep_checkpoints=3,
        sample_every=500,
        data_name="synthetic_faces/64",
        shuffle_buffer=2000,
    )
    c.num_samples = 12  # (mask | style image | output) triplets from the test split

    c.model = config_dict.ConfigDict()
    c.model.resolution = 64
    c.model.label_nc = 19
    c.model.ngf = 8  # head width 16·ngf
    c.model.num_upsampling_layers = "normal"  # head at resolution / 32
    c.model.style_length = 32  # 512 officially
    c.model.zencoder_ngf = 16  # 32 officially
    c.model.spade_hidden = 32  # 128 officially
    c.model.ndf = 16
    c.model.n_layers_d = 3
    c.model.num_d = 2

    c.train = config_dict.ConfigDict()
    c.train.g_lr = 4e-4  # ours; the official TTUR: lr / 2 = 1e-4 for G, lr · 2 for D
    c.train.d_lr = 4e-4
    c.train.beta1 = 0.0
    c.train.beta2 = 0.9  # the public code's TTUR default; the paper says 0.999
    c.train.adam_eps = 1e-8  # torch's default
    c.train.decay_start_fraction = 0.5  # niter / (niter + niter_decay): then linear to 0
    c.train.lambda_feat = 10.0
    c.train.lambda_vgg = 10.0
    # Ours, not the paper's: a multi-scale pixel L1 to the style image (metrics.pyramid_l1).
    # 0 is the official recipe; the VGG loss it stands in for needs ImageNet weights.
    c.train.lambda_l1 = 10.0
    c.train.vgg_weights = ""  # torchvision vgg19-dcbb9e9d.pth; empty: VGG loss off (logged)

    c.eval = config_dict.ConfigDict()
    c.eval.split = "test"
    c.eval.num_examples = 256
    c.eval.batch_size = 32
    # A converted FID Inception (docs/metrics.md); empty: no FID in the evaluation.
    c.eval.inception_weights = ""

    if variant == "celebamaskhq":
        c.data.name = "celeba_mask_hq/256"
        c.data.shuffle_buffer = 10_000
        c.model.resolution = 256
        c.model.ngf = 64
        c.model.style_length = 512
        c.model.zencoder_ngf = 32
        c.model.spade_hidden = 128
        c.model.ndf = 64
        c.train.g_lr = 1e-4
        c.train.lambda_l1 = 0.0
        c.batch_size = 32
        c.num_steps = 100 * 28_000 // 32  # 100 epochs of the 28k training images
        c.log_every = 100
        c.checkpoint_every = 2000
        c.sample_every = 2000
        c.num_samples = 12
        c.eval.num_examples = 2000
    return c
