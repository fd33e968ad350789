# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""_switch internals: crash windows, the RENAME_EXCHANGE fallback, and the _state helpers it relies on."""

from __future__ import annotations

import datetime
import errno
import http.server
import os
import socket
import threading

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _atomic, _switch
from ansible_collections.stagehand.deploy.plugins.module_utils._names import InvalidName
from ansible_collections.stagehand.deploy.plugins.module_utils._state import (
    DeployRoot,
    check_link_name,
    format_utc,
)
from ansible_collections.stagehand.deploy.tests.unit.releases import write_release


def make_release(root, name, status='complete', meta=True):
    write_release(root, name, status=status, meta=meta, failed_reason=None)


@pytest.fixture
def root(tmp_path):
    r = tmp_path / 'app'
    r.mkdir()
    for name in ('v1', 'v2', 'v3'):
        make_release(r, name)
    return str(r)


def meta(root, name):
    return DeployRoot(root).read_meta(name)


def make_plain_current(root):
    current = os.path.join(root, 'current')
    os.mkdir(current)
    with open(os.path.join(current, 'index.php'), 'w') as f:
        f.write('legacy')
    return current


class Crash(Exception):
    pass


def crash_after_link(monkeypatch):
    """Make apply_switch die right after the link changed, before the 'after' metadata writes."""
    real = _switch._write_ops

    def write_ops(droot, ops, phases):
        if phases == ('after',):
            raise Crash()
        return real(droot, ops, phases)

    monkeypatch.setattr(_switch, '_write_ops', write_ops)


# -- crash windows -------------------------------------------------------------
def test_crash_after_rename_is_repaired_by_next_call(root, monkeypatch):
    _switch.switch(root, release='v1')
    with monkeypatch.context() as m:
        crash_after_link(m)
        with pytest.raises(Crash):
            _switch.switch(root, release='v2')
    # The symlink moved; the metadata only holds the intent.
    assert os.readlink(os.path.join(root, 'current')) == 'releases/v2'
    assert meta(root, 'v2')['previous'] == 'v1' and meta(root, 'v2')['activated'] is None
    assert meta(root, 'v1')['next'] is None
    assert DeployRoot(root).chain() == {'live': 'v2', 'previous': 'v1', 'next': None}
    # Rolling back right away works and commits the interrupted activation first.
    res = _switch.switch(root, target='previous')
    assert res['current'] == 'v1' and res['changed'] is True
    assert meta(root, 'v1')['next'] == 'v2' and meta(root, 'v2')['activated']


def test_crash_during_migration_after_exchange(root, monkeypatch):
    make_plain_current(root)
    with monkeypatch.context() as m:
        crash_after_link(m)
        with pytest.raises(Crash):
            _switch.switch(root, release='v2', migrate_name='legacy')
    # The old site is already a complete release, the new one live but not committed.
    assert os.readlink(os.path.join(root, 'current')) == 'releases/v2'
    assert DeployRoot(root).release_status('legacy') == 'complete'
    assert meta(root, 'v2')['previous'] == 'legacy' and meta(root, 'v2')['activated'] is None
    res = _switch.switch(root, release='v2')
    assert res['changed'] is True and res['chain'] == {'live': 'v2', 'previous': 'legacy', 'next': None}
    res = _switch.switch(root, target='previous')
    assert res['current'] == 'legacy'
    with open(os.path.join(root, 'current', 'index.php')) as f:
        assert f.read() == 'legacy'


def test_link_failure_takes_the_intent_back(root, monkeypatch, snapshot):
    _switch.switch(root, release='v1')
    before = snapshot(root)

    def boom(link, target):
        raise OSError(errno.EIO, 'simulated I/O error')

    monkeypatch.setattr(_atomic, 'replace_symlink', boom)
    with pytest.raises(OSError):
        _switch.switch(root, release='v2')
    after = snapshot(root)
    # The intent written to v2's metadata was put back (same content; the file was rewritten, so not the same mtime).
    for snap in (before, after):
        snap['.stagehand/releases/v2.json'].pop('mtime_ns')
    assert after == before


