"""`python -m dl4cv_jax.launch -n 2 -- main.py --config=configs/digits_cnn.py`: N local processes, one job.

A quick check of the multi-host path on one machine (and what the two-process tests use): each process gets one
CPU device and the variables `dl4cv_jax.train.sharding.explicit_cluster` reads (JAX_COORDINATOR_ADDRESS on a
free localhost port, JAX_NUM_PROCESSES, JAX_PROCESS_ID), exactly as a user would set them by hand on real hosts.

Each process runs in its own session under a hard timeout. When one fails, the others are killed at once: a jax
process whose peer died waits in a collective (ignoring SIGTERM) until the distributed timeout, and nothing it
could still do is of use. Lines from process i > 0 are prefixed `[i]`; process 0's pass through unchanged.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

KILL_GRACE_SECONDS = 3.0  # after SIGTERM, before SIGKILL: a process stuck in a collective ignores SIGTERM


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it); process 0 binds it moments later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_environment(base: dict[str, str], port: int, num_processes: int, process_id: int) -> dict[str, str]:
    """`base` plus the cluster variables for process `process_id`, on the CPU with one device.

    A forced host device count (XLA_FLAGS=--xla_force_host_platform_device_count=N, kept by a shell from a
    one-process test) is removed: each process here is one device, as one host of a real job is its devices.
    """
    env = dict(base)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join(flags)
    env.update(
        JAX_PLATFORMS="cpu",
        JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
        JAX_NUM_PROCESSES=str(num_processes),
        JAX_PROCESS_ID=str(process_id),
    )
    return env


def _forward(stream, prefix: str, out) -> None:
    for line in iter(stream.readline, ""):
        out.write(prefix + line)
        out.flush()


def _stop(processes: Sequence[subprocess.Popen]) -> None:
    """SIGTERM to every live process group, then SIGKILL to what is left after the grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for process in processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + KILL_GRACE_SECONDS
        while time.monotonic() < deadline and any(p.poll() is None for p in processes):
            time.sleep(0.05)
    for process in processes:
        process.wait()


def launch(command: Sequence[str], num_processes: int, timeout: float, port: int | None = None) -> int:
    """Runs `python <command>` as `num_processes` processes of one job; returns the job's exit status.

    0 when every process succeeded; else the status of the first process that failed (or 124 on timeout), after
    one `error:` line saying which, and the others have been stopped.
    """
    port = port or free_port()
    processes, threads = [], []
    for index in range(num_processes):
        process = subprocess.Popen(
            [sys.executable, *command],
            env=child_environment(dict(os.environ), port, num_processes, index),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # the process and whatever it starts can be killed as one group
        )
        processes.append(process)
        thread = threading.Thread(target=_forward, args=(process.stdout, f"[{index}] " if index else "", sys.stdout))
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + timeout
    status, failure = 0, None
    try:
        while None in [p.poll() for p in processes]:  # a list, not any(): every process must be polled
            failed = [(i, p.returncode) for i, p in enumerate(processes) if p.returncode not in (None, 0)]
            if failed:
                index, code = failed[0]
                status, failure = code if code > 0 else 1, f"process {index} exited with status {code}"
                break
            if time.monotonic() > deadline:
                status, failure = 124, f"the job did not finish within --timeout={timeout:g} s"
                break
            time.sleep(0.1)
        else:
            failed = [(i, p.returncode) for i, p in enumerate(processes) if p.returncode != 0]
            if failed:
                index, code = failed[0]
                status, failure = code if code > 0 else 1, f"process {index} exited with status {code}"
    except KeyboardInterrupt:
        status, failure = 130, "interrupted"
    finally:
        _stop(processes)
        for thread in threads:
            thread.join()
    if failure:
        others = " (the others were stopped)" if num_processes > 1 else ""
        print(f"error: launch: {failure}{others}", file=sys.stderr, flush=True)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dl4cv_jax.launch",
        description="Start N local processes of one jax job (one CPU device each): a quick multi-host check.",
    )
    parser.add_argument("-n", "--num_processes", type=int, default=2, help="processes to start (default 2)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before every process is killed")
    parser.add_argument("--port", type=int, default=None, help="coordinator port (default: a free one)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- main.py --config=... (run with this python)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("nothing to run: add -- main.py --config=...")
    if args.num_processes < 1:
        parser.error(f"-n {args.num_processes}: at least 1 process")
    return launch(command, args.num_processes, args.timeout, args.port)


if __name__ == "__main__":
    sys.exit(main())
