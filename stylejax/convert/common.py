"""Helpers every converter shares: torch → Flax tensor layouts, filling nested trees, checking
a converted tree against the model's shapes, describing what a file held."""

import jax
import numpy as np

from stylejax.model_format import CheckpointError


def oihw_to_hwio(w):
    """A torch conv kernel [out, in, kh, kw] as a Flax one [kh, kw, in, out]."""
    return np.ascontiguousarray(np.asarray(w).transpose(2, 3, 1, 0))


def set_leaf(tree: dict, path, value):
    """tree[path[0]][path[1]]... = value as float32, creating the dicts on the way."""
    node = tree
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = np.asarray(value, np.float32)


def describe(obj) -> str:
    """What a file held, for error messages."""
    if isinstance(obj, dict):
        return f"a dict with keys {sorted(map(str, obj))[:10]}"
    return f"a {type(obj).__name__}"


def expected_shapes(module, example_input):
    """Variable shapes of `module` initialised on `example_input` (no compute: eval_shape)."""
    return jax.eval_shape(lambda r: module.init(r, example_input), jax.random.PRNGKey(0))


def check_against_model(
    tree: dict, expected: dict, source: str, what: str, layout: str = "StyleGAN2"
):
    """Raises CheckpointError listing missing, unexpected or mis-shaped entries; returns the
    missing StyleGAN2 noise_const entries, which the caller may fill itself."""

    def flat(t):
        return {
            "/".join(str(getattr(p, "key", p)) for p in path): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(t)[0]
        }

    got, want = flat(tree), flat(expected)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    # Generators converted without stored noise keep the model's fresh noise_const.
    missing_ok = [k for k in missing if k.endswith("noise_const")]
    missing = [k for k in missing if k not in missing_ok]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors: {missing[:8]}")
    if extra:
        problems.append(f"unexpected {len(extra)} tensors: {extra[:8]}")
    for k in sorted(set(got) & set(want)):
        if tuple(np.shape(got[k])) != tuple(want[k].shape):
            problems.append(
                f"shape mismatch for {k}: file gives {np.shape(got[k])}, "
                f"model expects {tuple(want[k].shape)}"
            )
    if problems:
        raise CheckpointError(
            f"{source}: the {what} does not match the {layout} layout: " + "; ".join(problems[:6])
        )
    return missing_ok
