"""Persistent PyTorch benchmark worker running NVIDIA's official stylegan2-ada-pytorch code.

    PYTHON tools/ada_torch_worker.py --ada DIR --setting JSON [--threads 2] [--device cpu]

JSON is one of tools/benchmark.py's STYLEGAN2_SETTINGS: {"res", "channel_base",
"channel_max", "z_dim", "mapping", "batch"} (channels per resolution are
min(channel_base // res, channel_max), in both code bases). The driver,
`tools/benchmark.py sidebyside`, passes it.

DIR is a local checkout of https://github.com/NVlabs/stylegan2-ada-pytorch; it is put on
sys.path at run time and nothing from it is copied here. The worker builds G and D, Adam
optimisers and the official StyleGAN2Loss (no R1, no path length, no style mixing, no
augmentation), runs one warm-up of each measurement and prints `READY <json>`. It then reads
one command per line from stdin and answers with one line on stdout:

    train N              N training steps (phases Gmain and Dmain, as training_loop.py does)
    gforward N           N G forward passes in eval mode (default fused_modconv)
    gforward_nonfused N  the same with fused_modconv=False
    quit                 exit 0

Results are `RESULT <seconds per step or call>`; errors are `ERROR <message>` and exit 1.
Everything else (the official code's prints, warnings) goes to stderr. CPU only by default:
the official bias_act/upfirdn2d only try to compile for CUDA tensors, so on the CPU they use
their reference PyTorch paths, and conv2d_gradfix stays disabled (its default).
"""

import argparse
import copy
import importlib
import json
import sys
import time
import types
from pathlib import Path


def _stub_missing(name, **attrs):
    """Put a placeholder module in sys.modules if `name` cannot be imported."""
    try:
        importlib.import_module(name)
    except ImportError:
        sys.modules[name] = mod = types.ModuleType(name)
        mod.__dict__.update(attrs)


def run_phases(loss, phases, real_img, real_c, z_dim, step):
    """One iteration of the official training_loop.py's phases [(name, module, optimiser,
    interval)]: each phase due at `step` (step % interval == 0) draws its latents,
    accumulates the official loss's gradients with gain = interval and steps its optimiser
    (NaN and infinite gradients replaced, as there)."""
    import torch

    batch = real_img.shape[0]
    all_gen_z = torch.randn([len(phases) * batch, z_dim], device=real_img.device).split(batch)
    for (name, module, opt, interval), gen_z in zip(phases, all_gen_z):
        if step % interval:
            continue
        opt.zero_grad(set_to_none=True)
        module.requires_grad_(True)
        loss.accumulate_gradients(
            phase=name,
            real_img=real_img,
            real_c=real_c,
            gen_z=gen_z,
            gen_c=real_c,
            sync=True,
            gain=interval,
        )
        module.requires_grad_(False)
        for param in module.parameters():
            if param.grad is not None:
                torch.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
        opt.step()


