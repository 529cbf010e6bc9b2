"""Log lines that say whose request they belong to: context, JSON lines, audit lines.

* **Context.** :data:`request_id`, :data:`user` and :data:`notebook` are context
  variables, set by the HTTP handlers (:func:`bind`: every HTTP request and every
  WebSocket connection gets a request id) and read by :class:`ContextFilter` when a
  line is logged. Code below the handlers (rooms, kernels, commands) logs as usual
  and needs no extra parameter: asyncio copies the context into the tasks a request
  starts. Tasks that outlive the request which happened to start them (a kernel's
  runner) are started in :func:`detached` contexts instead, so they do not carry
  that request's id and user forever.
* **Formats.** ``HubCollab.log_format``: ``text`` (traitlets' console format) or
  ``json`` (:class:`JSONFormatter`: one JSON object per line with ``timestamp``,
  ``level``, ``logger``, ``message`` and, when known, ``request_id``, ``user``,
  ``notebook``; a traceback goes in ``exc_info``).
* **Audit.** :func:`audit` writes every audit entry (``Store.add_audit``) as one line
  of the logger ``hub_collab.audit``, with ``actor``, ``action``, ``target``,
  ``notebook`` and ``detail``, whatever the log level, in both formats.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import re
import secrets
from typing import Any

#: the request id of the HTTP request or WebSocket connection being handled
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("hub_collab_request_id", default=None)
#: the Hub user it is for, once authenticated
user: contextvars.ContextVar[str | None] = contextvars.ContextVar("hub_collab_user", default=None)
#: the notebook it is about, once known
notebook: contextvars.ContextVar[str | None] = contextvars.ContextVar("hub_collab_notebook", default=None)

CONTEXT_FIELDS = ("request_id", "user", "notebook")
_VARS = {"request_id": request_id, "user": user, "notebook": notebook}

AUDIT_LOGGER = "hub_collab.audit"
audit_log = logging.getLogger(AUDIT_LOGGER)

#: a request id a client (an ingress) may hand us in ``X-Request-Id``
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")

# attributes every LogRecord has: everything else on a record came with ``extra=``
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", *CONTEXT_FIELDS}


def new_request_id(given: str | None = None) -> str:
    """``given`` (an upstream ``X-Request-Id``) if it is a plain token, else a new id."""
    if given and REQUEST_ID_RE.match(given):
        return given
    return secrets.token_hex(8)


def bind(**fields: str | None) -> None:
    """Set context fields (``request_id``, ``user``, ``notebook``) for this task and the
    tasks it starts from now on."""
    for name, value in fields.items():
        try:
            var = _VARS[name]
        except KeyError:
            raise TypeError(f"logs.bind(): unknown field {name!r}; use one of {', '.join(CONTEXT_FIELDS)}") from None
        var.set(value)


def detached(**fields: str | None) -> contextvars.Context:
    """A fresh context holding only ``fields``: for a task that outlives the request that
    starts it (``loop.create_task(coro, context=logs.detached(notebook=...))``)."""
    ctx = contextvars.Context()
    ctx.run(bind, **fields)
    return ctx


def current() -> dict[str, str]:
    """The context fields that are set."""
    out = {}
    for name, var in _VARS.items():
        value = var.get()
        if value is not None:
            out[name] = value
    return out


class ContextFilter(logging.Filter):
    """Stamps every record with the context fields (None where unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS.items():
            if not hasattr(record, name):
                setattr(record, name, var.get())
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC, ISO 8601), level, logger, message, the
    context fields that are known, and whatever the line was logged with (``extra=``)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is None:
                value = _VARS[name].get()
            if value is not None:
                out[name] = value
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def audit(nb_id: str, actor: str, action: str, target: str, detail: Any) -> None:
    """Log one audit entry (as stored by ``Store.add_audit``) on ``hub_collab.audit``.

    The text line quotes every value as JSON, so a notebook name holding a newline
    cannot forge a second line.
    """
    fields = {"actor": actor, "action": action, "target": target, "notebook": nb_id, "detail": detail if detail is not None else {}}
    text = " ".join(f"{k}={json.dumps(v, separators=(',', ':'), default=str)}" for k, v in fields.items())
    audit_log.info("audit %s", text, extra=fields)
