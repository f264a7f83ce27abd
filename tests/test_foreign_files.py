"""Files that are not promptvec's are never touched: a run-folder lock that is a link, folder, FIFO or
dangling link is refused (never written through), the lock names its real holder, and no writer
that takes a user path replaces a link, a FIFO, a device or a folder with a regular file."""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptvec.cli import app
from promptvec.errors import PromptvecError
from promptvec.io import atomic_write_text
from promptvec.training.run_folder import LOCK_FILE, NotALockError, RunFolderLock, RunLockedError

runner = CliRunner()


def _train(tiny_models, toy_task, out: Path, *extra: str):
    return runner.invoke(app, ["train", "--model", str(tiny_models["llama"]), "--task", str(toy_task), "--steps", "2",
                               "--eval-every", "2", "--batch-size", "4", "--prompt-length", "3", "--val-examples", "4",
                               "--test-examples", "4", "--out", str(out), *extra], terminal_width=200)


def _snapshot(path: Path) -> tuple:
    info = os.lstat(path)
    content = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
    return stat.S_IFMT(info.st_mode), os.readlink(path) if path.is_symlink() else None, content


def test_a_lock_that_is_a_symlink_is_refused_and_its_target_is_untouched(tiny_models, toy_task, tmp_path):
    out = tmp_path / "run"
    assert _train(tiny_models, toy_task, out).exit_code == 0
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    (out / LOCK_FILE).unlink()
    (out / LOCK_FILE).symlink_to(victim)
    result = _train(tiny_models, toy_task, out, "--resume")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "is a symbolic link, not the lock file promptvec writes there" in result.output
    assert victim.read_text() == "keep me" and (out / LOCK_FILE).is_symlink()


@pytest.mark.parametrize("kind", ["folder", "fifo", "dangling link"])
def test_a_lock_that_is_not_a_regular_file_gets_one_message(tmp_path, kind):
    folder = tmp_path / "run"
    folder.mkdir()
    lock = folder / LOCK_FILE
    if kind == "folder":
        lock.mkdir()
    elif kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.symlink_to(tmp_path / "nowhere")
    before = _snapshot(lock)
    expected = {"folder": "is a folder", "fifo": "is a FIFO", "dangling link": "is a symbolic link to nothing"}[kind]
    with pytest.raises(NotALockError, match=expected) as caught:
        RunFolderLock(folder)
    assert "move" in caught.value.hint and _snapshot(lock) == before
    assert not (tmp_path / "nowhere").exists()


