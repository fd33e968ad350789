# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The switch by exchange with a spare link (no allocation), its fallbacks, and renameat2 itself."""

from __future__ import annotations

import ctypes
import errno
import os
import threading

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _atomic, _lock, _switch
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot
from ansible_collections.stagehand.deploy.tests.unit.releases import write_release


@pytest.fixture
def root(tmp_path):
    r = tmp_path / 'app'
    r.mkdir()
    for number, name in enumerate(('v1', 'v2', 'v3'), 1):
        write_release(r, name, created='2026-12-0%dT00:00:00Z' % number)
    return str(r)


def spare(root):
    return _switch.spare_link_path(DeployRoot(root))


def link(path):
    return os.readlink(path)


def no_new_entries(monkeypatch):
    """Make every way of creating a directory entry fail, as on a full filesystem."""
    def refuse(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, 'symlink', refuse)
    monkeypatch.setattr(os, 'link', refuse)
    monkeypatch.setattr(os, 'mkdir', refuse)


def test_exchange_swaps_two_links_and_the_live_one_is_never_missing(tmp_path):
    live, other = str(tmp_path / 'current'), str(tmp_path / 'spare')
    os.symlink('releases/a', live)
    os.symlink('releases/b', other)
    seen = {'missing': 0, 'reads': 0}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                os.readlink(live)
            except FileNotFoundError:
                seen['missing'] += 1
            seen['reads'] += 1

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _round in range(2000):
            _atomic.exchange(live, other)
    finally:
        stop.set()
        watcher.join()
    assert seen['reads'] > 0 and seen['missing'] == 0
    assert (link(live), link(other)) == ('releases/a', 'releases/b')  # an even number of swaps
    _atomic.exchange(live, other)
    assert (link(live), link(other)) == ('releases/b', 'releases/a')


def test_exchange_by_system_call_number_without_the_libc_wrapper(tmp_path, monkeypatch):
    if os.uname().machine not in _atomic._RENAMEAT2_SYSCALLS:
        pytest.skip('no renameat2 system call number known for %s' % os.uname().machine)
    libc = ctypes.CDLL(None, use_errno=True)

    class NoWrapper:
        syscall = libc.syscall

    monkeypatch.setattr(_atomic, '_libc', NoWrapper())
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    os.symlink('one', a)
    os.symlink('two', b)
    _atomic.exchange(a, b)
    assert (link(a), link(b)) == ('two', 'one')
    with pytest.raises(FileExistsError):
        _atomic.rename_noreplace(a, b)
    with pytest.raises(FileNotFoundError):
        _atomic.exchange(a, str(tmp_path / 'missing'))


def test_rename_noreplace_refuses_an_existing_name(tmp_path):
    a, b, c = (str(tmp_path / n) for n in 'abc')
    for path in (a, b):
        with open(path, 'w') as f:
            f.write(os.path.basename(path))
    with pytest.raises(FileExistsError):
        _atomic.rename_noreplace(a, b)
    assert open(b).read() == 'b'
    _atomic.rename_noreplace(a, c)
    assert open(c).read() == 'a' and not os.path.exists(a)


def test_a_deploy_leaves_the_spare_at_the_rollback_target(root):
    for name in ('v1', 'v2', 'v3'):
        _switch.switch(root, release=name)
    assert link(os.path.join(root, 'current')) == 'releases/v3'
    assert link(spare(root)) == 'releases/v2'
    assert os.path.isfile(os.path.join(root, '.stagehand', _lock.RESERVE_NAME))


def test_a_prepared_rollback_creates_nothing(root, monkeypatch):
    for name in ('v1', 'v2', 'v3'):
        _switch.switch(root, release=name)
    spare_inode = os.lstat(spare(root)).st_ino
    no_new_entries(monkeypatch)
    res = _switch.switch(root, target='previous_good')
    assert res['changed'] is True and res['current'] == 'v2'
    # the spare became the live link; the old live link is the spare, ready to switch forward again
    assert link(os.path.join(root, 'current')) == 'releases/v2'
    assert os.lstat(os.path.join(root, 'current')).st_ino == spare_inode
    assert link(spare(root)) == 'releases/v3'
    # re-pointing the spare at v2's rollback target (v1) needed a new link: only a warning
    assert any('could not prepare' in w and 'is full' in w for w in res['warnings']), res['warnings']


