"""Trains the small ReStyle-pSp model that tests/data/restyle_synthetic64/ holds (run once).

The test that reads it (tests/test_restyle_trained.py) checks ReStyle's defining property,
that reconstruction error falls with the step count on the synthetic faces' test split; that
needs a trained model, and training one takes minutes, so the model is stored instead. It is
the default ReStyle config (`configs/restyle.py`: five iterations per batch, the generator
the project ships) with the public recipe's summed update and BackboneEncoder, over a
narrower trunk without
squeeze-excitation (IR-18 at `model.base_width` 8; SE blocks need 16 channels) so that the
stored files stay small. The export includes the
generator it was trained against, so the test keeps its meaning when the shipped generator
is replaced.

  python tools/make_restyle_fixture.py [--steps 400] [--workdir /tmp/restyle_fixture]
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "restyle_synthetic64"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--base-width", type=int, default=8)
    parser.add_argument("--workdir", default=None, help="training run (default: a temp dir)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="restyle_fixture_"))
    command = [
        sys.executable,
        "-m",
        "stylejax.main",
        "--config=configs/restyle.py",
        f"--workdir={workdir}",
        "--config.model.encoder_type=BackboneEncoder",
        "--config.restyle.update_each_iteration=False",
        "--config.model.mode=ir",
        f"--config.model.base_width={args.base_width}",
        f"--config.num_steps={args.steps}",
        f"--config.checkpoint_every={args.steps}",
        f"--config.eval_every={args.steps}",
    ]
    subprocess.run(command, cwd=ROOT, check=True)
    report = json.loads((workdir / "report.json").read_text())
    # Copy next to the destination, then swap: never a half-written fixture.
    staging = OUT.with_name(OUT.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(workdir / "model", staging)
    shutil.rmtree(OUT, ignore_errors=True)
    staging.rename(OUT)
    print(json.dumps(report.get("test", report), indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
