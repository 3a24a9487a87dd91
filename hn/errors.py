"""One exception tree for hn.

Every class carries the exit code the CLI uses; the message is the one line the user
reads. The CLI turns these into output in exactly one place (``hn.cli.app.main``), and
the node turns them into JSON error bodies with a 4xx status.
"""

from __future__ import annotations


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

    code = "disk"


class Conflict(HnError):
    """The request conflicts with the current state."""

    http_status = 409
    code = "conflict"


class QuotaExceeded(HnError):
    """A storage quota would be exceeded."""

    http_status = 413
    code = "quota"
