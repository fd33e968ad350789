# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A rollback and a cleanup on a really full filesystem: no free block and no free inode.

Each test mounts a small filesystem of its own (a tmpfs, and an ext4 image on a loop device),
deploys onto it while there is room, fills it until nothing more can be created, then runs the
modules' entry points. Mounting needs root (CAP_SYS_ADMIN): where that is not permitted, the
tests are skipped with the reason.
"""

from __future__ import annotations

import datetime
import errno
import os
import shutil
import subprocess
import uuid

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _lock, _switch
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot
from ansible_collections.stagehand.deploy.plugins.modules.cleanup import main as cleanup_main
from ansible_collections.stagehand.deploy.plugins.modules.history import main as history_main
from ansible_collections.stagehand.deploy.plugins.modules.lock import main as lock_main
from ansible_collections.stagehand.deploy.plugins.modules.switch import main as switch_main
from ansible_collections.stagehand.deploy.tests.unit.releases import write_release

LOCK = {'owner': 'alice', 'controller': 'laptop', 'purpose': 'rollback'}
HISTORY = {'action': 'rollback', 'user': 'alice', 'controller': 'laptop'}


def _run(argv):
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _mount(kind, mnt, image):
    """Mount a small filesystem of ``kind`` at ``mnt``; return None, or why it cannot be done here."""
    if os.geteuid() != 0:
        return 'mounting a test filesystem needs root'
    if kind == 'tmpfs':
        proc = _run(['mount', '-t', 'tmpfs', '-o', 'size=2m,nr_inodes=200,mode=0755', 'tmpfs', mnt])
    else:
        if shutil.which('mkfs.ext4') is None:
            return 'mkfs.ext4 is not installed'
        with open(image, 'wb') as f:
            f.truncate(4 * 1024 * 1024)
        made = _run(['mkfs.ext4', '-q', '-F', '-m', '0', '-N', '128', '-O', '^has_journal', image])
        if made.returncode != 0:
            return 'mkfs.ext4 failed: %s' % made.stderr.strip()
        proc = _run(['mount', '-o', 'loop', image, mnt])
    if proc.returncode != 0:
        return 'mount -t %s is not permitted here: %s' % (kind, proc.stderr.strip())
    return None


@pytest.fixture(params=['tmpfs', 'ext4'])
def fs(request, tmp_path):
    """The mount point of a fresh, small filesystem (unmounted afterwards)."""
    mnt = tmp_path / 'mnt'
    mnt.mkdir()
    why = _mount(request.param, str(mnt), str(tmp_path / 'ext4.img'))
    if why is not None:
        pytest.skip('cannot test on a full %s: %s' % (request.param, why))
    yield str(mnt)
    _run(['umount', '-l', str(mnt)])


def write_until_full(path):
    """Append to the file ``path`` in ever smaller writes until not one byte fits (ENOSPC)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        for size in (65536, 4096, 1024, 256, 64, 16, 1):
            try:
                while True:
                    os.write(fd, b'x' * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


def fill(mnt):
    """Use up every inode, then every block, of the filesystem mounted at ``mnt``."""
    pad = os.path.join(mnt, 'pad')
    os.mkdir(pad)
    try:
        for number in range(100000):
            sub = os.path.join(pad, 'd%d' % (number // 100))
            if number % 100 == 0:
                os.mkdir(sub)
            os.close(os.open(os.path.join(sub, '%d' % number), os.O_WRONLY | os.O_CREAT, 0o644))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    # then every block: append to one of those files, in ever smaller writes, until not one byte fits
    write_until_full(os.path.join(pad, 'd0', '0'))
    st = os.statvfs(mnt)
    assert st.f_bavail == 0, 'the filesystem still has %d free blocks' % st.f_bavail
    # nothing new can be created: no inode, or no block for a directory entry
    with pytest.raises(OSError) as exc:
        os.symlink('releases/x' * 30, os.path.join(mnt, 'app', 'probe-%s' % uuid.uuid4().hex))
    assert exc.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as exc:
        os.close(os.open(os.path.join(mnt, 'app', '.stagehand', 'probe'), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    assert exc.value.errno == errno.ENOSPC


def warning_texts(result):
    """The messages of a module result's warnings (plain strings, or 2.19's warning summaries)."""
    return [w if isinstance(w, str) else w['event']['msg'] for w in result.get('warnings', [])]


def free_blocks(mnt):
    return os.statvfs(mnt).f_bavail


def deploy(root, name, moment):
    """Make ``name`` live the way a deploy's switch does (under the lock, with a history line)."""
    _switch.switch_guarded(root, release=name, lock={'purpose': 'deploy %s' % name},
                           history={'action': 'deploy', 'user': 'alice', 'controller': 'laptop'}, now=moment)


@pytest.fixture
def app(fs):
    """A deploy root on the small filesystem: v1, v2, v3 deployed in that order (v3 live), some bulk in v1."""
    root = os.path.join(fs, 'app')
    os.mkdir(root)
    day = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
    for number, name in enumerate(('v1', 'v2', 'v3')):
        files = {'index.php': name}
        if name == 'v1':
            files['bulk.bin'] = b'z' * (256 * 1024)
        write_release(root, name, files=files, created='2026-12-0%dT00:00:00Z' % (number + 1))
        deploy(root, name, day + datetime.timedelta(days=number))
    assert os.readlink(os.path.join(root, 'current')) == 'releases/v3'
    return root


def test_rollback_on_a_full_disk(run_module, fs, app):
    os.unlink(DeployRoot(app).history_path)  # so that the history line needs a new file, which cannot be made
    fill(fs)
    res = run_module(switch_main, {'root': app, 'target': 'previous_good', 'require_live': True,
                                   'lock': dict(LOCK), 'history': dict(HISTORY)})
    assert res.get('failed') is not True, res
    assert res['changed'] is True and res['current'] == 'v2' and res['previous'] == 'v3'
    assert os.readlink(os.path.join(app, 'current')) == 'releases/v2'
    assert res['lock']['acquired'] is True and res['lock']['released'] is True
    assert not os.path.lexists(os.path.join(app, '.stagehand', 'lock'))
    # the history line could not be written: a warning names the cause, the rollback stands
    assert res['history'] is None
    assert any('history line could not be written' in w and 'is full' in w for w in warning_texts(res)), res['warnings']
    # and back again, still on the full disk (the switch forward is the spare left by the rollback)
    res = run_module(switch_main, {'root': app, 'release': 'v3', 'lock': dict(LOCK, purpose='deploy v3')})
    assert res.get('failed') is not True, res
    assert os.readlink(os.path.join(app, 'current')) == 'releases/v3'


def test_cleanup_on_a_full_disk(run_module, fs, app):
    fill(fs)
    assert free_blocks(fs) == 0
    got = run_module(lock_main, {'root': app, 'purpose': 'cleanup, keep 1', 'owner': 'alice'})
    assert got.get('failed') is not True, got
    assert got['acquired'] is True
    res = run_module(cleanup_main, {'root': app, 'keep': 1, 'token': got['token']})
    assert res.get('failed') is not True, res
    assert res['removed'] == ['v1']
    assert sorted(os.listdir(os.path.join(app, 'releases'))) == ['v2', 'v3']
    assert DeployRoot(app).meta_names() == ['v2', 'v3']
    assert free_blocks(fs) > 0
    released = run_module(lock_main, {'root': app, 'state': 'absent', 'token': got['token']})
    assert released.get('failed') is not True and released['released'] is True, released
    assert os.readlink(os.path.join(app, 'current')) == 'releases/v3'


def test_lock_on_a_full_disk_is_still_exclusive(fs, app):
    fill(fs)
    first = _lock.acquire(app, owner='alice', purpose='cleanup')
    with pytest.raises(_lock.LockHeld):
        _lock.acquire(app, owner='bob', purpose='rollback')
    assert _lock.read_lock(os.path.join(app, '.stagehand', 'lock'))['token'] == first['token']
    assert _lock.release(app, token=first['token'])['released'] is True
    # releasing gave the lock file's room back, so the next lock fits again on the still full disk
    again = _lock.acquire(app, owner='bob', purpose='rollback')
    assert _lock.read_lock(os.path.join(app, '.stagehand', 'lock'))['token'] == again['token']


def fill_blocks(mnt):
    """Use up every block of the filesystem at ``mnt`` but no inode: a file can still be made, not filled."""
    os.close(os.open(os.path.join(mnt, 'runaway.log'), os.O_WRONLY | os.O_CREAT, 0o644))
    write_until_full(os.path.join(mnt, 'runaway.log'))
    assert os.statvfs(mnt).f_bavail == 0


def test_a_lock_fits_when_files_can_be_made_but_not_filled(fs, app):
    # a full tmpfs (or ext4 with inodes left): open(O_CREAT) succeeds, the write fails with ENOSPC
    _lock.prepare_reserve(os.path.join(app, '.stagehand'))
    fill_blocks(fs)
    got = _lock.acquire(app, owner='alice', purpose='rollback')
    assert _lock.read_lock(os.path.join(app, '.stagehand', 'lock'))['token'] == got['token']
    assert not [name for name in os.listdir(os.path.join(app, '.stagehand')) if name.startswith('.lock')], \
        os.listdir(os.path.join(app, '.stagehand'))
    assert _lock.release(app, token=got['token'])['released'] is True


def test_a_history_line_that_does_not_fit_leaves_no_torn_line(run_module, fs, app):
    path = DeployRoot(app).history_path
    before = open(path, 'rb').read()
    fill(fs)
    record = dict(HISTORY, action='cleanup', start='2026-12-04T10:00:00Z', outcome='failed', error='x' * 20000)
    res = run_module(history_main, {'root': app, 'record': record})
    assert res['failed'] is True
    assert 'Could not append to the history' in res['msg'] and 'is full' in res['msg'], res['msg']
    assert open(path, 'rb').read() == before


def test_a_lock_that_loses_the_race_gives_the_reserve_back(fs, app, monkeypatch):
    first = _lock.acquire(app, owner='alice', purpose='cleanup')  # taken while there is room
    reserve = os.path.join(app, '.stagehand', _lock.RESERVE_NAME)
    assert os.path.getsize(reserve) == _lock.RESERVE_BYTES
    fill(fs)
    real_load = _lock._load
    calls = []

    def late_load(path):  # bob looks just before alice's lock appears, then tries to put his in place
        calls.append(path)
        return (None, None) if len(calls) == 1 else real_load(path)
    monkeypatch.setattr(_lock, '_load', late_load)
    with pytest.raises(_lock.LockHeld):
        _lock.acquire(app, owner='bob', purpose='rollback')
    assert len(calls) == 2
    assert _lock.read_lock(os.path.join(app, '.stagehand', 'lock'))['token'] == first['token']
    # the reserve was taken, written, refused by RENAME_NOREPLACE / link, and given back
    assert os.path.isfile(reserve)
    assert sorted(n for n in os.listdir(os.path.join(app, '.stagehand')) if n.endswith('.tmp')) == []
