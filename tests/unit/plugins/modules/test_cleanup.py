# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import datetime
import json
import os
import time

import pytest
from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.common import warnings as ansible_warnings

from ansible_collections.stagehand.deploy.plugins.module_utils import _cleanup, _lock, _release, _switch
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot
from ansible_collections.stagehand.deploy.plugins.modules.cleanup import main
from ansible_collections.stagehand.deploy.tests.unit.releases import write_release

HOUR = 3600


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Module-side warnings are collected process-wide: start every test without any (see test_lock_module)."""
    monkeypatch.setattr(module_utils_internal, 'is_controller', False)
    monkeypatch.setattr(ansible_warnings, '_global_warnings', type(ansible_warnings._global_warnings)())  # {} on 2.19, [] before


def make_release(root, name, day, status='complete', meta=True, directory=True, previous=None, size=1000):
    return write_release(root, name, {'public/index.php': name * (size // len(name))}, status=status, meta=meta,
                         directory=directory, created='2026-01-%02dT00:00:00Z' % day, bytes=size, previous=previous,
                         activated='2026-01-%02dT00:00:00Z' % day)


def set_live(root, name):
    link = os.path.join(str(root), 'current')
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink('releases/' + name, link)


def age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def dump(root, name, seconds=0):
    directory = os.path.join(str(root), '.stagehand', 'dumps')
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, 'wb') as f:
        f.write(b'\x1f\x8b' + b'x' * 5000)
    if seconds:
        age(path, seconds)
    return path


@pytest.fixture
def root(tmp_path):
    """v1..v6 (one a day), v3 failed, v6 live with v5 as its rollback target."""
    r = tmp_path / 'app'
    r.mkdir()
    for day, name in enumerate(('v1', 'v2', 'v3', 'v4', 'v5', 'v6'), 1):
        make_release(r, name, day, status='failed' if name == 'v3' else 'complete',
                     previous='v%d' % (day - 1) if day > 1 else None)
    set_live(r, 'v6')
    return r


@pytest.fixture
def token(root):
    return _lock.acquire(str(root), owner='alice', purpose='cleanup')['token']


def cleanup(run_module, root, token, check_mode=False, diff=False, **args):
    args.setdefault('root', str(root))
    args['token'] = token
    return run_module(main, args, check_mode=check_mode, diff=diff)


def releases(root):
    return sorted(os.listdir(os.path.join(str(root), 'releases')))


def metas(root):
    return DeployRoot(str(root)).meta_names()


# -- what goes and what stays ----------------------------------------------------------
def test_keeps_newest_failed_first_never_live_or_rollback(run_module, root, token):
    res = cleanup(run_module, root, token, keep=2)
    assert res.get('failed') is not True, res
    assert res['changed'] is True
    assert res['removed'] == ['v3', 'v1', 'v2', 'v4']  # the failed one first, then the oldest
    assert res['kept'] == ['v6', 'v5'] and res['live'] == 'v6' and res['rollback_target'] == 'v5'
    assert releases(root) == ['v5', 'v6'] and metas(root) == ['v5', 'v6']
    assert os.readlink(os.path.join(str(root), 'current')) == 'releases/v6'
    # nothing is left aside in the staging directory
    assert os.listdir(os.path.join(str(root), '.stagehand', 'stage')) == []
    again = cleanup(run_module, root, token, keep=2)
    assert again['changed'] is False and again['removed'] == [] and again['freed_bytes'] == 0


def test_keep_one_still_keeps_the_rollback_target(run_module, root, token):
    res = cleanup(run_module, root, token, keep=1)
    assert res['kept'] == ['v6', 'v5'] and releases(root) == ['v5', 'v6']


def test_after_a_rollback_the_old_live_release_and_its_previous_stay(run_module, root, token):
    set_live(root, 'v2')  # rolled back far: live v2, rollback target v1
    res = cleanup(run_module, root, token, keep=2)
    assert res['removed'] == ['v3', 'v4']
    assert res['kept'] == ['v6', 'v5', 'v2', 'v1'] and res['rollback_target'] == 'v1'
    assert releases(root) == ['v1', 'v2', 'v5', 'v6']


def test_failed_live_release_is_kept(run_module, tmp_path):
    root = tmp_path / 'app'
    make_release(root, 'v1', 1)
    make_release(root, 'v2', 2, status='failed', previous='v1')
    set_live(root, 'v2')  # switched with force
    for day, name in ((3, 'v3'), (4, 'v4')):
        make_release(root, name, day)
    token = _lock.acquire(str(root))['token']
    res = cleanup(run_module, root, token, keep=1)
    assert res['removed'] == ['v3'] and sorted(res['kept']) == ['v1', 'v2', 'v4']


def test_incomplete_and_metadata_only_releases_go(run_module, root, token):
    make_release(root, 'v7-crashed', 7, meta=False)  # a directory without metadata
    make_release(root, 'v0-gone', 0, directory=False)  # metadata without a directory
    res = cleanup(run_module, root, token, keep=5)
    assert res['removed'] == ['v3', 'v7-crashed', 'v0-gone']  # failed, then incomplete (no creation time first)
    assert releases(root) == ['v1', 'v2', 'v4', 'v5', 'v6'] and metas(root) == ['v1', 'v2', 'v4', 'v5', 'v6']


def test_no_current_keeps_the_newest(run_module, root, token):
    os.unlink(os.path.join(str(root), 'current'))
    res = cleanup(run_module, root, token, keep=1)
    assert res['kept'] == ['v6'] and res['live'] is None and res['rollback_target'] is None
    assert res['removed'] == ['v3', 'v1', 'v2', 'v4', 'v5']


# -- staging leftovers and dumps -------------------------------------------------------------
def test_old_staging_leftovers_and_dumps_of_removed_releases(run_module, root, token):
    stage = os.path.join(str(root), '.stagehand', 'stage')
    os.makedirs(os.path.join(stage, '.release-v7.aaaa.tmp', 'public'))
    with open(os.path.join(stage, '.release-v7.aaaa.tmp', 'public', 'x.php'), 'wb') as f:
        f.write(b'x' * 8192)
    age(os.path.join(stage, '.release-v7.aaaa.tmp'), 2 * HOUR)
    os.makedirs(os.path.join(stage, '.release-v8.bbbb.tmp'))  # a fresh one stays
    kept_dumps = [dump(root, 'v5.sql.gz'), dump(root, 'v6.sql.gz')]
    gone_dumps = [dump(root, 'v1.sql.gz'), dump(root, 'v3.sql.gz'), dump(root, 'v0-long-gone.sql.gz'),
                  dump(root, '.v6.sql.gz.0123.tmp', seconds=2 * HOUR)]
    young_tmp = dump(root, '.v7.sql.gz.4567.tmp')
    other = dump(root, 'notes.txt', seconds=10 * HOUR)
    res = cleanup(run_module, root, token, keep=2)
    assert res.get('failed') is not True, res
    assert res['removed_stage'] == [os.path.join(stage, '.release-v7.aaaa.tmp')]
    assert os.listdir(stage) == ['.release-v8.bbbb.tmp']
    assert sorted(res['removed_dumps']) == sorted(gone_dumps)
    for path in gone_dumps:
        assert not os.path.exists(path)
    for path in kept_dumps + [young_tmp, other]:
        assert os.path.exists(path)


def test_freed_bytes_do_not_count_files_shared_with_kept_releases(run_module, root, token):
    shared = os.path.join(str(root), 'releases', 'v6', 'public', 'big.bin')
    with open(shared, 'wb') as f:
        f.write(os.urandom(64 * 1024))
    os.link(shared, os.path.join(str(root), 'releases', 'v4', 'public', 'big.bin'))
    removed = ['v1', 'v2', 'v3', 'v4']
    expected = 0
    for name in removed:
        for dirpath, dirnames, filenames in os.walk(os.path.join(str(root), 'releases', name)):
            expected += os.lstat(dirpath).st_blocks * 512
            for filename in filenames:
                st = os.lstat(os.path.join(dirpath, filename))
                if st.st_nlink == 1:
                    expected += st.st_blocks * 512
    preview = cleanup(run_module, root, token, keep=2, check_mode=True)
    res = cleanup(run_module, root, token, keep=2)
    assert res['freed_bytes'] == preview['freed_bytes'] == expected
    assert expected < 64 * 1024  # the shared file is not counted
    assert os.path.exists(shared)


def test_freed_size_counts_an_inode_once_all_its_links_go(tmp_path):
    a = tmp_path / 'a'
    b = tmp_path / 'b'
    a.mkdir()
    b.mkdir()
    (a / 'f').write_bytes(os.urandom(10000))
    os.link(str(a / 'f'), str(b / 'f'))
    file_blocks = os.lstat(str(a / 'f')).st_blocks * 512
    dirs = os.lstat(str(a)).st_blocks * 512 + os.lstat(str(b)).st_blocks * 512
    assert _cleanup.freed_size([str(a), str(b)]) == dirs + file_blocks
    assert _cleanup.freed_size([str(a)]) == os.lstat(str(a)).st_blocks * 512


# -- the lock --------------------------------------------------------------------------------
def test_refuses_without_the_lock(run_module, root, snapshot):
    before = snapshot(str(root))
    res = cleanup(run_module, root, 'made-up-token', keep=1)
    assert res['failed'] is True and 'without the deploy lock' in res['msg'] and 'stagehand.deploy.lock' in res['msg']
    assert res['removed'] == [] and snapshot(str(root)) == before


def test_refuses_when_another_deploy_holds_the_lock(run_module, root, snapshot):
    _lock.acquire(str(root), owner='bob', controller='ci-3', purpose='deploy v7')
    before = snapshot(str(root))
    res = cleanup(run_module, root, 'mine', keep=1)
    assert res['failed'] is True and 'bob' in res['msg'] and "'deploy v7'" in res['msg']
    assert res['holder']['owner'] == 'bob'
    assert snapshot(str(root)) == before
    # check mode refuses too: the lock module would have failed to take it
    res = cleanup(run_module, root, 'mine', keep=1, check_mode=True)
    assert res['failed'] is True and snapshot(str(root)) == before


def test_refuses_an_expired_lock(run_module, root, snapshot):
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
    token = _lock.acquire(str(root), ttl=60, now=past)['token']
    before = snapshot(str(root))
    res = cleanup(run_module, root, token, keep=1)
    assert res['failed'] is True and 'expired' in res['msg'] and snapshot(str(root)) == before


def test_refuses_a_corrupt_lock(run_module, root, snapshot):
    os.makedirs(os.path.join(str(root), '.stagehand'), exist_ok=True)
    with open(os.path.join(str(root), '.stagehand', 'lock'), 'w') as f:
        f.write('garbage')
    before = snapshot(str(root))
    res = cleanup(run_module, root, 'x', keep=1)
    assert res['failed'] is True and 'not a valid stagehand lock' in res['msg'] and snapshot(str(root)) == before


@pytest.mark.parametrize('args, words', [
    ({'keep': 0}, ['keep 0 is invalid', '>= 1']),
    ({'keep': -3}, ['keep -3 is invalid']),
    ({'token': ''}, ["token '' is invalid"]),
])
def test_bad_arguments_change_nothing(run_module, root, token, snapshot, args, words):
    args.setdefault('token', token)
    before = snapshot(str(root))
    res = cleanup(run_module, root, args.pop('token'), **args)
    assert res['failed'] is True
    for word in words:
        assert word in res['msg']
    assert snapshot(str(root)) == before


def test_missing_root_is_refused(run_module, tmp_path):
    res = cleanup(run_module, tmp_path / 'nope', 'x')
    assert res['failed'] is True and 'does not exist' in res['msg']


# -- check mode and diff -----------------------------------------------------------------------
def test_check_mode_lists_and_changes_nothing(run_module, root, token, snapshot):
    dump(root, 'v1.sql.gz')
    before = snapshot(str(root))
    res = cleanup(run_module, root, token, keep=2, check_mode=True, diff=True)
    assert res['changed'] is True and res['removed'] == ['v3', 'v1', 'v2', 'v4']
    assert res['removed_dumps'] == [os.path.join(str(root), '.stagehand', 'dumps', 'v1.sql.gz')]
    assert res['freed_bytes'] > 0
    assert res['diff']['before'] == 'v1\nv2\nv3\nv4\nv5\nv6\n' and res['diff']['after'] == 'v5\nv6\n'
    assert snapshot(str(root)) == before


def test_check_mode_without_the_lock_warns(run_module, root, snapshot):
    before = snapshot(str(root))
    res = cleanup(run_module, root, 'token-from-a-check-mode-lock', keep=2, check_mode=True)
    assert res.get('failed') is not True and res['removed'] == ['v3', 'v1', 'v2', 'v4']
    texts = [w if isinstance(w, str) else w['event']['msg'] for w in res.get('warnings', [])]
    assert any('no deploy lock is held' in w for w in texts)
    assert snapshot(str(root)) == before


def test_result_is_json_serialisable(run_module, root, token):
    res = cleanup(run_module, root, token, keep=3)
    json.dumps(res)
    assert set(res) >= {'removed', 'kept', 'freed_bytes', 'removed_stage', 'removed_dumps'}


def test_with_releases_made_by_the_release_module(run_module, tmp_path):
    """Real releases (manifests, hardlinked files) switched one after the other; cleanup keeps two."""
    root = tmp_path / 'app'
    src = tmp_path / 'src'
    (src / 'public').mkdir(parents=True)
    (src / 'vendor.bin').write_bytes(os.urandom(32 * 1024))  # identical in every release: hardlinked
    for i in range(1, 5):
        (src / 'public' / 'index.php').write_text('<?php echo "v%d";\n' % i)
        _release.ensure_release(str(root), 'v%d' % i, str(src))
        meta = DeployRoot(str(root)).read_meta('v%d' % i)
        meta['created'] = '2026-01-0%dT00:00:00Z' % i  # distinct times (the module writes whole seconds)
        DeployRoot(str(root)).write_meta('v%d' % i, meta)
        _switch.switch(str(root), release='v%d' % i)
    token = _lock.acquire(str(root))['token']
    res = cleanup(run_module, root, token, keep=2)
    assert res['removed'] == ['v1', 'v2'] and res['kept'] == ['v4', 'v3']
    assert releases(root) == ['v3', 'v4']
    assert sorted(os.listdir(os.path.join(str(root), '.stagehand', 'manifests'))) == ['v3.json', 'v4.json']
    # the shared vendor file is still there and now has only the links of the kept releases
    assert os.stat(os.path.join(str(root), 'releases', 'v4', 'vendor.bin')).st_nlink == 2
    assert res['freed_bytes'] < 32 * 1024
    back = _switch.switch(str(root), target='previous')
    assert back['current'] == 'v3'
