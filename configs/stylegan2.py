"""StyleGAN2 training configs.

  python -m stylejax.main --config=configs/stylegan2.py --workdir=runs/tiny
  python -m stylejax.main --config=configs/stylegan2.py:synthetic64 --workdir=runs/s64
  python -m stylejax.main --config=configs/stylegan2.py:ffhq1024 --workdir=gs://bucket/ffhq

Variants:
  (default)    tiny 32 px model on the embedded synthetic faces; a few minutes on a CPU.
  synthetic64  the 64 px synthetic-faces generator the project ships (pSp trains on it):
               taught the renderer directly (train.objective "renderer"; no discriminator).
               The shipped weights: this run, continued at batch 128 on a GPU with
               tools/train_renderer_device.py (README "The shipped synthetic-faces generator").
  synthetic64_gan  the adversarial 64 px recipe (pretrained/synthetic64_gan), for a CPU.
  ffhq256      stylegan2-ada's paper256 setup (batch 64, γ 1, EMA 20 kimg, mbstd 8).
  ffhq1024     config-f: batch 32, γ 10, lr 0.002, EMA half-life 10 kimg, mixing 0.9,
               path length weight 2, lazy R1 every 16 and path length every 4 steps;
               fully sharded (FSDP) over all devices.
  ada_folder   your own folder of images with ADA, 256 px (README "Training on your own
               images with ADA"): --config.data.folder=/path/to/images is required;
  ada_folder<res>  the same at res = 32, 64, 128, 256, 512 or 1024 px. stylegan2-ada's
               "auto" config for one GPU at that resolution: batch max(min(4096 / res, 32), 1)
               (16 at 256 px), γ = 0.0002 res² / batch, EMA half-life batch * 10 / 32 kimg
               with ramp-up 0.05, lr 0.0025 (0.002 at 1024), channel_base 16384 (32768 from
               512 px), a 2-layer mapping, mbstd group min(batch, 4); bgc ADA towards
               r_t = 0.6; x-flips on; evaluated on the training images (a folder has one
               split). With another batch size, set γ and ema_kimg by those formulas too.
Any field can be overridden: --config.train.r1_gamma=5 --config.batch_size=8.
"""

from ml_collections import config_dict

from configs import common

ADA_FOLDER_RESOLUTIONS = (32, 64, 128, 256, 512, 1024)  # image_folder's
VARIANTS = (
    "",
    "synthetic64",
    "synthetic64_gan",
    "ffhq256",
    "ffhq1024",
    "ada_folder",
    *(f"ada_folder{res}" for res in ADA_FOLDER_RESOLUTIONS),
)

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
    # Class-conditional G and D with this many classes (0: unconditional); batches then
    # carry one-hot labels. data.use_labels=True sets it from the data set.
    c.model.c_dim = 0
    # Transfer learning: a StyleGAN2 model folder (tools/convert_weights.py's, with --which
    # all to bring D along, or a model trained here) whose G, G_ema and D start a fresh run;
    # its architecture must match the model.* fields. Empty: random initialisation.
    c.model.resume = ""

    # Labels: train conditionally on the data set's classes (image_folder: one sub-folder
    # per class, or dataset.json); sets model.c_dim.
    c.data.use_labels = False

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
    c.train.feature_weight = 1.0  # renderer objective: L1 weight of eyes, brows, nose, mouth
    c.train.lr_decay_start = 1.0  # renderer objective: cosine lr decay from this × num_steps
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
    # freezeD: the first k discriminator layers, counted as stylegan2-ada-pytorch's --freezed
    # counts them (from the highest resolution: fromrgb, conv0, conv1, skip, ...), get no
    # updates. Transfer learning with model.resume.
    c.train.freeze_d = 0

    # ADA (stylejax.augment): D sees reals and fakes augmented with probability p; p moves
    # every ada_interval steps towards r_t = E[sign(D(real))] = ada_target, by one unit per
    # ada_kimg thousand images. As stylegan2-ada-pytorch's --aug=ada --augpipe=PRESET
    # (--aug=fixed --p=P: ada_target None and p=P; --aug=noaug: preset "").
    c.augment = config_dict.ConfigDict()
    c.augment.preset = ""  # "" off; "bgc" (the official default), "blit", ..., "bgcfnc"
    c.augment.p = 0.0  # the initial p (the fixed p when ada_target is None)
    c.augment.ada_target = config_dict.placeholder(float)
    c.augment.ada_target = 0.6  # None: p stays fixed
    c.augment.ada_interval = 4  # steps between p's updates
    c.augment.ada_kimg = 500.0  # thousands of images for p to move by one unit

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
        c.num_steps = 10000
        c.train.objective = "renderer"
        c.train.mapping_lr_scale = 100.0  # the mapping learns at the synthesis layers' rate
        # At step 4,000 layout, hair and colours were learnt but no eyes or mouths (a few
        # percent of the pixels): weigh them up, and decay the lr over the second half.
        c.train.feature_weight = 5.0
        c.train.lr_decay_start = 0.5
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
    elif variant.startswith("ada_folder"):
        ada_folder(c, int(variant[len("ada_folder") :] or 256))
    return c


def ada_folder(c, res: int) -> None:
    """Your own folder of images (data.folder, required) with ADA: stylegan2-ada-pytorch's
    train.py --cfg=auto --aug=ada --augpipe=bgc --mirror=1 for one GPU at `res` px."""
    c.data.name = f"image_folder/{res}"
    c.data.shuffle_buffer = 10_000
    c.eval.split = "train"  # a folder has one split
    c.model.resolution = res
    c.model.z_dim = c.model.w_dim = 512
    c.model.mapping_layers = 2
    c.model.channel_base = 32768 if res >= 512 else 16384
    c.model.channel_max = 512
    batch = max(min(4096 // res, 32), 1)
    c.batch_size = batch
    c.model.mbstd_group_size = min(batch, 4)
    c.train.g_lr = c.train.d_lr = 0.002 if res >= 1024 else 0.0025
    c.train.r1_gamma = 0.0002 * res**2 / batch
    c.train.ema_kimg = batch * 10 / 32
    c.train.ema_rampup = 0.05
    c.augment.preset = "bgc"
    c.augment.ada_target = 0.6
    c.num_steps = 25_000_000 // batch  # the official 25,000 kimg; stop when FID is good
    c.log_every = 100
    c.checkpoint_every = 1000
    c.sample_every = 1000
    c.num_samples = 32
