"""StyleGAN2 training configs.

  python -m stylejax.main --config=configs/stylegan2.py --workdir=runs/tiny
  python -m stylejax.main --config=configs/stylegan2.py:synthetic64 --workdir=runs/s64
  python -m stylejax.main --config=configs/stylegan2.py:ffhq1024 --workdir=gs://bucket/ffhq

Variants:
  (default)    tiny 32 px model on the embedded synthetic faces; a few minutes on a CPU.
  synthetic64  the 64 px synthetic-faces generator the project ships (pSp trains on it):
               taught the renderer directly (train.objective "renderer"; no discriminator).
  synthetic64_gan  the adversarial 64 px recipe (pretrained/synthetic64_gan), for a CPU.
  ffhq256      stylegan2-ada's paper256 setup (batch 64, γ 1, EMA 20 kimg, mbstd 8).
  ffhq1024     config-f: batch 32, γ 10, lr 0.002, EMA half-life 10 kimg, mixing 0.9,
               path length weight 2, lazy R1 every 16 and path length every 4 steps;
               fully sharded (FSDP) over all devices.
Any field can be overridden: --config.train.r1_gamma=5 --config.batch_size=8.
"""

from ml_collections import config_dict

from configs import common

VARIANTS = ("", "synthetic64", "synthetic64_gan", "ffhq256", "ffhq1024")

# FSDP for config.sharding.rules: each conv and dense weight of G, its EMA, D and their Adam
# moments split over the "fsdp" axis along a channel dimension that divides (convs are
# HWIO: the input channels, or the outputs of fromrgb's 3 inputs; dense (in, out): in).
# Biases, the const input and scalars stay replicated.
FSDP_RULES = (
    (r".*/fromrgb/weight", (None, None, None, "fsdp")),
    (r".*/(conv\d?|skip|torgb)/weight", (None, None, "fsdp")),
    (r".*/(fc\d*|affine|embed|out)/weight", ("fsdp",)),
)


