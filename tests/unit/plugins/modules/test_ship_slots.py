# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ship module in slots mode: the inactive slot patched, opcache invalidated and current flipped in one call."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _ship
from ansible_collections.stagehand.deploy.tests.unit.plugins.module_utils.fake_fastcgi import FakeServer
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules import test_ship
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules.test_delta import APP, changed
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules.test_opcache import FakePool
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules.test_ship import V2, held_of, ship

SAME = os.path.join('app', 'f001.php')


# the fixtures of the releases-mode tests: an artifact store on the "controller", an empty deploy root
store = test_ship.store
root = test_ship.root


@pytest.fixture
def sock():
    directory = tempfile.mkdtemp(prefix='fpm')
    yield os.path.join(directory, 'app-fpm.sock')
    shutil.rmtree(directory)


def slot_meta(root, slot):
    with open(os.path.join(root, '.stagehand', 'slots', slot + '.json'), encoding='utf-8') as handle:
        return json.load(handle)


def history(root):
    with open(os.path.join(root, '.stagehand', 'history.jsonl'), encoding='utf-8') as handle:
        return [json.loads(line) for line in handle]


def deploy(tmp_path, compose, root, release, **params):
    return ship(tmp_path, compose, root, release=release, mode='slots', **params)


def test_deploys_flip_between_the_slots_and_patch_only_what_changed(store, root, tmp_path):
    v1, v2 = store.compose('v1', APP), store.compose('v2', V2)
    first, result = deploy(tmp_path, v1, root, 'v1')
    assert first['files'] == len([p for p in APP if not p.startswith('storage/')])
    assert (result['slot'], result['switched'], result['previous'], result['current']) == ('a', True, None, 'v1')
    assert os.readlink(os.path.join(root, 'current')) == 'slots/a'

    made, result = deploy(tmp_path, v2, root, 'v2')
    assert made['files'] == 1 and made['paths'] == ['app/f007.php']  # what slot a lacks, known from its manifest
    assert (result['slot'], result['switched'], result['previous'], result['current']) == ('b', True, 'v1', 'v2')
    assert os.readlink(os.path.join(root, 'current')) == 'slots/b'
    # slot b was empty: built aside and renamed into place, every file but the changed one a hard link to
    # slot a's, which is untouched
    assert result['staged']['filled_empty'] is True
    assert result['staged']['changed_files'] == sorted(p for p in APP if not p.startswith('storage/'))  # all new to the slot
    assert result['staged']['linked'] == first['files'] - 1 and result['staged']['copied'] == 1
    assert not os.listdir(os.path.join(root, '.stagehand', 'stage'))
    a, b = os.path.join(root, 'slots', 'a'), os.path.join(root, 'slots', 'b')
    assert os.stat(os.path.join(a, SAME)).st_ino == os.stat(os.path.join(b, SAME)).st_ino
    with open(os.path.join(a, 'app', 'f007.php'), 'rb') as old, open(os.path.join(b, 'app', 'f007.php'), 'rb') as new:
        assert (old.read(), new.read()) == (APP['app/f007.php'], V2['app/f007.php'])
    assert (slot_meta(root, 'a')['release'], slot_meta(root, 'b')['release']) == ('v1', 'v2')
    assert slot_meta(root, 'b')['manifest_digest'] == v2['id']
    assert [(h['release'], h['previous'], h['outcome']) for h in history(root)] == [('v1', None, 'success'), ('v2', 'v1', 'success')]
    assert not os.path.exists(os.path.join(root, '.stagehand', 'lock'))

    # v3 goes to slot a, which is patched in place: one changed file, everything else stays
    v3 = store.compose('v3', changed(V2, {'app/f009.php': b'<?php // changed in v3'}))
    inode = os.stat(os.path.join(a, SAME)).st_ino
    made, result = deploy(tmp_path, v3, root, 'v3')
    assert made['paths'] == ['app/f009.php']
    assert result['slot'] == 'a' and result['staged']['filled_empty'] is False
    assert result['staged']['changed_files'] == ['app/f007.php', 'app/f009.php']  # patched in place
    assert result['staged']['steps']['update'] == 2
    assert os.stat(os.path.join(a, SAME)).st_ino == inode
    assert (result['previous'], result['current']) == ('v2', 'v3')


