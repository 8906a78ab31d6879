"""Atomic file output and hashing.

Every file the toolchain writes goes through :func:`atomic_output`: it is written
to a temporary file in the destination folder and renamed into place only when
complete, so an interrupted or failed command never leaves a partial file, and an
existing file is never replaced unless the user said ``--force``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from toolchain.errors import ToolchainError


def check_writable(path: str | os.PathLike, *, force: bool) -> Path:
    """Refuse to overwrite ``path`` unless ``force``; make sure its folder can exist."""
    path = Path(path)
    if path.exists() and not force:
        raise ToolchainError(f"{path} already exists", hint="pass --force to overwrite it")
    if path.exists() and path.is_dir():
        raise ToolchainError(f"{path} is a directory", hint="give a file path")
    return path


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc/self/status)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: 0o666 minus the umask."""
    return 0o666 & ~current_umask()


def default_dir_mode() -> int:
    """The mode ``mkdir`` would give a new folder: 0o777 minus the umask."""
    return 0o777 & ~current_umask()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    path = check_writable(path, force=force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; the result must be readable as any new file is (0644 under
        # umask 022): a Triton server or another user reads models, engines and reports.
        os.fchmod(fd, default_file_mode())
    finally:
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise ToolchainError(f"nothing was written for {path}")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, force: bool = False) -> Path:
    with atomic_output(path, force=force) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, *, force: bool = False) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), force=force)


def write_json_atomic(path: str | os.PathLike, obj, *, force: bool = False) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", force=force)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def require_file(path: str | os.PathLike, what: str) -> Path:
    """Return ``path`` if it is an existing file, else a one-line error naming ``what``."""
    path = Path(path)
    if not path.exists():
        raise ToolchainError(f"{what} {path} does not exist", hint="check the path")
    if not path.is_file():
        raise ToolchainError(f"{what} {path} is not a file", hint="give the path of a file")
    return path
