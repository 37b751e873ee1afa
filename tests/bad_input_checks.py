"""What every bad-input test checks (tests/test_bad_input*.py): `main.py` stops with exit status 1 and one line
`error: ...` naming the culprit and what is accepted, no traceback, and nothing already saved changes."""

import hashlib
import os
import pathlib
import struct
import subprocess
import sys
import zlib

import pytest

from dl4cv_jax.modes import Command
from tests.conftest import REPO


def assert_one_line(line: str, *parts: str) -> str:
    """`line` is one `error: ...` line without a traceback and contains every one of `parts`."""
    assert isinstance(line, str), line
    assert line.startswith("error: "), line
    assert "\n" not in line and "Traceback" not in line, line
    missing = [part for part in parts if part not in line]
    assert not missing, f"{missing} not in {line!r}"
    return line


def exit_line(mode: str, **fields) -> str:
    """The line main.py prints when `--mode=<mode>` fails on `Command(**fields)`, from main.run_mode in-process."""
    import main  # the repository root is on sys.path (pyproject: pythonpath)

    with pytest.raises(SystemExit) as stopped:
        main.run_mode(mode, Command(**fields))
    return stopped.value.code


def run_main(*args: str) -> subprocess.CompletedProcess:
    """`python main.py <args>` from the repository root, as a user runs it."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "main.py", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def stderr_line(result: subprocess.CompletedProcess, *parts: str) -> str:
    """The single line main.py printed on stderr, checked as `assert_one_line`, after exit status 1."""
    assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    return assert_one_line(lines[0], *parts)


def snapshot(folder: pathlib.Path) -> dict[str, str]:
    """Every file and folder under `folder` with a hash of its contents: equal snapshots = nothing changed."""
    folder = pathlib.Path(folder)
    if folder.is_file():
        return {folder.name: hashlib.sha1(folder.read_bytes()).hexdigest()}
    found = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        found[name] = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else "folder"
    return found


def write_images(folder: pathlib.Path, count: int, size: int = 8) -> list[pathlib.Path]:
    """`count` small gray PNGs in `folder` (created), each a different level."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        paths.append(folder / f"{k}.png")
        Image.new("L", (size, size), color=20 * k).save(paths[-1])
    return paths


def image_folder(root: pathlib.Path, classes: dict[str, int]) -> pathlib.Path:
    """`root/<class>/<k>.png`, `classes[name]` images per class; returns root."""
    for name, count in classes.items():
        write_images(root / name, count)
    return root


def write_huge_png(path: pathlib.Path, side: int) -> pathlib.Path:
    """A black side x side PNG at one bit per pixel: 20,000 x 20,000 is 218 kB on disk, written in ~0.2 s, and
    400 million pixels (1.2 GB as RGB) decoded."""
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte 0, then the row's bits
    compressor = zlib.compressobj(1)
    pixels = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, grayscale, no interlace
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path
