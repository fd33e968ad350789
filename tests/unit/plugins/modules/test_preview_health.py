# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""preview_health: the staged release checked through the preview server before it goes live.

The server plays nginx's preview server: for each request it resolves ``<root>/preview``
right then and answers as the release there would (status from its ``HEALTH`` file,
``X-Release`` from its ``RELEASE`` file). ``current`` is never read by it, and every test
that fails a check proves that ``current`` and the releases did not change.
"""

from __future__ import annotations

import os
import socket
import threading

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _preview_health, _switch
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot
from ansible_collections.stagehand.deploy.plugins.modules.preview_health import main
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules.test_switch_health import AppServer, make_release


class PreviewServer(AppServer):
    """The preview server: answers from whatever ``<root>/preview`` points at when the request comes."""

    link = 'preview'

    @property
    def port(self):
        return self.server_address[1]


@pytest.fixture
def root(tmp_path):
    r = tmp_path / 'app'
    r.mkdir()
    make_release(r, 'v1')
    make_release(r, 'v2')
    os.symlink('releases/v1', str(r / 'current'))
    return r


@pytest.fixture
def preview(root):
    server = PreviewServer(root)
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def check(run_module, root, port, check_mode=False, **args):
    args.setdefault('root', str(root))
    args.setdefault('release', 'v2')
    args.setdefault('health_url', 'http://127.0.0.1/health')
    args.setdefault('health_timeout', 1)
    args.setdefault('port', port)
    return run_module(main, args, check_mode=check_mode)


def without_preview(snap):
    return {path: entry for path, entry in snap.items() if path != 'preview'}


@pytest.mark.parametrize('url, expected', [
    ('http://127.0.0.1/health', 'http://127.0.0.1:8180/health'),
    ('https://shop.example.com:8443/health?deep=1#top', 'http://127.0.0.1:8180/health?deep=1'),
    ('http://[::1]:80', 'http://127.0.0.1:8180/'),
    ('http://shop?x=1', 'http://127.0.0.1:8180/?x=1'),
])
def test_the_preview_url_keeps_the_path_and_query_on_the_loopback(url, expected):
    assert _preview_health.preview_url(url, 8180) == expected


@pytest.mark.parametrize('port', [-1, 65536, '8180', True, 1.5])
def test_a_bad_port_is_refused_naming_it(port):
    with pytest.raises(_switch.SwitchError, match=r'preview port %s is invalid: .*nginx_preview_port' % repr(port).replace('.', r'\.')):
        _preview_health.check_port(port)


def test_a_healthy_staged_release_passes_and_a_second_run_changes_nothing(run_module, root, preview, snapshot):
    before = snapshot(str(root))
    res = check(run_module, root, preview.port)
    assert res['changed'] is True and res['health']['ok'] is True and res['health']['release'] == 'v2'
    assert res['url'] == 'http://127.0.0.1:%d/health' % preview.port
    assert os.readlink(str(root / 'preview')) == 'releases/v2'
    assert without_preview(snapshot(str(root))) == before  # current and every release as they were
    again = check(run_module, root, preview.port)
    assert again['changed'] is False and again['health']['ok'] is True


def test_a_failing_staged_release_fails_the_check_and_nothing_else_changes(run_module, root, preview, snapshot):
    with open(str(root / 'releases' / 'v2' / 'HEALTH'), 'w') as f:
        f.write('500\n')
    before = snapshot(str(root))
    res = check(run_module, root, preview.port)
    assert res['failed'] is True
    assert 'v2 did not pass its preview check before going live: http://127.0.0.1:%d/health answered HTTP status 500' % preview.port in res['msg']
    assert 'current was not touched (v1 is live)' in res['msg']
    assert res['health']['attempts'] >= 2  # retried until the timeout, as the health check is
    assert os.readlink(str(root / 'current')) == 'releases/v1'
    assert without_preview(snapshot(str(root))) == before


def test_an_answer_from_another_release_says_the_preview_root_is_wrong(run_module, root, preview):
    preview.script = [(200, 'v1')] * 10
    res = check(run_module, root, preview.port, health_timeout=0.2)
    assert res['failed'] is True
    assert "X-Release is 'v1', expected 'v2'" in res['msg'] and 'nginx_preview_root' in res['msg']


def test_no_preview_server_says_how_to_add_it_or_go_without(run_module, root):
    res = check(run_module, root, free_port(), health_timeout=0.2)
    assert res['failed'] is True
    assert 'cannot connect' in res['msg'] and 'nginx_preview_port' in res['msg'] and 'deploy_preview_port: 0' in res['msg']


def test_check_mode_points_nothing_and_requests_nothing(run_module, root, preview, snapshot):
    before = snapshot(str(root))
    res = check(run_module, root, preview.port, check_mode=True)
    assert res['changed'] is True and res['health'] is None and res['link'].endswith('preview -> releases/v2')
    assert preview.requests == []
    assert snapshot(str(root)) == before


def test_diff_mode_shows_the_link_before_and_after(run_module, root, preview):
    check(run_module, root, preview.port, release='v1')
    res = run_module(main, {'root': str(root), 'release': 'v2', 'health_url': 'http://127.0.0.1/health', 'health_timeout': 1,
                            'port': preview.port}, diff=True)
    assert res['diff']['before'].endswith('preview -> releases/v1\n') and res['diff']['after'].endswith('preview -> releases/v2\n')


def test_port_zero_or_no_health_url_checks_nothing(run_module, root, snapshot):
    before = snapshot(str(root))
    assert check(run_module, root, 0)['skipped_check'] is True
    res = run_module(main, {'root': str(root), 'release': 'v2', 'port': 8180})
    assert res['skipped_check'] is True and res['changed'] is False
    assert snapshot(str(root)) == before


@pytest.mark.parametrize('args, message', [
    ({'release': '../v2'}, 'release name'),
    ({'release': 'v9'}, 'v9 is not staged on this host'),
    ({'health_url': 'ftp://127.0.0.1/'}, "health_url 'ftp://127.0.0.1/' is invalid"),
    ({'port': 70000}, 'preview port 70000 is invalid'),
    ({'mode': 'slots', 'target': 'a', 'release': 'v2'}, 'a is not staged on this host'),
])
def test_bad_input_is_refused_by_name_and_changes_nothing(run_module, root, snapshot, args, message):
    before = snapshot(str(root))
    port = args.pop('port', 8180)
    res = check(run_module, root, port, **args)
    assert res['failed'] is True and message in res['msg'], res['msg']
    assert snapshot(str(root)) == before


def test_a_plain_directory_at_the_preview_path_is_not_replaced(run_module, root, preview, snapshot):
    os.mkdir(str(root / 'preview'))
    before = snapshot(str(root))
    res = check(run_module, root, preview.port)
    assert res['failed'] is True and 'exists and is not a symlink' in res['msg']
    assert snapshot(str(root)) == before


def test_a_slot_is_checked_by_its_label(tmp_path, run_module):
    root = tmp_path / 'slots-app'
    os.makedirs(str(root / 'slots' / 'b'))
    (root / 'slots' / 'b' / 'RELEASE').write_text('v7\n')
    server = PreviewServer(root)
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.02}, daemon=True)
    thread.start()
    try:
        res = check(run_module, root, server.port, mode='slots', target='b', release='v7')
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert res['health']['ok'] is True and os.readlink(str(root / 'preview')) == 'slots/b'
    assert DeployRoot(str(root)).live() == (None, None)
