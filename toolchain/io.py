"""File output: the one rule every command that writes follows, and hashing.

The rule (:func:`guard_output`, applied before a command does any work):

* an output is never one of the command's inputs, never a folder that holds one, and
  never a companion file of one (a checkpoint's ``.json`` sidecar, an engine's manifest),
  even with ``--force``: ``--force`` replaces old outputs, never inputs;
* an existing output is replaced only with ``--force``;
* the output's folder must be writable: a read-only or unwritable place is refused up
  front, in one line, instead of after minutes of work.

Every file is then written by :func:`atomic_output` (or :func:`atomic_outputs` for a
result set that must appear whole or not at all): into a temporary file beside the
target, renamed into place only when complete, with the mode a new file gets (0644
under umask 022). Any OS error on the way (read-only, disk full, permission) becomes a
one-line :class:`~toolchain.errors.ToolchainError` naming the path, and no temporary
file is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from toolchain.errors import ToolchainError

#: What to do about an OS error, by errno (the message itself comes from the OS).
_OS_HINTS = {
    errno.EROFS: "choose an output on a writable disk",
    errno.ENOSPC: "free some space, or choose an output on another disk",
    errno.EDQUOT: "free some space, or choose an output on another disk",
    errno.EACCES: "choose a folder you can write to",
    errno.EPERM: "choose a folder you can write to",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another output path",
    errno.EISDIR: "give a file path",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.ENOENT: "a folder on the path does not exist or cannot hold files; choose another output path",
}


def os_error(path, exc: OSError, *, action: str = "write") -> ToolchainError:
    """One line for an OS error on ``path``: what failed, the OS's reason, what to do."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return ToolchainError(f"cannot {action} {path}: {reason}",
                          hint=_OS_HINTS.get(exc.errno, "check the path, the disk and its permissions"))


