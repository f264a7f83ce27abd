"""Safe, atomic file IO.

Two rules hold for every file promptvec touches:

* **Writes are atomic**: data goes to a temporary file in the same folder, is flushed and fsynced,
  then renamed over the target, so a crash leaves either the old file or the new one — never half
  of one.
* **Reads never unpickle**: only safetensors, JSON and YAML are read. Safetensors headers are
  validated (size, offsets, dtypes) before any tensor memory is allocated, so a corrupted or
  hostile file yields a :class:`CheckpointError`, not a crash or an out-of-memory.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptvec.errors import CheckpointError, DataError, StorageError
from promptvec.faults import fault_point

if TYPE_CHECKING:  # torch is imported by the functions that handle tensors: every command imports this module
    import torch

# A safetensors header larger than this is not a prompt file (PEFT prompt headers are < 1 KiB).
MAX_HEADER_BYTES = 16 * 1024 * 1024
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}
_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _kind_of(mode: int) -> str:
    return ("a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode) else "a FIFO"
            if stat.S_ISFIFO(mode) else "a device file" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "a file" if stat.S_ISREG(mode) else "not a regular file")


def check_output_path(target: Path, folder: bool = False) -> None:
    """Refuse to write at ``target`` when what is there is not promptvec's to replace: a symbolic link
    (never followed, never replaced), a FIFO, a device or socket, a folder where a file goes (or a file
    where a folder goes), or a path below a file. A rename would otherwise replace the link or the
    device node itself — promptvec only ever writes regular files and folders."""
    for parent in target.parents:
        if os.path.lexists(parent) and not parent.is_dir():
            raise StorageError(f"cannot write {target}: it lies under {parent}, which is a file",
                               "choose a path whose parents are folders")
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise storage_error(target, exc) from None
    expected = stat.S_ISDIR(mode) if folder else stat.S_ISREG(mode)
    if not expected:
        wanted = "folder" if folder else "file"
        raise StorageError(f"cannot write {target}: it is {_kind_of(mode)}, and promptvec replaces only a {wanted} "
                           "it can write (it never follows links or replaces special files); nothing was written",
                           f"give the path of a new or existing regular {wanted}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename); what is at ``path`` must be
    a regular file or nothing (:func:`check_output_path`)."""
    target = Path(path)
    check_output_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise storage_error(target, exc) from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide the file from the user's group
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        fault_point("atomic-write.before-rename")
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise storage_error(target, exc) from None
        raise
    _fsync_dir(target.parent)


def current_umask() -> int:
    """The process's umask, so that files written through a temporary file get the permissions an
    ordinary ``open``/``mkdir`` would give them (the kernel reports it; setting and restoring it as a
    fallback is a short race only where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def storage_error(target: Path, exc: OSError) -> StorageError:
    """A failed write as one readable message; the previous version of the file is untouched."""
    fixes = {errno.ENOSPC: "free space on that disk (or write elsewhere) and run the command again",
             errno.EDQUOT: "free space within your disk quota and run the command again",
             errno.EROFS: "the file system is read-only: choose a writable folder",
             errno.EACCES: "you may not write there: choose another folder or fix its permissions"}
    return StorageError(f"cannot write {target}: {exc.strerror or exc} (the previous version, if any, is intact)",
                        fixes.get(exc.errno or 0, "check the folder and the disk, then run the command again"))


def path_component(text: str, fallback: str) -> str:
    """``text`` as one path component: other characters become ``-``, and no leading or trailing dot
    or dash, so a label or task name can never be ``.``/``..`` or reach outside the folder it names
    something in."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or fallback


def output_folder(path: str | os.PathLike, what: str) -> Path:
    """Create (or accept) the folder a command writes into, with one message for each way it can be
    unusable: an existing file, a file somewhere above it, no permission, a read-only disk."""
    folder = Path(path)
    if folder.is_symlink():
        raise StorageError(f"{what} {folder} is a symbolic link; promptvec does not write through links it did "
                           "not create", f"give the folder itself ({folder.resolve()}) or a new path")
    if folder.exists() and not folder.is_dir():
        raise StorageError(f"{what} {folder} is a file, not a folder", "choose a folder path (new or existing)")
    for parent in folder.parents:
        if parent.exists() and not parent.is_dir():
            raise StorageError(f"{what} {folder} lies under {parent}, which is a file", "choose a folder path "
                               "whose parents are folders")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(folder, exc) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StorageError(f"{what} {folder} is not writable", "choose another folder or fix its permissions")
    return folder


