# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ship module (the deploy role's fast path): what the host holds, one-call stage and switch, refusals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.stagehand.deploy.plugins.action.ship import held_query, live_compose, parse_held, progress_line, report_line
from ansible_collections.stagehand.deploy.plugins.module_utils import _delta, _lock, _manifest, _release, _ship
from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import dump_json
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules import test_delta
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules.test_delta import APP, changed

V2 = changed(APP, {'app/f007.php': b'<?php // changed in v2'})


def held_of(root):
    """What the action plugin learns of a host: its shell query, run here with sh."""
    out = subprocess.run(['sh', '-c', held_query(root)], check=True, capture_output=True, text=True).stdout
    return parse_held(out)


def ship(tmp_path, compose, root, run_command=None, **params):
    """Do what the action plugin does (delta on the 'controller', upload), then run the host side."""
    held = held_of(root)
    out = tmp_path / ('out-' + compose['id'][7:19])
    upload = tmp_path / ('upload-' + compose['id'][7:19])
    out.mkdir(exist_ok=True)
    upload.mkdir(exist_ok=True)
    made = _delta.create(compose['manifest'], compose['artifact'], str(out), have=held[params.get('mode') or 'releases'],
                         manifests=[os.path.dirname(compose['dir'])], host_composes=held['composes'], shared=['storage'])
    files = {'manifest': str(upload / 'manifest.json')}
    if made['archive']:
        os.rename(made['archive'], str(upload / 'delta.tar.gz'))
        files['archive'] = str(upload / 'delta.tar.gz')
    if compose['id'] not in held['composes']:
        if made['manifest_delta']:
            os.rename(made['manifest_delta'], str(upload / 'manifest-delta.json'))
            files['manifest_delta'] = str(upload / 'manifest-delta.json')
        else:
            with open(compose['manifest'], 'rb') as src, open(files['manifest'], 'wb') as dst:
                dst.write(src.read())
    args = {'root': root, 'release': params.pop('release'), 'compose_id': compose['id'], 'upload': files, 'shared': ['storage'],
            'shared_dirs': ['storage'], 'switch': {'post_commands': []}, 'lock': {'owner': 'alice', 'controller': 'laptop', 'purpose': 'test'},
            'history': {'action': 'deploy', 'user': 'alice', 'controller': 'laptop', 'start': '2026-11-22T10:00:00Z'}}
    args.update(params)
    return made, _ship.run(args, run_command=run_command)


store = test_delta.store  # the fixture: an artifact store on the "controller"


@pytest.fixture
def root(tmp_path):
    path = tmp_path / 'srv'
    path.mkdir()
    return str(path)


def test_held_query_reads_releases_composes_and_the_live_link(store, root, tmp_path):
    assert held_of(root) == {'live': None, 'live_kind': None, 'releases': [], 'slots': [], 'composes': [], 'lock': None, 'migrations': None}
    crlf = 'releases/v1\r\n--stagehand-ship--\r\n--stagehand-ship--slots\r\n--stagehand-ship--end\r\n'
    assert parse_held(crlf) == {'live': 'v1', 'live_kind': 'releases', 'releases': [], 'slots': [], 'composes': [], 'lock': None, 'migrations': None}
    v1 = store.compose('v1', APP)
    ship(tmp_path, v1, root, release='v1')
    held = held_of(root)
    assert held['live'] == 'v1'
    assert held['composes'] == [v1['id']]
    assert held['releases'] == [{'name': 'v1', 'status': 'complete', 'manifest_digest': v1['id'], 'shared': ['storage'], 'live': True}]
    assert held_of(str(tmp_path / 'missing')) == {'live': None, 'live_kind': None, 'releases': [], 'slots': [], 'composes': [],
                                                  'lock': None, 'migrations': None}
    assert live_compose(held) == {'release': 'v1', 'compose_id': v1['id']}


