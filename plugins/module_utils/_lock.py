# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The deploy lock: one holder per deploy root.

The lock is the file ``<root>/.stagehand/lock`` holding JSON::

    {"owner", "controller", "host", "pid", "purpose", "token",
     "acquired": ISO-UTC, "expires": ISO-UTC, "ttl": seconds,
     "controller_process": {"pid", "start", "boot", "pidns"} | null,
     "host_process": {"pid", "start", "boot", "pidns"} | null,
     "action": "deploy"|"rollback"|"cleanup"|null, "release": str|null, "live": str|null}

``controller_process`` is the ``ansible-playbook`` process on the controller and
``host_process`` the process on the host that holds the lock for its whole run (the
ship and switch modules); see :mod:`._flock` for what the fields mean. ``action``,
``release`` (being deployed) and ``live`` (what was live when the lock was taken) let
the next run complete the history of a run that was interrupted.

Protocol (no check-then-write anywhere):

* **Acquire a free lock**: the content is written to a unique temporary file
  in ``.stagehand/`` and fsynced, then ``link(2)``-ed to ``lock``. ``link``
  fails with EEXIST when the lock exists, so exactly one of any number of
  concurrent acquirers wins, and the lock never exists half written.
* **Every change to an existing lock** (taking over an expired lock,
  releasing) happens while holding ``fcntl.flock`` on the separate file
  ``.stagehand/lock.guard``, after re-reading the lock under that guard: a
  takeover replaces the lock with ``rename(2)`` only if it still carries the
  stale token that was seen, a release unlinks it only if it still carries
  the releaser's token. The guard file is never removed (removing a flock
  file lets two processes lock two different inodes).
* A lock file that cannot be parsed is treated as held: it is never taken
  over automatically.
* **On a full filesystem** (no block or inode for the temporary file) the
  content is written in place into ``.stagehand/lock.reserve``, a file of
  :data:`RESERVE_BYTES` prepared by every switch and cleanup while there is
  room (:func:`prepare_reserve`), which is then renamed to the temporary
  name; and where ``link(2)`` itself needs room (tmpfs counts a link like an
  inode) the lock is put in place by ``renameat2(RENAME_NOREPLACE)``, as
  exclusive as the link. Releasing unlinks the lock, which gives its room back.
* A lock whose holder is **provably dead** is taken over at once, with a warning
  naming it: its ``host_process`` or ``controller_process`` is of this machine (same
  boot, same pid namespace) and gone, or its pid now belongs to another process; or
  the caller proved it dead (the action plugins check ``controller_process`` on the
  controller) and passes its token as ``stale_token``. When the dead (or expired)
  holder recorded an ``action``, a history line with outcome ``interrupted`` is
  appended for it. Whoever takes the lock (free or taken over) removes what no live
  run owns: the staging directories in ``.stagehand/stage/`` and the ``upload-*``
  files in ``.stagehand/``.
* The guard is waited for at most :data:`GUARD_WAIT` seconds (non-blocking tries);
  the state directory is mode 0711 and the lock, the guard and the history 0600, so
  the application user cannot open (and ``flock``) them.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
import shutil
import socket
import stat
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import (
    dump_json,
    fsync_dir,
    is_disk_full,
    rename_noreplace,
    temp_name,
)
from ansible_collections.stagehand.deploy.plugins.module_utils import _flock, _history
from ansible_collections.stagehand.deploy.plugins.module_utils._names import InvalidName, check_release_name
from ansible_collections.stagehand.deploy.plugins.module_utils._root import InvalidRoot, claim_decision, mark_root
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot

DEFAULT_TTL = 3600
GUARD_NAME = 'lock.guard'
RESERVE_NAME = 'lock.reserve'
RESERVE_BYTES = 4096
MAX_TOKEN_LENGTH = 256
RAW_HEAD_BYTES = 200
# Bounded retries when the lock changes under us between reading and acting
# (for instance released right after our link() failed). Each retry re-reads.
MAX_ATTEMPTS = 20

