# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Issue 11, defects 4, 5 and 9: dead holders, interrupted runs, state permissions, bounded waits, garbage."""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _flock, _history, _lock
from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import dump_json
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot

pytestmark = pytest.mark.skipif(_flock.process_identity(os.getpid()) is None, reason='needs /proc')

RECENT = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) - datetime.timedelta(seconds=5)


def dead_identity() -> dict:
    """The identity of a process that has exited (recorded while it ran)."""
    child = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'], stdin=subprocess.PIPE)
    identity = _flock.process_identity(child.pid)
    child.communicate(b'')
    assert identity is not None and _flock.start_ticks(child.pid) is None
    return identity


def write_holder(root: str, token: str = 'old-token', ttl: int = 3600, **fields) -> dict:
    """An unexpired lock (acquired 5 s ago) of another run."""
    content = _lock.build_lock(token, ttl, owner='bob', controller='ctl-bob', host='web1', pid=4242, purpose='deploy v2', now=RECENT,
                               **fields)
    state = os.path.join(root, '.stagehand')
    os.makedirs(state, exist_ok=True)
    with open(os.path.join(state, 'lock'), 'wb') as f:
        f.write(dump_json(content))
    return content


def history(root: str) -> list:
    try:
        with open(DeployRoot(root).history_path, 'rb') as f:
            return [json.loads(line) for line in f.read().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


# -- defect 4: a provably dead holder is taken over at once ---------------------------------------
def test_dead_controller_process_is_taken_over_with_a_warning_naming_it(tmp_path):
    root = str(tmp_path)
    old = write_holder(root, controller_process=dead_identity())
    got = _lock.acquire(root, token='new-token', owner='alice')
    assert got['acquired'] and got['changed'] and got['taken_over'] == old
    assert _lock.read_lock(got['path'])['token'] == 'new-token'
    assert len(got['warnings']) == 1
    warning = got['warnings'][0]
    assert 'Took over the deploy lock' in warning and 'bob on controller ctl-bob' in warning and 'pid 4242' in warning
    assert 'its ansible-playbook on controller ctl-bob: process %d is gone' % old['controller_process']['pid'] in warning


def test_dead_host_process_is_taken_over(tmp_path):
    root = str(tmp_path)
    write_holder(root, host_process=dead_identity())
    got = _lock.acquire(root, token='new-token')
    assert got['taken_over']['token'] == 'old-token'
    assert 'its module on host web1: process %d is gone' % got['taken_over']['host_process']['pid'] in got['warnings'][0]


def test_reused_pid_is_taken_over(tmp_path):
    root = str(tmp_path)
    me = _flock.process_identity(os.getpid())
    write_holder(root, controller_process=dict(me, start=me['start'] - 1))  # same pid, another start time
    got = _lock.acquire(root, token='new-token')
    assert got['taken_over'] is not None
    assert 'belongs to a process started at tick %d, not %d' % (me['start'], me['start'] - 1) in got['warnings'][0]


@pytest.mark.parametrize('key', ['controller_process', 'host_process'])
def test_live_holder_is_still_refused(tmp_path, key):
    root = str(tmp_path)
    old = write_holder(root, **{key: _flock.process_identity(os.getpid())})
    with pytest.raises(_lock.LockHeld) as exc:
        _lock.acquire(root, token='new-token')
    assert exc.value.holder == old
    assert _lock.read_lock(os.path.join(root, '.stagehand', 'lock'))['token'] == 'old-token'


@pytest.mark.parametrize('change', [{'boot': 'another-boot'}, {'pidns': 'pid:[1]'}, {'start': None, 'pid': None}])
def test_nothing_proven_of_another_machine_or_namespace(tmp_path, change):
    """A dead pid of another boot or pid namespace proves nothing: the lock waits for its expiry as before."""
    root = str(tmp_path)
    write_holder(root, controller_process=dict(dead_identity(), **change))
    with pytest.raises(_lock.LockHeld, match='could not be proven dead'):
        _lock.acquire(root, token='new-token')


def test_old_lock_without_identities_keeps_the_ttl(tmp_path):
    root = str(tmp_path)
    write_holder(root)
    with pytest.raises(_lock.LockHeld):
        _lock.acquire(root, token='new-token')


def test_stale_token_proven_by_the_caller_is_taken_over_only_if_it_still_holds(tmp_path):
    root = str(tmp_path)
    write_holder(root)
    with pytest.raises(_lock.LockHeld):
        _lock.acquire(root, token='new-token', stale_token='some-other-token', stale_reason='x')
    got = _lock.acquire(root, token='new-token', stale_token='old-token', stale_reason='its ansible-playbook on ctl-bob process 4242 is gone')
    assert got['taken_over']['token'] == 'old-token'
    assert 'process 4242 is gone' in got['warnings'][0]


def test_the_action_plugin_proves_the_controller_side(tmp_path):
    """dead_reason on the controller sees a dead ansible-playbook; the retry carries its token."""
    from ansible_collections.stagehand.deploy.plugins.action.lock import stale_retry  # pylint: disable=import-outside-toplevel
    holder = _lock.build_lock('old-token', 3600, controller='ctl', pid=7, controller_process=dead_identity())
    retry = stale_retry({'failed': True, 'holder': holder})
    assert retry is not None and retry['stale_token'] == 'old-token' and 'is gone' in retry['stale_reason']
    alive = _lock.build_lock('old-token', 3600, controller_process=_flock.process_identity(os.getpid()))
    assert stale_retry({'failed': True, 'holder': alive}) is None
    assert stale_retry({'failed': False, 'holder': holder}) is None


def test_the_lock_records_the_identities_and_the_run(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, 'releases', 'v1'))
    os.symlink('releases/v1', os.path.join(root, 'current'))
    me = _flock.process_identity(os.getppid())
    got = _lock.acquire(root, token='t', controller_process=me, host_pid=os.getpid(), action='deploy', release='v2')
    holder = _lock.read_lock(got['path'])
    assert holder['controller_process'] == me
    assert holder['host_process'] == _flock.process_identity(os.getpid())
    assert (holder['action'], holder['release'], holder['live']) == ('deploy', 'v2', 'v1')


