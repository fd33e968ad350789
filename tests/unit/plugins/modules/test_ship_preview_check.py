# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ship module's preview check: the staged release answers through the preview server before the switch.

Two servers play nginx: the public one answers from ``<root>/current``, the preview one from
``<root>/preview`` (see test_preview_health). A release whose preview fails never goes live:
``current`` is not touched, the release staged by the run is removed, the history says so, the lock is gone.
"""

from __future__ import annotations

import json
import os
import threading

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _ship
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules.test_delta import APP, changed
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules.test_preview_health import PreviewServer
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules.test_ship import ship
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules import test_ship
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules.test_switch_health import AppServer


store = test_ship.store  # the fixtures: an artifact store on the "controller", a deploy root
root = test_ship.root


def serving(server):
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.02}, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def servers(root):
    public, preview = AppServer(root), PreviewServer(root)
    threads = [serving(public), serving(preview)]
    yield public, preview
    for server, thread in zip((public, preview), threads):
        server.shutdown()
        server.server_close()
        thread.join()


def app(name, health=None):
    files = {'RELEASE': ('%s\n' % name).encode()}
    if health is not None:
        files['HEALTH'] = ('%d\n' % health).encode()
    return changed(APP, files)


def args(servers, **extra):
    public, preview = servers
    params = {'switch': {'post_commands': [], 'health_url': public.url, 'health_timeout': 0.6},
              'preview_check': {'port': preview.port, 'timeout': 0.6}}
    params.update(extra)
    return params


def history(root):
    with open(os.path.join(root, '.stagehand', 'history.jsonl'), encoding='utf-8') as handle:
        return [json.loads(line) for line in handle]


def test_a_healthy_preview_goes_live_and_is_timed(store, root, tmp_path, servers):
    public, preview = servers
    _made, result = ship(tmp_path, store.compose('v1', app('v1')), root, release='v1', **args(servers))
    assert result['switched'] and result['preview_check']['health']['ok'] is True
    assert result['preview_check']['url'] == 'http://127.0.0.1:%d/health' % preview.port
    assert os.readlink(os.path.join(root, 'preview')) == 'releases/v1'
    assert preview.requests == ['/health'] and public.requests == ['/health']
    assert 'preview' in history(root)[-1]['phases']


def test_a_failing_preview_never_goes_live(store, root, tmp_path, servers, snapshot):
    _made, first = ship(tmp_path, store.compose('v1', app('v1')), root, release='v1', **args(servers))
    public, _preview = servers
    served_before = len(public.requests)
    with pytest.raises(_ship.ShipError) as failed:
        ship(tmp_path, store.compose('v2', app('v2', health=500)), root, release='v2', **args(servers))
    exc = failed.value
    assert exc.result['failed_phase'] == 'preview' and not exc.result['switched']
    assert 'v2 did not pass its preview check before going live' in exc.msg and 'HTTP status 500' in exc.msg
    assert os.readlink(os.path.join(root, 'current')) == 'releases/v1'
    assert len(public.requests) == served_before  # the public server was never asked: nothing switched, nothing checked there
    # never live and staged by this run: removed, as the deploy role's undo removes it
    assert exc.result['discarded'] is True and not os.path.exists(os.path.join(root, 'releases', 'v2'))
    assert DeployRoot(root).read_meta('v2') is None
    line = history(root)[-1]
    assert (line['release'], line['previous'], line['outcome']) == ('v2', 'v1', 'failed') and 'preview check' in line['error']
    assert not os.path.exists(os.path.join(root, '.stagehand', 'lock'))
    assert first['current'] == 'v1'


def test_a_release_refused_by_its_preview_is_staged_again_by_the_next_deploy(store, root, tmp_path, servers):
    ship(tmp_path, store.compose('v1', app('v1')), root, release='v1', **args(servers))
    with pytest.raises(_ship.ShipError):
        ship(tmp_path, store.compose('v2', app('v2', health=500)), root, release='v2', **args(servers))
    # (another tree on the controller: the store writes each name's tree in place)
    _made, result = ship(tmp_path, store.compose('v2-mended', app('v2')), root, release='v2', **args(servers))
    assert result['switched'] and result['current'] == 'v2'
    assert DeployRoot(root).read_meta('v2')['status'] == 'complete'


def test_a_release_already_on_the_host_that_fails_its_preview_is_marked_failed(store, root, tmp_path, servers):
    ship(tmp_path, store.compose('v1', app('v1')), root, release='v1', **args(servers))
    broken = store.compose('v2', app('v2', health=500))
    ship(tmp_path, broken, root, release='v2', switch=None)  # staged only (a deploy's prepare call)
    with pytest.raises(_ship.ShipError) as failed:
        ship(tmp_path, broken, root, release='v2', **args(servers))
    assert failed.value.result['discarded'] is False and not failed.value.result['staged']['changed']
    meta = DeployRoot(root).read_meta('v2')
    assert meta['status'] == 'failed' and meta['failed_reason'].startswith('preview: ')
    assert os.readlink(os.path.join(root, 'current')) == 'releases/v1'


def test_a_directory_where_the_preview_link_goes_refuses_the_switch_naming_it(store, root, tmp_path, servers):
    ship(tmp_path, store.compose('v1', app('v1')), root, release='v1', **args(servers))
    os.remove(os.path.join(root, 'preview'))  # the link v1's check left, replaced by someone's directory
    os.mkdir(os.path.join(root, 'preview'))
    with pytest.raises(_ship.ShipError) as failed:
        ship(tmp_path, store.compose('v2', app('v2')), root, release='v2', **args(servers))
    assert failed.value.result['failed_phase'] == 'preview' and 'exists and is not a symlink' in failed.value.msg
    assert os.readlink(os.path.join(root, 'current')) == 'releases/v1'
    assert os.path.isdir(os.path.join(root, 'preview')) and not os.listdir(os.path.join(root, 'preview'))


def test_port_zero_switches_without_a_preview(store, root, tmp_path, servers):
    _public, preview = servers
    _made, result = ship(tmp_path, store.compose('v1', app('v1')), root, release='v1', **args(servers, preview_check={'port': 0}))
    assert result['switched'] and result['preview_check'] is None and preview.requests == []
    assert not os.path.lexists(os.path.join(root, 'preview'))


@pytest.mark.parametrize('preview_check, message', [
    ({'port': 99999}, 'preview port 99999 is invalid'),
    ({'port': 8180, 'timeout': 0}, 'preview_check.timeout 0 is invalid'),
])
def test_a_bad_preview_check_is_refused_before_anything_is_read(store, root, tmp_path, snapshot, preview_check, message):
    before = snapshot(root)
    with pytest.raises(_ship.ShipError, match=message):
        ship(tmp_path, store.compose('v1', app('v1')), root, release='v1', preview_check=preview_check)
    assert snapshot(root) == before