# -- migration without RENAME_EXCHANGE ----------------------------------------
@pytest.mark.parametrize('code', [errno.EINVAL, errno.ENOSYS])
def test_migration_falls_back_when_exchange_unsupported(root, monkeypatch, code):
    make_plain_current(root)

    def unsupported(a, b):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(_atomic, 'exchange', unsupported)
    res = _switch.switch(root, release='v2', migrate_name='legacy')
    assert res['changed'] is True and res['migrated'] == 'legacy'
    assert len(res['warnings']) == 1
    assert 'brief gap' in res['warnings'][0] and os.strerror(code) in res['warnings'][0]
    assert os.readlink(os.path.join(root, 'current')) == 'releases/v2'
    with open(os.path.join(root, 'releases', 'legacy', 'index.php')) as f:
        assert f.read() == 'legacy'
    assert meta(root, 'v2')['previous'] == 'legacy'
    assert sorted(os.listdir(root)) == ['.stagehand', 'current', 'releases']


def test_migration_other_exchange_error_changes_nothing(tmp_path, monkeypatch, snapshot):
    root = str(tmp_path / 'ab')
    os.makedirs(os.path.join(root, 'slots', 'a'))
    DeployRoot(root).write_slot_meta('a', {'name': 'a', 'status': 'complete', 'release': 'v1'})
    make_plain_current(root)
    before = snapshot(root)

    def cross_device(a, b):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(_atomic, 'exchange', cross_device)
    with pytest.raises(OSError) as exc:
        _switch.switch(root, mode='slots', target='a', migrate_name='legacy')
    assert exc.value.errno == errno.EXDEV
    assert snapshot(root) == before  # no releases/ dir, no metadata, no stray symlink


def test_real_exchange_is_used(root, monkeypatch):
    calls = []
    real = _atomic.exchange

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(_atomic, 'exchange', spy)
    make_plain_current(root)
    res = _switch.switch(root, release='v1', migrate_name='legacy')
    assert res['warnings'] == []
    assert calls == [(os.path.join(root, 'releases', 'legacy'), os.path.join(root, 'current'))]


