# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ``opcache`` module against a fake php-fpm pool that behaves like the PHP script on a fake opcache."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _opcache
from ansible_collections.stagehand.deploy.plugins.modules.opcache import main
from ansible_collections.stagehand.deploy.tests.unit.plugins.module_utils.fake_fastcgi import FakeServer


class FakePool:
    """What opcache.php does, on a set of cached paths (the pool's shared memory)."""

    def __init__(self, cached, enabled=True, stuck=()):
        self.cached = set(cached)
        self.enabled = enabled
        self.stuck = set(stuck)

    def __call__(self, params, stdin):
        payload = json.loads(stdin)
        root = os.path.dirname(os.path.dirname(params['SCRIPT_FILENAME']))
        candidates = [f for f in payload['files'] if f.startswith(root + '/')]
        refused = [f for f in payload['files'] if not f.startswith(root + '/')]
        if payload.get('prefix'):
            candidates += sorted(p for p in self.cached if p.startswith(payload['prefix'] + '/') and p not in candidates)
        out = {'ok': True, 'enabled': self.enabled, 'pid': 42, 'php': '8.2.0', 'listed': True,
               'candidates': len(candidates), 'cached': [], 'invalidated': [], 'still_cached': [], 'gone': [], 'refused': refused}
        if self.enabled:
            for f in candidates:
                if not os.path.exists(f):
                    out['gone'].append(f)
                    continue
                if f in self.cached:
                    out['cached'].append(f)
                if not payload.get('dry') and f in self.cached and f not in self.stuck:
                    self.cached.discard(f)
                    out['invalidated'].append(f)
            if not payload.get('dry'):
                out['still_cached'] = [f for f in out['cached'] if f in self.cached]
            out['ok'] = not out['still_cached']
        return b'Content-Type: application/json\r\n\r\n' + json.dumps(out).encode(), b'', 0


@pytest.fixture
def site(tmp_path):
    root = tmp_path / 'srv'
    for rel in ('slots/a/public/index.php', 'slots/a/src/A.php', 'slots/b/public/index.php'):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('<?php')
    (root / '.stagehand').mkdir()
    sockdir = tempfile.mkdtemp(prefix='fpm')
    yield {'root': str(root), 'sock': os.path.join(sockdir, 'app-fpm.sock')}
    shutil.rmtree(sockdir)


def serve(site, pool):
    return FakeServer(site['sock'], pool)


def test_invalidates_named_files_and_everything_cached_below_the_prefix(site, run_module):
    root = site['root']
    a = os.path.join(root, 'slots', 'a')
    pool = FakePool({a + '/public/index.php', a + '/src/A.php', root + '/slots/b/public/index.php'})
    server = serve(site, pool)
    try:
        result = run_module(main, {'root': root, 'socket': site['sock'], 'prefix': a, 'files': ['public/index.php']})
        again = run_module(main, {'root': root, 'socket': site['sock'], 'prefix': a, 'files': ['public/index.php']})
    finally:
        server.close()
    assert result['changed'] is True, result
    assert sorted(result['invalidated']) == [a + '/public/index.php', a + '/src/A.php']
    assert pool.cached == {root + '/slots/b/public/index.php'}  # the live slot keeps its cache
    assert result['script_written'] is True and again['script_written'] is False
    assert again['changed'] is False and again['invalidated'] == []
    request = server.requests[0]
    script = os.path.join(root, '.stagehand', _opcache.SCRIPT_NAME)
    assert _opcache.SCRIPT_NAME.startswith('opcache-') and script == result['script']
    assert request['params']['SCRIPT_FILENAME'] == script
    assert request['params']['REQUEST_METHOD'] == 'POST'
    assert json.loads(request['stdin']) == {'files': [a + '/public/index.php'], 'prefix': a, 'dry': False}
    st = os.stat(script)
    assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == os.geteuid()
    with open(script) as f:
        assert f.read() == _opcache.SCRIPT


def test_check_mode_asks_but_invalidates_nothing(site, run_module):
    root = site['root']
    a = os.path.join(root, 'slots', 'a')
    _opcache.ensure_script(root)
    pool = FakePool({a + '/public/index.php'})
    server = serve(site, pool)
    try:
        result = run_module(main, {'root': root, 'socket': site['sock'], 'prefix': a}, check_mode=True)
    finally:
        server.close()
    assert result['changed'] is True and result['cached'] == [a + '/public/index.php'] and result['invalidated'] == []
    assert pool.cached == {a + '/public/index.php'}
    assert json.loads(server.requests[0]['stdin'])['dry'] is True


def test_check_mode_without_the_script_writes_nothing(site, run_module, snapshot):
    before = snapshot(site['root'])
    server = serve(site, FakePool(set()))
    try:
        result = run_module(main, {'root': site['root'], 'socket': site['sock']}, check_mode=True)
    finally:
        server.close()
    assert result['changed'] is True and server.requests == []
    assert snapshot(site['root']) == before


def test_still_cached_fails(site, run_module):
    root = site['root']
    a = os.path.join(root, 'slots', 'a')
    server = serve(site, FakePool({a + '/src/A.php'}, stuck={a + '/src/A.php'}))
    try:
        result = run_module(main, {'root': root, 'socket': site['sock'], 'prefix': a})
    finally:
        server.close()
    assert result['failed'] is True and 'still holds 1' in result['msg'] and result['still_cached'] == [a + '/src/A.php']


def test_opcache_disabled_is_reported_without_change(site, run_module):
    _opcache.ensure_script(site['root'])
    server = serve(site, FakePool(set(), enabled=False))
    try:
        result = run_module(main, {'root': site['root'], 'socket': site['sock'], 'prefix': site['root'] + '/slots/a'})
    finally:
        server.close()
    assert result['changed'] is False and result['enabled'] is False