def test_the_spare_follows_the_rollback_target(root):
    for name in ('v1', 'v2', 'v3'):
        _switch.switch(root, release=name)
    res = _switch.switch(root, target='previous_good')
    assert res['warnings'] == []
    assert link(os.path.join(root, 'current')) == 'releases/v2'
    assert link(spare(root)) == 'releases/v1'  # the rollback target of v2, for the next rollback


def test_an_unprepared_switch_on_a_full_disk_says_why(root, monkeypatch):
    _switch.switch(root, release='v1')
    os.unlink(os.path.join(root, '.stagehand', 'lock.reserve'))
    no_new_entries(monkeypatch)
    with pytest.raises(OSError) as exc:
        _switch.switch(root, release='v2')
    assert exc.value.errno == errno.ENOSPC
    assert 'no spare link' in str(exc.value) and 'is full' in str(exc.value)
    assert link(os.path.join(root, 'current')) == 'releases/v1'


@pytest.mark.parametrize('err', [errno.EINVAL, errno.ENOSYS, errno.EXDEV])
def test_without_rename_exchange_the_spare_is_renamed_over_the_link(root, monkeypatch, err):
    for name in ('v1', 'v2'):
        _switch.switch(root, release=name)
    assert link(spare(root)) == 'releases/v1'

    def unsupported(path_a, path_b):
        raise OSError(err, os.strerror(err))
    monkeypatch.setattr(_atomic, 'exchange', unsupported)
    seen = []
    real_symlink = os.symlink

    def watch_symlink(*args, **kwargs):
        seen.append(args)
        return real_symlink(*args, **kwargs)
    monkeypatch.setattr(os, 'symlink', watch_symlink)
    _switch.switch_guarded(root, target='previous_good', require_live=True, lock={'purpose': 'rollback'})
    assert link(os.path.join(root, 'current')) == 'releases/v1'
    # the rename used the prepared spare; afterwards a new spare is made for what is now the rollback target
    # (v1 has none, so none) and nothing was created for the switch itself
    assert seen == [] and not os.path.lexists(spare(root))


def test_a_failed_health_check_reverts_by_exchange(root, monkeypatch):
    for name in ('v1', 'v2'):
        _switch.switch(root, release=name)
    no_new_entries(monkeypatch)

    def fetch(url, header, timeout):
        return 500, None, 'down', None
    with pytest.raises(_switch.SwitchFailed) as exc:
        _switch.switch_checked(root, target='previous', health_url='http://127.0.0.1:9/health', health_timeout=0.1, fetch=fetch)
    assert exc.value.result['reverted'] is True
    assert link(os.path.join(root, 'current')) == 'releases/v2'
    assert link(spare(root)) == 'releases/v1'


def test_slots_spare_is_the_other_slot(tmp_path):
    root = str(tmp_path / 'app')
    for slot in ('a', 'b'):
        os.makedirs(os.path.join(root, 'slots', slot))
        DeployRoot(root).write_slot_meta(slot, {'status': 'complete', 'release': 'r-' + slot})
    _switch.switch(root, target='a', mode='slots')
    assert link(spare(root)) == 'slots/b'
    _switch.switch(root, target='inactive', mode='slots')
    assert link(os.path.join(root, 'current')) == 'slots/b' and link(spare(root)) == 'slots/a'


def test_a_lock_that_cannot_be_written_names_what_is_still_live(root, monkeypatch):
    _switch.switch(root, release='v2')

    def no_room(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(_lock, 'acquire', no_room)
    with pytest.raises(_switch.GuardedFailure) as exc:
        _switch.switch_guarded(root, lock={'ttl': 60}, release='v1')
    assert exc.value.result['previous'] == 'v2', exc.value.result
    assert exc.value.result['failed_phase'] == 'lock'
    assert link(os.path.join(root, 'current')) == 'releases/v2'
