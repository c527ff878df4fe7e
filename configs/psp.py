"""pSp ("Encoding in Style") training configs.

  python -m stylejax.main --config=configs/psp.py --workdir=runs/psp
  python -m stylejax.main --config=configs/psp.py:sketch2face --workdir=runs/sketch
  python -m stylejax.main --config=configs/psp.py:ffhq_encode --workdir=runs/ffhq \
      --config.model.generator=converted/ffhq1024 --config.model.encoder_init=converted/ir_se50 \
      --config.loss.lpips_weights=converted/lpips_alex --config.loss.id_weights=converted/ir_se50

Variants (the task's source → target pairs come from stylejax/data/tasks.py):
  (default)       inversion of the 64 px synthetic faces into the generator the project ships
                  (stylejax/pretrained/synthetic64); minutes on a CPU.
  frontalization  posed face → the same face rendered frontally (the synthetic set's
                  counterfactual), target randomly flipped, the paper's centre-crop weights.
  sketch2face     1-channel sketch → face.
  seg2face        19-class label map (one-hot) → face.
  superres        face down-sampled by a random factor of 1, 2, 4, 8, 16 or 32 → face.
  inpainting      face with random holes → face.
  ffhq_encode     the paper's inversion: FFHQ 256 → config-f 1024 generator (real weights).
The synthetic variants train on top of the shipped generator; give a converted generator and
a real data set (--config.model.generator, --config.data.name) for real-scale runs.

Losses whose weights are not given (LPIPS, ArcFace) are switched off with a logged note
when `loss.require_weights` is False (synthetic variants) and are an error otherwise.
"""

from ml_collections import config_dict

from configs import common

VARIANTS = (
    "",
    "frontalization",
    "sketch2face",
    "seg2face",
    "superres",
    "inpainting",
    "ffhq_encode",
)
# variant -> (data task, encoder input channels)
TASKS = {
    "": ("encode", 3),
    "frontalization": ("frontalization", 3),
    "sketch2face": ("sketch_to_face", 1),
    "seg2face": ("seg_to_face", 19),
    "superres": ("super_resolution", 3),
    "inpainting": ("inpainting", 3),
    "ffhq_encode": ("encode", 3),
}


def get_config(variant: str = ""):
    c = common.base_config(
        "psp",
        variant,
        VARIANTS,
        # 3,000 steps: test PSNR 29.4 dB, SSIM 0.85 on the shipped generator in 10 minutes
        # of the idle 2-core CPU (0.76 at 1,000 steps, 0.82 at 2,000).
        num_steps=3000,
        log_every=50,
        checkpoint_every=1000,
        keep_checkpoints=2,
        sample_every=1000,  # unused: the test-split grids are the samples
        data_name="synthetic_faces/64",
        shuffle_buffer=5000,
    )
    c.eval_every = 1000

    task, input_nc = TASKS[variant]
    c.data.test_name = ""  # the evaluation's data set; empty: the training data set
    c.data.task = task

    c.model = config_dict.ConfigDict()
    # A converted StyleGAN2 checkpoint (tools/convert_weights.py) or a directory written by
    # stylegan2's export; empty: the generator the project ships (64 px synthetic faces).
    c.model.generator = ""  # ffhq_encode: required (a config-f 1024 px generator)
    c.model.encoder_type = "GradualStyleEncoder"
    c.model.learn_in_w = False  # True: one W for every layer (BackboneEncoderUsingLastLayerIntoW)
    c.model.num_layers = 18  # IR-SE depth: 18/34 (small), 50 (pSp), 100, 152
    c.model.mode = "ir_se"
    c.model.base_width = 16  # 64 in pSp
    c.model.input_nc = input_nc
    c.model.start_from_latent_avg = True
    # A converted ArcFace IR-SE checkpoint to initialise the encoder trunk, as pSp does
    # (the input layer is kept random when input_nc != 3); empty: random initialisation.
    c.model.encoder_init = ""

    c.loss = config_dict.ConfigDict()
    c.loss.l2 = 1.0
    c.loss.lpips = 0.8
    c.loss.id = 0.1
    c.loss.w_norm = 0.0
    c.loss.l2_crop = 0.0  # the same losses on the inner face crop (frontalisation)
    # Ours: the L2 weight of eyes, brows, nose, mouth, lips and glasses (labels.FEATURE_PARTS)
    # relative to the rest, from the data's segmentation maps; 1: plain L2 as in pSp. A
    # stand-in for what LPIPS and the identity loss do (weigh the facial features) where
    # their weights are not given.
    c.loss.part_weight = 1.0
    c.loss.lpips_crop = 0.0
    c.loss.lpips_weights = ""  # converted LPIPS AlexNet checkpoint
    c.loss.id_weights = ""  # converted ArcFace IR-SE50 checkpoint
    c.loss.require_weights = False

    c.optimizer = config_dict.ConfigDict()
    c.optimizer.name = "ranger"  # or "adam"
    c.optimizer.lr = 1e-3  # pSp's 1e-4 is for 300k steps; 1e-3 suits short CPU runs
    # A cosine to 0 over the second half: the short CPU runs end on their best weights
    # (constant lr: 28.02 dB / SSIM 0.806 at step 2,000, 27.71 / 0.798 at 3,000).
    # ffhq_encode keeps the paper's constant lr (1.0).
    c.optimizer.lr_decay_start = 0.5

    c.eval = config_dict.ConfigDict()
    c.eval.split = "test"
    c.eval.num_examples = 256
    c.eval.batch_size = 32
    c.eval.grid_examples = 8

    if variant == "frontalization":
        c.loss.lpips, c.loss.l2, c.loss.id, c.loss.w_norm = 0.08, 0.001, 1.0, 0.005
        c.loss.lpips_crop, c.loss.l2_crop = 0.8, 0.01
    elif variant in ("sketch2face", "seg2face"):
        c.loss.id, c.loss.w_norm = 0.0, 0.005
        c.data.flip = True
    elif variant == "superres":
        c.loss.w_norm = 0.005
    elif variant == "ffhq_encode":
        c.data.name = "ffhq/256"
        c.data.test_name = "celeba_hq/256"  # the paper's 2,824 test faces
        c.data.shuffle_buffer = 10_000
        c.model.num_layers = 50
        c.model.base_width = 64
        c.loss.require_weights = True
        c.optimizer.lr = 1e-4
        c.optimizer.lr_decay_start = 1.0
        c.num_steps = 300_000
        c.log_every = 100
        c.checkpoint_every = 5000
        c.eval_every = 2500
        c.eval.num_examples = 2000
        c.eval.batch_size = 16
        # FSDP over all devices: the encoder's conv kernels (HWIO) split over their input
        # channels, its equalized dense weights (in, out) over in, with their optimiser
        # moments; the frozen networks stay replicated.
        c.sharding.mesh = (("data", 1), ("fsdp", -1))
        c.sharding.rules = ((r".*/kernel", (None, None, "fsdp")), (r".*/weight", ("fsdp",)))
    return c
