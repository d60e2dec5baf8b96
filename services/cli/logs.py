"""The services' and commands' logs: one line per record, control characters escaped,
passwords hidden, repeats counted rather than written."""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from shared.config import Settings

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Libraries whose INFO (and DEBUG) records name the URLs they call, and an outgoing
# webhook's URL is its credential: httpx logs "HTTP Request: POST <url>" at INFO,
# slack_sdk logs the webhook URL when it retries. Their warnings still show.
QUIET_LOGGERS = ("aiokafka", "httpx", "httpcore", "slack_sdk", "aiohttp", "aiosmtplib")
# APScheduler logs every run of every job at INFO (the accounts gauge each minute): noise
# that buries the health changes and alerts; a failed job is still an error. Matplotlib
# and fontTools log each report's chart fonts and subsetting at INFO, WeasyPrint each
# step of a PDF.
CHATTY_LOGGERS = ("apscheduler", "matplotlib", "fontTools", "weasyprint")


def service_logging(settings: Settings) -> None:
    setup_logging(settings.log_level)


# Distinct repeated messages a RepeatFilter tracks before it forgets the stale ones.
REPEATS_KEPT = 1000


def setup_logging(level: str | int, fmt: str = LOG_FORMAT) -> None:
    """Log to stderr one line per record, control characters escaped and passwords in
    URLs hidden (see OneLineFormatter); chatty libraries at WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(fmt))
    handler.addFilter(RepeatFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for name in (*QUIET_LOGGERS, *CHATTY_LOGGERS):
        logging.getLogger(name).setLevel(logging.WARNING)


def _raised_at(record: logging.LogRecord) -> str:
    """The record's exception, its type and the line that raised it: every unhandled
    request error logs one message ("Exception in ASGI application"), so without this
    the first bug of a minute hid all the others."""
    exc = record.exc_info[1] if record.exc_info else None
    if exc is None:
        return ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else ""
    return f" [{type(exc).__name__} {where}]"


class RepeatFilter(logging.Filter):
    """A warning or error said again within ``window_s`` (the same text, and the same
    exception raised at the same line) is counted, not written; the next one written
    after the window says how many were left out. A broker outage had
    aiokafka log "Unable connect to node" 4,431 times a second, and the outbox a
    traceback every poll while the database was down: gigabytes an hour of one line.
    Tracks at most REPEATS_KEPT messages (oldest first out; beyond that, records pass),
    under a lock: PDF rendering logs from a thread."""

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        # (logger, level, message) → (when written, left out since), oldest written first
        self._seen: OrderedDict[tuple[str, int, str], tuple[float, int]] = OrderedDict()
        # out of their window with repeats left out: said when next written
        self._left_out: dict[tuple[str, int, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True  # logging reports a bad format itself
        key = (record.name, record.levelno, message + _raised_at(record))
        with self._lock:
            now = self._clock()
            while self._seen and now - next(iter(self._seen.values()))[0] >= self._window_s:
                expired, (_, repeats) = self._seen.popitem(last=False)
                if repeats and len(self._left_out) < REPEATS_KEPT:
                    self._left_out[expired] = repeats
            if key in self._seen:
                written, left_out = self._seen[key]
                self._seen[key] = (written, left_out + 1)
                return False
            if len(self._seen) >= REPEATS_KEPT:
                return True
            left_out = self._left_out.pop(key, 0)
            self._seen[key] = (now, 0)
        if left_out:
            record.msg = f"{message} ({left_out} more like it in the last "
            record.msg += f"{self._window_s:.0f} s not shown)"
            record.args = None
        return True


def redacted_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a database URL: hide whatever userinfo it has
        return _USERINFO.sub(r"\1***@", url)


class OneLineFormatter(logging.Formatter):
    """Every record one line, whatever its text holds: C0 control characters but tab
    (and DEL, NEL, U+2028/9) in the message and its arguments are escaped, so a CR/LF in
    an account name cannot forge a record; passwords in URLs become ***. A traceback
    follows on lines of its own, each indented, so no line at column 0 is anything but
    a record's start."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(_USERINFO.sub(r"\1***@", super().formatMessage(record)))

    def formatException(self, ei: Any) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


# scheme://user:password@ → scheme://user:***@ (the password is the URL's secret part).
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@")
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, 0x85) if c != 0x09}
_ESCAPES |= {0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def escape_controls(text: str) -> str:
    return text.translate(_ESCAPES)


def _indented(text: str) -> str:
    return "\n".join("    " + escape_controls(line) for line in text.splitlines())
