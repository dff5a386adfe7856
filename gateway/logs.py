"""Structured logging: JSON in production, readable lines in a terminal.

Device tokens are secrets of a kind (they address a person's device), so
nothing logs one whole: use ``redact_token``.  Context such as the request
id or apns-id travels in contextvars and is added to every record.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
apns_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("apns_id", default=None)


def redact_token(token: str | None) -> str:
    """First and last 4 hex characters only: enough to correlate, not to address."""
    if not token:
        return "-"
    if len(token) <= 8:
        return "…"
    return f"{token[:4]}…{token[-4:]}"


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.apns_id = apns_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("request_id", "apns_id"):
            value = getattr(record, key, None)
            if value:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        extra = " ".join(f"{k}={getattr(record, k)}" for k in ("request_id", "apns_id") if getattr(record, k, None))
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extra:
            line += f"  [{extra}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


#: Libraries whose debug output carries request paths, headers and frames
#: (device tokens in ``:path``, secrets in frames): never below INFO, whatever
#: ``log_level`` says; ``per_module`` can still lower one on purpose.
WIRE_LOGGERS = ("hpack", "h2", "websockets", "aiohttp.access", "aiohttp.server", "asyncpg", "redis")


LEVELS = ("debug", "info", "warning", "error", "critical")


def parse_module_levels(spec: str) -> dict[str, str]:
    """``"pushgw.h2=debug,aiohttp.access=warning"`` -> {logger: level}.

    Raises ValueError with the offending part, so config loading can report it.
    """
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, level = part.partition("=")
        name, level = name.strip(), level.strip().lower()
        if not sep or not name or level not in LEVELS:
            raise ValueError(f"{part!r} is not <logger>=<{'|'.join(LEVELS)}>")
        out[name] = level
    return out


def setup_logging(level: str = "info", fmt: str = "console", per_module: dict[str, str] | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in WIRE_LOGGERS:
        logging.getLogger(name).setLevel(max(root.level, logging.INFO))
    for name, lvl in (per_module or {}).items():
        logging.getLogger(name).setLevel(lvl.upper())
