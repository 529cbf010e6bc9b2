"""Typed errors with one JSON shape.

Raise :class:`CollabError` (or a subclass) anywhere below the handlers; the REST
handlers render it as ``{"status", "code", "message"}`` and the WebSocket as
``{"type": "error", "code", "message", "ref"?}``. ``message`` is shown to the
user; ``log_message`` (optional) goes to the log only and may carry detail the
user must not see.
"""

from __future__ import annotations


class CollabError(Exception):
    """An error with an HTTP status, a stable machine code and a user message."""

    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        log_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.log_message = log_message or message

    def to_json(self) -> dict[str, object]:
        return {"status": self.status, "code": self.code, "message": self.message}


class BadRequest(CollabError):
    status = 400
    code = "bad_request"


class Forbidden(CollabError):
    status = 403
    code = "forbidden"


class NotFound(CollabError):
    status = 404
    code = "not_found"


class Conflict(CollabError):
    status = 409
    code = "conflict"


class TooLarge(CollabError):
    status = 413
    code = "too_large"


class RateLimited(CollabError):
    status = 429
    code = "rate_limited"
