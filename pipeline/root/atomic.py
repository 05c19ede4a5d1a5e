"""Small files of an output written whole or not at all: the manifest, index entries and the
lock. A reader never sees a partial file, and a write that fails (a full disk) leaves
nothing behind.

Local files are written under a temporary name in the same folder, then renamed (or, for an
exclusive create, hard-linked) into place. On gs:// an object appears only once its upload
completes, and an exclusive create is a generation-0 precondition. Other Beam filesystems
write a temporary object, then rename it."""

from __future__ import annotations

import contextlib
import os
import uuid

from apache_beam.io.filesystems import FileSystems

from schemas import layout


class WriteFailed(OSError):
    """A small output file could not be written; nothing of it was left behind."""


def _is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) in (None, "file")


def _temporary(path: str) -> str:
    folder, name = os.path.split(path) if _is_local(path) else path.rsplit("/", 1)
    return f"{folder}/{layout.temporary_name(name, uuid.uuid4().hex[:12])}"


def _write_local_temporary(path: str, payload: bytes) -> str:
    """``payload`` in a new temporary file next to ``path``, flushed to disk; its path."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = _temporary(path)
    try:
        with open(temporary, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise WriteFailed(f"could not write {path}: {exc}") from exc
    return temporary


def write_atomically(path: str, payload: bytes, mime_type: str = "application/json") -> None:
    """Replace ``path`` with ``payload`` in one step; raises WriteFailed, leaving the old
    file (or none) in place."""
    if _is_local(path):
        temporary = _write_local_temporary(path, payload)
        os.replace(temporary, path)
        return
    if FileSystems.get_scheme(path) == "gs":
        try:
            with FileSystems.create(path, mime_type=mime_type) as handle:
                handle.write(payload)
        except Exception as exc:  # The object never appears unless the upload completed.
            raise WriteFailed(f"could not write {path}: {exc}") from exc
        return
    temporary = _temporary(path)
    try:
        with FileSystems.create(temporary, mime_type=mime_type) as handle:
            handle.write(payload)
        FileSystems.rename([temporary], [path])
    except Exception as exc:
        with contextlib.suppress(Exception):
            FileSystems.delete([temporary])
        raise WriteFailed(f"could not write {path}: {exc}") from exc


def create_exclusively(path: str, payload: bytes) -> bool:
    """Create ``path`` holding ``payload`` only if it does not exist, in one step; False when
    it exists, WriteFailed when it cannot be written (nothing is left behind). Other
    filesystems than local and gs:// are checked, then written: not atomic."""
    scheme = FileSystems.get_scheme(path)
    if scheme in (None, "file"):
        temporary = _write_local_temporary(path, payload)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        except OSError:  # No hard links here (some FUSE mounts): O_EXCL, then the bytes.
            return _create_local_excl(path, payload)
        finally:
            os.unlink(temporary)
        return True
    if scheme == "gs":
        return _create_gcs_object(path, payload)
    if FileSystems.exists(path):
        return False
    write_atomically(path, payload)
    return True


def _create_local_excl(path: str, payload: bytes) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
    except OSError as exc:
        os.unlink(path)
        raise WriteFailed(f"could not write {path}: {exc}") from exc
    return True


def _create_gcs_object(path: str, payload: bytes) -> bool:
    from google.api_core.exceptions import PreconditionFailed
    from google.cloud import storage

    bucket, _, name = path[len("gs://"):].partition("/")
    blob = storage.Client().bucket(bucket).blob(name)
    try:
        blob.upload_from_string(payload, content_type="application/json", if_generation_match=0)
    except PreconditionFailed:
        return False
    except Exception as exc:
        raise WriteFailed(f"could not write {path}: {exc}") from exc
    return True
