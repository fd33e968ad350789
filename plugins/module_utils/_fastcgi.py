# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A minimal FastCGI client (responder role, one request per connection), standard library only.

Enough to run one PHP script in a php-fpm pool through the pool's socket, the
way nginx does, and read its answer: :func:`request` sends ``BEGIN_REQUEST``,
the parameters (``PARAMS`` records, then an empty one), the body (``STDIN``
records, then an empty one) and reads ``STDOUT``/``STDERR`` records until
``END_REQUEST``. :func:`parse_cgi_response` splits the CGI answer into status,
headers and body. The record helpers are public so that a test server can use
them (FastCGI specification 1.0: https://fastcgi-archives.github.io/FastCGI_Specification.html).
"""

from __future__ import annotations

import dataclasses
import socket
import struct
import typing as t

VERSION = 1
BEGIN_REQUEST = 1
ABORT_REQUEST = 2
END_REQUEST = 3
PARAMS = 4
STDIN = 5
STDOUT = 6
STDERR = 7
ROLE_RESPONDER = 1
REQUEST_COMPLETE = 0
PROTOCOL_STATUS = {0: 'request complete', 1: 'cannot multiplex connections', 2: 'overloaded', 3: 'unknown role'}

HEADER = struct.Struct('!BBHHBx')  # version, type, request id, content length, padding length, reserved
MAX_CONTENT = 65535
MAX_RESPONSE = 16 * 1024 * 1024

_RECORD_TYPES = (BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR)


class FastCGIError(Exception):
    """The FastCGI exchange failed (connection, protocol or an application refusing the request)."""


@dataclasses.dataclass
class Response:
    """What the application answered."""

    stdout: bytes
    stderr: bytes
    app_status: int
    protocol_status: int


# -- records ------------------------------------------------------------------------------------
def encode_record(record_type: int, request_id: int, content: bytes = b'') -> bytes:
    """One record (content at most 65535 bytes), padded to a multiple of 8 bytes."""
    if len(content) > MAX_CONTENT:
        raise ValueError('a FastCGI record holds at most %d bytes, got %d' % (MAX_CONTENT, len(content)))
    padding = -len(content) % 8
    return HEADER.pack(VERSION, record_type, request_id, len(content), padding) + content + b'\x00' * padding


def encode_stream(record_type: int, request_id: int, data: bytes) -> bytes:
    """``data`` as records of ``record_type`` followed by the empty record that ends the stream."""
    chunks = [encode_record(record_type, request_id, data[i:i + MAX_CONTENT]) for i in range(0, len(data), MAX_CONTENT)]
    return b''.join(chunks) + encode_record(record_type, request_id)


def _length(value: int) -> bytes:
    if value < 128:
        return struct.pack('!B', value)
    if value > 0x7fffffff:
        raise ValueError('a FastCGI name or value is at most 2**31-1 bytes')
    return struct.pack('!I', value | 0x80000000)


def encode_params(params: t.Mapping[str, str]) -> bytes:
    """Name-value pairs in the FastCGI encoding (UTF-8)."""
    out = []
    for name, value in params.items():
        name_b, value_b = name.encode('utf-8'), value.encode('utf-8')
        out.append(_length(len(name_b)) + _length(len(value_b)) + name_b + value_b)
    return b''.join(out)


def decode_params(data: bytes) -> dict[str, str]:
    """The inverse of :func:`encode_params` (FastCGIError on a truncated pair)."""
    result: dict[str, str] = {}
    pos = 0

    def length() -> int:
        nonlocal pos
        if pos >= len(data):
            raise FastCGIError('truncated name-value pair')
        if data[pos] < 128:
            pos += 1
            return data[pos - 1]
        if pos + 4 > len(data):
            raise FastCGIError('truncated name-value pair')
        value = struct.unpack('!I', data[pos:pos + 4])[0] & 0x7fffffff
        pos += 4
        return value

    while pos < len(data):
        name_len = length()
        value_len = length()
        if pos + name_len + value_len > len(data):
            raise FastCGIError('truncated name-value pair')
        name = data[pos:pos + name_len].decode('utf-8', 'replace')
        pos += name_len
        result[name] = data[pos:pos + value_len].decode('utf-8', 'replace')
        pos += value_len
    return result


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    parts = []
    while size:
        chunk = sock.recv(min(size, 65536))
        if not chunk:
            raise FastCGIError('the connection was closed in the middle of a record')
        parts.append(chunk)
        size -= len(chunk)
    return b''.join(parts)


def read_record(sock: socket.socket) -> tuple[int, int, bytes]:
    """``(type, request id, content)`` of the next record (FastCGIError on EOF or a bad header)."""
    header = sock.recv(HEADER.size, socket.MSG_WAITALL)
    if not header:
        raise FastCGIError('the connection was closed before the request ended (no END_REQUEST)')
    if len(header) < HEADER.size:
        header += _recv_exactly(sock, HEADER.size - len(header))
    version, record_type, request_id, length, padding = HEADER.unpack(header)
    if version != VERSION:
        raise FastCGIError('not a FastCGI answer (version byte %d)' % version)
    content = _recv_exactly(sock, length) if length else b''
    if padding:
        _recv_exactly(sock, padding)
    return record_type, request_id, content


# -- one request --------------------------------------------------------------------------------
def request(socket_path: str, params: t.Mapping[str, str], stdin: bytes = b'', timeout: float = 30.0,
            request_id: int = 1) -> Response:
    """Send one responder request over the unix socket ``socket_path`` and collect the answer."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(socket_path)
        except OSError as exc:
            raise FastCGIError('cannot connect to the FastCGI socket %s: %s' % (socket_path, exc.strerror or exc)) from None
        try:
            body = dict(params)
            body.setdefault('CONTENT_LENGTH', str(len(stdin)))
            message = (encode_record(BEGIN_REQUEST, request_id, struct.pack('!HB5x', ROLE_RESPONDER, 0))
                       + encode_stream(PARAMS, request_id, encode_params(body))
                       + encode_stream(STDIN, request_id, stdin))
            sock.sendall(message)
            return _collect(sock, request_id)
        except socket.timeout:
            raise FastCGIError('no complete answer from %s within %s s' % (socket_path, timeout)) from None
        except OSError as exc:
            raise FastCGIError('FastCGI exchange with %s failed: %s' % (socket_path, exc.strerror or exc)) from None
    finally:
        sock.close()


def _collect(sock: socket.socket, request_id: int) -> Response:
    stdout: list[bytes] = []
    stderr: list[bytes] = []
    size = 0
    while True:
        record_type, rid, content = read_record(sock)
        if rid != request_id or record_type not in _RECORD_TYPES:
            continue  # management records or other requests: not ours
        size += len(content)
        if size > MAX_RESPONSE:
            raise FastCGIError('the answer is larger than %d bytes' % MAX_RESPONSE)
        if record_type == STDOUT:
            stdout.append(content)
        elif record_type == STDERR:
            stderr.append(content)
        elif record_type == END_REQUEST:
            if len(content) < 5:
                raise FastCGIError('END_REQUEST record too short')
            app_status, protocol_status = struct.unpack('!IB', content[:5])
            if protocol_status != REQUEST_COMPLETE:
                raise FastCGIError('the FastCGI server refused the request: %s'
                                   % PROTOCOL_STATUS.get(protocol_status, 'protocol status %d' % protocol_status))
            return Response(b''.join(stdout), b''.join(stderr), app_status, protocol_status)


def parse_cgi_response(stdout: bytes) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers with lower-case names, body)`` of a CGI answer (status 200 unless a Status header says)."""
    for separator in (b'\r\n\r\n', b'\n\n'):
        head, found, body = stdout.partition(separator)
        if found:
            break
    else:
        raise FastCGIError('the answer has no CGI header block: %r' % stdout[:200])
    headers: dict[str, str] = {}
    for line in head.decode('latin-1').splitlines():
        name, colon, value = line.partition(':')
        if colon:
            headers[name.strip().lower()] = value.strip()
    status = 200
    if 'status' in headers:
        try:
            status = int(headers['status'].split()[0])
        except (ValueError, IndexError):
            raise FastCGIError('invalid Status header %r' % headers['status']) from None
    return status, headers, body