LOCK_FIELDS = ('owner', 'controller', 'host', 'pid', 'purpose', 'token', 'acquired', 'expires', 'ttl',
               'controller_process', 'host_process', 'action', 'release', 'live')
ACTIONS = ('deploy', 'rollback', 'cleanup')
GUARD_WAIT = 30.0
# Modes of the state kept under .stagehand/: the directory may be traversed (php-fpm runs the
# opcache script there by its name) but not listed; what is flock-ed or written by deploys is
# the deploying user's only.
STATE_DIR_MODE = 0o711
STATE_FILE_MODE = 0o600
PRIVATE_FILES = ('lock', GUARD_NAME, 'history.jsonl')
PRIVATE_DIRS = ('releases', 'manifests', 'slots', 'stage', 'composes', 'dumps')
GARBAGE_PREFIX = 'upload-'

_TIME_FORMAT = '%Y-%m-%dT%H:%M:%SZ'


class LockError(Exception):
    """A lock operation was refused; ``msg`` says why and what to do."""

    def __init__(self, msg: str, path: str | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.path = path


class LockArgumentError(LockError, ValueError):
    """An argument (ttl, token) is invalid; nothing was touched."""


class LockHeld(LockError):
    """The lock is held by another, unexpired holder."""

    def __init__(self, msg: str, path: str, holder: dict[str, t.Any]) -> None:
        super().__init__(msg, path)
        self.holder = holder


class LockCorrupt(LockError):
    """The lock file exists but is not a valid lock; it is treated as held."""

    def __init__(self, msg: str, path: str, raw: bytes) -> None:
        super().__init__(msg, path)
        self.raw = raw


# -- time -------------------------------------------------------------------
def utc_now() -> datetime.datetime:
    """The current UTC time, truncated to whole seconds (the precision stored in the lock)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def format_time(moment: datetime.datetime) -> str:
    """``2026-11-22T10:00:00Z`` for an aware datetime."""
    return moment.astimezone(datetime.timezone.utc).strftime(_TIME_FORMAT)


def parse_time(value: object) -> datetime.datetime | None:
    """Parse an ISO 8601 UTC time as written by :func:`format_time` (``Z`` or ``+00:00``); None if invalid."""
    if not isinstance(value, str) or not value:
        return None
    text = value[:-1] + '+00:00' if value.endswith('Z') else value
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(datetime.timezone.utc)


# -- validation and content -------------------------------------------------
def new_token() -> str:
    """A fresh random holder token."""
    return secrets.token_hex(16)


def check_ttl(ttl: object) -> int:
    """Return ``ttl`` if it is a positive whole number of seconds, else raise :class:`LockArgumentError`."""
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise LockArgumentError('ttl %r is invalid: use a positive whole number of seconds (default %d)' % (ttl, DEFAULT_TTL))
    try:
        utc_now() + datetime.timedelta(seconds=ttl)
    except OverflowError:
        raise LockArgumentError('ttl %r is too large: the expiry time cannot be represented' % (ttl,)) from None
    return ttl


def check_token(token: object) -> str:
    """Return ``token`` if it is usable as a holder token, else raise :class:`LockArgumentError`."""
    if not isinstance(token, str) or not token:
        raise LockArgumentError('token %r is invalid: use a non-empty string (or omit it to get a random one)' % (token,))
    if len(token) > MAX_TOKEN_LENGTH:
        raise LockArgumentError('token %r... is %d characters long: use at most %d' % (token[:20], len(token), MAX_TOKEN_LENGTH))
    if any(ord(c) < 32 or ord(c) == 127 for c in token):
        raise LockArgumentError('token %r is invalid: control characters are not allowed' % (token,))
    return token


def build_lock(
    token: str,
    ttl: int,
    owner: str | None = None,
    controller: str | None = None,
    host: str | None = None,
    pid: int | None = None,
    purpose: str | None = None,
    now: datetime.datetime | None = None,
    controller_process: dict[str, t.Any] | None = None,
    host_process: dict[str, t.Any] | None = None,
    action: str | None = None,
    release: str | None = None,
    live: str | None = None,
) -> dict[str, t.Any]:
    """The lock content for a holder acquiring at ``now`` (default: the current time)."""
    acquired = (now or utc_now()).replace(microsecond=0)
    return {
        'owner': owner,
        'controller': controller,
        'host': host,
        'pid': pid,
        'purpose': purpose,
        'token': token,
        'acquired': format_time(acquired),
        'expires': format_time(acquired + datetime.timedelta(seconds=ttl)),
        'ttl': ttl,
        'controller_process': controller_process,
        'host_process': host_process,
        'action': action,
        'release': release,
        'live': live,
    }


def lock_text(content: dict[str, t.Any]) -> str:
    """The exact text written to the lock file for ``content``."""
    return dump_json(content).decode('utf-8')


def is_expired(holder: dict[str, t.Any], now: datetime.datetime | None = None) -> bool:
    """True when the lock's ``expires`` time has been reached (an unparsable time counts as not expired)."""
    expires = parse_time(holder.get('expires'))
    if expires is None:
        return False
    return (now or utc_now()) >= expires


def _valid_lock(data: object) -> bool:
    return (
        isinstance(data, dict)
        and isinstance(data.get('token'), str)
        and bool(data.get('token'))
        and parse_time(data.get('expires')) is not None
    )


def _load(path: str) -> tuple[bytes | None, dict[str, t.Any] | None]:
    """``(raw, holder)``: ``(None, None)`` when absent, ``(raw, None)`` when not a valid lock."""
    try:
        with open(path, 'rb') as f:
            raw = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    try:
        data = json.loads(raw.decode('utf-8'))
    except ValueError:  # includes UnicodeDecodeError and json.JSONDecodeError
        return raw, None
    if not _valid_lock(data):
        return raw, None
    return raw, data


def read_lock(path: str) -> dict[str, t.Any] | None:
    """The parsed lock at ``path``, None when there is none; raises :class:`LockCorrupt` for an invalid file."""
    raw, holder = _load(path)
    if raw is not None and holder is None:
        raise LockCorrupt(corrupt_message(path, raw), path, raw)
    return holder


def raw_head(raw: bytes) -> str:
    """The first bytes of an unreadable lock file, printable."""
    head = repr(raw[:RAW_HEAD_BYTES])
    return head + (' ... (%d bytes in total)' % len(raw) if len(raw) > RAW_HEAD_BYTES else '')


# -- messages ---------------------------------------------------------------
def describe_holder(holder: dict[str, t.Any], now: datetime.datetime | None = None) -> str:
    """One line naming who holds the lock, from where, for what, since when and until when."""
    parts = ['%s on controller %s' % (holder.get('owner') or 'an unknown user', holder.get('controller') or '(unknown)')]
    if holder.get('pid') is not None:
        parts.append('(ansible-playbook pid %s)' % holder.get('pid'))
    host_process = holder.get('host_process')
    if isinstance(host_process, dict) and host_process.get('pid') is not None:
        parts.append('with process %s on host %s' % (host_process.get('pid'), holder.get('host') or '(unknown)'))
    if holder.get('purpose'):
        parts.append('for %r' % holder.get('purpose'))
    parts.append('since %s' % (holder.get('acquired') or '(unknown)'))
    expires = parse_time(holder.get('expires'))
    if expires is not None:
        left = int((expires - (now or utc_now())).total_seconds())
        if left > 0:
            parts.append('until %s (expires in %d s)' % (holder.get('expires'), left))
        else:
            parts.append('until %s (expired %d s ago)' % (holder.get('expires'), -left))
    return ' '.join(parts)


def _manual_release(root: str, path: str, host: str) -> str:
    return (
        'release the lock by hand: run the stagehand.deploy.lock module with '
        "root=%s state=absent force=true (e.g. ansible %s -m stagehand.deploy.lock -a 'root=%s state=absent force=true'), "
        'or remove %s on %s.' % (root, host, root, path, host)
    )


def held_message(root: str, path: str, holder: dict[str, t.Any], now: datetime.datetime | None = None) -> str:
    """The refusal message for a lock held by someone else."""
    host = holder.get('host') or socket.gethostname()
    return ('Deploy lock %s on host %s is held by %s. Wait for that deploy to finish or for the lock to expire. '
            'Its processes could not be proven dead from here (a holder whose process is gone is taken over at once '
            'when it ran on the same controller or host). If that deploy is no longer running, %s'
            % (path, host, describe_holder(holder, now), _manual_release(root, path, host)))


def corrupt_message(path: str, raw: bytes, root: str | None = None) -> str:
    """The refusal message for a lock file that is not a valid lock."""
    root = root or os.path.dirname(os.path.dirname(path))
    return (
        'Deploy lock %s exists but is not a valid stagehand lock (first bytes: %s); it is treated as held and will not '
        'be taken over automatically. Make sure no deploy is running against %s, then %s' % (
            path, raw_head(raw), root, _manual_release(root, path, socket.gethostname()))
    )


# -- filesystem steps -------------------------------------------------------
def _write_tmp(directory: str, content: dict[str, t.Any]) -> str:
    """Write ``content`` to a new unique file in ``directory``, fsynced; return its path."""
    tmp = temp_name(directory, 'lock')
    data = dump_json(content)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, STATE_FILE_MODE)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        return _write_reserve(directory, data, exc)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, STATE_FILE_MODE)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        _unlink_quietly(tmp)
        if not is_disk_full(exc):  # the file could be made but not filled (a full tmpfs): take the reserve
            raise
        return _write_reserve(directory, data, exc)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- the reserve: a lock on a full filesystem ------------------------------
