# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Bounded ``flock`` waits, and the processes of this machine as the deploy lock records them.

* :func:`flock_within` takes an exclusive ``flock`` with non-blocking tries until a
  deadline; when the deadline passes it raises :class:`FlockTimeout` with a message naming
  the file and, read from ``/proc/locks``, the process (pid, user, command) holding it.
* :func:`process_identity` and :func:`dead_reason` say whether a recorded process is
  provably gone: the record must be of this kernel boot (``boot`` is the random
  ``/proc/sys/kernel/random/boot_id``) and of this pid namespace (``pidns``); then a
  missing ``/proc/<pid>`` or another start time (``start``: clock ticks after boot, field
  22 of ``/proc/<pid>/stat``, so a reused pid shows) proves the process is gone. Anything
  else (another machine or container, a record without these fields, no ``/proc``) proves
  nothing.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
import typing as t

DEFAULT_WAIT = 30.0
POLL = 0.05
PROC = '/proc'


class FlockTimeout(OSError):
    """The flock could not be taken before the deadline; ``msg`` names the file and its holder."""

    def __init__(self, msg: str, path: str) -> None:
        super().__init__(errno.EWOULDBLOCK, msg)
        self.msg = msg
        self.path = path

    def __str__(self) -> str:
        return self.msg


def _read(path: str) -> str | None:
    try:
        with open(path, 'rb') as f:
            return f.read().decode('utf-8', errors='replace')
    except OSError:
        return None


def flock_holders(st: os.stat_result, proc: str = PROC) -> list[int]:
    """Pids that ``/proc/locks`` lists as holding a lock on the inode of ``st`` (0 for a pid of another namespace)."""
    text = _read(os.path.join(proc, 'locks')) or ''
    device = '%02x:%02x:%d' % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    pids = []
    for line in text.splitlines():
        fields = line.split()
        if '->' in fields:  # a waiter, not a holder
            continue
        for index, field in enumerate(fields):
            if field == device and index > 0:
                try:
                    pids.append(int(fields[index - 1]))
                except ValueError:
                    pass
    return pids


def describe_process(pid: int, proc: str = PROC) -> str:
    """``pid 123 (user www-data, command 'flock -x ...')`` as far as ``/proc`` tells."""
    if pid <= 0:
        return 'a process of another pid namespace'
    parts = []
    status = _read(os.path.join(proc, str(pid), 'status')) or ''
    for line in status.splitlines():
        if line.startswith('Uid:'):
            uid = line.split()[1] if len(line.split()) > 1 else '?'
            try:
                import pwd  # pylint: disable=import-outside-toplevel
                parts.append('user %s' % pwd.getpwuid(int(uid)).pw_name)
            except (KeyError, ValueError, ImportError):
                parts.append('uid %s' % uid)
    cmdline = (_read(os.path.join(proc, str(pid), 'cmdline')) or '').replace('\0', ' ').strip()
    if cmdline:
        parts.append('command %r' % cmdline[:200])
    return 'pid %d%s' % (pid, ' (%s)' % ', '.join(parts) if parts else '')


def flock_within(fd: int, path: str, timeout: float = DEFAULT_WAIT, clock: t.Callable[[], float] = time.monotonic,
                 sleep: t.Callable[[float], None] = time.sleep, proc: str = PROC) -> None:
    """Take an exclusive flock on ``fd`` (the file ``path``), trying until ``timeout`` seconds have passed."""
    deadline = clock() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
        if clock() >= deadline:
            holders = [describe_process(pid, proc) for pid in flock_holders(os.fstat(fd), proc)]
            raise FlockTimeout(
                'Gave up after %g s waiting for the flock on %s, held by %s. Nothing was changed; find out why that process '
                'holds the file (state files under .stagehand/ must not be open to any other user) and try again.'
                % (timeout, path, ', '.join(holders) if holders else 'a process that /proc/locks does not show'), path)
        sleep(POLL)


# -- processes --------------------------------------------------------------------------------------
def boot_id(proc: str = PROC) -> str | None:
    """The random id of this kernel boot, None without ``/proc``."""
    text = _read(os.path.join(proc, 'sys', 'kernel', 'random', 'boot_id'))
    if text is None:
        return None
    return text.strip() or None


def pid_namespace(proc: str = PROC) -> str | None:
    """The pid namespace of this process (``pid:[4026531836]``), None when it cannot be read."""
    try:
        return os.readlink(os.path.join(proc, 'self', 'ns', 'pid'))
    except OSError:
        return None


def start_ticks(pid: int, proc: str = PROC) -> int | None:
    """Start time of ``pid`` in clock ticks after boot (field 22 of ``/proc/<pid>/stat``); None when there is no such process."""
    text = _read(os.path.join(proc, str(pid), 'stat'))
    if not text or ')' not in text:
        return None
    fields = text.rsplit(')', 1)[1].split()
    try:
        return int(fields[19])  # fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


def process_identity(pid: int, proc: str = PROC) -> dict[str, t.Any] | None:
    """``{pid, start, boot, pidns}`` of a process of this machine, None when it cannot be told (no ``/proc``, no such pid)."""
    start = start_ticks(pid, proc)
    boot = boot_id(proc)
    pidns = pid_namespace(proc)
    if start is None or boot is None or pidns is None:
        return None
    return {'pid': pid, 'start': start, 'boot': boot, 'pidns': pidns}


def dead_reason(record: object, proc: str = PROC) -> str | None:
    """Why the process ``record`` (as :func:`process_identity` gives it) is provably gone; None when it is not proven."""
    if not isinstance(record, dict):
        return None
    pid, start, boot, pidns = record.get('pid'), record.get('start'), record.get('boot'), record.get('pidns')
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0 or not boot or not pidns:
        return None
    if boot != boot_id(proc) or pidns != pid_namespace(proc):
        return None  # another machine, boot or container: nothing can be proven from here
    now = start_ticks(pid, proc)
    if now is None:
        return 'process %d is gone' % pid
    if isinstance(start, int) and not isinstance(start, bool) and now != start:
        return 'process %d is gone (the pid now belongs to a process started at tick %d, not %d)' % (pid, now, start)
    return None
