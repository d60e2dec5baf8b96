"""The Slack stand-in: an HTTP server in its own process that logs when each trigger's alert
arrived.
"""

from __future__ import annotations

import http.server
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import orjson


def serve_slack_standin(port: int, log_path: Path, pattern: str) -> None:
    """A Slack stand-in (incoming webhook and Web API ``chat.postMessage``): answers 200
    at once and appends ``{"t": receipt time, "accounts": [...], ...}`` per request to
    ``log_path``. Runs in its own process so that the load generator cannot delay the
    receipt timestamps."""
    regex = re.compile(pattern.encode())
    log = log_path.open("ab", buffering=0)
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            received = time.time()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            found = sorted({m.decode() for m in regex.findall(body)})
            line = orjson.dumps(
                {"t": received, "path": self.path, "bytes": len(body), "accounts": found}
            )
            with lock:
                log.write(line + b"\n")
            api = self.path.startswith("/api/")
            reply = b'{"ok": true, "ts": "1.0"}' if api else b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "application/json" if api else "text/plain")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.05)


def read_slack_log(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return []
    return [orjson.loads(line) for line in lines if line.strip()]