def prepare_reserve(state_dir: str) -> bool:
    """Make sure ``.stagehand/lock.reserve`` exists with :data:`RESERVE_BYTES` allocated; True if it was made now.

    Called while there is room (by every switch and cleanup), so that a lock can be written on a
    full filesystem later. Raises OSError (ENOSPC among others): callers treat it as best effort.
    """
    reserve = os.path.join(state_dir, RESERVE_NAME)
    try:
        st = os.lstat(reserve)
        if stat.S_ISREG(st.st_mode) and st.st_size >= RESERVE_BYTES:  # one given back after a failed take is smaller
            return False
    except FileNotFoundError:
        pass
    tmp = temp_name(state_dir, RESERVE_NAME)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, STATE_FILE_MODE)
    try:
        try:
            os.write(fd, b'\n' * RESERVE_BYTES)  # written, not sparse: the blocks are allocated now
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, reserve)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(state_dir)
    return True


def _write_reserve(directory: str, data: bytes, cause: OSError) -> str:
    """The filesystem is full: take the reserve under a temporary name and overwrite it with ``data``."""
    tmp = temp_name(directory, RESERVE_NAME)
    try:
        os.rename(os.path.join(directory, RESERVE_NAME), tmp)  # atomic: of two takers, one gets it
    except FileNotFoundError:
        raise cause from None
    try:
        fd = os.open(tmp, os.O_WRONLY)
        try:
            if os.pwrite(fd, data, 0) != len(data):  # into blocks that are already allocated
                raise cause
            os.ftruncate(fd, len(data))
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _put_back(directory, tmp)
        raise
    return tmp