def test_paths_outside_the_root_are_refused_before_anything(site, run_module, snapshot):
    before = snapshot(site['root'])
    server = serve(site, FakePool(set()))
    try:
        outside = run_module(main, {'root': site['root'], 'socket': site['sock'], 'files': ['/etc/passwd']})
        dotdot = run_module(main, {'root': site['root'], 'socket': site['sock'], 'files': ['../../etc/passwd']})
        prefix = run_module(main, {'root': site['root'], 'socket': site['sock'], 'prefix': '/etc'})
    finally:
        server.close()
    assert outside['failed'] is True and '/etc/passwd' in outside['msg']
    assert dotdot['failed'] is True and 'outside the deploy root' in dotdot['msg']
    assert prefix['failed'] is True and '/etc' in prefix['msg']
    assert server.requests == []
    assert snapshot(site['root']) == before


def test_missing_socket_and_bad_answers(site, run_module, snapshot):
    before = snapshot(site['root'])
    result = run_module(main, {'root': site['root'], 'socket': site['sock']})
    assert result['failed'] is True and 'does not exist' in result['msg']
    assert snapshot(site['root']) == before
    server = FakeServer(site['sock'], lambda p, s: (b'Status: 404 Not Found\r\n\r\nFile not found.', b'Primary script unknown', 0))
    try:
        result = run_module(main, {'root': site['root'], 'socket': site['sock']})
    finally:
        server.close()
    assert result['failed'] is True and 'status 404' in result['msg'] and 'Primary script unknown' in result['msg']


def test_bad_timeout(site, run_module):
    result = run_module(main, {'root': site['root'], 'socket': site['sock'], 'timeout': 0})
    assert result['failed'] is True and 'timeout' in result['msg']


def test_an_old_script_is_replaced_by_a_new_path(site):
    """opcache may keep a compiled script forever: a new version must be a new file, the old one removed."""
    state = os.path.join(site['root'], '.stagehand')
    old = os.path.join(state, 'opcache-0123456789abcdef.php')
    with open(old, 'w') as f:
        f.write('<?php // an older version')
    assert _opcache.ensure_script(site['root']) is True
    assert sorted(os.listdir(state)) == [_opcache.SCRIPT_NAME]
    assert _opcache.ensure_script(site['root']) is False


def test_script_refuses_outside_paths_itself():
    """The PHP script checks paths against its own root too (defence in depth)."""
    assert "strncmp($path, $root . '/'" in _opcache.SCRIPT
    assert "opcache_invalidate($file, true)" in _opcache.SCRIPT


def _php_with_opcache():
    php = shutil.which('php')
    if php is None:
        return None
    import subprocess  # pylint: disable=import-outside-toplevel
    out = subprocess.run([php, '-m'], capture_output=True, text=True, check=False).stdout
    return php if 'Zend OPcache' in out else None


@pytest.mark.skipif(_php_with_opcache() is None, reason='needs php with the opcache extension')
def test_the_real_script_makes_php_drop_stale_code(tmp_path):
    """The PHP script itself, in PHP's built-in server with opcache on and timestamps never checked.

    Replacing a file in place (a new inode at the same path, as the slot patch does) leaves the old code
    cached; the script invalidates it and the next request runs the new code. Served over HTTP here (the
    FastCGI transport is tested against the fake pool above and in the molecule scenario ``slots``).
    """
    import socket  # pylint: disable=import-outside-toplevel
    import subprocess  # pylint: disable=import-outside-toplevel
    import urllib.request  # pylint: disable=import-outside-toplevel
    import time  # pylint: disable=import-outside-toplevel
    root = tmp_path / 'srv'
    slot = root / 'slots' / 'a'
    slot.mkdir(parents=True)
    (root / '.stagehand').mkdir()
    _opcache.ensure_script(str(root))
    (slot / 'x.php').write_text('<?php return "one";')
    (slot / 'index.php').write_text("<?php echo include __DIR__ . '/x.php';")
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([_php_with_opcache(), '-d', 'opcache.enable_cli=1', '-d', 'opcache.validate_timestamps=0',
                             '-d', 'opcache.file_update_protection=0', '-S', '127.0.0.1:%d' % port, '-t', str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = 'http://127.0.0.1:%d' % port

    def get(path, data=None):
        return urllib.request.urlopen(base + path, data=data, timeout=10).read().decode()  # nosec: loopback test server

    try:
        for _attempt in range(100):  # wait until the server listens
            try:
                first = get('/slots/a/index.php')
                break
            except OSError:
                time.sleep(0.05)
        assert first == 'one'
        (slot / 'x.new').write_text('<?php return "two";')
        os.rename(slot / 'x.new', slot / 'x.php')
        assert get('/slots/a/index.php') == 'one'  # stale: what slots mode must prevent
        payload = json.dumps({'files': [], 'prefix': str(slot), 'dry': False}).encode()
        answer = json.loads(get('/.stagehand/' + _opcache.SCRIPT_NAME, payload))
        assert answer['enabled'] is True and answer['listed'] is True
        assert sorted(answer['invalidated']) == [str(slot / 'index.php'), str(slot / 'x.php')]
        assert answer['still_cached'] == [] and answer['ok'] is True
        assert get('/slots/a/index.php') == 'two'
        refused = json.loads(get('/.stagehand/' + _opcache.SCRIPT_NAME, json.dumps({'files': ['/etc/passwd']}).encode()))
        assert refused['refused'] == ['/etc/passwd'] and refused['invalidated'] == []
    finally:
        proc.terminate()
        proc.wait(timeout=10)
