"""What every method's config holds: the variant check, the engine's fields
(stylejax/train/loop.py) and the training data's (stylejax/data/pipeline.py). A method's
config starts from base_config and sets only its own fields:

  c = common.base_config("sean", variant, VARIANTS, num_steps=600, ...)
  c.model = config_dict.ConfigDict()
"""

from collections.abc import Sequence

from ml_collections import config_dict


def check_variant(method: str, variant: str, variants: Sequence[str]) -> None:
    """Raises a ValueError naming configs/<method>.py's variants when `variant` is not one."""
    if variant not in variants:
        raise ValueError(
            f"configs/{method}.py: unknown variant {variant!r}; expected one of "
            f"{', '.join(repr(v) for v in variants if v)} (or none for the default)"
        )


def base_config(
    method: str,
    variant: str,
    variants: Sequence[str],
    *,
    num_steps: int,
    log_every: int,
    checkpoint_every: int,
    keep_checkpoints: int,
    sample_every: int,
    data_name: str,
    shuffle_buffer: int,
) -> config_dict.ConfigDict:
    """The checked variant and the fields every method shares; `method` names the trainer
    (stylejax/train/<method>.py) that stylejax.main runs."""
    check_variant(method, variant, variants)
    c = config_dict.ConfigDict()
    c.method = method
    c.variant = variant
    c.seed = 0
    c.batch_size = 8  # global, over all devices and processes
    c.num_steps = num_steps
    c.log_every = log_every
    c.checkpoint_every = checkpoint_every
    c.keep_checkpoints = keep_checkpoints
    c.sample_every = sample_every

    c.data = config_dict.ConfigDict()
    c.data.name = data_name  # a TFDS builder name (stylejax/data/)
    c.data.split = "train"  # the training split; evaluations read eval.split
    c.data.directory = ""  # TFDS data_dir; empty: TFDS's default
    # Your own images (README "Your own images"): a folder that data.name=image_folder/<res>
    # is built from, in a data_dir of its own under data.directory; empty: unused.
    c.data.folder = ""
    c.data.flip = True
    c.data.shuffle_buffer = shuffle_buffer

    # Where the train state and the batch live (stylejax.train.loop.state_sharding): mesh
    # axis sizes (-1: the devices left over; the batch splits over "data" and "fsdp") and
    # (regex over the state path, partition spec) rules, first match wins; no match:
    # replicated.
    c.sharding = config_dict.ConfigDict()
    c.sharding.mesh = (("data", -1),)
    c.sharding.rules = ()
    return c
