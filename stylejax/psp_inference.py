"""pSp and e4e inference: encode images, reconstruct them, multi-modal outputs by style
mixing, latent interpolation and latent-direction edits, on a converted official checkpoint
or a model trained here.

    from stylejax import psp_inference
    model = psp_inference.load_psp("converted/psp_ffhq_encode")   # or <workdir>/model
    images, codes = model.reconstruct(psp_inference.load_images(paths, model))
    mixed = model.multimodal(x, jax.random.PRNGKey(0), n_outputs=5, latent_mask=range(8, 18))
    smiles = model.edit(x, stylegan2_editing.load_direction("smile.npy"), strengths=[-3, 0, 3])

Images are NHWC floats: RGB in [-1, 1], sketches in [0, 1] (1 channel), label maps one-hot
(label_nc channels), at the model's input size (256 for the official models). Outputs are
pooled to the input size, like pSp's `--resize_outputs`, unless `full_size=True`.
"""

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from stylejax import stylegan2_editing
from stylejax.models import psp as psp_models
from stylejax.nn import torch_ops


class PSPModel:
    """A loaded pSp model: the Flax module, its variables and its config (as written by
    tools/convert_weights.py or the pSp trainer). Every method is jitted once per model."""

    def __init__(self, module: psp_models.PSP, variables: dict, config: dict):
        self.module, self.variables, self.config = module, variables, config
        self.input_size = int(config.get("input_size", 256))
        self.input_nc = int(config["input_nc"])
        self.num_ws = module.decoder.num_ws
        self.learn_in_w = config["encoder_type"] == "BackboneEncoderUsingLastLayerIntoW"

    @functools.cached_property
    def _encode(self):
        m = self.module
        return jax.jit(lambda v, x: m.apply(v, x, method=m.encode))

    @functools.cached_property
    def _decode(self):
        m = self.module

        def decode(v, codes, full_size):
            images = m.apply(v, codes, method=m.decode)
            return images if full_size else _pool_to(images, self.input_size)

        return jax.jit(decode, static_argnums=2)

    @functools.cached_property
    def _map(self):
        m = self.module
        return jax.jit(lambda v, z: m.apply(v, z, method=lambda mod, z: mod.decoder.map(z)))

    def encode(self, x) -> jax.Array:
        """W+ codes [N, num_ws, w_dim] (latent_avg included when the model starts from it);
        a W encoder's single code is repeated over the layers."""
        self._check_input(x)
        codes = self._encode(self.variables, jnp.asarray(x, jnp.float32))
        if codes.ndim == 2:
            codes = jnp.repeat(codes[:, None], self.num_ws, axis=1)
        return codes

    def decode(self, codes, full_size: bool = False) -> jax.Array:
        """Images from W+ codes, with the generator's constant noise."""
        return self._decode(self.variables, jnp.asarray(codes, jnp.float32), full_size)

    def reconstruct(self, x, full_size: bool = False) -> tuple[jax.Array, jax.Array]:
        codes = self.encode(x)
        return self.decode(codes, full_size), codes

    def random_codes(self, rng, n: int) -> jax.Array:
        """W+ codes of random z through the mapping network (pSp's injected latents)."""
        z = jax.random.normal(rng, (n, self.module.decoder.z_dim))
        return self._map(self.variables, z)

    def mix(self, codes, inject, latent_mask: Iterable[int], alpha: float | None = None):
        """pSp's style mixing: the layers in latent_mask take `inject`'s codes, or with alpha
        the blend alpha·inject + (1 − alpha)·codes; the other layers keep `codes`."""
        mask = np.zeros(self.num_ws, bool)
        layers = list(latent_mask)
        bad = [i for i in layers if not 0 <= i < self.num_ws]
        if bad:
            raise ValueError(f"latent_mask layers {bad} outside 0..{self.num_ws - 1}")
        mask[layers] = True
        mask = jnp.asarray(mask)[None, :, None]
        mixed = inject if alpha is None else alpha * inject + (1 - alpha) * codes
        return jnp.where(mask, mixed, codes)

    def multimodal(
        self,
        x,
        rng,
        n_outputs: int = 5,
        latent_mask: Iterable[int] | None = None,
        alpha: float | None = None,
        full_size: bool = False,
    ) -> jax.Array:
        """[N, n_outputs, H, W, 3]: each input's code with its fine styles (by default the
        layers from 8 on, as pSp's README suggests for 18-layer generators, scaled to this
        generator's depth) taken from n_outputs random latents."""
        if latent_mask is None:
            latent_mask = range(self.num_ws * 8 // 18, self.num_ws)
        latent_mask = list(latent_mask)
        codes = self.encode(x)
        outputs = []
        for key in jax.random.split(rng, n_outputs):
            inject = jnp.broadcast_to(self.random_codes(key, 1), codes.shape)
            outputs.append(self.decode(self.mix(codes, inject, latent_mask, alpha), full_size))
        return jnp.stack(outputs, axis=1)

    def interpolate(self, x_a, x_b, steps: int = 8, full_size: bool = False) -> jax.Array:
        """[N, steps, H, W, 3]: images along the straight line between the codes of x_a and
        x_b (W+ is where pSp codes live, so the path is linear there)."""
        a, b = self.encode(x_a), self.encode(x_b)
        ts = jnp.linspace(0.0, 1.0, steps)
        return jnp.stack([self.decode(a + t * (b - a), full_size) for t in ts], axis=1)

    def edit(self, x, direction, strengths, layers=None, full_size: bool = False):
        """[N, S, H, W, 3]: each input encoded, moved along a latent direction (W [w_dim] or
        W+ [num_ws, w_dim], e.g. from stylegan2_editing.load_direction or
        stylegan2_editing.fit_direction on encoded images) by each strength, on the W+ entries
        in `layers` (all when None)."""
        codes = np.asarray(self.encode(x))
        edited = stylegan2_editing.apply_direction(codes, direction, strengths, layers)
        images = [self.decode(c, full_size) for c in edited]
        return jnp.stack(images, axis=1)

    def _check_input(self, x):
        shape = np.shape(x)
        want = (self.input_size, self.input_size, self.input_nc)
        if len(shape) != 4 or tuple(shape[1:]) != want:
            raise ValueError(f"pSp input must be [N, {', '.join(map(str, want))}], got {shape}")


def _pool_to(images, size):
    return images if images.shape[1] == size else torch_ops.adaptive_avg_pool2d(images, size)


def load_psp(path) -> PSPModel:
    """A converted pSp or e4e checkpoint (tools/convert_weights.py) or a trained model
    (<workdir>/model, written at the end of pSp or e4e training). e4e is a pSp whose encoder
    adds per-layer offsets to one base code; it encodes and edits the same way."""
    from stylejax.model_format import load_pretrained, read_config

    meta = read_config(path)
    name = next((n for n in ("psp", "e4e") if n in meta["networks"]), None)
    if name is None:
        raise ValueError(
            f"{path}: holds {sorted(meta['networks'])}, not a pSp or e4e model (convert a "
            f"checkpoint with tools/convert_weights.py, or train one with configs/psp.py or "
            f"configs/e4e.py)"
        )
    module, variables = load_pretrained(path, name)
    return PSPModel(module, variables, meta["networks"][name]["config"])


def load_images(paths: Sequence, model: PSPModel) -> np.ndarray:
    """Reads image files as the model's input: RGB resized to the input size (bilinear) in
    [-1, 1]; for 1-channel models grayscale sketches in [0, 1]; for label_nc-channel models
    label maps (class indices, resized with nearest) one-hot encoded."""
    size, nc = model.input_size, model.input_nc
    out = []
    for path in paths:
        try:
            image = Image.open(path)
            image.load()
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable image ({e})") from None
        if nc == 3:
            rgb = image.convert("RGB").resize((size, size), Image.BILINEAR)
            out.append(np.asarray(rgb, np.float32) / 127.5 - 1)
        elif nc == 1:
            gray = image.convert("L").resize((size, size), Image.BILINEAR)
            out.append(np.asarray(gray, np.float32)[..., None] / 255)
        else:
            labels = np.asarray(image.convert("L").resize((size, size), Image.NEAREST))
            if labels.max() >= nc:
                raise ValueError(
                    f"{path}: label map holds class {labels.max()}, but the model takes "
                    f"{nc} classes (0..{nc - 1})"
                )
            out.append(np.eye(nc, dtype=np.float32)[labels])
    return np.stack(out)


def image_files(folder) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder of images")
    files = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")
    )
    if not files:
        raise ValueError(f"{folder}: no .png/.jpg/.jpeg/.webp images inside")
    return files
