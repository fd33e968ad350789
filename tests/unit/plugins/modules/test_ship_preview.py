# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""deploy.yml --check: the ship action previews, per host, what the deploy would do, and changes nothing.

A real deploy root (v1 shipped with the module, as the fast path does), what it holds read with the
action's own shell query, and the action run in check mode with the module mocked away: it must
never be run.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import tarfile
from unittest import mock

import pytest

from ansible.module_utils import _internal as module_utils_internal

from ansible_collections.stagehand.deploy.plugins.module_utils import _preview
from ansible_collections.stagehand.deploy.tests.unit.conftest import snapshot_tree
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules import test_delta, test_ship
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules.test_delta import APP
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules.test_ship import V2, held_of, ship

store = test_delta.store  # fixtures
root = test_ship.root


@pytest.fixture(name='ship_action')
def fixture_ship_action(monkeypatch):
    """Import the action plugin without leaving the process in controller mode (see test_lock_action.py)."""
    monkeypatch.setattr(module_utils_internal, 'is_controller', module_utils_internal.is_controller)
    return importlib.import_module('ansible_collections.stagehand.deploy.plugins.action.ship')


def preview(ship_action, root, compose, diff=False, **args):
    task = mock.MagicMock()
    task.args = dict({'root': root, 'mode': 'releases', 'compose': compose, 'held': held_of(root), 'shared': ['storage']}, **args)
    task.async_val = 0
    task.check_mode = True
    task.diff = diff
    action = ship_action.ActionModule(task, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(), mock.MagicMock(), None)
    before = snapshot_tree(root)
    with mock.patch.object(ship_action.ActionBase, 'run', return_value={}), mock.patch.object(action, '_execute_module') as execute:
        result = action.run(task_vars={'inventory_hostname': 'web1'})
    execute.assert_not_called()
    assert snapshot_tree(root) == before
    return result


def compose_args(compose):
    return {'compose_id': compose['id'], 'artifact': compose['artifact'], 'manifest': compose['manifest'], 'release': None}


def test_the_preview_says_what_would_be_sent_staged_and_switched(ship_action, store, root, tmp_path):
    ship(tmp_path, store.compose('v1', APP), root, release='v1')
    v2 = store.compose('v2', V2)
    result = preview(ship_action, root, compose_args(v2), diff=True, release='v2', manifests=[os.path.dirname(v2['dir'])])
    got = result['preview']
    assert result['changed'] is True and result['release'] == 'v2' and result['compose_id'] == v2['id']
    assert got['send']['files'] == 1 and got['send']['paths'] == ['app/f007.php'] and got['send']['total_files'] > 1
    assert got['stage'] == 'releases/v2' and got['switch'] == {'from': 'v1', 'to': 'v2'} and got['lock'] is None
    assert got['line'].startswith('web1: would send 1 file(s) of ') and got['line'].endswith('and switch current from v1 to v2')
    assert result['diff']['before'] == 'current -> v1\n' and result['diff']['after'] == 'current -> v2\n'


def test_a_compose_that_is_live_already_would_change_nothing(ship_action, store, root, tmp_path):
    v1 = store.compose('v1', APP)
    ship(tmp_path, v1, root, release='v1')
    result = preview(ship_action, root, compose_args(v1), release='v1')
    assert result['changed'] is False and result['preview']['already_live'] is True
    assert 'is already live: the deploy would change nothing' in result['preview']['line']


def test_a_held_lock_is_named(ship_action, store, root, tmp_path):
    ship(tmp_path, store.compose('v1', APP), root, release='v1')
    with open(os.path.join(root, '.stagehand', 'lock'), 'w') as f:
        json.dump({'owner': 'bob', 'controller': 'ci-7', 'purpose': 'deploy version v9', 'token': 'x'}, f)
    result = preview(ship_action, root, compose_args(store.compose('v2', V2)), release='v2')
    assert result['preview']['lock']['owner'] == 'bob'
    assert 'the deploy lock is held (owner bob, controller ci-7, purpose deploy version v9)' in result['preview']['line']


def test_nothing_composed_yet_is_previewed_as_compose_first_named_by_the_rule(ship_action, root):
    result = preview(ship_action, root, {}, naming={'repo': '', 'version': '', 'artifact': '/builds/shop-1.4.tar.gz', 'release': ''})
    assert result['release'] == 'shop-1.4' and result['compose_id'] is None and result['changed'] is True
    assert result['preview']['send'] is None
    assert 'would compose shop-1.4 on the controller first' in result['preview']['line']
    assert result['preview']['line'].endswith('switch current from nothing to shop-1.4')


