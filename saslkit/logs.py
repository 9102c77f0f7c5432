"""Log output of the reference servers: ``text`` (``TIME LOGGER MESSAGE``, the message a logfmt line for
authentication events) or ``json`` (one JSON object per line).

A JSON line has ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``; an authentication event
adds its fields (:func:`saslkit.auth.events.log_fields`: ``event``, ``peer``, ``mechanism``, ``identity``,
``reason`` or ``kind``), and an exception its ``exception`` text::

    {"time": "2026-11-27T10:00:00.123Z", "level": "INFO", "logger": "saslkit.smtp",
     "message": "auth failed peer=127.0.0.1 mechanism=PLAIN identity=\\"a b\\" reason=authentication-failed",
     "event": "auth failed", "peer": "127.0.0.1", "mechanism": "PLAIN", "identity": "a b",
     "reason": "authentication-failed"}
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from .auth.events import FIELDS_ATTRIBUTE

__all__ = ["LOG_FORMATS", "JsonFormatter", "configure_logging"]

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, object] = {
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS_ATTRIBUTE, None)
        if isinstance(fields, dict):
            line.update({k: v for k, v in fields.items() if k not in line})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(log_format: str = "text", stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Log ``level`` and above to ``stream`` (stderr) in ``log_format`` (:data:`LOG_FORMATS`)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r} (one of {', '.join(LOG_FORMATS)})")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