def test_second_deploy_sends_one_file_hardlinks_the_rest_and_switches(store, root, tmp_path):
    v1, v2 = store.compose('v1', APP), store.compose('v2', V2)
    first, result = ship(tmp_path, v1, root, release='v1')
    assert first['files'] == len([p for p in APP if not p.startswith('storage/')])
    assert result['switched'] and result['current'] == 'v1' and result['previous'] is None

    made, result = ship(tmp_path, v2, root, release='v2')
    assert made['files'] == 1 and made['paths'] == ['app/f007.php']
    assert made['manifest_delta'] is not None  # the manifest went as a delta against v1's
    assert result['switched'] and (result['previous'], result['current']) == ('v1', 'v2')
    assert result['staged']['copied'] == 1 and result['staged']['linked'] == first['files'] - 1
    assert os.readlink(os.path.join(root, 'current')) == 'releases/v2'
    same = os.path.join('app', 'f001.php')
    assert os.stat(os.path.join(root, 'releases', 'v1', same)).st_ino == os.stat(os.path.join(root, 'releases', 'v2', same)).st_ino
    # the tree manifest is a reference to the kept compose manifest, not a second copy of it
    with open(os.path.join(root, '.stagehand', 'manifests', 'v2.json'), encoding='utf-8') as handle:
        ref = json.load(handle)
    assert ref['derived'] is True and ref['source_digest'] == v2['id'] and 'entries' not in ref
    with open(os.path.join(root, '.stagehand', 'history.jsonl'), encoding='utf-8') as handle:
        lines = [json.loads(line) for line in handle]
    assert [(line['release'], line['previous'], line['outcome']) for line in lines] == [('v1', None, 'success'), ('v2', 'v1', 'success')]
    assert set(lines[1]['phases']) == {'lock', 'stage', 'check', 'switch'}  # check: the switch's own check of the target
    assert not os.path.exists(os.path.join(root, '.stagehand', 'lock'))


def test_pending_migrations_stage_without_switching(store, root, tmp_path):
    v1 = store.compose('v1', APP)
    ship(tmp_path, v1, root, release='v1')
    with open(os.path.join(root, '.stagehand', 'migrations.json'), 'w', encoding='utf-8') as handle:
        json.dump({'database': 'shop', 'applied': []}, handle)
    v2 = store.compose('v2', changed(APP, {'migrations/0001_orders.up.sql': b'CREATE TABLE orders (id INT);\n',
                                           'migrations/0001_orders.down.sql': b'DROP TABLE orders;\n'}))
    _made, result = ship(tmp_path, v2, root, release='v2', migrations={'dir': 'migrations', 'database': 'shop'})
    assert result['needs_migrate'] and result['pending_migrations'] == ['0001_orders']
    assert not result['switched'] and os.readlink(os.path.join(root, 'current')) == 'releases/v1'
    assert result['staged']['status'] == 'complete'
    assert not os.path.exists(os.path.join(root, '.stagehand', 'lock'))


def test_an_older_release_lacking_an_irreversible_migration_never_switches(store, root, tmp_path):
    """issue 11: deploying an old version after an irreversible migration went around the guard."""
    m1 = {'migrations/0001_orders.up.sql': b'CREATE TABLE orders (id INT);\n', 'migrations/0001_orders.down.sql': b'DROP TABLE orders;\n'}
    v1 = store.compose('v1', changed(APP, m1))
    v3 = store.compose('v3', changed(APP, dict(m1, **{'migrations/0002_purge.up.sql': b'DELETE FROM orders;\n'})))
    record = os.path.join(root, '.stagehand', 'migrations.json')
    ship(tmp_path, v1, root, release='v1')
    os.makedirs(os.path.dirname(record), exist_ok=True)
    with open(record, 'w', encoding='utf-8') as handle:
        json.dump({'database': 'shop', 'applied': ['0001_orders', '0002_purge']}, handle)
    ship(tmp_path, v3, root, release='v3', migrations={'dir': 'migrations', 'database': 'shop'})
    assert os.readlink(os.path.join(root, 'current')) == 'releases/v3'
    # v1 again, under a new name: the record says 0002_purge (irreversible, per v3) is applied, v1 lacks it
    _made, result = ship(tmp_path, v1, root, release='v1-again', migrations={'dir': 'migrations', 'database': 'shop'})
    assert result['needs_migrate'] and not result['switched'], result
    assert 'v1-again does not have the irreversible migrations 0002_purge' in result['needs_migrate_reason']
    assert os.readlink(os.path.join(root, 'current')) == 'releases/v3'
    # nothing to tell irreversibility by (v3 gone): still not switched, the migrate phase decides
    shutil.rmtree(os.path.join(root, 'releases', 'v3'))
    os.unlink(os.path.join(root, 'current'))
    os.symlink('releases/v1', os.path.join(root, 'current'))
    _made, result = ship(tmp_path, v1, root, release='v1-third', migrations={'dir': 'migrations', 'database': 'shop'})
    assert result['needs_migrate'] and not result['switched'] and '0002_purge' in result['needs_migrate_reason']
    assert os.readlink(os.path.join(root, 'current')) == 'releases/v1'


