# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _switch
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot
from ansible_collections.stagehand.deploy.plugins.modules.release_info import main
from ansible_collections.stagehand.deploy.tests.unit.releases import write_release

BIG = 256 * 1024  # bytes of the shared file, well above any directory block size


def make_release(root, name, created, status='complete', meta=True, content=None):
    return write_release(root, name, {'index.php': content if content is not None else name}, status=status, meta=meta,
                         manifest_digest='sha256:' + name.encode().hex().ljust(64, '0'), created=created,
                         source='build/%s.tar.gz' % name, bytes=1)


def info(run_module, root, check_mode=False, **args):
    args.setdefault('root', str(root))
    return run_module(main, args, check_mode=check_mode)


@pytest.fixture
def root(tmp_path):
    r = tmp_path / 'app'
    r.mkdir()
    # created out of name order on purpose
    make_release(r, 'v2', '2026-01-02T00:00:00Z')
    make_release(r, 'v1', '2026-01-01T00:00:00Z')
    make_release(r, 'v3', '2026-01-03T00:00:00Z')
    make_release(r, 'broken', '2026-01-04T00:00:00Z', status='failed')
    make_release(r, 'partial', None, meta=False)
    for name in ('v1', 'v2', 'v3'):
        _switch.switch(str(r), release=name)
    _switch.switch(str(r), target='previous')  # live v2, previous v1, next v3
    return r


def by_name(res):
    return {entry['name']: entry for entry in res['releases']}


def test_statuses_order_and_chain(run_module, root, snapshot):
    before = snapshot(str(root))
    res = info(run_module, root)
    assert snapshot(str(root)) == before
    assert res['changed'] is False and res['exists'] is True and res['mode'] == 'releases'
    assert [e['name'] for e in res['releases']] == ['v1', 'v2', 'v3', 'broken', 'partial']
    entries = by_name(res)
    assert {n: e['status'] for n, e in entries.items()} == {
        'v1': 'complete', 'v2': 'complete', 'v3': 'complete', 'broken': 'failed', 'partial': 'incomplete'}
    assert entries['broken']['failed_reason'] == 'health check failed'
    assert [n for n, e in entries.items() if e['live']] == ['v2']
    assert [n for n, e in entries.items() if e['previous']] == ['v1']
    assert (res['live'], res['previous'], res['next']) == ('v2', 'v1', 'v3')
    assert entries['v3']['source'] == 'build/v3.tar.gz'
    assert entries['v3']['manifest_digest'].startswith('sha256:')
    assert entries['v3']['activated'] and entries['broken']['activated'] is None
    assert entries['partial']['created'] is None and entries['partial']['manifest_digest'] is None
    assert entries['v1']['path'] == os.path.join(str(root), 'releases', 'v1')
    assert res['current'] == {'kind': 'symlink', 'target': 'releases/v2', 'mode': 'releases', 'name': 'v2'}
    assert res['slots'] == [] and res['lock'] is None


def test_live_compose_names_the_live_release_and_its_digest(run_module, root):
    res = info(run_module, root, name='v3', sizes=False)
    assert res['live_compose'] == {'release': 'v2', 'compose_id': 'sha256:' + 'v2'.encode().hex().ljust(64, '0')}
    assert res['releases'][0]['size'] is None


def test_live_compose_is_null_unless_a_complete_release_with_a_digest_is_live(run_module, root):
    DeployRoot(str(root)).write_meta('v2', dict(DeployRoot(str(root)).read_meta('v2'), status='failed'))
    assert info(run_module, root)['live_compose'] is None
    os.unlink(str(root / 'current'))
    assert info(run_module, root)['live_compose'] is None


def test_name_filter(run_module, root):
    res = info(run_module, root, name='v3')
    assert [e['name'] for e in res['releases']] == ['v3']
    assert res['releases'][0]['live'] is False and res['live'] == 'v2'
    assert info(run_module, root, name='v9')['releases'] == []


@pytest.mark.parametrize('args, fragment', [
    ({'name': '../v1'}, "release name '../v1' is invalid"),
    ({'name': ''}, 'release name is empty'),
    ({'link': 'releases'}, "link name 'releases' is reserved"),
    ({'mode': 'sideways'}, 'value of mode must be one of'),
])
def test_invalid_arguments(run_module, root, snapshot, args, fragment):
    before = snapshot(str(root))
    res = info(run_module, root, **args)
    assert res['failed'] is True and fragment in res['msg']
    assert snapshot(str(root)) == before


def test_size_counts_hardlinks_once(run_module, tmp_path):
    r = tmp_path / 'app'
    payload = os.urandom(BIG)
    for name, created in (('old', '2026-01-01T00:00:00Z'), ('new', '2026-01-02T00:00:00Z')):
        make_release(r, name, created, content='<?php // %s\n' % name)
    with open(r / 'releases' / 'old' / 'vendor.bin', 'wb') as f:
        f.write(payload)
    # the new release shares the big file with the old one (as a hardlinking deploy does), twice
    os.link(r / 'releases' / 'old' / 'vendor.bin', r / 'releases' / 'new' / 'vendor.bin')
    os.link(r / 'releases' / 'old' / 'vendor.bin', r / 'releases' / 'new' / 'vendor-copy.bin')
    entries = by_name(info(run_module, r))
    old, new = entries['old'], entries['new']
    # apparent sizes: what each release holds on its own (each inode once within a release)
    assert old['apparent_size'] == BIG + len('<?php // old\n')
    assert new['apparent_size'] == BIG + len('<?php // new\n')
    # disk sizes: the shared inode counts once, for the oldest release holding it
    assert old['size'] >= BIG
    assert new['size'] < BIG // 4
    total_blocks = 0
    seen = set()
    for dirpath, dirnames, filenames in os.walk(r / 'releases'):
        for entry in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, entry))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total_blocks += st.st_blocks * 512
    assert old['size'] + new['size'] == total_blocks