def test_default_migrate_name_uses_utc():
    moment = datetime.datetime(2026, 11, 22, 11, 30, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    assert _switch.default_migrate_name(moment) == 'migrated-20261122T103005'
    assert format_utc(moment) == '2026-11-22T10:30:05Z'


def test_plan_writes_nothing(root, snapshot):
    _switch.switch(root, release='v1')
    before = snapshot(root)
    plan = _switch.plan_switch(root, release='v2')
    assert plan.changed and plan.link_changes
    assert [op[:2] for op in plan.meta.ops] == [('before', 'v2'), ('after', 'v1'), ('after', 'v2')]
    assert snapshot(root) == before


# -- _state helpers --------------------------------------------------------------
@pytest.mark.parametrize('text, expected', [
    ('releases/v1', ('releases', 'v1')),
    ('./releases/v1/', ('releases', 'v1')),
    ('../app/releases/v1', ('releases', 'v1')),
    ('slots/b', ('slots', 'b')),
    ('slots/c', (None, None)),
    ('releases', (None, None)),
    ('releases/v1/public', (None, None)),
    ('releases/.hidden', (None, None)),
    ('/etc', (None, None)),
    ('../other/releases/v1', (None, None)),
])
def test_designates(root, text, expected):
    assert DeployRoot(root).designates(text) == expected


def test_designates_absolute(root):
    assert DeployRoot(root).designates(os.path.join(root, 'releases', 'v2')) == ('releases', 'v2')


def test_inspect_current_kinds(root):
    d = DeployRoot(root)
    assert d.inspect_current()['kind'] == 'missing'
    os.symlink('releases/v1', d.current)
    assert d.inspect_current() == {'kind': 'symlink', 'target': 'releases/v1', 'mode': 'releases', 'name': 'v1'}
    os.unlink(d.current)
    os.symlink('nowhere', d.current)
    assert d.inspect_current() == {'kind': 'symlink', 'target': 'nowhere', 'mode': None, 'name': None}
    os.unlink(d.current)
    os.mkdir(d.current)
    assert d.inspect_current()['kind'] == 'directory'
    os.rmdir(d.current)
    with open(d.current, 'w') as f:
        f.write('x')
    assert d.inspect_current()['kind'] == 'other'


@pytest.mark.parametrize('name', ['releases', 'slots', 'shared', '.stagehand', '', 'a/b', '..'])
def test_check_link_name_refuses(name):
    with pytest.raises(InvalidName):
        check_link_name(name)


def test_meta_names_and_slot_status(root):
    d = DeployRoot(root)
    os.makedirs(d.meta_dir, exist_ok=True)
    with open(os.path.join(d.meta_dir, '.junk.json'), 'w') as f:
        f.write('{}')
    assert d.meta_names() == ['v1', 'v2', 'v3']
    assert d.slot_status('a') == 'incomplete'
    os.makedirs(d.slot_path('a'))
    assert d.slot_status('a') == 'incomplete'
    d.write_slot_meta('a', {'name': 'a', 'status': 'failed'})
    assert d.slot_status('a') == 'failed'
    d.write_slot_meta('a', {'name': 'a', 'status': 'complete'})
    assert d.slot_status('a') == 'complete'
    assert d.slot_chain('b') == {'live': 'b', 'previous': 'a', 'next': None}
    assert d.slot_chain('a') == {'live': 'a', 'previous': None, 'next': None}
    assert d.slot_chain(None) == {'live': None, 'previous': None, 'next': None}


class _Handler(http.server.BaseHTTPRequestHandler):
    """/ok answers 200 with X-Release: v7, /moved redirects to /ok, /bad answers 503."""

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        if self.path == '/moved':
            self.send_response(302)
            self.send_header('Location', '/ok')
            self.end_headers()
            return
        code = 200 if self.path == '/ok' else 503
        body = ('release v7 at %s' % self.path).encode()
        self.send_response(code)
        self.send_header('x-release', 'v7')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


@pytest.fixture(name='http_base')
def fixture_http_base():
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield 'http://127.0.0.1:%d' % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_plain_http_get_reads_status_header_and_body(http_base):
    assert _switch.fetch_url_status(http_base + '/ok', 'X-Release', 2) == (200, 'v7', 'release v7 at /ok', None)
    assert _switch.fetch_url_status(http_base + '/bad?x=1#frag', 'X-Release', 2) == (503, 'v7', 'release v7 at /bad?x=1', None)
    assert _switch.fetch_url_status(http_base + '/ok', '', 2)[1] is None


def test_a_redirect_is_followed_by_the_standard_library(http_base):
    assert _switch.fetch_url_status(http_base + '/moved', 'X-Release', 2) == (200, 'v7', 'release v7 at /ok', None)


def test_nothing_listening_is_a_connect_error():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    status, value, body, error = _switch.fetch_url_status('http://127.0.0.1:%d/health' % port, 'X-Release', 1)
    assert (status, value, body) == (None, None, '') and error.startswith('cannot connect:')


@pytest.mark.parametrize('url, expected', [
    ('http://127.0.0.1/health', ('127.0.0.1', 80, '127.0.0.1', '/health')),
    ('http://web1:8080', ('web1', 8080, 'web1:8080', '/')),
    ('http://[::1]:81/h?x', ('::1', 81, '[::1]:81', '/h?x')),
    ('HTTP://example.org?x', ('example.org', 80, 'example.org', '/?x')),
    ('https://127.0.0.1/health', None),
    ('http://user:pw@127.0.0.1/health', None),
    ('http://127.0.0.1:http/health', None),
])
def test_which_urls_are_fetched_over_a_plain_socket(url, expected):
    assert _switch._plain_http_target(url) == expected  # pylint: disable=protected-access