def _put_back(directory: str, tmp: str) -> None:
    """Give an unused temporary file taken from the reserve back as the reserve; remove any other."""
    if os.path.basename(tmp).startswith('.%s.' % RESERVE_NAME):
        try:
            rename_noreplace(tmp, os.path.join(directory, RESERVE_NAME))
            return
        except OSError:
            pass
    _unlink_quietly(tmp)


@contextlib.contextmanager
def _guard(state_dir: str, wait: float | None = None) -> t.Iterator[None]:
    """Hold an exclusive flock on ``.stagehand/lock.guard`` (created if needed, never removed), waiting at most ``wait`` s.

    Raises :class:`LockError` naming the guard and the process holding it when the wait times out.
    """
    path = os.path.join(state_dir, GUARD_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0), STATE_FILE_MODE)
    try:
        try:
            _flock.flock_within(fd, path, GUARD_WAIT if wait is None else wait)
        except _flock.FlockTimeout as exc:
            raise LockError(exc.msg, os.path.join(state_dir, 'lock')) from None
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


def _link_new(state_dir: str, path: str, content: dict[str, t.Any]) -> bool:
    """Create the lock with ``content`` if there is none; False if it exists."""
    tmp = _write_tmp(state_dir, content)
    try:
        try:
            os.link(tmp, path)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            try:
                rename_noreplace(tmp, path)  # exclusive like link(2), and needs no room
            except FileExistsError:
                raise
            except OSError:
                raise exc from None
    except FileExistsError:
        _put_back(state_dir, tmp)
        return False
    except BaseException:
        _put_back(state_dir, tmp)
        raise
    _unlink_quietly(tmp)
    fsync_dir(state_dir)
    return True


