# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 11, defect 8: refusals say what is live and the phase; a full disk or a cross-device link is explained."""

from __future__ import annotations

import errno
import importlib
import io
import os
import tarfile
from unittest import mock

import pytest

from ansible.module_utils import _internal as module_utils_internal

from ansible_collections.stagehand.deploy.plugins.action.ship import live_label
from ansible_collections.stagehand.deploy.plugins.module_utils import _release, _ship
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules import test_delta, test_ship
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules.test_delta import APP
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules.test_ship import V2, held_of, ship

store = test_delta.store
root = test_ship.root


def test_a_refused_argument_names_the_phase_and_what_is_live(store, root, tmp_path):
    ship(tmp_path, store.compose('v1', APP), root, release='v1')
    with pytest.raises(_ship.ShipError) as caught:
        _ship.run({'root': root, 'release': 'v2\n', 'compose_id': 'sha256:' + '0' * 64, 'upload': {'manifest': '/x'}})
    assert "'v2\\n'" in caught.value.msg  # quoted: the newline is visible
    assert caught.value.result['failed_phase'] == 'verify'
    assert caught.value.result['previous'] == 'v1'


def test_a_missing_deploy_root_is_refused_in_the_verify_phase(tmp_path):
    with pytest.raises(_ship.ShipError) as caught:
        _ship.run({'root': str(tmp_path / 'nope'), 'release': 'v1', 'compose_id': 'sha256:' + '0' * 64, 'upload': {'manifest': '/x'}})
    assert repr(str(tmp_path / 'nope')) in caught.value.msg and caught.value.result['failed_phase'] == 'verify'


def test_the_action_reads_the_live_release_from_the_host(store, root, tmp_path):
    assert live_label(held_of(root), 'releases') is None
    ship(tmp_path, store.compose('v1', APP), root, release='v1')
    assert live_label(held_of(root), 'releases') == 'v1'
    assert live_label(held_of(root), 'slots') is None
    held = {'live': 'b', 'live_kind': 'slots', 'slots': [{'name': 'a', 'release': 'v1'}, {'name': 'b', 'release': 'v2'}]}
    assert live_label(held, 'slots') == 'v2'


def test_too_little_free_space_is_refused_before_staging(store, root, tmp_path, monkeypatch, snapshot):
    ship(tmp_path, store.compose('v1', APP), root, release='v1')
    monkeypatch.setattr(_release, 'free_bytes', lambda path: 5000)
    before = snapshot(root)
    real_run = _ship.run

    def run(args, run_command=None):  # the action plugin sends the size of the files the host lacks
        return real_run(dict(args, upload=dict(args['upload'], bytes=3 * 1024 * 1024)), run_command=run_command)
    monkeypatch.setattr(_ship, 'run', run)
    with pytest.raises(_ship.ShipError) as caught:
        ship(tmp_path, store.compose('v2', V2), root, release='v2')
    msg = caught.value.msg
    assert "not enough space to stage release 'v2' in %r" % root in msg
    assert '3145728 bytes (3.0 MiB)' in msg and '5000 bytes (4.9 KiB) free' in msg
    assert caught.value.result['failed_phase'] == 'stage'
    assert os.readlink(os.path.join(root, 'current')) == 'releases/v1'
    assert not os.path.exists(os.path.join(root, 'releases', 'v2'))
    after = {k: v for k, v in snapshot(root).items() if not k.startswith('.stagehand/')}
    assert after == {k: v for k, v in before.items() if not k.startswith('.stagehand/')}


def test_no_space_left_is_explained_with_the_path_and_the_space_needed(tmp_path, monkeypatch):
    monkeypatch.setattr(_release, 'free_bytes', lambda path: 1234)
    exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), '/srv/shop/.stagehand/stage/x/app/f.php')
    msg = _release.explain_os_error(exc, '/srv/shop', 2 * 1024 * 1024)
    assert msg.startswith("no space left on the filesystem of '/srv/shop' while writing '/srv/shop/.stagehand/stage/x/app/f.php'")
    assert '1234 bytes (1.2 KiB) free' in msg and '2097152 bytes (2.0 MiB) needed' in msg
    assert 'Errno' not in msg