def test_a_redeploy_of_the_other_slot_only_flips_and_a_live_one_is_left_alone(store, root, tmp_path):
    v1, v2 = store.compose('v1', APP), store.compose('v2', V2)
    deploy(tmp_path, v1, root, 'v1')
    deploy(tmp_path, v2, root, 'v2')
    made, result = deploy(tmp_path, v1, root, 'v1')  # slot a still holds v1
    assert made['files'] == 0
    assert result['slot'] == 'a' and result['staged']['changed'] is False and result['staged']['changed_files'] == []
    assert (result['previous'], result['current']) == ('v2', 'v1')
    from ansible_collections.stagehand.deploy.plugins.action.ship import live_compose
    assert live_compose(held_of(root)) == {'release': 'v1', 'compose_id': v1['id']}


def test_a_failed_health_check_flips_back_and_marks_the_slot_failed(store, root, tmp_path):
    v1, v2 = store.compose('v1', APP), store.compose('v2', V2)
    deploy(tmp_path, v1, root, 'v1')

    def reload_fails(argv):
        return (1, '', 'reload failed') if argv == ['reload'] else (0, '', '')

    with pytest.raises(_ship.ShipError) as caught:
        deploy(tmp_path, v2, root, 'v2', run_command=reload_fails, switch={'post_commands': [['reload']]})
    result = caught.value.result
    assert result['failed_phase'] == 'switch' and result['slot'] == 'b'
    assert os.readlink(os.path.join(root, 'current')) == 'slots/a'
    assert result['current'] == 'v1'
    assert slot_meta(root, 'b')['status'] == 'failed' and slot_meta(root, 'a')['status'] == 'complete'
    assert history(root)[-1]['outcome'] == 'rolled_back'
    assert not os.path.exists(os.path.join(root, '.stagehand', 'lock'))


def test_pending_migrations_leave_the_slot_patched_and_not_live(store, root, tmp_path):
    v1 = store.compose('v1', APP)
    deploy(tmp_path, v1, root, 'v1')
    with open(os.path.join(root, '.stagehand', 'migrations.json'), 'w', encoding='utf-8') as handle:
        json.dump({'database': 'shop', 'applied': []}, handle)
    v2 = store.compose('v2', changed(APP, {'migrations/0001_orders.up.sql': b'CREATE TABLE orders (id INT);\n',
                                           'migrations/0001_orders.down.sql': b'DROP TABLE orders;\n'}))
    _made, result = deploy(tmp_path, v2, root, 'v2', migrations={'dir': 'migrations', 'database': 'shop'})
    assert result['needs_migrate'] and result['pending_migrations'] == ['0001_orders']
    assert not result['switched'] and os.readlink(os.path.join(root, 'current')) == 'slots/a'
    assert result['slot'] == 'b' and slot_meta(root, 'b')['status'] == 'complete'
    assert os.path.isfile(os.path.join(root, 'slots', 'b', 'migrations', '0001_orders.up.sql'))