@pytest.mark.parametrize('bad', [{'action': 'dance'}, {'release': '../x'}])
def test_bad_action_or_release_is_refused_before_touching_anything(tmp_path, bad):
    with pytest.raises(_lock.LockArgumentError) as exc:
        _lock.acquire(str(tmp_path / 'app'), **bad)
    assert repr(list(bad.values())[0]) in exc.value.msg
    assert not (tmp_path / 'app').exists()


# -- defect 4: the interrupted run's history line -----------------------------------------------
def test_interrupted_run_gets_its_history_line(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, 'releases', 'v2'))
    os.symlink('releases/v2', os.path.join(root, 'current'))  # the dead run switched, then died before its history line
    write_holder(root, controller_process=dead_identity(), action='deploy', release='v2', live='v1')
    got = _lock.acquire(root, token='new-token', action='deploy', release='v2')
    lines = history(root)
    assert len(lines) == 1 and lines[0] == got['interrupted']
    line = lines[0]
    assert (line['action'], line['outcome'], line['release'], line['previous'], line['live']) == ('deploy', 'interrupted', 'v2', 'v1', 'v2')
    assert (line['user'], line['controller'], line['start']) == ('bob', 'ctl-bob', _lock.format_time(RECENT).replace('Z', '.000Z'))
    assert line['error'].startswith('the deploy (deploy v2) was interrupted (its ansible-playbook on controller ctl-bob: process ')
    assert line['error'].endswith('is gone); v2 is live now')