def not_utf8(path: str | os.PathLike, exc: UnicodeDecodeError, what: str = "file") -> DataError:
    """A text file in another encoding (latin-1, UTF-16, ...) as one message with the fix."""
    byte = exc.object[exc.start:exc.start + 1]
    name = Path(path).name
    return DataError(f"{path}: the {what} is not UTF-8 text (byte {exc.start}: {byte!r})",
                     f"convert it to UTF-8, e.g. `iconv -f latin1 -t utf-8 {name} > utf8-{name}`")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def append_jsonl(path: str | os.PathLike, rows: list[Any]) -> None:
    """Append rows to a JSON-lines log and fsync. A crash can only leave a truncated *last* line,
    which :func:`read_jsonl` skips — logs are append-only records, not state."""
    text = "".join(json.dumps(row, default=str) + "\n" for row in rows)
    check_output_path(Path(path))
    try:
        with open(os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644), "a+b") as fh:
            if fh.tell() > 0:  # after a crash mid-line, start on a fresh line: only the cut line is lost
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    text = "\n" + text
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise storage_error(Path(path), exc) from None


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """Rows of a JSON-lines log; a line cut short by a crash (only ever the last) is skipped."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what} not found: {p}", "check the path")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{what} {p} is not valid JSON ({exc})", "the file is corrupted; restore or recreate it"
        ) from None


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                 metadata: Mapping[str, str] | None = None) -> None:
    """Save tensors as safetensors, atomically. Metadata values must be strings."""
    from safetensors.torch import save as st_save

    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, st_save(clean, metadata=dict(metadata) if metadata else None))


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensor_sha256(tensor: torch.Tensor) -> str:
    """Hash of a tensor's dtype, shape and values (to recognise the same prompt however it was loaded)."""
    import torch

    t = tensor.detach().to("cpu").contiguous()
    digest = hashlib.sha256(f"{t.dtype}:{tuple(t.shape)}:".encode())
    digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def verify_checksum(path: str | os.PathLike, expected: str | None, what: str) -> None:
    """A file whose bytes changed since it was written (a bit flip, a partial copy) is refused; the
    header checks catch a damaged layout, this catches damaged values."""
    if expected is not None and file_sha256(path) != expected:
        raise CheckpointError(f"{path}: {what} does not match the checksum recorded when it was written",
                              "the file is corrupted: restore it from a copy, or re-create it")


def refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path} is a pickle-based PyTorch file; promptvec never unpickles user files "
            "because unpickling can execute arbitrary code",
            "convert it once with `promptvec store convert` (weights-only loader) or re-save it as safetensors",
        )


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate and return (tensor entries, metadata) without loading any tensor data."""
    p = Path(path)
    refuse_pickle(p)
    if not p.is_file():
        raise CheckpointError(f"safetensors file not found: {p}", "check the path")
    size = p.stat().st_size
    with p.open("rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{p} is truncated (no safetensors header)", "re-create or re-download it")
        (header_len,) = struct.unpack("<Q", raw)
        if header_len > MAX_HEADER_BYTES or header_len + 8 > size:
            raise CheckpointError(
                f"{p} has an invalid safetensors header (claims {header_len} bytes; file is {size})",
                "the file is truncated or not a safetensors file; re-create it",
            )
        header_bytes = handle.read(header_len)
    try:
        header = json.loads(header_bytes)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{p} has a corrupted safetensors header", "re-create the file") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{p} has a malformed safetensors header", "re-create the file")
    metadata = header.pop("__metadata__", None) or {}
    data_len = size - 8 - header_len
    for name, entry in header.items():
        try:
            begin, end = entry["data_offsets"]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (begin, end, *entry["shape"])):
                raise TypeError("offsets and shape must be integers")
            n_elems = 1
            for dim in entry["shape"]:
                n_elems *= int(dim)
            expected = n_elems * _DTYPE_BYTES[entry["dtype"]]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{p}: tensor '{name}' has a malformed header entry", "re-create the file") \
                from None
        if not (0 <= begin <= end <= data_len) or end - begin != expected:
            raise CheckpointError(
                f"{p}: tensor '{name}' points outside the file or has the wrong byte size",
                "the file is truncated or corrupted; re-create it",
            )
    return header, metadata


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load a safetensors file after validating its header. Returns (tensors, metadata)."""
    from safetensors.torch import load as st_load

    _, metadata = read_safetensors_header(path)
    try:
        tensors = st_load(Path(path).read_bytes())
    except Exception as exc:  # safetensors raises its own error types for corrupted payloads
        raise CheckpointError(f"{path} could not be read as safetensors ({exc})", "re-create the file") \
            from None
    return tensors, metadata


def recover_directory(target: str | os.PathLike) -> None:
    """Undo a swap interrupted between its two renames: bring the previous version back."""
    target = Path(target)
    old = target.with_name(f".{target.name}.old")
    if not target.exists() and old.is_dir():
        os.replace(old, target)


def readable_directory(target: str | os.PathLike) -> Path:
    """The folder to *read* for ``target``: itself, or — while a writer is between the two renames of
    its swap (or was killed there) — the complete previous version, ``.<name>.old``. Readers never
    rename anything: only the folder's writer (holding its lock) restores a swap."""
    target = Path(target)
    old = target.with_name(f".{target.name}.old")
    return old if not target.exists() and old.is_dir() else target


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``target`` (two renames; a crash
    between them leaves ``.<name>.old``, which :func:`recover_directory` restores)."""
    target = Path(target)
    check_output_path(target, folder=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        tmp.chmod(0o777 & ~current_umask())  # as mkdir would make it, not mkdtemp's 0700
        yield tmp
        fault_point("atomic-directory.before-swap")
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
            fault_point("atomic-directory.mid-swap")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def safe_loader() -> type:
    """YAML's safe loader, the C one (libyaml) where installed: the same documents, many times faster on
    a large file."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml_mapping(path: str | os.PathLike, what: str, error: type[Exception],
                      loader: type | None = None) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; syntax errors name the line. ``loader``: a subclass of
    YAML's safe loader (default: the safe loader itself)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise error(f"{what} not found: {p}", "check the path")
    try:
        raw = yaml.load(p.read_text(encoding="utf-8"), Loader=loader or safe_loader())  # noqa: S506
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', exc)}", "fix the YAML syntax") from None
    except UnicodeDecodeError:
        raise error(f"{p}: not a UTF-8 text file", f"give the path of a {what}") from None
    if not isinstance(raw, dict):
        raise error(f"{p}: a {what} must be a mapping of keys", "see the docs for an example")
    odd = [key for key in raw if not isinstance(key, str)]
    if odd:  # e.g. a bare `?` or `1:` line: a key YAML reads as null or a number
        raise error(f"{p}: the {what}'s keys must be names, got {odd[0]!r}", "write every top-level key as a name")
    return raw