def test_the_lock_names_the_live_holder_not_the_stale_text_in_the_file(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_FILE).write_text("promptvec process 999999999")  # copied with a dead pid in it
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; handle = open(sys.argv[1], 'a'); fcntl.flock(handle, fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(60)"), str(folder / LOCK_FILE)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"being written by process {holder.pid} ") as caught:
            RunFolderLock(folder)
        assert "999999999" not in caught.value.message
    finally:
        holder.kill()
        holder.wait()
    lock = RunFolderLock(folder)  # free again: taken, and the pid in it is ours
    assert (folder / LOCK_FILE).read_text() == f"promptvec process {os.getpid()}"
    lock.release()
    with open(folder / LOCK_FILE) as handle:  # released: anyone may take it
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _special_paths(tmp_path: Path) -> dict[str, Path]:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    paths = {"symlink": tmp_path / "link", "fifo": tmp_path / "fifo", "folder": tmp_path / "folder"}
    paths["symlink"].symlink_to(victim)
    os.mkfifo(paths["fifo"])
    paths["folder"].mkdir()
    try:  # a character device, as root can make one (the always-full device's numbers)
        os.mknod(tmp_path / "full", stat.S_IFCHR | 0o666, os.makedev(1, 7))
        paths["device"] = tmp_path / "full"
    except (PermissionError, OSError):
        pass
    return paths


@pytest.mark.parametrize("name", ["symlink", "fifo", "folder", "device"])
def test_an_atomic_write_never_replaces_a_link_or_a_special_file(tmp_path, name):
    paths = _special_paths(tmp_path)
    if name not in paths:
        pytest.skip("cannot make a device node here")
    before = _snapshot(paths[name])
    with pytest.raises(PromptvecError, match="never follows links or replaces special files"):
        atomic_write_text(paths[name], "new")
    assert _snapshot(paths[name]) == before and (tmp_path / "victim.txt").read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_every_writer_that_takes_a_user_path_refuses_links_and_special_files(tiny_models, toy_task, tmp_path):
    from promptvec.backbones import load_backbone
    from promptvec.store import VectorStore
    from promptvec.vectors import TaskPromptVector

    model = str(tiny_models["llama"])
    run = tmp_path / "run"
    assert _train(tiny_models, toy_task, run).exit_code == 0
    vector_file = tmp_path / "v.safetensors"
    TaskPromptVector.from_checkpoint(run, load_backbone(model)).save(vector_file)
    store = tmp_path / "store"
    VectorStore(store).add_vector(TaskPromptVector.load(vector_file), name="v")
    paths = _special_paths(tmp_path)
    folder_link = tmp_path / "folder-link"
    folder_link.symlink_to(paths["folder"])
    writers = {
        "eval --log-samples": lambda p: ["eval", "--model", model, "--task", str(toy_task), "--prompt", str(run),
                                         "--limit", "2", "--log-samples", str(p)],
        "vector combine --out": lambda p: ["vector", "combine", str(vector_file), "--out", str(p)],
        "vector similarity --heatmap": lambda p: ["vector", "similarity", str(vector_file), str(vector_file),
                                                  "--heatmap", str(p)],
        "vector similarity --csv": lambda p: ["vector", "similarity", str(vector_file), "--csv", str(p)],
        "vector create": lambda p: ["vector", "create", str(run), str(p), "--model", model],
    }
    for what, command in writers.items():
        for name, path in {**paths, "folder-link": folder_link}.items():
            before = _snapshot(path)
            result = runner.invoke(app, command(path), terminal_width=200)
            assert result.exit_code == 2, (what, name, result.output)
            assert "Traceback" not in result.output and "cannot write" in result.output, (what, name, result.output)
            assert _snapshot(path) == before, (what, name)
    assert not list(tmp_path.glob("folder*.png")) and (tmp_path / "victim.txt").read_text() == "keep me"
    # folders: a report, an exported prompt and an applied vector never go through a link
    for command in (["store", "export", "v", str(folder_link), "--store", str(store)],
                    ["report", str(tmp_path), "--out", str(folder_link)],
                    ["vector", "apply", str(vector_file), "--out", str(folder_link), "--model", model]):
        result = runner.invoke(app, command, terminal_width=200)
        assert result.exit_code == 2 and "Traceback" not in result.output, (command, result.output)
        assert folder_link.is_symlink() and not any(paths["folder"].iterdir()), command


def test_a_path_below_a_file_is_named_as_such(tmp_path, tiny_models, toy_task):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(PromptvecError, match="lies under .*afile, which is a file"):
        atomic_write_text(afile / "s.jsonl", "row")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_writes_give_the_permissions_an_ordinary_write_would(tmp_path, umask):
    """A temporary file is created 0600 and a temporary folder 0700; what replaces the target must get
    the modes ``open``/``mkdir`` would give under the user's umask (a shared run folder or an installed
    library must stay readable by the group when the umask allows it)."""
    from promptvec.io import atomic_directory

    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "record.json", "{}")
        with atomic_directory(tmp_path / "folder") as tmp:
            (tmp / "inside.txt").write_text("x")
        (tmp_path / "plain.txt").write_text("x")
        (tmp_path / "plain").mkdir()
    finally:
        os.umask(previous)
    def mode(name: str) -> int:
        return stat.S_IMODE((tmp_path / name).stat().st_mode)

    assert mode("record.json") == 0o666 & ~umask == mode("plain.txt")
    assert mode("folder") == 0o777 & ~umask == mode("plain")