def test_an_older_release_goes_live_in_one_call_only_when_it_lacks_no_irreversible_migration(store, root, tmp_path):
    """issue 11: the fast path in slots mode applies the schema guard from the record and the two slots."""
    m1 = {'migrations/0001_orders.up.sql': b'CREATE TABLE orders (id INT);\n', 'migrations/0001_orders.down.sql': b'DROP TABLE orders;\n'}
    m2 = dict(m1, **{'migrations/0002_note.up.sql': b'ALTER TABLE orders ADD note TEXT;\n',
                     'migrations/0002_note.down.sql': b'ALTER TABLE orders DROP note;\n'})
    m3 = dict(m2, **{'migrations/0003_purge.up.sql': b'DELETE FROM orders;\n'})  # no down file: irreversible
    v1, v2, v3 = store.compose('v1', changed(APP, m1)), store.compose('v2', changed(APP, m2)), store.compose('v3', changed(APP, m3))
    record = os.path.join(root, '.stagehand', 'migrations.json')
    deploy(tmp_path, v1, root, 'v1')

    def write_record(applied):
        with open(record, 'w', encoding='utf-8') as handle:
            json.dump({'database': 'shop', 'applied': applied}, handle)

    write_record(['0001_orders', '0002_note'])
    mig = {'dir': 'migrations', 'database': 'shop'}
    deploy(tmp_path, v2, root, 'v2', migrations=mig)
    assert os.readlink(os.path.join(root, 'current')) == 'slots/b'
    # v1 lacks only the reversible 0002_note: one call, as before
    _made, result = deploy(tmp_path, v1, root, 'v1', migrations=mig)
    assert result['switched'] and not result['needs_migrate'], result
    # v3 live (0003_purge irreversible applied): v2 again lacks it, and never goes live in the call
    write_record(['0001_orders', '0002_note', '0003_purge'])
    deploy(tmp_path, v3, root, 'v3', migrations=mig)
    live = os.readlink(os.path.join(root, 'current'))
    _made, result = deploy(tmp_path, v2, root, 'v2', migrations=mig)
    assert result['needs_migrate'] and not result['switched'], result
    assert 'v2 does not have the irreversible migrations 0003_purge' in result['needs_migrate_reason']
    assert os.readlink(os.path.join(root, 'current')) == live


def test_opcache_is_invalidated_for_the_patched_slot_before_the_flip(store, root, tmp_path, sock):
    v1, v2 = store.compose('v1', APP), store.compose('v2', V2)
    deploy(tmp_path, v1, root, 'v1')
    deploy(tmp_path, v2, root, 'v2')  # slot b live; slot a gets v3
    a, b = os.path.join(root, 'slots', 'a'), os.path.join(root, 'slots', 'b')
    pool = FakePool({a + '/app/f009.php', a + '/index.php', b + '/index.php'})
    server = FakeServer(sock, pool)
    v3 = store.compose('v3', changed(V2, {'app/f009.php': b'<?php // changed in v3'}))
    try:
        _made, result = deploy(tmp_path, v3, root, 'v3', opcache={'socket': sock})
    finally:
        server.close()
    assert sorted(result['opcache']['invalidated']) == [a + '/app/f009.php', a + '/index.php']
    assert pool.cached == {b + '/index.php'}  # the slot that was live keeps its cache
    payload = json.loads(server.requests[0]['stdin'])
    assert payload['prefix'] == a and a + '/app/f009.php' in payload['files']
    assert os.readlink(os.path.join(root, 'current')) == 'slots/a'


def test_opcache_that_cannot_be_cleared_stops_before_the_flip(store, root, tmp_path, sock):
    v1, v2 = store.compose('v1', APP), store.compose('v2', V2)
    deploy(tmp_path, v1, root, 'v1')
    b = os.path.join(root, 'slots', 'b')
    server = FakeServer(sock, FakePool({b + '/index.php'}, stuck={b + '/index.php'}))
    try:
        with pytest.raises(_ship.ShipError, match="opcache for slot b before the flip, so nothing went live") as caught:
            deploy(tmp_path, v2, root, 'v2', opcache={'socket': sock})
    finally:
        server.close()
    assert caught.value.result['failed_phase'] == 'switch'
    assert os.readlink(os.path.join(root, 'current')) == 'slots/a'
    assert slot_meta(root, 'b')['status'] == 'failed'
    assert history(root)[-1]['outcome'] == 'failed' and history(root)[-1]['previous'] == 'v1'
    assert not os.path.exists(os.path.join(root, '.stagehand', 'lock'))


def test_bad_mode_and_opcache_arguments_change_nothing(root, snapshot):
    before = snapshot(root)
    base = {'root': root, 'release': 'v1', 'compose_id': 'sha256:' + '0' * 64, 'upload': {'manifest': '/nonexistent'}}
    with pytest.raises(_ship.ShipError, match="mode 'ab' is invalid: use releases or slots"):
        _ship.run(dict(base, mode='ab'))
    with pytest.raises(_ship.ShipError, match="opcache needs socket, the absolute path .*got 'fpm.sock'"):
        _ship.run(dict(base, mode='slots', opcache={'socket': 'fpm.sock'}))
    assert snapshot(root) == before