def test_a_held_lock_refuses_and_changes_nothing(store, root, tmp_path, snapshot):
    v1, v2 = store.compose('v1', APP), store.compose('v2', V2)
    ship(tmp_path, v1, root, release='v1')
    other = _lock.acquire(root, owner='bob', controller='other', purpose='by hand')
    before = snapshot(root)
    with pytest.raises(_ship.ShipError) as caught:
        ship(tmp_path, v2, root, release='v2')
    assert 'bob' in caught.value.msg and caught.value.result['failed_phase'] == 'lock'
    assert caught.value.result['history']['outcome'] == 'refused'
    history = os.path.join(root, '.stagehand', 'history.jsonl')
    assert {k: v for k, v in snapshot(root).items() if k != '.stagehand/history.jsonl'} == {
        k: v for k, v in before.items() if k != '.stagehand/history.jsonl'}
    with open(history, encoding='utf-8') as handle:
        assert json.loads(handle.readlines()[-1])['outcome'] == 'refused'
    _lock.release(root, token=other['token'])


def test_bad_arguments_are_refused_before_anything_is_read(root):
    with pytest.raises(_ship.ShipError, match='not a valid release name|release name'):
        _ship.run({'root': root, 'release': '../x', 'compose_id': 'sha256:' + '0' * 64, 'upload': {'manifest': '/nonexistent'}})
    with pytest.raises(_ship.ShipError, match='shared_dirs'):
        _ship.run({'root': root, 'release': 'v1', 'compose_id': 'sha256:' + '0' * 64, 'upload': {'manifest': '/x'}, 'shared_dirs': ['../etc']})
    assert os.listdir(root) == []


def test_the_artifact_index_serves_the_second_delta(store, tmp_path):
    v1, v2 = store.compose('v1', APP), store.compose('v2', V2)
    held = [{'manifest_digest': v1['id'], 'status': 'complete', 'shared': ['storage']}]
    outs = []
    for n in range(2):
        out = tmp_path / ('idx%d' % n)
        out.mkdir()
        outs.append(_delta.create(v2['manifest'], v2['artifact'], str(out), have=held, manifests=[store.composes],
                                  host_composes=[v1['id']], shared=['storage']))
        assert os.path.isfile(_delta.index_path(v2['artifact']))
    with open(outs[0]['archive'], 'rb') as a, open(outs[1]['archive'], 'rb') as b:
        assert a.read() == b.read()
    # a stale index (the artifact replaced) is not trusted: the full scan decides
    with open(_delta.index_path(v2['artifact']), 'w', encoding='utf-8') as handle:
        json.dump({'format': _delta.INDEX_FORMAT, 'artifact': [0, 0], 'members': {}}, handle)
    out = tmp_path / 'idx-stale'
    out.mkdir()
    again = _delta.create(v2['manifest'], v2['artifact'], str(out), have=held, manifests=[store.composes], host_composes=[v1['id']],
                          shared=['storage'])
    assert again['files'] == 1


def test_report_line_reads_like_the_ship_phase_report():
    sent = {'files': 1, 'total_files': 10001, 'bytes': 1893, 'archive_bytes': 1120, 'manifest': 'delta', 'manifest_bytes': 612,
            'manifest_delta_entries': 2, 'base': 'sha256:' + 'a' * 64}
    line = report_line({'sent': sent, 'switched': True, 'previous': 'v1', 'current': 'v2', 'health': {'elapsed': 0.03},
                        'history': {'phases': {'stage': 0.5, 'lock': 0.001}}}, 'web1')
    assert line.startswith('1 file(s) of 10001 sent (1893 bytes, 1120 compressed); manifest as a delta of 2 entries against sha256:')
    assert '(612 bytes); v2 is live on web1 (before: v1). Health check: healthy after 0.03 s;' in line
    assert line.endswith('seconds per phase: {"lock":0.001,"stage":0.5}')
    staged = report_line({'sent': dict(sent, manifest='kept', manifest_bytes=0), 'needs_migrate': True, 'release': 'v2',
                          'needs_migrate_reason': 'migrations to apply: 0004_orders'}, 'web1')
    assert 'manifest kept on the host (0 bytes); v2 staged on web1, not switched: migrations to apply: 0004_orders.' in staged
    # the prepare phase's call (no switch): staged, or already live
    prepared = report_line({'sent': sent, 'release': 'v2', 'previous': 'v1', 'staged': {'changed': True}}, 'web1', prepared=True)
    assert prepared.endswith('(612 bytes); v2 staged on web1 (staged now), not switched yet (live: v1).')
    live = report_line({'sent': dict(sent, files=0), 'release': 'v2', 'previous': 'v2', 'staged': {'changed': False}}, 'web1', prepared=True)
    assert live.endswith('v2 on web1: already live: nothing to do.')