def build(ada, cfg, batch, device):
    import torch

    # Monkeypatches (the checkout is never edited): dnnlib/util.py imports `requests` (used only
    # to download URLs, which we never do) and `distutils.util.strtobool` (distutils is gone
    # from Python >= 3.12). Stub them when they are not installed.
    _stub_missing("requests")
    _stub_missing("distutils")
    _stub_missing("distutils.util", strtobool=lambda v: v.lower() in ("y", "yes", "true", "1"))
    sys.path.insert(0, str(ada))
    from training.loss import StyleGAN2Loss
    from training.networks import Discriminator, Generator

    # Same kwargs layout as the official train.py, with --fp32 semantics
    # (num_fp16_res=0, conv_clamp=None) and the default architectures (G skip, D resnet).
    common = dict(c_dim=0, img_resolution=cfg["res"], img_channels=3)
    arch = dict(channel_base=cfg["channel_base"], channel_max=cfg["channel_max"])
    arch.update(num_fp16_res=0, conv_clamp=None)
    G = Generator(
        z_dim=cfg["z_dim"],
        w_dim=cfg["z_dim"],
        **common,
        mapping_kwargs=dict(num_layers=cfg["mapping"]),
        synthesis_kwargs=arch,
    )
    D = Discriminator(
        **common, **arch, architecture="resnet", epilogue_kwargs=dict(mbstd_group_size=4)
    )
    G = G.train().requires_grad_(False).to(device)
    D = D.train().requires_grad_(False).to(device)
    G_eval = copy.deepcopy(G).eval()  # like G_ema in training_loop.py
    loss = StyleGAN2Loss(
        device=device,
        G_mapping=G.mapping,
        G_synthesis=G.synthesis,
        D=D,
        augment_pipe=None,
        style_mixing_prob=0,
        r1_gamma=0,
        pl_weight=0,
    )
    # No regularisation phases, so plain Adam settings (no lazy-regularisation mb_ratio).
    opt = dict(lr=0.0025, betas=(0.0, 0.99), eps=1e-8)
    phases = [
        ("Gmain", G, torch.optim.Adam(G.parameters(), **opt)),
        ("Dmain", D, torch.optim.Adam(D.parameters(), **opt)),
    ]
    real_img = torch.rand([batch, 3, cfg["res"], cfg["res"]], device=device) * 2 - 1
    real_c = torch.zeros([batch, 0], device=device)

    def train_step():  # the Gmain/Dmain part of one iteration of training_loop.py
        run_phases(loss, [(*phase, 1) for phase in phases], real_img, real_c, G.z_dim, step=0)

    def gforward(**kwargs):
        with torch.no_grad():
            z = torch.randn([batch, G.z_dim], device=device)
            return G_eval(z, None, noise_mode="const", **kwargs)

    counts = [sum(p.numel() for p in m.parameters()) for m in (G, D)]
    return counts, {
        "train": train_step,
        "gforward": gforward,
        "gforward_nonfused": lambda: gforward(fused_modconv=False),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ada", required=True, help="stylegan2-ada-pytorch checkout")
    ap.add_argument("--setting", required=True, type=json.loads, help="architecture and batch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="torch device (only cpu has been tested)")
    args = ap.parse_args()

    out = sys.stdout  # the protocol channel; everything else goes to stderr
    sys.stdout = sys.stderr

    def say(line):
        out.write(line + "\n")
        out.flush()

    try:
        ada = Path(args.ada).resolve()
        if not (ada / "training" / "networks.py").is_file():
            raise RuntimeError(
                "--ada DIR must be a checkout of stylegan2-ada-pytorch: "
                f"{ada / 'training' / 'networks.py'} not found"
            )
        import torch

        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        device = torch.device(args.device)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        cfg = args.setting
        batch = cfg["batch"]
        (g_params, d_params), fns = build(ada, cfg, batch, device)
        for fn in fns.values():  # warm-up
            fn()
        sync()
        say(
            "READY "
            + json.dumps(
                {
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "setting": cfg,
                    "batch": batch,
                    "g_params": g_params,
                    "d_params": d_params,
                }
            )
        )
        for line in sys.stdin:
            cmd = line.split()
            if not cmd:
                continue
            if cmd == ["quit"]:
                return 0
            if len(cmd) != 2 or cmd[0] not in fns or not cmd[1].isdigit() or int(cmd[1]) < 1:
                raise RuntimeError(f"bad command {line.strip()!r}")
            n = int(cmd[1])
            t0 = time.perf_counter()
            for _ in range(n):
                fns[cmd[0]]()
            sync()
            say(f"RESULT {(time.perf_counter() - t0) / n:.6f}")
        return 0
    except Exception as e:  # noqa: BLE001 - report any failure on the protocol channel
        say(f"ERROR {type(e).__name__}: {e}".replace("\n", " "))
        return 1


if __name__ == "__main__":
    sys.exit(main())
