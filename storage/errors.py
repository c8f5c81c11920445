"""Domain errors. They know nothing of HTTP; ``webapi`` maps them to status codes in one table."""

from __future__ import annotations


class BlockdriveError(Exception):
    """Base of every error blockdrive raises on purpose."""

    #: stable, machine-readable slug (used as the problem ``type`` over HTTP)
    code = "error"

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class NotFound(BlockdriveError):
    code = "not-found"


class Forbidden(BlockdriveError):
    code = "forbidden"


class Unauthorized(BlockdriveError):
    code = "unauthorized"


class Conflict(BlockdriveError):
    code = "conflict"


class PreconditionFailed(Conflict):
    """An optimistic-concurrency check failed (the file changed since the caller read it)."""

    code = "precondition-failed"


class InvalidInput(BlockdriveError):
    code = "invalid-input"


class InvalidName(InvalidInput):
    code = "invalid-name"


class QuotaExceeded(BlockdriveError):
    code = "quota-exceeded"

    def __init__(self, used: int, quota: int, needed: int, pending: int = 0, **split):
        held = f" and {pending} reserved by unfinished uploads" if pending else ""
        kept = ", ".join(f"{v} in {k.replace('_', ' ')}" for k, v in split.items() if v)
        super().__init__(
            f"quota exceeded: {used} of {quota} bytes used{held}, {needed} more needed"
            + (f" (of the used bytes: {kept}; purge them to make room)" if kept else ""),
            used=used, quota=quota, needed=needed, pending=pending, **split,
        )


class LimitExceeded(BlockdriveError):
    """A request would grow a tree past one of the ``[limits]``: ``limit`` names the key,
    ``max`` its value."""

    code = "limit-exceeded"

    def __init__(self, message: str, limit: str, max: int):
        super().__init__(message, limit=limit, max=max)


class SessionLimit(BlockdriveError):
    """An upload session reached one of its fixed bounds (blocks per session)."""

    code = "session-limit"


class IntegrityError(BlockdriveError):
    """Stored bytes do not match what the metadata or the pack says they are."""

    code = "integrity-error"


class ConfigError(BlockdriveError):
    code = "config-error"


class BackendError(BlockdriveError):
    """A block backend failed in a way the caller cannot fix by changing its request."""

    code = "backend-error"


class BackendUnavailable(BackendError):
    """The backend cannot be reached, or asks us to come back later (HDFS safe mode,
    S3 throttling). Never means "block missing"."""

    code = "backend-unavailable"


class RetryLater(BlockdriveError):
    code = "retry-later"


class Gone(BlockdriveError):
    """It existed and is no more (an expired or revoked link, an expired upload)."""

    code = "gone"


class RateLimited(BlockdriveError):
    """Too many failed attempts (logins, link passwords); try again after ``retry_after``."""

    code = "rate-limited"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message, retry_after=retry_after)


class ChecksumMismatch(InvalidInput):
    """Bytes sent do not match the checksum the client declared for them."""

    code = "checksum-mismatch"


class OffsetMismatch(Conflict):
    """A resumable upload's chunk does not start where the upload stands."""

    code = "offset-mismatch"


class ContentMismatch(InvalidInput):
    """Content does not hash to the identifier or digest the client named for it."""

    code = "hash-mismatch"
