"""Structured logs: one JSON object per line, for the web process's requests, the worker's
events and gunicorn's own messages, and nothing personal in any of them.

Every line has `time`, `level`, `event`, `request_id`, `user_id`, `status` and `duration_ms`
(null where they do not apply). A request's line says which route answered, never what was
sent: no bodies, no query strings (`/ack/<id>?t=<token>` carries a token), no headers, no
cookies, no client address. A logged exception keeps its type and where it was raised, not
its message, which can quote a value (a database's "Key (email)=(...) already exists").
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, g, has_request_context, request
from gunicorn.glogging import Logger as GunicornBaseLogger
from werkzeug.wsgi import ClosingIterator

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's (a load balancer's) request id is kept only when it is short and plain: it is
# written into every line of the request and sent back in a header.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")
# Whatever follows a "?" in a message (gunicorn writes a failed request's URI) is dropped.
_QUERY = re.compile(r"\?[^\s\"'<>]*")
_REQUEST_ID_KEY = "besik.request_id"
_USER_ID_KEY = "besik.user_id"
_HANDLER_MARK = "besik_json"
MAX_FRAMES = 8
FIELDS = ("time", "level", "event", "request_id", "user_id", "status", "duration_ms")
# gunicorn writes its master's and workers' own messages to a logger it calls "error".
_EVENT_OF_LOGGER = {"gunicorn.error": "gunicorn"}
# Chatty at INFO on every start, and of no use to an operator.
_QUIET = ("alembic.runtime.plugins",)

request_log = logging.getLogger("besik.request")


def request_id_from(header: str | None) -> str:
    """The caller's request id when it is sane, else a fresh one."""
    if header and _SANE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """A record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", None) or _EVENT_OF_LOGGER.get(record.name,
                                                                             record.name),
            "request_id": getattr(record, "request_id", None),
            "user_id": getattr(record, "user_id", None),
            "status": getattr(record, "status", None),
            "duration_ms": getattr(record, "duration_ms", None),
        }
        if line["request_id"] is None and has_request_context():
            # Anything logged while a request runs carries that request's id and user.
            line["request_id"] = request.environ.get(_REQUEST_ID_KEY)
            line["user_id"] = line["user_id"] or _signed_in_user_id()
        line.update(getattr(record, "fields", None) or {})
        if not hasattr(record, "event"):
            line["message"] = _QUERY.sub("?", record.getMessage())
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = record.exc_info[0].__name__
            line["frames"] = [f"{frame.filename}:{frame.lineno} {frame.name}" for frame in
                              traceback.extract_tb(record.exc_info[2])[-MAX_FRAMES:]]
        return json.dumps(line, ensure_ascii=False, default=str)


def json_handler(stream: Any = None) -> logging.Handler:
    """A handler that writes JSON lines to `stream` (default: standard error)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    setattr(handler, _HANDLER_MARK, True)
    return handler


def configure(level: int = logging.INFO) -> None:
    """Every log record of this process as a JSON line on standard error (idempotent)."""
    root = logging.getLogger()
    if not any(getattr(h, _HANDLER_MARK, False) for h in root.handlers):
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.addHandler(json_handler())
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one named event with its fields (counts, durations, codes: nothing personal)."""
    known = {k: fields.pop(k) for k in FIELDS if k in fields}
    logger.log(level, name, extra={"event": name, "fields": fields, **known})


def _signed_in_user_id() -> int | None:
    # Only a user this request already loaded: looking one up here would cost a query on
    # every anonymous request (the load balancer's /healthz).
    user = g.get("_login_user")
    if user is not None and getattr(user, "is_authenticated", False):
        return int(user.id)
    return None


def _note_user(response: Any) -> Any:
    """after_request: who the request was for, for its line (written after the body)."""
    request.environ[_USER_ID_KEY] = _signed_in_user_id()
    return response


class RequestLog:
    """WSGI middleware: the request id in and out, and one line per request once its body
    was sent (a streamed export's line comes at its end, with its whole duration)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        environ[_REQUEST_ID_KEY] = request_id
        answered: list[int] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answered.append(int(status.split(" ", 1)[0]))
            headers = [h for h in headers if h[0].lower() != REQUEST_ID_HEADER.lower()]
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, exc_info)

        def done() -> None:
            status = answered[-1] if answered else 500
            event(request_log, "http:request",
                  logging.ERROR if status >= 500 else logging.INFO,
                  request_id=request_id, user_id=environ.get(_USER_ID_KEY), status=status,
                  duration_ms=round((time.perf_counter() - started) * 1000, 1),
                  method=environ.get("REQUEST_METHOD"),
                  route=environ.get("besik.route"), path=environ.get("PATH_INFO"))

        try:
            body = self.app(environ, start)
        except BaseException:
            done()
            raise
        return ClosingIterator(body, [done])


def _note_route() -> None:
    """before_request: the matched route's pattern (`/api/v1/reports/<report_id>`)."""
    if request.url_rule is not None:
        request.environ["besik.route"] = request.url_rule.rule


def init_request_log(app: Flask) -> None:
    """Wrap the app in the request log; note each request's route and user for it."""
    app.wsgi_app = RequestLog(app.wsgi_app)  # type: ignore[method-assign]
    app.before_request(_note_route)
    app.after_request(_note_user)


class GunicornLogger(GunicornBaseLogger):
    """gunicorn's own messages (start, workers, timeouts) as JSON lines too; its access log
    is left off: the app's request log (RequestLog) replaces it."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None
