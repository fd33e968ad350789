# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A fake FastCGI responder on a unix socket, for the tests of _fastcgi and _opcache (one thread, one request per connection)."""

from __future__ import annotations

import os
import socket
import struct
import threading
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils import _fastcgi

Handler = t.Callable[[t.Dict[str, str], bytes], t.Tuple[bytes, bytes, int]]


class FakeServer:
    """Serves ``handler(params, stdin) -> (stdout, stderr, app_status)``; keeps every request seen."""

    def __init__(self, path: str, handler: Handler, chunk: int = 100, raw: bytes | None = None) -> None:
        self.path = path
        self.handler = handler
        self.chunk = chunk
        self.raw = raw
        self.requests: list[dict[str, t.Any]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    self._one(conn)
                except (OSError, _fastcgi.FastCGIError):
                    pass

    def _one(self, conn: socket.socket) -> None:
        params = b''
        stdin = b''
        begin = None
        while True:
            record_type, request_id, content = _fastcgi.read_record(conn)
            if record_type == _fastcgi.BEGIN_REQUEST:
                begin = (request_id, struct.unpack('!HB', content[:3]))
            elif record_type == _fastcgi.PARAMS:
                params += content
            elif record_type == _fastcgi.STDIN:
                if not content:
                    break
                stdin += content
        decoded = _fastcgi.decode_params(params)
        self.requests.append({'begin': begin, 'params': decoded, 'stdin': stdin})
        if self.raw is not None:
            conn.sendall(self.raw)
            return
        stdout, stderr, status = self.handler(decoded, stdin)
        rid = begin[0] if begin else 1
        out = b''
        # a management record for another request id first: the client must skip it
        out += _fastcgi.encode_record(_fastcgi.STDOUT, rid + 7, b'not for you')
        for i in range(0, len(stdout), self.chunk):
            out += _fastcgi.encode_record(_fastcgi.STDOUT, rid, stdout[i:i + self.chunk])
        if stderr:
            out += _fastcgi.encode_record(_fastcgi.STDERR, rid, stderr)
        out += _fastcgi.encode_record(_fastcgi.STDOUT, rid)
        out += _fastcgi.encode_record(_fastcgi.END_REQUEST, rid, struct.pack('!IB3x', status, 0))
        conn.sendall(out)

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