def test_a_cross_device_link_is_explained():
    exc = OSError(errno.EXDEV, os.strerror(errno.EXDEV), '/srv/shop/.stagehand/stage/x', None, '/srv/shop/releases/v2')
    msg = _release.explain_os_error(exc, '/srv/shop')
    assert "'/srv/shop/.stagehand/stage/x' and '/srv/shop/releases/v2' are on different filesystems" in msg
    assert "keep '/srv/shop'" in msg and 'Invalid cross-device link' not in msg


def test_the_release_module_explains_a_full_disk(tmp_path, monkeypatch):
    src = tmp_path / 'src'
    (src / 'public').mkdir(parents=True)
    (src / 'public' / 'index.php').write_text('x')
    root_dir = tmp_path / 'srv'
    root_dir.mkdir()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(root_dir / '.stagehand' / 'stage' / 'f'))
    monkeypatch.setattr(_release, 'stage', full)
    free = iter([10 ** 9, 10])  # enough before staging, then the disk filled up
    monkeypatch.setattr(_release, 'free_bytes', lambda path: next(free))
    with pytest.raises(_release.ReleaseError) as caught:
        _release.run({'root': str(root_dir), 'name': 'v1', 'src': str(src), 'state': 'present', 'space_needed': 1})
    assert caught.value.msg.startswith('no space left on the filesystem of %r' % str(root_dir))
    assert '10 bytes free, 1 bytes needed' in caught.value.msg


def test_the_release_module_refuses_without_the_space_needed(tmp_path, monkeypatch):
    src = tmp_path / 'src'
    src.mkdir()
    (src / 'index.php').write_text('x')
    root_dir = tmp_path / 'srv'
    root_dir.mkdir()
    monkeypatch.setattr(_release, 'free_bytes', lambda path: 10)
    with pytest.raises(_release.ReleaseError) as caught:
        _release.run({'root': str(root_dir), 'name': 'v1', 'src': str(src), 'state': 'present', 'space_needed': 100})
    assert "not enough space to stage release 'v1'" in caught.value.msg and caught.value.details == {'needed': 100, 'free': 10}
    assert os.listdir(str(root_dir)) == []


@pytest.fixture(name='ship_action')
def fixture_ship_action(monkeypatch):
    """Import the action plugin without leaving the process in controller mode (see test_lock_action.py)."""
    monkeypatch.setattr(module_utils_internal, 'is_controller', module_utils_internal.is_controller)
    return importlib.import_module('ansible_collections.stagehand.deploy.plugins.action.ship')


def test_the_action_names_its_phase_and_what_is_live_when_it_cannot_write_the_delta(ship_action, store, tmp_path):
    """A corrupt compose (members missing from its artifact): failed in phase ship, v1 still live, nothing sent."""
    v2 = store.compose('v2', V2)
    with tarfile.open(v2['artifact']) as tar:
        kept = [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()
                if not m.name.endswith('app/f007.php')]
    assert len(kept) == len(tarfile.open(v2['artifact']).getmembers()) - 1
    with tarfile.open(v2['artifact'], 'w:gz') as tar:
        for member, data in kept:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    task = mock.MagicMock()
    task.args = {'root': '/srv/shop', 'release': 'v2', 'mode': 'releases',
                 'compose': {'compose_id': v2['id'], 'artifact': v2['artifact'], 'manifest': v2['manifest']},
                 'held': {'live': 'v1', 'live_kind': 'releases', 'releases': [], 'slots': [], 'composes': []}}
    task.async_val = 0
    task.check_mode = False
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    action = ship_action.ActionModule(task, connection, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(), None)
    with mock.patch.object(ship_action.ActionBase, 'run', return_value={}), mock.patch.object(action, '_execute_module') as execute:
        result = action.run(task_vars={'inventory_hostname': 'web1'})
    execute.assert_not_called()
    assert result['failed'] and result['failed_phase'] == 'ship' and result['live'] == 'v1'
    assert 'lacks the content of 1 file(s)' in result['msg'] and result['msg'].endswith('Nothing was sent')