def test_size_attributes_shared_inode_to_oldest_regardless_of_name(run_module, tmp_path):
    r = tmp_path / 'app'
    make_release(r, 'a-newer', '2026-01-02T00:00:00Z')
    make_release(r, 'z-older', '2026-01-01T00:00:00Z')
    with open(r / 'releases' / 'a-newer' / 'big.bin', 'wb') as f:
        f.write(os.urandom(BIG))
    os.link(r / 'releases' / 'a-newer' / 'big.bin', r / 'releases' / 'z-older' / 'big.bin')
    res = info(run_module, r)
    assert [e['name'] for e in res['releases']] == ['z-older', 'a-newer']
    entries = by_name(res)
    assert entries['z-older']['size'] >= BIG > entries['a-newer']['size']


def test_lock_is_shown(run_module, root):
    lock = {'owner': 'alice', 'purpose': 'deploy v4', 'token': 'abc', 'acquired': '2026-01-01T00:00:00Z',
            'expires': '2026-01-01T01:00:00Z', 'ttl': 3600}
    with open(os.path.join(str(root), '.stagehand', 'lock'), 'w') as f:
        json.dump(lock, f)
    assert info(run_module, root)['lock'] == lock
    with open(os.path.join(str(root), '.stagehand', 'lock'), 'w') as f:
        f.write('garbage')
    assert info(run_module, root)['lock'] == {'raw': 'garbage'}


def test_corrupt_metadata_shows_incomplete(run_module, root):
    with open(os.path.join(str(root), '.stagehand', 'releases', 'v3.json'), 'w') as f:
        f.write('not json')
    entries = by_name(info(run_module, root))
    assert entries['v3']['status'] == 'incomplete' and entries['v3']['created'] is None
    assert entries['v2']['status'] == 'complete'


def test_missing_root(run_module, tmp_path, snapshot):
    before = snapshot(str(tmp_path))
    res = info(run_module, tmp_path / 'nope')
    assert res.get('failed') is not True
    assert res['exists'] is False and res['changed'] is False
    assert res['releases'] == [] and res['slots'] == []
    assert res['live'] is None and res['previous'] is None and res['next'] is None and res['lock'] is None
    assert snapshot(str(tmp_path)) == before


def test_check_mode(run_module, root, snapshot):
    before = snapshot(str(root))
    normal = info(run_module, root)
    checked = info(run_module, root, check_mode=True)
    assert snapshot(str(root)) == before
    assert checked['changed'] is False
    for key in ('releases', 'live', 'previous', 'next', 'lock', 'exists', 'mode', 'current'):
        assert checked[key] == normal[key], key


def test_plain_directory_current(run_module, tmp_path):
    r = tmp_path / 'legacy'
    (r / 'current').mkdir(parents=True)
    res = info(run_module, r)
    assert res['exists'] is True and res['live'] is None and res['releases'] == []
    assert res['current']['kind'] == 'directory'


def make_slot(root, slot, label, status='complete'):
    path = os.path.join(str(root), 'slots', slot)
    os.makedirs(path)
    with open(os.path.join(path, 'index.php'), 'w') as f:
        f.write(label)
    DeployRoot(str(root)).write_slot_meta(slot, {
        'name': slot, 'release': label, 'status': status, 'manifest_digest': 'sha256:' + '1' * 64,
        'created': '2026-01-01T00:00:00Z', 'source': 'test', 'files': 1, 'bytes': len(label),
        'previous': None, 'next': None, 'activated': None, 'failed_reason': None,
    })


@pytest.mark.parametrize('mode', ['slots', 'detect'])
def test_slots(run_module, tmp_path, mode):
    r = tmp_path / 'ab'
    make_slot(r, 'a', 'v1')
    make_slot(r, 'b', 'v2')
    _switch.switch(str(r), mode='slots', target='b')
    res = info(run_module, r, mode=mode)
    assert res['mode'] == 'slots'
    assert (res['live'], res['previous'], res['next']) == ('b', 'a', None)
    slots = {s['name']: s for s in res['slots']}
    assert slots['b']['live'] is True and slots['a']['live'] is False
    assert slots['a']['previous'] is True and slots['b']['previous'] is False
    assert slots['a']['release'] == 'v1' and slots['b']['release'] == 'v2'
    assert slots['a']['status'] == slots['b']['status'] == 'complete'
    assert slots['a']['manifest_digest'] == 'sha256:' + '1' * 64
    assert slots['a']['apparent_size'] == 2 and slots['a']['exists'] is True
    assert res['live_compose'] == {'release': 'v2', 'compose_id': 'sha256:' + '1' * 64}


def test_slots_missing_slot(run_module, tmp_path):
    r = tmp_path / 'ab'
    make_slot(r, 'a', 'v1')
    res = info(run_module, r, mode='slots')
    slots = {s['name']: s for s in res['slots']}
    assert slots['b']['exists'] is False and slots['b']['status'] == 'incomplete' and slots['b']['size'] == 0
    assert res['live'] is None


def test_detect_defaults_to_releases(run_module, root):
    assert info(run_module, root, mode='detect')['mode'] == 'releases'