def test_pending_migrations_come_from_the_manifest_and_the_hosts_record():
    paths = ['migrations/0002_b.up.sql', 'migrations/0002_b.down.sql', 'migrations/0001_a.up.sql', 'migrations/old/0009_x.up.sql',
             'migrations/README', 'src/0003_c.up.sql']
    ids = _preview.manifest_migrations(paths, 'migrations')
    assert ids == ['0001_a', '0002_b']
    assert _preview.pending_migrations(ids, {'database': 'shop', 'applied': ['0001_a']}, 'shop') == (['0002_b'], None)
    pending, why = _preview.pending_migrations(ids, None, 'shop')
    assert pending is None and 'no usable migrations record' in why
    pending, why = _preview.pending_migrations(ids, {'database': 'other', 'applied': []}, 'shop')
    assert pending is None and "about database 'other'" in why
    line = _preview.plan('web2', 'v3', 'sha256:' + '0' * 64, 'releases', 'v2', None, None,
                         {'files': 3, 'total_files': 40, 'bytes': 2100, 'paths': []}, ['0002_b'], None, True, None)['line']
    assert line == ('web2: would send 3 file(s) of 40 (2.1 kB), remove the failed earlier attempt of v3, stage releases/v3 '
                    '(hardlinks for every unchanged file), apply the migration(s) 0002_b (after a dump) and switch current from v2 to v3')


def test_slots_mode_names_the_slot_that_would_be_patched():
    got = _preview.plan('web1', 'v3', 'sha256:' + '1' * 64, 'slots', 'v2', None, None,
                        {'files': 1, 'total_files': 9, 'bytes': 10, 'paths': []}, [], None, False, 'b')
    assert got['stage'] == 'slot b' and 'patch slot b to it in place' in got['line']


def _artifact(tmp_path, files):
    path = str(tmp_path / 'artifact.tar.gz')
    with tarfile.open(path, 'w:gz') as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_pending_migration_without_down_file_or_marked_in_its_up_file_is_irreversible(tmp_path):
    files = {'migrations/0002_b.up.sql': b'ALTER TABLE t ADD c INT;\n', 'migrations/0002_b.down.sql': b'ALTER TABLE t DROP c;\n',
             'migrations/0003_c.up.sql': b'-- stagehand: irreversible\nDELETE FROM visits;\n',
             'migrations/0003_c.down.sql': b'SELECT 1;\n', 'migrations/0004_d.up.sql': b'DROP TABLE old;\n'}
    read = _preview.read_from_artifact(_artifact(tmp_path, files))
    got = _preview.irreversible_migrations(['0002_b', '0003_c', '0004_d'], files, 'migrations', read)
    assert got == ['0003_c', '0004_d']
    assert _preview.irreversible_migrations(['0002_b'], files, 'migrations', read) == []
    # an up file that cannot be read is never taken as reversible on a guess
    missing = _preview.read_from_artifact(str(tmp_path / 'no-such.tar.gz'))
    assert _preview.irreversible_migrations(['0002_b'], files, 'migrations', missing) == ['0002_b']


def test_irreversible_pending_migrations_preview_as_refused_unless_allowed():
    args = ('web1', 'v3', 'sha256:' + '2' * 64, 'releases', 'v2', None, None, {'files': 2, 'total_files': 9, 'bytes': 10, 'paths': []},
            ['0002_b', '0003_c'], None, False, None)
    refused = _preview.plan(*args, irreversible=['0003_c'])
    assert refused['changes'] is False and refused['switch'] is None
    assert refused['line'] == ('web1: would be refused in phase migrate: the migration(s) 0003_c cannot be undone (no .down.sql, '
                               'or the line "-- stagehand: irreversible"); the deploy would apply them only with '
                               '-e allow_irreversible=true. Nothing would change: v2 stays live')
    allowed = _preview.plan(*args, irreversible=['0003_c'], allow_irreversible=True)
    assert allowed['refused'] is None and allowed['changes'] is True
    assert 'apply the migration(s) 0002_b, 0003_c (0003_c irreversible) (after a dump)' in allowed['line']
    assert _preview.plan(*args)['irreversible'] == []
