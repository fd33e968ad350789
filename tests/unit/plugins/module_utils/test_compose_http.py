# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The HTTP(S) artifact store, against a loopback http.server that also accepts PUT."""

from __future__ import annotations

import http.server
import json
import os
import threading
import urllib.parse

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils._compose import ComposeError, run

from test_compose import commit_change, make_repo, params  # pylint: disable=import-error


class Handler(http.server.BaseHTTPRequestHandler):
    root = ''
    fail_put: list[str] = []
    log: list[tuple[str, str]] = []

    def _path(self):
        rel = urllib.parse.unquote(urllib.parse.urlparse(self.path).path).lstrip('/')
        if '..' in rel.split('/'):
            return None
        return os.path.join(self.root, rel)

    def do_GET(self):  # noqa: N802
        self.log.append(('GET', self.path))
        path = self._path()
        if path is None or not os.path.isfile(path):
            self.send_response(404)
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        with open(path, 'rb') as f:
            data = f.read()
        self.send_response(200)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):  # noqa: N802
        self.log.append(('PUT', self.path))
        path = self._path()
        data = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        if path is None or any(s in self.path for s in self.fail_put):
            self.send_response(500)
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + '.part'
        with open(tmp, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
        self.send_response(201)
        self.send_header('Content-Length', '0')
        self.end_headers()

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / 'remote'
    root.mkdir()
    handler = type('H', (Handler,), {'root': str(root), 'fail_put': [], 'log': []})
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield 'http://127.0.0.1:%d/store' % httpd.server_address[1], root, handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_publish_with_put_and_reuse_with_get(tmp_path, server):
    url, remote, handler = server
    repo = make_repo(tmp_path / 'repo')
    first = run(params(repo, url, cache=str(tmp_path / 'cache1')))
    hexid = first['compose_id'].split(':')[1]
    base = remote / 'store' / 'shop'
    for name in ('artifact.tar.gz', 'manifest.json', 'inputs.json'):
        assert (base / 'composes' / hexid / name).is_file(), name
    ref = json.loads((base / 'refs' / 'v1.json').read_text())
    assert ref['compose_id'] == first['compose_id']
    # the ref pointer is written last, after every compose file
    puts = [p for m, p in handler.log if m == 'PUT']
    assert puts[-1].endswith('/refs/v1.json')
    assert first['store'] == url + '/shop'
    assert first['artifact'].startswith(str(tmp_path / 'cache1'))
    with open(first['artifact'], 'rb') as f:
        assert f.read() == (base / 'composes' / hexid / 'artifact.tar.gz').read_bytes()
    # another controller (an empty cache) reuses it: downloads and verifies, builds nothing, PUTs nothing
    del handler.log[:]
    second = run(params(repo, url, cache=str(tmp_path / 'cache2')))
    assert second['reused'] is True and second['changed'] is False
    assert second['compose_id'] == first['compose_id']
    assert not [m for m, _p in handler.log if m == 'PUT']
    with open(second['artifact'], 'rb') as a, open(first['artifact'], 'rb') as b:
        assert a.read() == b.read()


def test_failed_build_leaves_the_remote_untouched(tmp_path, server, snapshot):
    url, remote, _handler = server
    repo = make_repo(tmp_path / 'repo')
    good = run(params(repo, url, ref='main', release='m1', cache=str(tmp_path / 'cache')))
    before = snapshot(str(remote))
    commit_change(repo, build_fails=True)
    with pytest.raises(ComposeError) as exc:
        run(params(repo, url, ref='main', release='m2', cache=str(tmp_path / 'cache')))
    assert 'the last good compose of main (%s) is unchanged' % good['compose_id'] in exc.value.msg
    assert snapshot(str(remote)) == before


def test_failed_upload_does_not_move_the_ref(tmp_path, server):
    url, remote, handler = server
    repo = make_repo(tmp_path / 'repo')
    good = run(params(repo, url, ref='main', release='m1', cache=str(tmp_path / 'cache')))
    commit_change(repo)
    handler.fail_put.append('artifact.tar.gz')
    with pytest.raises(ComposeError) as exc:
        run(params(repo, url, ref='main', release='m2', cache=str(tmp_path / 'cache')))
    assert 'PUT' in exc.value.msg and 'HTTP 500' in exc.value.msg
    assert 'the last good compose of main (%s) is unchanged' % good['compose_id'] in exc.value.msg
    ref = json.loads((remote / 'store' / 'shop' / 'refs' / 'main.json').read_text())
    assert ref['compose_id'] == good['compose_id']
    # once the server works again the next run publishes
    del handler.fail_put[:]
    ok = run(params(repo, url, ref='main', release='m2', cache=str(tmp_path / 'cache')))
    assert json.loads((remote / 'store' / 'shop' / 'refs' / 'main.json').read_text())['compose_id'] == ok['compose_id']


def test_corrupt_remote_compose_is_not_reused(tmp_path, server):
    url, remote, _handler = server
    repo = make_repo(tmp_path / 'repo')
    first = run(params(repo, url, cache=str(tmp_path / 'cache1')))
    hexid = first['compose_id'].split(':')[1]
    artifact = remote / 'store' / 'shop' / 'composes' / hexid / 'artifact.tar.gz'
    artifact.write_bytes(artifact.read_bytes()[:-100])
    second = run(params(repo, url, cache=str(tmp_path / 'cache2')))
    assert second['reused'] is False and second['compose_id'] == first['compose_id']


def test_unreachable_store(tmp_path):
    repo = make_repo(tmp_path / 'repo')
    with pytest.raises(ComposeError) as exc:
        run(params(repo, 'http://127.0.0.1:9/store', cache=str(tmp_path / 'cache')))
    assert 'GET http://127.0.0.1:9/store/shop/refs/v1.json failed' in exc.value.msg


def test_other_scheme_is_refused(tmp_path):
    repo = make_repo(tmp_path / 'repo')
    with pytest.raises(ComposeError) as exc:
        run(params(repo, 's3://bucket/x'))
    assert 'use a local directory or an http:// or https:// URL' in exc.value.msg


def test_signature_is_published_and_added_on_reuse(tmp_path, server):
    import shutil
    import subprocess
    if shutil.which('ssh-keygen') is None:
        pytest.skip('needs ssh-keygen')
    url, remote, _handler = server
    key = str(tmp_path / 'key')
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key], check=True)
    repo = make_repo(tmp_path / 'repo')
    unsigned = run(params(repo, url, cache=str(tmp_path / 'cache')))
    sig = remote / 'store' / 'shop' / 'composes' / unsigned['compose_id'].split(':')[1] / 'manifest.json.sig'
    assert not sig.exists()
    signed = run(params(repo, url, cache=str(tmp_path / 'other-cache'), signing_key=key))
    assert signed['reused'] is True and signed['changed'] is True
    assert sig.read_bytes() == open(signed['signature'], 'rb').read()


def test_check_mode_downloads_nothing(tmp_path, server, snapshot):
    url, remote, handler = server
    repo = make_repo(tmp_path / 'repo')
    first = run(params(repo, url, cache=str(tmp_path / 'cache1')))
    before = snapshot(str(remote))
    result = run(params(repo, url, cache=str(tmp_path / 'cache2')), check_mode=True)
    assert result['reused'] is True and result['changed'] is False and result['compose_id'] == first['compose_id']
    assert not (tmp_path / 'cache2').exists()
    assert snapshot(str(remote)) == before
