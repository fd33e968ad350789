# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The minimal FastCGI client, against a fake responder on a unix socket."""

from __future__ import annotations

import os
import struct
import tempfile

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _fastcgi

from ansible_collections.stagehand.deploy.tests.unit.plugins.module_utils.fake_fastcgi import FakeServer


@pytest.fixture
def sock_path():
    # unix socket paths are limited to ~107 bytes: tmp_path can be too long
    directory = tempfile.mkdtemp(prefix='fcgi')
    yield os.path.join(directory, 's')
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    os.rmdir(directory)


def test_record_encoding_pads_to_eight_bytes():
    record = _fastcgi.encode_record(_fastcgi.STDIN, 3, b'abc')
    assert len(record) == 8 + 8
    assert record[:8] == struct.pack('!BBHHBx', 1, _fastcgi.STDIN, 3, 3, 5)
    assert record[8:11] == b'abc' and record[11:] == b'\x00' * 5
    with pytest.raises(ValueError):
        _fastcgi.encode_record(_fastcgi.STDIN, 1, b'x' * 70000)


def test_params_round_trip_with_long_values():
    params = {'SCRIPT_FILENAME': '/srv/x.php', 'LONG': 'v' * 300, 'E': '', 'Ü': 'ä'}
    encoded = _fastcgi.encode_params(params)
    assert encoded[0] == len('SCRIPT_FILENAME')
    assert _fastcgi.decode_params(encoded) == params
    with pytest.raises(_fastcgi.FastCGIError):
        _fastcgi.decode_params(encoded[:-1])


def test_request_round_trip(sock_path):
    body = b'{"files": []}' * 10000  # more than one STDIN record

    def handler(params, stdin):
        return (b'Status: 201 Created\r\nContent-Type: application/json\r\n\r\n' + str(len(stdin)).encode(),
                b'a warning', 0)

    server = FakeServer(sock_path, handler, chunk=7)
    try:
        response = _fastcgi.request(sock_path, {'SCRIPT_FILENAME': '/x/y.php', 'REQUEST_METHOD': 'POST'}, body, timeout=5)
    finally:
        server.close()
    seen = server.requests[0]
    assert seen['begin'] == (1, (_fastcgi.ROLE_RESPONDER, 0))
    assert seen['params']['SCRIPT_FILENAME'] == '/x/y.php'
    assert seen['params']['CONTENT_LENGTH'] == str(len(body))
    assert seen['stdin'] == body
    assert response.stderr == b'a warning' and response.app_status == 0
    status, headers, text = _fastcgi.parse_cgi_response(response.stdout)
    assert status == 201 and headers['content-type'] == 'application/json' and text == str(len(body)).encode()


def test_parse_cgi_response_defaults_to_200_and_refuses_garbage():
    assert _fastcgi.parse_cgi_response(b'X-A: 1\n\nbody') == (200, {'x-a': '1'}, b'body')
    with pytest.raises(_fastcgi.FastCGIError):
        _fastcgi.parse_cgi_response(b'no header block')
    with pytest.raises(_fastcgi.FastCGIError):
        _fastcgi.parse_cgi_response(b'Status: abc\r\n\r\n')


def test_connection_refused_is_a_clear_error(sock_path):
    with pytest.raises(_fastcgi.FastCGIError, match='cannot connect to the FastCGI socket'):
        _fastcgi.request(sock_path, {}, b'', timeout=2)


def test_connection_closed_before_end_request(sock_path):
    server = FakeServer(sock_path, lambda p, s: (b'', b'', 0), raw=_fastcgi.encode_record(_fastcgi.STDOUT, 1, b'partial'))
    try:
        with pytest.raises(_fastcgi.FastCGIError, match='closed'):
            _fastcgi.request(sock_path, {}, b'', timeout=5)
    finally:
        server.close()


def test_refused_by_the_server(sock_path):
    raw = _fastcgi.encode_record(_fastcgi.END_REQUEST, 1, struct.pack('!IB3x', 0, 2))
    server = FakeServer(sock_path, lambda p, s: (b'', b'', 0), raw=raw)
    try:
        with pytest.raises(_fastcgi.FastCGIError, match='overloaded'):
            _fastcgi.request(sock_path, {}, b'', timeout=5)
    finally:
        server.close()


def test_not_fastcgi(sock_path):
    server = FakeServer(sock_path, lambda p, s: (b'', b'', 0), raw=b'HTTP/1.1 400 Bad Request\r\n\r\n')
    try:
        with pytest.raises(_fastcgi.FastCGIError, match='not a FastCGI answer'):
            _fastcgi.request(sock_path, {}, b'', timeout=5)
    finally:
        server.close()
