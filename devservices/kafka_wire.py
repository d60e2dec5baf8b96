"""Just enough of the Kafka wire protocol to ask a broker whether it is ready.

A hand-written probe (ApiVersions, then Metadata v4) so that readiness needs no Kafka
client library and no extra JVM.
"""

from __future__ import annotations

import socket
import struct

from devservices.ports import HOST


class _KafkaProtocolError(Exception):
    pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise _KafkaProtocolError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def _kafka_call(
    sock: socket.socket, api_key: int, api_version: int, correlation_id: int, body: bytes
) -> bytes:
    """Send one non-flexible request (header v1) and return the response body (header v0)."""
    client_id = b"healthwatch-devservices"
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id)) + client_id
    message = header + body
    sock.sendall(struct.pack(">i", len(message)) + message)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    payload = _recv_exact(sock, size)
    (got,) = struct.unpack_from(">i", payload, 0)
    if got != correlation_id:
        raise _KafkaProtocolError(f"correlation id {got} != {correlation_id}")
    return payload[4:]


_API_METADATA = 3
_API_VERSIONS = 18


def broker_ready(port: int, timeout: float = 5.0) -> bool:
    """True when the broker answers ApiVersions and lists itself (unfenced) in Metadata."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            body = _kafka_call(sock, _API_VERSIONS, 0, 1, b"")
            (error_code, count) = struct.unpack_from(">hi", body, 0)
            if error_code != 0:
                return False
            versions: dict[int, tuple[int, int]] = {}
            for i in range(count):
                key, lo, hi = struct.unpack_from(">hhh", body, 6 + 6 * i)
                versions[key] = (lo, hi)
            lo, hi = versions.get(_API_METADATA, (0, -1))
            if not lo <= 4 <= hi:
                return True  # cannot ask Metadata v4; ApiVersions answered, good enough
            # Metadata v4: topics = [] (none), allow_auto_topic_creation = false.
            body = _kafka_call(sock, _API_METADATA, 4, 2, struct.pack(">ib", 0, 0))
            (_throttle_ms, brokers) = struct.unpack_from(">ii", body, 0)
            return bool(brokers > 0)
    except (OSError, struct.error, _KafkaProtocolError):
        return False