def get_config(variant: str = ""):
    c = common.base_config(
        "stylegan2",
        variant,
        VARIANTS,
        num_steps=400,
        log_every=25,
        checkpoint_every=100,
        keep_checkpoints=3,
        sample_every=100,
        data_name="synthetic_faces/32",
        shuffle_buffer=1000,
    )
    c.num_samples = 16

    c.model = config_dict.ConfigDict()
    c.model.resolution = 32
    c.model.z_dim = 64
    c.model.w_dim = 64
    c.model.mapping_layers = 2
    c.model.channel_base = 1024  # channels min(channel_base / res, channel_max)
    c.model.channel_max = 32
    c.model.g_architecture = "skip"
    c.model.d_architecture = "resnet"
    c.model.conv_clamp = config_dict.placeholder(float)
    c.model.mbstd_group_size = 4
    c.model.fused_modconv = False  # stylegan2-ada trains non-fused; both are the same function
    c.model.dtype = "float32"  # "bfloat16" for mixed precision on accelerators

    # --mode=evaluate and the end of training (stylejax.train.stylegan2.evaluate).
    c.eval = config_dict.ConfigDict()
    c.eval.split = "test"
    c.eval.num_examples = 1000  # for the pixel Fréchet distance
    c.eval.metrics = ""  # stylejax.evaluate's names, e.g. "fid50k,pr50k3"; need:
    c.eval.inception_weights = ""  # a converted FID Inception (tools/convert_weights.py)

    c.train = config_dict.ConfigDict()
    # "adversarial" (StyleGAN2's losses) or "renderer": G(z) learns the synthetic faces'
    # render(factors(z)) (stylejax.data.factor_latents), supervised; no discriminator.
    c.train.objective = "adversarial"
    c.train.mapping_lr_scale = 1.0  # renderer objective: × the mapping network's updates
    c.train.g_lr = 0.0025
    c.train.d_lr = 0.0025
    c.train.betas = (0.0, 0.99)
    c.train.r1_gamma = 0.1
    c.train.r1_interval = 16
    c.train.pl_weight = 2.0
    c.train.pl_interval = 4
    c.train.pl_decay = 0.01
    c.train.pl_batch_shrink = 2
    c.train.style_mixing_prob = 0.9
    c.train.ema_kimg = 1.0
    c.train.ema_rampup = config_dict.placeholder(float)  # None: no ramp-up
    c.train.ema_rampup = 0.05

    if variant == "synthetic64":
        # Supervised by the renderer: converges in a fraction of the images an adversarial
        # run needs. Wider at 4-16 px and an 8-layer mapping (the factors' categorical bins
        # and the smile's two ranges are steps the mapping must draw); about 40 img/s here.
        c.data.name = "synthetic_faces/64"
        c.model.resolution = 64
        c.model.channel_base = 2048
        c.model.channel_max = 64
        c.model.w_dim = 128
        c.model.mapping_layers = 8
        c.batch_size = 16
        c.num_steps = 12000
        c.train.objective = "renderer"
        c.train.mapping_lr_scale = 100.0  # the mapping learns at the synthesis layers' rate
        c.train.g_lr = 0.005  # PSNR 17.0 dB at step 300 against 16.1 dB with 0.002
        c.train.betas = (0.9, 0.99)
        c.train.r1_gamma = 0.0
        c.train.pl_weight = 0.0
        c.train.style_mixing_prob = 0.0
        c.train.ema_kimg = 2.0
        c.train.ema_rampup = 0.05
        c.log_every = 50
        c.checkpoint_every = 250
        c.sample_every = 500
        c.num_samples = 36
    elif variant == "synthetic64_gan":
        # Sized for a CPU budget (about 1.8 s/step on 2 CPU cores): 32 channels at every
        # resolution, no path-length regulariser, stylegan2-ada's "auto" γ and EMA rules.
        c.data.name = "synthetic_faces/64"
        c.data.shuffle_buffer = 5000
        c.model.resolution = 64
        c.model.channel_base = 2048
        c.model.channel_max = 32
        c.batch_size = 8
        c.num_steps = 6000
        c.train.r1_gamma = 0.0002 * 64**2 / 8
        c.train.pl_weight = 0.0
        c.train.ema_kimg = 8 * 10 / 32
        c.log_every = 100
        c.checkpoint_every = 500
        c.sample_every = 500
        c.num_samples = 36
    elif variant in ("ffhq256", "ffhq1024"):
        res = int(variant[4:])
        c.data.name = f"ffhq/{res}"
        c.data.shuffle_buffer = 10_000
        c.model.resolution = res
        c.model.z_dim = c.model.w_dim = 512
        c.model.mapping_layers = 8
        c.model.channel_max = 512
        c.train.ema_rampup = None
        c.log_every = 100
        c.checkpoint_every = 2000
        c.sample_every = 2000
        c.num_samples = 32
        if res == 256:  # stylegan2-ada paper256
            c.model.channel_base = 16384
            c.model.mbstd_group_size = 8
            c.batch_size = 64
            c.train.g_lr = c.train.d_lr = 0.0025
            c.train.r1_gamma = 1.0
            c.train.ema_kimg = 20.0
            c.num_steps = 25_000_000 // 64
        else:  # config-f
            c.model.channel_base = 32768
            c.batch_size = 32
            c.train.g_lr = c.train.d_lr = 0.002
            c.train.r1_gamma = 10.0
            c.train.ema_kimg = 10.0
            c.num_steps = 25_000_000 // 32
            # Fully sharded: every chip holds 1/N of the weights, their EMA and Adam moments
            # (README: "Sharding"); --config.sharding.mesh trades fsdp for data.
            c.sharding.mesh = (("data", 1), ("fsdp", -1))
            c.sharding.rules = FSDP_RULES
    return c
