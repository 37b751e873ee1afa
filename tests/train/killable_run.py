"""`python tests/train/killable_run.py <main.py flags>`: main.py with hooks for the fault-injection tests.

The hooks, switched on by environment variables, only announce and pause; the training is main.py's own.
- every train step prints `step N` on stdout (flushed), so a test can kill the process at a chosen step;
- every checkpoint (and item of one) that is written but not yet renamed into place prints `commit PATH`;
  with DL4CV_TEST_PAUSE_AT_COMMIT=N the N-th waits a minute there, so a test can kill the process in the
  middle of a save;
- DL4CV_TEST_FILL_DISK_AFTER_EPOCH=K: after epoch K, the workdir's file system is filled up;
- DL4CV_TEST_RECORD_WRITES=PREFIX: every file this process opens for writing (or renames) under the workdir is
  listed, one path a line, in PREFIX-<JAX_PROCESS_ID>.txt, so a test can tell which process wrote what.
"""

import os
import pathlib
import runpy
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dl4cv_jax.process import configure_process  # noqa: E402

configure_process()  # here, so that main.py's restart=True cannot re-execute the process without the hooks

from orbax.checkpoint._src.path import atomicity  # noqa: E402

from dl4cv_jax.train import callbacks  # noqa: E402


def _announce_steps() -> None:
    on_batch_end = callbacks.CallbackList.on_batch_end

    def announced(self, step, metrics):
        print(f"step {step}", flush=True)
        on_batch_end(self, step, metrics)

    callbacks.CallbackList.on_batch_end = announced


def _announce_commits(pause_at: int) -> None:
    finalize = atomicity.AtomicRenameTemporaryPath.finalize
    count = [0]

    async def announced(self, *args, **kwargs):
        count[0] += 1
        print(f"commit {self.get()}", flush=True)
        if count[0] == pause_at:
            time.sleep(60)
        return await finalize(self, *args, **kwargs)

    atomicity.AtomicRenameTemporaryPath.finalize = announced


def _fill_disk_after(epoch: int, workdir: pathlib.Path) -> None:
    on_epoch_end = callbacks.CallbackList.on_epoch_end

    def then_fill(self, done, logs):
        on_epoch_end(self, done, logs)
        if done == epoch:
            with (workdir.parent / "filler").open("wb") as f:
                try:
                    while True:
                        f.write(b"\0" * (1 << 20))
                        f.flush()
                except OSError:
                    pass
            print(f"disk full after epoch {done}", flush=True)

    callbacks.CallbackList.on_epoch_end = then_fill


def _record_writes(prefix: str, workdir: pathlib.Path) -> None:
    log = open(f"{prefix}-{os.environ.get('JAX_PROCESS_ID', '0')}.txt", "a", buffering=1)  # noqa: SIM115
    root = str(workdir.absolute())
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def hook(event, args):
        if event == "open" and isinstance(args[0], str | pathlib.Path):
            path, mode, flags = args
            if (mode is None and flags & writing) or (mode and any(c in mode for c in "wax+")):
                if os.path.abspath(path).startswith(root):
                    log.write(f"open {os.path.abspath(path)}\n")
        elif event == "os.rename" and os.path.abspath(args[1]).startswith(root):
            log.write(f"rename {os.path.abspath(args[1])}\n")

    sys.addaudithook(hook)


if __name__ == "__main__":
    _announce_steps()
    _announce_commits(int(os.environ.get("DL4CV_TEST_PAUSE_AT_COMMIT", "0")))
    if "DL4CV_TEST_FILL_DISK_AFTER_EPOCH" in os.environ:
        workdir = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--workdir="))
        _fill_disk_after(int(os.environ["DL4CV_TEST_FILL_DISK_AFTER_EPOCH"]), pathlib.Path(workdir))
    if "DL4CV_TEST_RECORD_WRITES" in os.environ:
        workdir = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--workdir="))
        _record_writes(os.environ["DL4CV_TEST_RECORD_WRITES"], pathlib.Path(workdir))
    os.chdir(REPO)
    sys.argv = ["main.py", *sys.argv[1:]]
    runpy.run_path(str(REPO / "main.py"), run_name="__main__")
