"""Runs N processes of one command on this machine as one multi-process JAX job: a coordinator
on 127.0.0.1, CPU devices faked per process, output prefixed with the process id.

  python launch/local.py --num_processes=2 --devices_per_process=4 -- \
      python -m stylejax.main --config=configs/stylegan2.py --workdir=/tmp/run2

Each process gets STYLEJAX_COORDINATOR_ADDRESS / STYLEJAX_NUM_PROCESSES / STYLEJAX_PROCESS_ID
(read by stylejax.main.maybe_initialize_distributed), JAX_PLATFORMS=cpu and
XLA_FLAGS=--xla_force_host_platform_device_count=D. If one process fails, the others are
stopped and its exit status is returned; past --timeout all are stopped and 124 is returned.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

TIMEOUT_EXIT_CODE = 124  # as coreutils `timeout`
GRACE_SECONDS = 5  # after SIGTERM, before SIGKILL (a process stuck in a collective ignores it)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(base, process_id, num_processes, devices_per_process, port) -> dict:
    env = dict(base)
    env.update(
        STYLEJAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
        STYLEJAX_NUM_PROCESSES=str(num_processes),
        STYLEJAX_PROCESS_ID=str(process_id),
        JAX_PLATFORMS="cpu",
        PYTHONUNBUFFERED="1",  # lines show up as they are printed, not at exit
    )
    flag = f"--xla_force_host_platform_device_count={devices_per_process}"
    kept = [f for f in env.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f]
    env["XLA_FLAGS"] = " ".join([*kept, flag])
    return env


def _forward(stream, prefix, out, lock):
    for line in iter(stream.readline, b""):
        with lock:
            out.write(prefix + line.decode(errors="replace"))
            out.flush()
    stream.close()


def _stop(procs):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def launch(
    command: list[str],
    num_processes: int,
    devices_per_process: int = 1,
    timeout: float | None = None,
    env: dict | None = None,
    out=None,
) -> int:
    """Runs `command` as process 0..num_processes-1; returns 0 if all succeed, else the first
    failure's exit status (124 on timeout)."""
    if not command:
        raise ValueError("launch: no command given; expected e.g. python -m stylejax.main ...")
    if num_processes < 1 or devices_per_process < 1:
        raise ValueError(
            f"launch: expected num_processes >= 1 and devices_per_process >= 1, found "
            f"{num_processes} and {devices_per_process}"
        )
    out = out or sys.stdout
    base = os.environ if env is None else env
    port = free_port()
    lock = threading.Lock()
    procs, threads = [], []
    for i in range(num_processes):
        p = subprocess.Popen(
            command,
            env=process_env(base, i, num_processes, devices_per_process, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        procs.append(p)
        t = threading.Thread(target=_forward, args=(p.stdout, f"[{i}] ", out, lock), daemon=True)
        t.start()
        threads.append(t)

    deadline = None if timeout is None else time.monotonic() + timeout
    status = None
    try:
        while status is None:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, status = failed[0]
                with lock:
                    out.write(f"[launch] process {i} exited with {status}; stopping the others\n")
            elif all(c == 0 for c in codes):
                status = 0
            elif deadline is not None and time.monotonic() > deadline:
                status = TIMEOUT_EXIT_CODE
                with lock:
                    out.write(f"[launch] timeout after {timeout:g} s; stopping all processes\n")
            else:
                time.sleep(0.1)
    finally:  # also on Ctrl-C or SIGTERM to the launcher
        _stop(procs)
        for t in threads:
            t.join(timeout=GRACE_SECONDS)
    return status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_processes", type=int, default=2)
    parser.add_argument("--devices_per_process", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=None, help="seconds; default none")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command: expected `-- python -m stylejax.main ...` after the options")
    # SIGTERM (a scheduler stopping us) → KeyboardInterrupt → the `finally` stops the children.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return launch(command, args.num_processes, args.devices_per_process, args.timeout)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