def _take_over(state_dir: str, path: str, stale: dict[str, t.Any], content: dict[str, t.Any]) -> bool:
    """Replace the lock by ``content`` if it is still the stale lock ``stale``; False if it changed meanwhile."""
    with _guard(state_dir):
        _raw, current = _load(path)
        if current is None or current.get('token') != stale.get('token'):
            return False
        tmp = _write_tmp(state_dir, content)
        try:
            os.rename(tmp, path)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        fsync_dir(state_dir)
    return True


def _check_root(droot: DeployRoot) -> None:
    for directory in (droot.root, droot.state_dir):
        if os.path.lexists(directory) and not os.path.isdir(directory):
            raise LockError('%s exists but is not a directory: the deploy root and its .stagehand must be directories' % directory,
                            droot.lock_path)


def _result(path: str, token: str | None, before: str | None, after: dict[str, t.Any] | str | None, **fields: t.Any) -> dict[str, t.Any]:
    after_text = lock_text(after) if isinstance(after, dict) else after
    result: dict[str, t.Any] = {
        'changed': False,
        'acquired': False,
        'released': False,
        'token': token,
        'holder': None,
        'taken_over': None,
        'path': path,
        'warnings': [],
        'diff': {
            'before': before or '',
            'after': after_text or '',
            'before_header': path if before is not None else '%s (absent)' % path,
            'after_header': path if after_text is not None else '%s (absent)' % path,
        },
    }
    result.update(fields)
    return result


# -- state permissions, garbage, interrupted runs -----------------------------
def secure_state(droot: DeployRoot) -> list[str]:
    """Give ``.stagehand`` mode 0711, its state files 0600 and its state directories 0700 (setgid kept).

    Returns warnings for what could not be changed (another owner). Missing entries are skipped.
    """
    warnings = []
    targets = [(droot.state_dir, STATE_DIR_MODE, True)]
    targets += [(os.path.join(droot.state_dir, name), STATE_FILE_MODE, False) for name in PRIVATE_FILES]
    targets += [(os.path.join(droot.state_dir, name), 0o700, True) for name in PRIVATE_DIRS]
    for path, mode, is_dir in targets:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode) != is_dir:
            continue
        want = (st.st_mode & (stat.S_ISGID if is_dir else 0)) | mode
        if stat.S_IMODE(st.st_mode) != want:
            try:
                os.chmod(path, want)
            except OSError as exc:
                warnings.append('could not make %s mode %04o (the application user may open it): %s' % (path, want, exc))
    return warnings