def test_a_large_shipment_gets_a_progress_line_before_it_is_sent_and_a_small_one_none():
    big = {'files': 4512, 'total_files': 4512, 'bytes': 26_300_000, 'archive_bytes': 8_100_000}
    assert progress_line('web1', 'v3', big) == 'web1: sending 4512 file(s) of 4512 (26.3 MB, 8.1 MB compressed) of v3, then staging it ...'
    assert progress_line('web1', 'v3', {'files': 3, 'total_files': 10, 'bytes': 25_000_000, 'archive_bytes': 1}).startswith('web1: sending 3 ')
    assert progress_line('web1', 'v3', {'files': 999, 'total_files': 4512, 'bytes': 19_999_999}) is None
    assert progress_line('web1', 'v3', {}) is None


def test_a_manifest_without_the_digest_of_its_compose_is_refused(store, tmp_path):
    v1, v2 = store.compose('v1', APP), store.compose('v2', V2)
    out = tmp_path / 'wrong'
    out.mkdir()
    with pytest.raises(_delta.DeltaError, match='digest %s' % v1['id']):
        _delta.create(v2['manifest'], v2['artifact'], str(out), compose_id=v1['id'])
    assert os.listdir(str(out)) == []
    made = _delta.create(v2['manifest'], v2['artifact'], str(out), compose_id=v2['id'])
    assert made['compose_id'] == v2['id'] and made['files'] == made['total_files']


@pytest.mark.skipif(shutil.which('ssh-keygen') is None, reason='needs ssh-keygen')
def test_an_unsigned_compose_is_refused_when_signers_are_required(store, root, tmp_path, snapshot):
    v1, v2 = store.compose('v1', APP), store.compose('v2', V2)
    ship(tmp_path, v1, root, release='v1')
    key = str(tmp_path / 'signer')
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key], check=True)
    allowed = tmp_path / 'allowed_signers'
    with open(key + '.pub', encoding='utf-8') as handle:
        allowed.write_text('deploy %s\n' % ' '.join(handle.read().split()[:2]))
    before = snapshot(os.path.join(root, 'releases'))
    with pytest.raises(_ship.ShipError, match='is not signed') as caught:
        ship(tmp_path, v2, root, release='v2', allowed_signers=str(allowed), identity='deploy')
    assert 'Nothing was staged' in caught.value.msg
    assert caught.value.result['failed_phase'] == 'verify'
    assert snapshot(os.path.join(root, 'releases')) == before
    assert os.readlink(os.path.join(root, 'current')) == 'releases/v1'
    assert not os.path.exists(os.path.join(root, '.stagehand', 'lock'))


def test_held_query_reads_slots_and_the_live_slot(root):
    for slot, label, status in (('a', 'v1', 'complete'), ('b', 'v2', 'incomplete')):
        os.makedirs(os.path.join(root, 'slots', slot))
        os.makedirs(os.path.join(root, '.stagehand', 'slots'), exist_ok=True)
        with open(os.path.join(root, '.stagehand', 'slots', slot + '.json'), 'w', encoding='utf-8') as handle:
            json.dump({'name': slot, 'status': status, 'manifest_digest': 'sha256:' + slot * 64, 'release': label, 'shared': []}, handle)
    with open(os.path.join(root, '.stagehand', 'slots', 'a.manifest.json'), 'w', encoding='utf-8') as handle:
        handle.write('{"version": 1, "entries": []}')  # a slot's tree manifest is not metadata
    os.symlink('slots/a', os.path.join(root, 'current'))
    held = held_of(root)
    assert (held['live'], held['live_kind'], held['releases']) == ('a', 'slots', [])
    assert [(s['name'], s['release'], s['status'], s['live']) for s in held['slots']] == [
        ('a', 'v1', 'complete', True), ('b', 'v2', 'incomplete', False)]
    assert live_compose(held) == {'release': 'v1', 'compose_id': 'sha256:' + 'a' * 64}
    os.unlink(os.path.join(root, 'current'))
    os.symlink('slots/b', os.path.join(root, 'current'))
    assert live_compose(held_of(root)) is None  # the live slot is not complete