def _os_cause(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc`` (libraries wrap it), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


# --------------------------------------------------------------------------- the rule


def companions(path: Path) -> list[Path]:
    """Files that belong to an input and must be protected with it."""
    out = [path]
    if path.suffix == ".safetensors":
        out.append(path.with_suffix(".json"))  # the checkpoint's sidecar (metadata + sha256)
    out += [Path(str(path) + ".manifest.json"), Path(str(path) + ".layers.json")]  # an engine's records
    return out


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _same(a: Path, b: Path) -> bool:
    if _resolved(a) == _resolved(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def _inside(inner: Path, folder: Path) -> bool:
    inner, folder = _resolved(inner), _resolved(folder)
    return inner != folder and folder in inner.parents


def _named(inputs) -> list[tuple[str, Path]]:
    items = inputs.items() if isinstance(inputs, Mapping) else \
        [(item if isinstance(item, tuple) else ("input", item)) for item in inputs]
    return [(label, Path(path)) for label, path in items if path is not None and str(path) != ""]


def input_conflict(output: Path, inputs, *, folder: bool) -> str | None:
    """Why writing ``output`` would overwrite or delete one of ``inputs``, or None (pure; no writes)."""
    output = Path(output)
    for label, path in _named(inputs):
        for member in companions(path):
            if member != path and not member.exists():
                continue
            what = f"{label} {path}" if member == path else f"{member} (which belongs to {label} {path})"
            if _same(output, member):
                return f"{output} is the input {what}"
            if (folder or output.is_dir()) and _inside(member, output):
                return f"{output} holds the input {what}"
    return None


def _open_temp(folder: Path, name: str) -> tuple[int, str]:
    """A new temporary file in ``folder`` (the one way this module creates files; tests patch it)."""
    return tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)


def _replace(source: Path, target: Path) -> None:
    """Rename ``source`` onto ``target`` (the one way this module renames; tests patch it)."""
    os.replace(source, target)


def probe_writable(path, *, folder: bool = False) -> None:
    """Refuse, in one line, a place where ``path`` cannot be written; writes nothing lasting.

    The nearest existing folder on the way must exist as a folder and accept a new file
    (a temporary one, removed at once). A read-only file system, a missing permission or a
    path under a regular file is found here, before any work.
    """
    path = Path(path)
    start = path if folder else path.parent
    existing = start
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ToolchainError(f"cannot write {path}: {existing} is a file, not a folder",
                             hint="choose another output path")
    try:
        fd, name = _open_temp(existing, "probe")
    except OSError as exc:
        raise os_error(path, exc) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def guard_output(path, *, force: bool, inputs: Iterable | Mapping = (), folder: bool = False,
                 what: str = "output") -> Path:
    """Apply the rule above to ``path`` (a file, or with ``folder`` a folder the command fills or replaces).

    ``inputs``: the command's inputs, as (label, path) pairs, a {label: path} mapping or paths
    (None entries are skipped). A folder output that exists and is not empty is refused
    unless ``force``; a file output that exists is refused unless ``force``.
    """
    path = Path(path)
    conflict = input_conflict(path, inputs, folder=folder)
    if conflict:
        raise ToolchainError(f"refusing to write {what} {path}: {conflict}",
                             hint=f"choose another {what}; --force never overwrites or deletes an input")
    if folder:
        if path.exists() and not path.is_dir():
            raise ToolchainError(f"{what} {path} exists and is not a folder", hint="choose a folder path")
        if path.is_dir() and not force and any(path.iterdir()):
            raise ToolchainError(f"{what} {path} already exists and is not empty",
                                 hint="pass --force to reuse it, or choose another folder")
    else:
        if path.is_dir():
            raise ToolchainError(f"{what} {path} is a folder", hint="give a file path")
        if path.exists() and not force:
            raise ToolchainError(f"{path} already exists", hint="pass --force to overwrite it")
    probe_writable(path, folder=folder)
    return path


def check_writable(path: str | os.PathLike, *, force: bool) -> Path:
    """Refuse to overwrite ``path`` unless ``force`` (no inputs to protect: see :func:`guard_output`)."""
    path = Path(path)
    if path.exists() and not force:
        raise ToolchainError(f"{path} already exists", hint="pass --force to overwrite it")
    if path.exists() and path.is_dir():
        raise ToolchainError(f"{path} is a directory", hint="give a file path")
    return path


# --------------------------------------------------------------------------- modes


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


# --------------------------------------------------------------------------- writing


def missing_top(folder: Path) -> Path | None:
    """The topmost folder of ``folder``'s path that does not exist yet (None: ``folder`` exists)."""
    top = None
    while not folder.exists() and folder != folder.parent:
        top, folder = folder, folder.parent
    return top


def make_parent(path: Path) -> Path | None:
    """Create ``path``'s folder; return the topmost folder created (None: it existed)."""
    top = missing_top(path.parent)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(path, exc) from None
    return top


def remove_created(top: Path | None, path: Path) -> None:
    """After a failed write, remove the folders created for ``path`` up to ``top``, while they are empty."""
    if top is None:
        return
    folder = path.parent
    while True:
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == top:
            return
        folder = folder.parent


def _new_temp(path: Path, created: list) -> Path:
    created.append(make_parent(path))
    try:
        fd, tmp_name = _open_temp(path.parent, path.name)
    except OSError as exc:
        raise os_error(path, exc) from None
    os.close(fd)
    return Path(tmp_name)


def _finish_temp(tmp: Path, path: Path) -> None:
    """Check, flush to disk and give the normal mode to a finished temporary file."""
    if not tmp.exists() or tmp.stat().st_size == 0:
        raise ToolchainError(f"nothing was written for {path}")
    # Some writers (safetensors' save_file) recreate the file 0600: a Triton server or another
    # user must read models, engines and reports, so every output gets a new file's mode.
    os.chmod(tmp, default_file_mode())
    with open(tmp, "rb") as handle:  # a full disk may only show when the data reaches it
        os.fsync(handle.fileno())


def _writing_failed(path: Path, exc: BaseException) -> None:
    """Re-raise ``exc`` from a writer as one line when an OS error is behind it."""
    cause = _os_cause(exc)
    if cause is not None and not isinstance(exc, ToolchainError):
        raise os_error(path, cause) from None


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    path = check_writable(path, force=force)
    created: list = []
    tmp = None
    done = False
    try:
        tmp = _new_temp(path, created)
        try:
            yield tmp
            _finish_temp(tmp, path)
            _replace(tmp, path)
            done = True
        except Exception as exc:
            _writing_failed(path, exc)
            raise
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
        if not done:  # a failed write leaves no new empty folder either
            remove_created(created[0] if created else None, path)


@contextlib.contextmanager
def atomic_outputs(paths: Mapping[str, str | os.PathLike], *, force: bool = False) -> Iterator[dict[str, Path]]:
    """A result set: yield {key: temporary path}; on success all files appear, else none changes.

    Existing targets (``force``) are moved aside first and put back if any rename fails or
    the command is interrupted (Ctrl-C) while the set is being committed.
    """
    targets = {key: check_writable(path, force=force) for key, path in paths.items()}
    temps: dict[str, Path] = {}
    aside: dict[str, Path] = {}
    placed: list[str] = []
    created: list = []
    done = False
    current = next(iter(targets.values()))  # the file being worked on, for the one-line error
    try:
        try:
            for key, current in targets.items():
                temps[key] = _new_temp(current, created)
            yield dict(temps)
            for key, current in targets.items():
                _finish_temp(temps[key], current)
        except Exception as exc:
            _writing_failed(current, exc)
            raise
        try:
            for key, current in targets.items():
                if current.exists():
                    aside[key] = Path(str(temps[key]) + ".old")
                    _replace(current, aside[key])
                _replace(temps[key], current)
                placed.append(key)
        except BaseException as exc:  # Ctrl-C included: put the old set back
            for key in placed:
                with contextlib.suppress(OSError):
                    targets[key].unlink()
            for key, old in aside.items():
                with contextlib.suppress(OSError):
                    _replace(old, targets[key])
            if isinstance(exc, Exception):
                _writing_failed(current, exc)
            raise
        for old in aside.values():
            with contextlib.suppress(OSError):
                old.unlink()
        done = True
    finally:
        for tmp in temps.values():
            if tmp.exists():
                with contextlib.suppress(OSError):
                    tmp.unlink()
        if not done:
            for top, path in zip(created, targets.values()):
                remove_created(top, path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, force: bool = False) -> Path:
    with atomic_output(path, force=force) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, *, force: bool = False) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), force=force)


def json_text(obj) -> str:
    """How every JSON file the toolchain writes is formatted."""
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"


def write_json_atomic(path: str | os.PathLike, obj, *, force: bool = False) -> Path:
    return write_text_atomic(path, json_text(obj), force=force)


@contextlib.contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` (normal folder mode), removed unless the caller moved it."""
    import shutil

    make_parent(target)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        os.chmod(staging, default_dir_mode())  # mkdtemp makes 0700; a server may run as another user
    except OSError as exc:
        raise os_error(target, exc) from None
    try:
        try:
            yield staging
        except Exception as exc:
            _writing_failed(target, exc)
            raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------- reading


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