def _remove(path: str) -> None:
    """Remove a file or a whole tree, including read-only directories of a staged tree."""
    if not os.path.isdir(path) or os.path.islink(path):
        os.unlink(path)
        return
    try:
        shutil.rmtree(path)
    except PermissionError:
        for top, dirs, _files in os.walk(path):
            for name in [top] + [os.path.join(top, d) for d in dirs]:
                if not os.path.islink(name):
                    os.chmod(name, stat.S_IMODE(os.lstat(name).st_mode) | stat.S_IRWXU)
        shutil.rmtree(path)


def garbage(droot: DeployRoot) -> list[str]:
    """What no live run owns once the lock is newly held: the entries of ``.stagehand/stage/`` and the ``upload-*`` files.

    (Temporary files directly in ``.stagehand`` are left alone: acquirers that lose the race write theirs there.)
    """
    found = []
    for directory, keep in ((droot.stage_dir, lambda name: True),
                            (droot.state_dir, lambda name: name.startswith(GARBAGE_PREFIX))):
        try:
            names = sorted(os.listdir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        found.extend(os.path.join(directory, name) for name in names if keep(name))
    return found


def sweep(droot: DeployRoot, check_mode: bool = False) -> tuple[list[str], list[str]]:
    """Remove :func:`garbage` (not in check mode): ``(removed, warnings)``. Call only while holding the lock."""
    removed, warnings = [], []
    for path in garbage(droot):
        if not check_mode:
            try:
                _remove(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                warnings.append('could not remove %s, left by an earlier run: %s' % (path, exc))
                continue
        removed.append(path)
    if removed and not check_mode:
        for directory in {os.path.dirname(path) for path in removed}:
            fsync_dir(directory)
    return removed, warnings


def dead_reason(holder: dict[str, t.Any]) -> str | None:
    """Why the lock's holder is provably dead as seen from this machine; None when it is not proven."""
    for key, where in (('host_process', 'host'), ('controller_process', 'controller')):
        why = _flock.dead_reason(holder.get(key))
        if why is not None:
            return 'its %s on %s %s: %s' % ('module' if key == 'host_process' else 'ansible-playbook', where,
                                            holder.get(where) or '(unknown)', why)
    return None


def interrupted_record(holder: dict[str, t.Any], why: str, live: str | None, now: datetime.datetime | None = None) -> dict[str, t.Any] | None:
    """The history record completing the run of ``holder`` (outcome ``interrupted``); None when it recorded no action."""
    if holder.get('action') not in ACTIONS:
        return None
    names = {}
    for key in ('release', 'live'):
        value = holder.get(key)
        try:
            names[key] = check_release_name(value) if value else None
        except InvalidName:
            names[key] = None
    moment = now or utc_now()
    return {
        'action': holder['action'],
        'release': names['release'],
        'previous': names['live'],
        'live': live,
        'user': holder.get('owner') or '(unknown)',
        'controller': holder.get('controller') or '(unknown)',
        'start': holder.get('acquired') if parse_time(holder.get('acquired')) else format_time(moment),
        'end': format_time(moment),
        'outcome': 'interrupted',
        'phases': {},
        'error': 'the %s%s was interrupted (%s); %s is live now' % (
            holder['action'], ' (%s)' % holder['purpose'] if isinstance(holder.get('purpose'), str) and holder['purpose'] else '',
            why, live or 'nothing'),
    }


def check_action(action: object) -> str | None:
    if action is not None and action not in ACTIONS:
        raise LockArgumentError('action %r is invalid: use one of %s (or omit it)' % (action, ', '.join(ACTIONS)))
    return t.cast('str | None', action)


# -- public operations ------------------------------------------------------
def acquire(
    root: str,
    token: str | None = None,
    owner: str | None = None,
    controller: str | None = None,
    pid: int | None = None,
    purpose: str | None = None,
    ttl: int = DEFAULT_TTL,
    host: str | None = None,
    check_mode: bool = False,
    now: datetime.datetime | None = None,
    controller_process: dict[str, t.Any] | None = None,
    host_pid: int | None = None,
    action: str | None = None,
    release: str | None = None,
    stale_token: str | None = None,
    stale_reason: str | None = None,
) -> dict[str, t.Any]:
    """Acquire the deploy lock of ``root``.

    Returns a result dict with ``changed``, ``acquired``, ``released`` (always
    False), ``token``, ``holder`` (the lock content after the call; in check
    mode what it would be), ``taken_over`` (the expired or dead holder replaced, or
    None), ``interrupted`` (the history record appended for it, or None), ``swept``
    (what no live run owned and was removed), ``path``, ``warnings`` (list of str)
    and ``diff`` (before/after text).

    ``controller_process`` is the identity of the ``ansible-playbook`` process
    (:func:`._flock.process_identity`, taken on the controller); ``host_pid`` the
    process of this host that holds the lock for its whole run (its identity is
    recorded). ``stale_token``: the token of a holder the caller proved dead
    (``stale_reason`` says how); that holder is taken over even before it expires.

    Raises :class:`LockHeld` when another holder's lock has not expired and is not
    provably dead, :class:`LockCorrupt` for an unreadable lock file,
    :class:`LockArgumentError` for a bad ttl, token, action or release (before
    touching anything), :class:`LockError` when the root is not a directory, may not be a
    deploy root (``_root.claim_decision``: nothing is written then; a new or claimable root
    gets its marker once the lock is held), or the guard cannot be had in time. ``host`` defaults to this machine's hostname;
    ``now`` is for tests.
    """
    check_ttl(ttl)
    token = check_token(new_token() if token is None else token)
    check_action(action)
    if release is not None:
        try:
            check_release_name(release)
        except InvalidName as exc:
            raise LockArgumentError(str(exc)) from None
    droot = DeployRoot(root)
    path = droot.lock_path
    _check_root(droot)
    try:
        # the lock is the first write of every run: refuse a directory that is not a deploy root before it
        claim = claim_decision(root)
    except InvalidRoot as exc:
        raise LockError(str(exc), path) from None
    if host is None:
        host = socket.gethostname()
    if not check_mode:
        os.makedirs(droot.root, exist_ok=True)
        try:
            os.mkdir(droot.state_dir, STATE_DIR_MODE)
        except FileExistsError:
            pass
    host_process = _flock.process_identity(host_pid) if host_pid is not None else None
    live = droot.live_label()

    def won(before: str | None, content: dict[str, t.Any], taken: dict[str, t.Any] | None = None,
            why: str | None = None) -> dict[str, t.Any]:
        result = _result(path, token, before, content, changed=True, acquired=True, holder=content, taken_over=taken,
                         interrupted=None, swept=[])
        if not check_mode:  # the lock is ours: mark a new root as a deploy root, fix the modes of one made by an earlier version
            if claim != 'marked':
                mark_root(root, format_time(now or utc_now()))
            result['warnings'].extend(secure_state(droot))
        if taken is not None:
            result['warnings'].append('Took over the deploy lock %s from %s: %s.' % (path, describe_holder(taken), why))
            record = interrupted_record(taken, t.cast(str, why), live)
            if record is not None and not check_mode:
                try:
                    result['interrupted'] = _history.append_record(droot.root, record)['record']
                except (_history.HistoryError, OSError) as exc:
                    result['warnings'].append('could not complete the history of the interrupted run: %s' % exc)
            elif record is not None:
                result['interrupted'] = record
        result['swept'], more = sweep(droot, check_mode)
        result['warnings'].extend(more)
        return result

    for _attempt in range(MAX_ATTEMPTS):
        moment = now or utc_now()
        content = build_lock(token, ttl, owner=owner, controller=controller, host=host, pid=pid, purpose=purpose, now=moment,
                             controller_process=controller_process, host_process=host_process, action=action, release=release,
                             live=live)
        raw, holder = _load(path)
        if raw is None:
            if check_mode or _link_new(droot.state_dir, path, content):
                return won(None, content)
            continue  # somebody linked first: look at what is there now
        before = raw.decode('utf-8', errors='replace')
        if holder is None:
            raise LockCorrupt(corrupt_message(path, raw, droot.root), path, raw)
        if holder['token'] == token:
            result = _result(path, token, before, before, acquired=True, holder=holder, interrupted=None, swept=[])
            if is_expired(holder, moment):
                result['warnings'].append(
                    'The lock %s held with this token expired at %s; another deploy may take it over. '
                    'Release it and acquire it again to renew it.' % (path, holder.get('expires')))
            return result
        if stale_token is not None and holder['token'] == stale_token:
            why: str | None = stale_reason or 'the caller found its process gone'
        else:
            why = dead_reason(holder)
        if why is None and is_expired(holder, moment):
            why = 'it expired at %s' % holder.get('expires')
        if why is None:
            raise LockHeld(held_message(droot.root, path, holder, moment), path, holder)
        if check_mode or _take_over(droot.state_dir, path, holder, content):
            return won(before, content, holder, why)
        # the stale lock changed under the guard (released or taken over by someone else): re-evaluate
    raise LockError('The deploy lock %s kept changing while trying to acquire it (%d attempts); try again.' % (path, MAX_ATTEMPTS), path)


def _release_decision(path: str, raw: bytes, holder: dict[str, t.Any] | None, token: str | None, force: bool) -> str | None:
    """None if the lock may be removed, else the warning explaining why it is left in place."""
    if force:
        return None
    if holder is None:
        return ('The deploy lock %s is not a valid lock (first bytes: %s); it was left in place. '
                'Use force=true to remove it.' % (path, raw_head(raw)))
    if token is not None and holder.get('token') == token:
        return None
    why = 'no token was given' if token is None else 'the token does not match'
    return ('The deploy lock %s was not released because %s: it is held by %s. '
            'Pass the token returned when acquiring, or force=true to remove it anyway.' % (path, why, describe_holder(holder)))


def release(root: str, token: str | None = None, force: bool = False, check_mode: bool = False) -> dict[str, t.Any]:
    """Release the deploy lock of ``root`` if ``token`` holds it (any holder with ``force``).

    Never raises because of the lock's state: an absent lock gives
    ``changed=False``; a lock held by another token (or unreadable) is left in
    place with ``released=False`` and an entry in ``warnings``. Result keys are
    those of :func:`acquire`; ``holder`` is what remains (None once removed;
    ``{'raw': <first bytes>}`` for an unreadable file).
    """
    droot = DeployRoot(root)
    path = droot.lock_path
    raw, holder = _load(path)
    if raw is not None and not check_mode and _release_decision(path, raw, holder, token, force) is None:
        # re-read and decide again under the guard, so that nobody takes over in between
        with _guard(droot.state_dir):
            raw, holder = _load(path)
            if raw is not None and _release_decision(path, raw, holder, token, force) is None:
                os.unlink(path)
                fsync_dir(droot.state_dir)
                return _result(path, token, raw.decode('utf-8', errors='replace'), None, changed=True, released=True)
        # the lock changed hands meanwhile: report what is there now
    if raw is None:
        return _result(path, token, None, None)
    before = raw.decode('utf-8', errors='replace')
    warning = _release_decision(path, raw, holder, token, force)
    if warning is None:  # only reached in check mode
        return _result(path, token, before, None, changed=True, released=True)
    shown = holder if holder is not None else {'raw': raw_head(raw)}
    result = _result(path, token, before, before, holder=shown)
    result['warnings'].append(warning)
    return result
