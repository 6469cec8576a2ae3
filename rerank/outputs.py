"""Output files: never an input, never another run's, never a file rerank did not write.

Every command that writes files names them, with the files it reads, to :class:`Outputs` before
anything is opened for writing. Entering it:

1. resolves every path (symlinks followed) and compares real identities (device and inode of an
   existing file, the resolved path of a new one) of each output with every input, every other
   output and the call cache, and refuses any overlap;
2. refuses an existing output unless ``force`` (it is replaced) or ``resume`` and the run record
   beside the outputs names that very file, that is, rerank wrote it;
3. takes an exclusive lock (``flock``) on every output for the whole run, so that a second run
   on one of them fails at once, naming the file and the other process;
4. writes the run record (``X.summary.json`` beside the first output, state ``running``), which
   :meth:`Outputs.finish` replaces with the closing summary.

With ``create_later``, steps 3 and 4 wait for :meth:`Outputs.create` for the files that do not
exist yet (existing ones are locked at once): a run calls it once its start-up checks passed (the
endpoint answered, the model loaded), so that a run that cannot start creates no file at all.
Their folders are checked for writing up front.

Files that the run created and that are still empty when it ends are removed again, and so is
the record of a run that ended before its summary, so a run that failed at start-up leaves
nothing behind for the next one to refuse.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import time
from pathlib import Path

from .errors import ConfigError
from .output_locks import lock_holder, refuse_if_locked
from .output_record import RECORD_SUFFIX, read_record, record_names, record_path

__all__ = ["RECORD_SUFFIX", "Outputs", "file_identity", "lock_holder", "record_path"]

def file_identity(path: str | os.PathLike) -> tuple:
    """What makes two paths the same file: device and inode when it exists (hard links,
    symlinks, ``..`` included), else the resolved path.

    Parameters
    ----------
    path : str or path-like
        Any path, existing or not.

    Returns
    -------
    tuple
        ``("inode", device, inode)`` or ``("path", resolved path)``; equal for the same file.
    """
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
    except OSError:
        return ("path", os.path.normcase(real))
    return ("inode", info.st_dev, info.st_ino)


class Outputs:
    """The files one run writes, checked and locked for the run's whole life.

    Parameters
    ----------
    command : str
        The command, for the run record (``run``, ``labels``, ...).
    files : dict
        Flag -> path of each output file (None values are ignored). The order matters: the run
        record goes beside the first regular file.
    inputs : dict
        Flag -> path of each file the run reads (None values are ignored).
    shared : dict
        Flag -> path of files written but shared with other runs (the call cache): checked
        against inputs and outputs, never locked or refused for existing.
    resume, force : bool
        ``--resume`` (existing outputs that rerank wrote are continued) and ``--force``
        (existing outputs are replaced).
    record : bool or str
        Whether to keep a run record (or its path, instead of beside the first output); without
        one nothing can be resumed (plots).
    create_later : bool
        Create (and lock) the files that do not exist yet, and write the run record, only when
        :meth:`create` is called, not on entering.

    Attributes
    ----------
    existing : set of str
        The flags whose file existed with content when the run started (with ``resume``: the
        files to continue).
    record : Path or None
        The run record's path.
    """

    def __init__(self, command: str, files: dict, inputs: dict | None = None, *,
                 shared: dict | None = None, resume: bool = False, force: bool = False,
                 record: bool | str = True, create_later: bool = False):
        self.command = command
        self.create_later = create_later
        self._created_all = False
        self.files = {flag: str(path) for flag, path in files.items() if path is not None}
        self.inputs = {flag: str(path) for flag, path in (inputs or {}).items() if path is not None}
        self.shared = {flag: str(path) for flag, path in (shared or {}).items() if path is not None}
        self.resume, self.force = resume, force
        first = next((path for path in self.files.values() if _is_regular_or_new(path)), None)
        if isinstance(record, str):
            self.record = Path(record)
        else:
            self.record = record_path(first) if record and first is not None else None
        if self.record is not None:
            # --summary-json naming the record itself is one file, written once.
            self.files = {flag: path for flag, path in self.files.items()
                          if file_identity(path) != file_identity(self.record)}
            self.files["run record"] = str(self.record)
        self.existing: set[str] = set()
        self._created: list[str] = []
        self._locks: list[int] = []
        self._locked: set[str] = set()
        self._started = time.time()
        self._finished = False

    # -- entering: check, lock, record -------------------------------------------------------

    def __enter__(self) -> "Outputs":
        self._check_overlaps()
        self._check_existing()
        try:
            self._lock_all(new=not self.create_later)
            if not self.create_later:
                self.create()
        except BaseException:
            self._release()
            raise
        return self

    def create(self) -> None:
        """Create and lock the outputs that did not exist, and write the run record (state
        ``running``); what entering did already without ``create_later``. Called again, it does
        nothing.

        Raises
        ------
        ConfigError
            When an output appeared since the checks (another run), or is locked by one.
        """
        if self._created_all:
            return
        self._lock_all(new=True)
        if self.record is not None:
            self.write_record({"state": "running"})
        self._created_all = True

    def __exit__(self, *exc_info) -> None:
        self._release()

    def _check_overlaps(self) -> None:
        seen: dict[tuple, str] = {}
        for flag, path in self.inputs.items():
            seen.setdefault(file_identity(path), f"the input {flag} {path}")
        for flag, path in {**self.files, **self.shared}.items():
            if os.path.isdir(path):
                raise ConfigError(f"{flag} {path} is a folder: give a file path")
            identity = file_identity(path)
            if identity in seen:
                raise ConfigError(f"{flag} {path} is the same file as {seen[identity]}: "
                                  "choose another path (nothing was written)")
            seen[identity] = f"{flag} {path}"

    def _check_existing(self) -> None:
        record = read_record(self.record) if self.record is not None and self.resume else None
        for flag, path in self.files.items():
            try:
                info = os.stat(path)
            except FileNotFoundError:
                if self.create_later:
                    _check_folder(flag, path)  # what creating it would find, found now
                continue
            except OSError as exc:
                raise ConfigError(f"{flag} {path}: {exc.strerror}") from None
            if not stat.S_ISREG(info.st_mode):
                continue  # a device or a pipe (/dev/null): written through, nothing to keep
            self.existing.add(flag)
            refuse_if_locked(path)
            if self.force:
                continue
            if not self.resume:
                raise ConfigError(f"{path} exists: pass --resume to finish the run that wrote it, "
                                  f"--force to replace it, or choose another path")
            if record is None or not record_names(record, path, info):
                raise ConfigError(
                    f"{path} exists but rerank has no record of writing it "
                    f"({self.record} is missing or names other files): it is left as it is; "
                    f"pass --force to replace it, or choose another path")

    def _lock_all(self, new: bool) -> None:
        """Lock the existing outputs not locked yet, and with ``new`` create and lock the others."""
        for flag, path in self.files.items():
            real = os.path.realpath(path)
            if os.path.exists(real) and not os.path.isfile(real):
                continue
            if real in self._locked or (flag not in self.existing and not new):
                continue
            created = False
            try:
                if flag in self.existing:
                    fd = os.open(real, os.O_RDWR)
                else:
                    fd = os.open(real, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
                    created = True
            except FileExistsError:
                raise ConfigError(f"{path} appeared while this run was starting: another run may be "
                                  "writing it; nothing was written") from None
            if created:
                self._created.append(real)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                refuse_if_locked(real)
                raise ConfigError(f"{path} is being written by another process") from None
            self._locks.append(fd)
            self._locked.add(real)

    # -- the run record ----------------------------------------------------------------------

    def write_record(self, summary: dict) -> None:
        """Write the run record: ``summary`` plus what identifies the outputs.

        Parameters
        ----------
        summary : dict
            JSON-ready facts of the run (its ``state`` at least); the command, the rerank
            version, the start time and each output's path, device and inode are added.
        """
        if self.record is None:
            return
        from . import __version__

        outputs = {}
        for flag, path in self.files.items():
            real = os.path.realpath(path)
            entry = {"path": real}
            try:
                info = os.stat(real)
                entry.update(device=info.st_dev, inode=info.st_ino)
            except OSError:
                pass
            outputs[flag] = entry
        document = {**summary, "command": self.command, "rerank_version": __version__,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self._started)),
                    "outputs": outputs}
        # Written in place (not replaced), so the lock on the record's inode stays good.
        with open(self.record, "r+" if os.path.exists(self.record) else "w", encoding="utf-8") as handle:
            handle.truncate(0)
            json.dump(document, handle, indent=2)
            handle.write("\n")

    def finish(self, summary: dict, copy_to: str | None = None) -> None:
        """Write the closing summary into the run record (and a copy to ``--summary-json``).

        Parameters
        ----------
        summary : dict
            The run's closing summary, JSON-ready.
        copy_to : str or None
            Where ``--summary-json`` asks for a copy (nothing more when it is the record).
        """
        self.create()  # a run interrupted while starting still leaves its record, as before
        self.write_record(summary)
        self._finished = True
        if copy_to and (self.record is None or file_identity(copy_to) != file_identity(self.record)):
            with open(copy_to, "w", encoding="utf-8") as handle:
                json.dump(summary, handle, indent=2)

    def _release(self) -> None:
        record = os.path.realpath(self.record) if self.record is not None else None
        data = [path for path in self._created if path != record]
        empty = [path for path in data if _is_empty(path)]
        for path in empty:  # created, never written (a failed start, a plot not drawn)
            _unlink(path)
        if record in self._created and not self._finished and len(empty) == len(data):
            _unlink(record)  # a run that wrote nothing and ended early leaves no record
        for fd in self._locks:
            os.close(fd)
        self._locks, self._created, self._locked = [], [], set()


def _is_regular_or_new(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True


def _check_folder(flag: str, path: str) -> None:
    """Refuse a new output whose folder is missing or not writable (before it is created)."""
    folder = os.path.dirname(os.path.realpath(path)) or "."
    if not os.path.isdir(folder):
        raise ConfigError(f"{flag} {path}: No such file or directory: the folder {folder} does not exist "
                          "(nothing was written)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: Permission denied: cannot write in {folder} (nothing was written)")


def _is_empty(path: str) -> bool:
    try:
        return os.stat(path).st_size == 0
    except OSError:
        return False


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
