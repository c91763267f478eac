"""Logging on stderr: one JSON object per line (default) or plain text lines.

Why JSON lines: log shippers parse them without regexes, and every record
carries its ``extra`` fields (endpoint, status, duration, ...) as keys.  The
text format (``--log-format text``) is for people reading a terminal: the
same fields as ``key=value`` after the message.  Neither carries ANSI colour
codes: uvicorn attaches a coloured copy of some messages (``color_message``),
which both formats drop.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = ["LOG_FORMATS", "JsonFormatter", "TextFormatter", "setup_logging"]

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}


def _timestamp(record: logging.LogRecord) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z"
    )


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The record's ``extra`` fields."""
    return {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """Format a record and its extra fields as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in _extras(record).items():
            out[k] = v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """``<ts> <level> <logger>: <message> key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        extras = "".join(f" {k}={v}" for k, v in _extras(record).items())
        line = (
            f"{_timestamp(record)} {record.levelname.lower()} {record.name}: "
            f"{record.getMessage()}{extras}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


LOG_FORMATS: dict[str, type[logging.Formatter]] = {"json": JsonFormatter, "text": TextFormatter}


def setup_logging(level: str = "info", fmt: str = "json") -> None:
    """Route realmpy.server and uvicorn logs through the formatter ``fmt`` (``LOG_FORMATS``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LOG_FORMATS[fmt]())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
