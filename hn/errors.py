"""One exception tree for hn.

Every class carries the exit code the CLI uses; the message is the one line the user
reads. The CLI turns these into output in exactly one place (``hn.cli.app.main``), and
the node turns them into JSON error bodies with a 4xx status (507 when its own storage
failed).
"""

from __future__ import annotations

import errno
import stat


class HnError(Exception):
    """Something went wrong."""

    exit_code = 1
    http_status = 400
    code = "error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "error").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(HnError):
    """The command was called the wrong way."""

    exit_code = 2
    code = "usage"


class InputError(HnError):
    """The input could not be used."""

    code = "bad_input"


class MalformedDocument(InputError):
    """The document is not well-formed JSON of the expected shape."""

    code = "malformed"


class TooLarge(InputError):
    """The input is larger than allowed."""

    http_status = 413
    code = "too_large"


class VerificationError(HnError):
    """A signature, digest or proof did not verify."""

    code = "verification_failed"


class RollbackError(VerificationError):
    """A document older than one already seen was offered (rollback)."""

    http_status = 409
    code = "rollback"


class ForkError(VerificationError):
    """Two different documents with the same sequence number were seen (equivocation)."""

    http_status = 409
    code = "fork"


class NotFound(HnError):
    """The thing asked for does not exist."""

    http_status = 404
    code = "not_found"


class NoIdentity(HnError):
    """No identity in this vault yet: run `hn id create ALIAS` first."""

    code = "no_identity"


class KeyFileError(HnError):
    """The key file is unreadable or has been tampered with."""

    code = "key_file"


class VaultCorrupt(HnError):
    """The vault failed verification."""

    code = "vault_corrupt"


class Unauthorized(HnError):
    """The request is not signed, or its signature did not verify."""

    http_status = 401
    code = "unauthorized"


class Forbidden(HnError):
    """Policy does not allow this."""

    http_status = 403
    code = "forbidden"


class NetworkError(HnError):
    """A peer could not be reached or answered badly."""

    http_status = 502
    code = "network"


class DiskError(HnError):
    """Could not write to this machine's disk; nothing was changed."""

    http_status = 507  # RFC 4918 Insufficient Storage: the node's fault, not the request's
    code = "insufficient_storage"


# This machine's storage failing, whatever the code path that met it: full, over quota,
# read-only or giving I/O errors. A failed open of a missing file is not among them.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})
_SQLITE_DISK = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN")


def os_reason(exc: OSError) -> str:
    """One line for a failed system call: its reason, then the file it was about."""
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def file_kind(mode: int) -> str:
    """What a non-regular file is, in the words of the messages."""
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def cannot(doing: str, exc: OSError) -> HnError:
    """A failed system call as the error a user reads: ``<doing>: <reason>``; a DiskError
    if this machine's storage failed, else an InputError (a path that does not exist, is
    not a folder, or may not be written)."""
    message = f"{doing}: {exc.strerror or exc}"
    return DiskError(message) if storage_failure(exc) is not None else InputError(message)


def storage_failure(exc: BaseException) -> DiskError | None:
    """``exc`` as a DiskError if it says this machine's storage failed, else None.

    Recognises OSError (by errno) and SQLite errors (by ``sqlite_errorname``, read by
    name so that sqlite3 need not be imported to ask).
    """
    if isinstance(exc, DiskError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        return DiskError(os_reason(exc))
    name = getattr(exc, "sqlite_errorname", None)
    if isinstance(name, str) and name.startswith(_SQLITE_DISK) and name != "SQLITE_IOERR_NOMEM":
        return DiskError(f"state database: {exc}")
    return None


class Conflict(HnError):
    """The request conflicts with the current state."""

    http_status = 409
    code = "conflict"


class QuotaExceeded(HnError):
    """A storage quota would be exceeded."""

    http_status = 413
    code = "quota"