def test_expired_holder_with_an_action_is_completed_too(tmp_path):
    root = str(tmp_path)
    content = _lock.build_lock('old', 60, owner='bob', controller='c', action='cleanup',
                               now=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
    os.makedirs(os.path.join(root, '.stagehand'))
    with open(os.path.join(root, '.stagehand', 'lock'), 'wb') as f:
        f.write(dump_json(content))
    got = _lock.acquire(root)
    assert got['interrupted']['outcome'] == 'interrupted' and got['interrupted']['action'] == 'cleanup'
    assert 'expired at 2020-01-01T00:01:00Z' in got['interrupted']['error']
    assert 'live' not in got['interrupted']  # nothing is live


def test_holder_without_action_gets_no_history_line(tmp_path):
    root = str(tmp_path)
    write_holder(root, controller_process=dead_identity())
    assert _lock.acquire(root)['interrupted'] is None
    assert history(root) == []


def test_history_accepts_interrupted_and_live():
    record = _history.validate_record({'action': 'deploy', 'user': 'u', 'controller': 'c', 'start': '2026-01-01T00:00:00Z',
                                       'outcome': 'interrupted', 'live': 'v2'})
    assert record['outcome'] == 'interrupted' and record['live'] == 'v2'
    plain = _history.validate_record({'action': 'deploy', 'user': 'u', 'controller': 'c', 'start': '2026-01-01T00:00:00Z',
                                      'outcome': 'success'})
    assert 'live' not in plain


# -- defect 5: state files the application user cannot open; bounded waits ----------------------
def test_modes_of_a_new_root(tmp_path):
    root = str(tmp_path / 'app')
    got = _lock.acquire(root)
    _lock.release(root, token=got['token'])
    _history.append_record(root, {'action': 'deploy', 'user': 'u', 'controller': 'c', 'start': '2026-01-01T00:00:00Z', 'outcome': 'success'})
    state = os.path.join(root, '.stagehand')
    assert os.stat(state).st_mode & 0o7777 == 0o711
    assert os.stat(os.path.join(state, 'lock.guard')).st_mode & 0o777 == 0o600
    assert os.stat(os.path.join(state, 'history.jsonl')).st_mode & 0o777 == 0o600


def test_modes_of_an_existing_root_are_fixed_by_the_next_run(tmp_path):
    root = str(tmp_path)
    state = os.path.join(root, '.stagehand')
    for sub in ('releases', 'stage', 'composes'):
        os.makedirs(os.path.join(state, sub))
    os.chmod(os.path.join(state, 'stage'), 0o2755)
    for name in ('lock.guard', 'history.jsonl'):
        with open(os.path.join(state, name), 'w') as f:
            f.write('')
        os.chmod(os.path.join(state, name), 0o644)
    os.chmod(state, 0o755)
    _lock.acquire(root)
    assert os.stat(state).st_mode & 0o7777 == 0o711
    assert os.stat(os.path.join(state, 'lock')).st_mode & 0o777 == 0o600
    for name in ('lock.guard', 'history.jsonl'):
        assert os.stat(os.path.join(state, name)).st_mode & 0o777 == 0o600
    assert os.stat(os.path.join(state, 'releases')).st_mode & 0o7777 == 0o700
    assert os.stat(os.path.join(state, 'stage')).st_mode & 0o7777 == 0o2700  # setgid kept


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to act as another user')
def test_the_application_user_cannot_open_the_guard(tmp_path):
    root = str(tmp_path / 'app')
    os.chmod(str(tmp_path), 0o755)
    _lock.release(root, token=_lock.acquire(root)['token'])
    guard = os.path.join(root, '.stagehand', 'lock.guard')
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                open(guard, 'rb').close()
                code = 2
            except PermissionError:
                code = 0
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0


def hold_flock(path: str):
    """A child process holding an exclusive flock on ``path`` until its stdin closes."""
    child = subprocess.Popen([sys.executable, '-c', 'import fcntl, sys; f = open(sys.argv[1], "rb"); fcntl.flock(f, fcntl.LOCK_EX); '
                              'print("held", flush=True); sys.stdin.read()', path], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout.readline() == b'held\n'
    return child


def test_guard_wait_has_a_timeout_and_a_message_naming_file_and_holder(tmp_path, monkeypatch):
    root = str(tmp_path)
    got = _lock.acquire(root)
    guard = os.path.join(root, '.stagehand', 'lock.guard')
    open(guard, 'a').close()
    child = hold_flock(guard)
    monkeypatch.setattr(_lock, 'GUARD_WAIT', 0.3)
    try:
        started = time.monotonic()
        with pytest.raises(_lock.LockError) as exc:
            _lock.release(root, token=got['token'])
        assert time.monotonic() - started < 5
    finally:
        child.communicate(b'')
    assert guard in exc.value.msg and 'pid %d' % child.pid in exc.value.msg and 'Gave up after 0.3 s' in exc.value.msg
    assert os.path.exists(got['path'])  # nothing changed
    assert _lock.release(root, token=got['token'])['released']  # and once it is let go, it works


def test_history_wait_has_a_timeout_and_a_message(tmp_path, monkeypatch):
    root = str(tmp_path)
    path = DeployRoot(root).history_path
    os.makedirs(os.path.dirname(path))
    open(path, 'a').close()
    child = hold_flock(path)
    monkeypatch.setattr(_history, 'FLOCK_WAIT', 0.2)
    try:
        with pytest.raises(_history.HistoryError) as exc:
            _history.append_record(root, {'action': 'deploy', 'user': 'u', 'controller': 'c', 'start': '2026-01-01T00:00:00Z',
                                          'outcome': 'success'})
    finally:
        child.communicate(b'')
    assert path in str(exc.value) and 'pid %d' % child.pid in str(exc.value)


def test_flock_within_takes_a_free_lock_at_once(tmp_path):
    path = str(tmp_path / 'f')
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _flock.flock_within(fd, path, 0)
        other = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    finally:
        os.close(fd)


# -- defect 9: garbage that no run removed --------------------------------------------------------
def make_garbage(root: str) -> list:
    state = os.path.join(root, '.stagehand')
    staged = os.path.join(state, 'stage', '.release-v3.0123456789abcdef.tmp')
    os.makedirs(os.path.join(staged, 'app', 'ro'))
    with open(os.path.join(staged, 'app', 'ro', 'index.php'), 'w') as f:
        f.write('<?php\n')
    os.chmod(os.path.join(staged, 'app', 'ro'), 0o555)  # a read-only directory of a staged tree
    paths = [staged]
    for suffix in ('.tar.gz', '.manifest.json'):
        paths.append(os.path.join(state, 'upload-v3' + suffix))
        with open(paths[-1], 'w') as f:
            f.write('x')
    return paths


def test_taking_the_lock_removes_what_no_live_run_owns(tmp_path):
    root = str(tmp_path)
    garbage = make_garbage(root)
    keep = os.path.join(root, '.stagehand', 'releases')
    os.makedirs(keep)
    got = _lock.acquire(root)
    assert sorted(got['swept']) == sorted(garbage)
    assert not any(os.path.lexists(p) for p in garbage)
    assert os.path.isdir(keep) and os.listdir(os.path.join(root, '.stagehand', 'stage')) == []


def test_dead_holders_garbage_goes_with_the_takeover(tmp_path):
    root = str(tmp_path)
    write_holder(root, host_process=dead_identity(), action='deploy', release='v3')
    garbage = make_garbage(root)
    got = _lock.acquire(root)
    assert got['taken_over'] and sorted(got['swept']) == sorted(garbage)


def test_the_live_runs_files_are_spared(tmp_path):
    root = str(tmp_path)
    got = _lock.acquire(root, token='mine')
    mine = make_garbage(root)  # the run holding the lock staged and uploaded these
    again = _lock.acquire(root, token='mine')  # the same run acquiring again
    assert again['swept'] == [] and all(os.path.lexists(p) for p in mine)
    # another run is refused by the live holder and removes nothing
    write_holder(root, token='mine', host_process=_flock.process_identity(os.getpid()))
    with pytest.raises(_lock.LockHeld):
        _lock.acquire(root, token='other')
    assert all(os.path.lexists(p) for p in mine)
    assert got['swept'] == []


def test_check_mode_sweeps_nothing(tmp_path):
    root = str(tmp_path)
    garbage = make_garbage(root)
    got = _lock.acquire(root, check_mode=True)
    assert sorted(got['swept']) == sorted(garbage)
    assert all(os.path.lexists(p) for p in garbage)