def test_the_next_deploy_trusts_an_unchanged_release_by_its_fingerprint(store, root, tmp_path, monkeypatch):
    v1, v2 = store.compose('v1', APP), store.compose('v2', V2)
    ship(tmp_path, v1, root, release='v1')
    with open(os.path.join(root, '.stagehand', 'releases', 'v1.json'), encoding='utf-8') as handle:
        meta = json.load(handle)
    stats = {}
    _manifest._scan_dir(os.path.join(root, 'releases', 'v1'), strict=False, hash_files=False, stats=stats)
    assert meta['stat_digest'] == _manifest.stat_fingerprint(stats)
    read = []
    real = _manifest.hash_file
    monkeypatch.setattr(_release, 'hash_file', lambda path: read.append(path) or real(path))
    monkeypatch.setattr(_manifest, 'hash_file', lambda path: read.append(path) or real(path))
    _made, result = ship(tmp_path, v2, root, release='v2')
    assert result['switched'] and result['staged']['linked'] == len([p for p in APP if not p.startswith('storage/')]) - 1
    # no file of v1 was read to check it before linking it, nor any linked file to verify v2
    assert not [p for p in read if '/releases/v1/' in p or '/releases/v2/' in p], read


def test_a_release_file_changed_in_place_is_not_linked(store, root, tmp_path, snapshot):
    v1, v2 = store.compose('v1', APP), store.compose('v2', V2)
    ship(tmp_path, v1, root, release='v1')
    victim = os.path.join(root, 'releases', 'v1', 'app', 'f001.php')
    st = os.lstat(victim)
    with open(victim, 'r+b') as handle:  # same size and inode, other content: only the mtime tells
        handle.write(b'<?php // XXX')
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    before = snapshot(os.path.join(root, 'releases'))
    with pytest.raises(_ship.ShipError, match=r'1 file\(s\) of the manifest are neither in the partial source .*app/f001.php') as caught:
        ship(tmp_path, v2, root, release='v2')  # the controller believes the host has f001.php: it is not sent
    assert caught.value.result['failed_phase'] == 'stage'
    assert snapshot(os.path.join(root, 'releases')) == before and os.readlink(os.path.join(root, 'current')) == 'releases/v1'


def test_a_run_killed_after_its_switch_is_completed_by_the_rerun(store, root, tmp_path):
    """Issue 11.4: the module died after switching v2 in (lock left, no history line); the rerun takes over at once."""
    from ansible_collections.stagehand.deploy.plugins.module_utils import _flock  # pylint: disable=import-outside-toplevel
    v1, v2 = store.compose('v1', APP), store.compose('v2', V2)
    ship(tmp_path, v1, root, release='v1')
    ship(tmp_path, v2, root, release='v2')
    # what the killed run left: its lock (its module process gone), its staging directory and uploads
    child = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead = _flock.process_identity(child.pid) or {'pid': child.pid, 'start': 0, 'boot': _flock.boot_id(), 'pidns': _flock.pid_namespace()}
    child.wait()
    content = _lock.build_lock('killed-run', 3600, owner='bob', controller='laptop', host_process=dead, action='deploy',
                               release='v2', live='v1')
    with open(os.path.join(root, '.stagehand', 'lock'), 'wb') as f:
        f.write(dump_json(content))
    leftover = os.path.join(root, '.stagehand', 'stage', '.release-v2.0011223344556677.tmp')
    os.makedirs(leftover)
    assert held_of(root)['lock'] == content  # so the action does not end with "already live" while the lock is left
    made, result = ship(tmp_path, v2, root, release='v2')
    assert any('Took over the deploy lock' in w and 'bob on controller laptop' in w for w in result['warnings'])
    assert not os.path.exists(os.path.join(root, '.stagehand', 'lock'))
    assert not os.path.exists(leftover)
    with open(os.path.join(root, '.stagehand', 'history.jsonl'), encoding='utf-8') as handle:
        lines = [json.loads(line) for line in handle]
    assert [line['outcome'] for line in lines[-2:]] == ['interrupted', 'success']
    assert (lines[-2]['release'], lines[-2]['previous'], lines[-2]['live']) == ('v2', 'v1', 'v2')
