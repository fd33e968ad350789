# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Partition switching: point the live symlink at another release or slot.

The switch is planned completely before anything is written, so a refused
request changes nothing and check mode reports exactly what a real run does.

Order of the writes for a release that goes live for the first time (``T``,
with ``L`` live before)::

    1. T.previous = L, T.next = null      (intent; T.activated stays null)
    2. current -> releases/T              (exchange with the spare link, fsync of the root; see point_link)
    3. L.next = T
    4. T.activated = now                  (commit)

``current`` is the only truth for "live". A crash after step 2 leaves the live
release with ``activated: null`` and its ``previous`` already recorded, so the
next call finishes steps 3 and 4 (see :func:`plan_switch`, "repair").

A plain directory at ``current`` (a site deployed before stagehand) is
migrated without a moment where ``current`` is missing: the new symlink is
created at ``releases/<migrated name>`` and swapped with the directory by
renameat2(RENAME_EXCHANGE), which leaves the old directory exactly where it
belongs as a release.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import os
import stat
import time
import socket
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils import _atomic, _history, _lock, _migrate, _schema
from ansible_collections.stagehand.deploy.plugins.module_utils._crash import crash_point
from ansible_collections.stagehand.deploy.plugins.module_utils._names import (
    SLOT_NAMES,
    InvalidName,
    check_release_name,
    is_release_name,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._state import (
    MODE_RELEASES,
    MODE_SLOTS,
    STATUS_COMPLETE,
    DeployRoot,
    check_link_name,
    format_utc,
    format_utc_ms,
    inactive_slot,
)

SWITCH_MODES = (MODE_RELEASES, MODE_SLOTS)
TARGET_PREVIOUS = 'previous'
TARGET_PREVIOUS_GOOD = 'previous_good'
TARGET_INACTIVE = 'inactive'
RELEASE_TARGETS = (TARGET_PREVIOUS, TARGET_PREVIOUS_GOOD)
SLOT_TARGETS = SLOT_NAMES + (TARGET_INACTIVE,)
MIGRATE_PREFIX = 'migrated-'

# errno values meaning "this kernel / filesystem cannot do RENAME_EXCHANGE"
_EXCHANGE_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, getattr(errno, 'EOPNOTSUPP', errno.EINVAL))

GAP_WARNING = (
    'renameat2(RENAME_EXCHANGE) is not supported here (%s), so the plain directory %s was '
    'renamed aside before the symlink was put in its place: requests in that brief gap saw no %s.'
)


class SwitchError(Exception):
    """A refused or failed switch. The message names the value and what is allowed."""


def default_migrate_name(moment: datetime.datetime) -> str:
    """``migrated-<UTC yyyymmddTHHMMSS>``."""
    return MIGRATE_PREFIX + moment.astimezone(datetime.timezone.utc).strftime('%Y%m%dT%H%M%S')


class _MetaView:
    """Release metadata as it will be after the planned writes; records those writes.

    Each write is ``(phase, name, fields, create)``: ``fields`` are merged into
    the metadata of ``name`` (all other keys are preserved); ``create`` allows
    writing a file that does not exist yet.
    """

    def __init__(self, droot: DeployRoot) -> None:
        self.droot = droot
        self._cache: dict[str, dict[str, t.Any] | None] = {}
        self.ops: list[tuple[str, str, dict[str, t.Any], bool]] = []

    def get(self, name: str) -> dict[str, t.Any] | None:
        if name not in self._cache:
            meta = self.droot.read_meta(name)
            self._cache[name] = meta if isinstance(meta, dict) else None
        meta = self._cache[name]
        return dict(meta) if meta is not None else None

    def update(self, phase: str, name: str, fields: dict[str, t.Any], create: bool = False) -> None:
        meta = self.get(name)
        if meta is None and not create:
            return
        merged = dict(meta or {})
        merged.update(fields)
        if merged == meta:
            return
        self._cache[name] = merged
        self.ops.append((phase, name, dict(fields), create))


class SwitchPlan:
    """Everything :func:`apply_switch` will do, and the result it will report."""

    def __init__(self, droot: DeployRoot, mode: str, name: str) -> None:
        self.droot = droot
        self.mode = mode
        self.name = name
        self.text = DeployRoot.link_text(mode, name)
        self.path = droot.target_path(mode, name)
        self.current: dict[str, t.Any] = {}
        self.previous: str | None = None
        self.link_changes = False
        self.migrate: str | None = None
        self.meta: _MetaView = _MetaView(droot)
        self.chain: dict[str, str | None] = {'live': None, 'previous': None, 'next': None}
        self.warnings: list[str] = []
        # the moment (seconds since the epoch) the link changed, read right after the exchange
        self.switched_at: float | None = None

    @property
    def changed(self) -> bool:
        return self.link_changes or bool(self.meta.ops)

    def diff(self) -> dict[str, str]:
        kind = self.current.get('kind')
        if kind == 'symlink':
            before = '%s\n' % self.current['target']
        elif kind == 'directory':
            before = '(plain directory)\n'
        else:
            before = ''
        return {
            'before': before,
            'after': '%s\n' % self.text,
            'before_header': self.droot.current,
            'after_header': self.droot.current,
        }

    def result(self) -> dict[str, t.Any]:
        return {
            'changed': self.changed,
            'previous': self.previous,
            'current': self.name,
            'chain': dict(self.chain),
            'mode': self.mode,
            'path': self.path,
            'migrated': self.migrate,
            'diff': self.diff(),
            'warnings': list(self.warnings),
        }


def _refuse_unusable_current(droot: DeployRoot, current: dict[str, t.Any]) -> None:
    if current['kind'] == 'other':
        raise SwitchError(
            '%s exists but is neither a symlink nor a directory; move it away first '
            '(switch only replaces a symlink into releases/ or slots/, or migrates a plain directory)' % droot.current
        )
    if current['kind'] == 'symlink' and current['mode'] is None:
        raise SwitchError(
            '%s is a symlink to %r, which is outside %s/ and %s/ (not a release or slot of this root); '
            'refusing to replace it: point it at a release or slot, or remove it, first'
            % (droot.current, current['target'], droot.releases_dir, droot.slots_dir)
        )


def _describe_current(droot: DeployRoot, current: dict[str, t.Any]) -> str:
    if current['kind'] == 'missing':
        return '%s does not exist' % droot.current
    if current['kind'] == 'directory':
        return '%s is a plain directory' % droot.current
    return '%s points at %s' % (droot.current, current['target'])


def describe_releases(droot: DeployRoot, live: str | None = None) -> str:
    """``v1 (complete), v2 (complete, live), v3 (failed)``: the releases on disk with their status, or ``none``."""
    names = [name for name in droot.release_names() if is_release_name(name)]
    return ', '.join('%s (%s%s)' % (name, droot.release_status(name), ', live' if name == live else '') for name in names) or 'none'


def previous_good(droot: DeployRoot, plan_meta: _MetaView, live: str) -> str:
    """The release to roll back to from ``live``: its recorded previous release when that one is complete, else the
    complete release activated most recently before ``live``. Raises :class:`SwitchError` when there is none."""
    meta = plan_meta.get(live) or {}
    previous = meta.get('previous')
    if is_release_name(previous) and previous != live and droot.release_status(previous) == STATUS_COMPLETE:
        return t.cast(str, previous)
    live_activated = meta.get('activated') or ''
    best: tuple[str, str] | None = None
    for name in droot.release_names():
        if name == live or not is_release_name(name) or droot.release_status(name) != STATUS_COMPLETE:
            continue
        activated = (plan_meta.get(name) or {}).get('activated')
        if isinstance(activated, str) and activated and activated < live_activated and (best is None or activated > best[0]):
            best = (activated, name)
    if best is None:
        raise SwitchError(
            '%s is live and there is no earlier good release to roll back to (its previous release %s); '
            'releases there: %s' % (live, ('%s is %s' % (previous, droot.release_status(previous))) if is_release_name(previous)
                                    else 'is not recorded', describe_releases(droot, live)))
    return best[1]


def _resolve_release(droot: DeployRoot, plan_meta: _MetaView, current: dict[str, t.Any],
                     release: str | None, target: str | None) -> str:
    if target is not None and release is None:
        if target not in RELEASE_TARGETS:
            raise SwitchError(
                'target %r is only valid in mode=slots; in mode=releases use target=previous, target=previous_good '
                'or release=<name>' % (target,)
            )
        if current['mode'] != MODE_RELEASES:
            raise SwitchError(
                'target=%s needs a live release to go back from, but %s' % (target, _describe_current(droot, current))
            )
        live = current['name']
        if target == TARGET_PREVIOUS_GOOD:
            return previous_good(droot, plan_meta, live)
        meta = plan_meta.get(live) or {}
        previous = meta.get('previous')
        if not previous:
            raise SwitchError(
                'target=previous: the live release %r has no previous release recorded in %s; '
                'name the release to switch to with release=<name>' % (live, droot.meta_path(live))
            )
        if not is_release_name(previous):
            raise SwitchError(
                'target=previous: the metadata of the live release %r names an invalid previous release %r' % (live, previous)
            )
        return previous
    try:
        return check_release_name(release)
    except InvalidName as exc:
        raise SwitchError(str(exc)) from None


def _check_release_usable(droot: DeployRoot, name: str, force: bool, how: str) -> None:
    path = droot.release_path(name)
    if not os.path.isdir(path) or os.path.islink(path):
        available = droot.release_names()
        raise SwitchError(
            'release %r%s does not exist: %s is not a release directory (available: %s); force does not change that'
            % (name, how, path, ', '.join(available) if available else 'none')
        )
    status = droot.release_status(name)
    if status != STATUS_COMPLETE and not force:
        meta = droot.read_meta(name) or {}
        reason = meta.get('failed_reason')
        raise SwitchError(
            'release %r is %s%s; refusing to make it live (use force=true to switch to it anyway)'
            % (name, status, (': %s' % reason) if reason else '')
        )


def _resolve_slot(droot: DeployRoot, current: dict[str, t.Any], release: str | None, target: str | None, force: bool) -> str:
    if release is not None:
        raise SwitchError(
            'release=%r is only valid in mode=releases; in mode=slots use target=a, b or inactive' % (release,)
        )
    if target not in SLOT_TARGETS:
        raise SwitchError('target %r is invalid in mode=slots: use one of %s' % (target, ', '.join(SLOT_TARGETS)))
    if target == TARGET_INACTIVE:
        if current['mode'] != MODE_SLOTS:
            raise SwitchError(
                'target=inactive needs a live slot to flip from, but %s; name the slot with target=a or target=b'
                % _describe_current(droot, current)
            )
        slot = inactive_slot(current['name'])
    else:
        slot = t.cast(str, target)
    path = droot.slot_path(slot)
    if not os.path.isdir(path) or os.path.islink(path):
        raise SwitchError('slot %r does not exist: %s is not a directory; force does not change that' % (slot, path))
    status = droot.slot_status(slot)
    if status != STATUS_COMPLETE and not force:
        if droot.read_slot_meta(slot) is None:
            detail = 'has no metadata %s' % droot.slot_meta_path(slot)
        else:
            detail = 'is %s' % status
        raise SwitchError('slot %r %s; refusing to make it live (use force=true to switch to it anyway)' % (slot, detail))
    return slot


def _tree_totals(path: str) -> tuple[int, int]:
    """Number of regular files and their total size under ``path`` (symlinks not followed)."""
    files = size = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for filename in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, filename))
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                files += 1
                size += st.st_size
    return files, size


def plan_switch(
    root: str,
    release: str | None = None,
    target: str | None = None,
    mode: str = MODE_RELEASES,
    force: bool = False,
    link: str = 'current',
    migrate_name: str | None = None,
    now: datetime.datetime | None = None,
) -> SwitchPlan:
    """Work out a switch without writing anything; raise :class:`SwitchError` when it must be refused."""
    if mode not in SWITCH_MODES:
        raise SwitchError('mode %r is invalid: use one of %s' % (mode, ', '.join(SWITCH_MODES)))
    if (release is None) == (target is None):
        raise SwitchError('give exactly one of release=<name> or target=<%s>' % '|'.join(RELEASE_TARGETS + SLOT_TARGETS))
    try:
        check_link_name(link)
    except InvalidName as exc:
        raise SwitchError(str(exc)) from None
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    stamp = format_utc(moment)

    droot = DeployRoot(root, link)
    if not os.path.isdir(droot.root):
        raise SwitchError('root %s does not exist or is not a directory' % droot.root)
    current = droot.inspect_current()
    _refuse_unusable_current(droot, current)

    view = _MetaView(droot)
    live_release = current['name'] if current['mode'] == MODE_RELEASES else None

    # Repair: the live release (per the symlink) never got its activation committed.
    if live_release is not None:
        live_meta = view.get(live_release)
        if live_meta is not None and not live_meta.get('activated'):
            prev = live_meta.get('previous')
            if prev and prev != live_release and is_release_name(prev):
                view.update('repair', prev, {'next': live_release})
            view.update('repair', live_release, {'activated': stamp})

    if mode == MODE_RELEASES:
        name = _resolve_release(droot, view, current, release, target)
        how = ' (the previous release of %r)' % live_release if release is None else ''
        _check_release_usable(droot, name, force, how)
    else:
        name = _resolve_slot(droot, current, release, target, force)

    plan = SwitchPlan(droot, mode, name)
    plan.meta = view
    plan.current = current
    plan.link_changes = current['kind'] != 'symlink' or current['target'] != plan.text
    plan.previous = current['name'] if current['kind'] == 'symlink' else None

    if current['kind'] == 'directory':
        mname = migrate_name if migrate_name is not None else default_migrate_name(moment)
        try:
            check_release_name(mname, 'migrate_name')
        except InvalidName as exc:
            raise SwitchError(str(exc)) from None
        if os.path.lexists(droot.release_path(mname)):
            raise SwitchError(
                'cannot migrate the plain directory %s to %s: that path already exists; choose another migrate_name'
                % (droot.current, droot.release_path(mname))
            )
        if os.path.lexists(droot.meta_path(mname)):
            raise SwitchError(
                'cannot migrate the plain directory %s as release %r: metadata %s already exists; choose another migrate_name'
                % (droot.current, mname, droot.meta_path(mname))
            )
        plan.migrate = mname
        plan.previous = mname
        files, size = _tree_totals(droot.current)
        view.update('before', mname, {
            'name': mname,
            'status': STATUS_COMPLETE,
            'manifest_digest': None,
            'created': stamp,
            'source': 'migrated from the plain directory %s' % droot.current,
            'files': files,
            'bytes': size,
            'previous': None,
            'next': name if mode == MODE_RELEASES else None,
            'activated': stamp,
            'failed_reason': None,
        }, create=True)
        target_meta = view.get(name) if mode == MODE_RELEASES else None
        if target_meta is not None:
            # The migrated release is the rollback target, even of a release that was live before.
            if target_meta.get('activated'):
                view.update('before', name, {'previous': mname})
            else:
                view.update('before', name, {'previous': mname, 'next': None})
                view.update('after', name, {'activated': stamp})
    elif mode == MODE_RELEASES and name != live_release:
        target_meta = view.get(name)
        if target_meta is not None and not target_meta.get('activated'):
            # First activation: link it after the release that is live now.
            view.update('before', name, {'previous': live_release, 'next': None})
            if live_release is not None:
                view.update('after', live_release, {'next': name})
            view.update('after', name, {'activated': stamp})

    if mode == MODE_RELEASES:
        meta = view.get(name) or {}
        plan.chain = {'live': name, 'previous': meta.get('previous'), 'next': meta.get('next')}
    else:
        plan.chain = droot.slot_chain(name)
    return plan


def _write_ops(droot: DeployRoot, ops: list[tuple[str, str, dict[str, t.Any], bool]], phases: tuple[str, ...]) -> None:
    for phase, name, fields, create in ops:
        if phase not in phases:
            continue
        meta = droot.read_meta(name)
        if not isinstance(meta, dict):
            if not create:
                continue
            meta = {}
        meta.update(fields)
        droot.write_meta(name, meta)


SPARE_SUFFIX = '.next'


def spare_link_path(droot: DeployRoot) -> str:
    """``<root>/.stagehand/<link>.next``: the spare symlink that the next switch exchanges with the live one."""
    return os.path.join(droot.state_dir, droot.link_name + SPARE_SUFFIX)


@contextlib.contextmanager
def _spare_guard(droot: DeployRoot) -> t.Iterator[None]:
    """An exclusive flock on the ``.stagehand`` directory while the spare link is set and used.

    Two switches of one root without the deploy lock must not set the spare to two targets and
    each exchange the other's; flock on a directory that exists needs no room.
    """
    os.makedirs(droot.state_dir, mode=0o755, exist_ok=True)
    fd = os.open(droot.state_dir, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _read_spare(spare: str) -> str | None:
    try:
        return os.readlink(spare)
    except OSError:  # missing, or not a symlink
        return None


def point_link(droot: DeployRoot, text: str) -> float:
    """Atomically point the live symlink at ``text``, without allocating anything when the spare is ready.

    The spare symlink (:func:`spare_link_path`) is made to point at ``text`` unless it already
    does (every switch leaves it pointing at the rollback target, see :func:`prepare_spare`),
    then it is swapped with the live link by renameat2(RENAME_EXCHANGE): the live link now
    points at ``text`` and the spare at what was live, ready for a revert. An exchange
    creates nothing, so a prepared switch works on a full filesystem. Where the exchange is
    not supported (an old kernel, or a filesystem without RENAME_EXCHANGE, such as NFS), the
    spare is renamed over the live link instead (rename(2), still atomic and still without
    allocating). Where ``.stagehand`` is on another filesystem than the link, a new link is made
    beside it and renamed over it, as before spare links. ``current`` is never missing.

    Returns the moment the link changed (:func:`time.time`, read right after the exchange, before
    the fsyncs): the history line records it, so that the switch spread of a fleet can be read
    from the hosts.
    """
    with _spare_guard(droot):
        return _point_link(droot, text)


def _point_link(droot: DeployRoot, text: str) -> float:
    spare = spare_link_path(droot)
    if _read_spare(spare) != text:
        try:
            _atomic.replace_symlink(spare, text)
        except OSError as exc:
            if _atomic.is_disk_full(exc):
                raise OSError(exc.errno, '%s, and no spare link %s pointing at %s had been prepared: %s' % (
                    exc.strerror, spare, text, _atomic.disk_full_hint(droot.root))) from None
            raise
    try:
        if os.path.lexists(droot.current):
            try:
                _atomic.exchange(spare, droot.current)
            except OSError as exc:
                if exc.errno not in _EXCHANGE_UNSUPPORTED + (errno.EXDEV,):
                    raise
                os.rename(spare, droot.current)
        else:
            os.rename(spare, droot.current)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _atomic.replace_symlink(droot.current, text)  # .stagehand is on another filesystem: a new link beside current
    moment = time.time()
    _atomic.fsync_dir(droot.root)
    _atomic.fsync_dir(droot.state_dir)
    return moment


def rollback_text(droot: DeployRoot) -> str | None:
    """The link text a rollback from what is live now would switch to (previous good release, other slot), or None."""
    current = droot.inspect_current()
    if current['mode'] == MODE_SLOTS:
        other = inactive_slot(current['name'])
        return DeployRoot.link_text(MODE_SLOTS, other) if os.path.isdir(droot.slot_path(other)) else None
    if current['mode'] == MODE_RELEASES:
        try:
            return DeployRoot.link_text(MODE_RELEASES, previous_good(droot, _MetaView(droot), current['name']))
        except (SwitchError, ValueError):
            return None
    return None


def prepare_spare(droot: DeployRoot) -> list[str]:
    """Get ready for a rollback on a full disk; return warnings (a failure here fails nothing).

    Points the spare link at the rollback target of what is live now (unless it already does:
    right after a deploy's exchange it points at the release that was live before) and makes
    sure the deploy lock's reserve exists (:func:`_lock.prepare_reserve`). Both are written
    now, while there is room, so that the rollback and its lock need none.
    """
    warnings = []
    text = rollback_text(droot)
    spare = spare_link_path(droot)
    try:
        with _spare_guard(droot):
            if text is not None and _read_spare(spare) != text:
                _atomic.replace_symlink(spare, text)
        _lock.prepare_reserve(droot.state_dir)
    except OSError as exc:
        warnings.append('could not prepare %s for a rollback on a full disk: %s%s' % (
            droot.state_dir, exc, ('; ' + _atomic.disk_full_hint(droot.root)) if _atomic.is_disk_full(exc) else ''))
    return warnings


def _migrate_directory(droot: DeployRoot, text: str, mname: str) -> list[str]:
    """Swap the plain directory at ``current`` for a symlink; the directory ends up as ``releases/<mname>``."""
    created = not os.path.isdir(droot.releases_dir)
    if created:
        os.mkdir(droot.releases_dir, 0o755)
    aside = droot.release_path(mname)
    # The symlink text is relative to the root, where it will live after the swap.
    os.symlink(text, aside)
    try:
        _atomic.exchange(aside, droot.current)
    except OSError as exc:
        os.unlink(aside)
        if exc.errno not in _EXCHANGE_UNSUPPORTED:
            if created:
                os.rmdir(droot.releases_dir)
            raise
        os.rename(droot.current, aside)
        try:
            point_link(droot, text)
        except BaseException:
            os.rename(aside, droot.current)
            raise
        _atomic.fsync_dir(droot.releases_dir)
        return [GAP_WARNING % (os.strerror(exc.errno), droot.current, droot.current)]
    _atomic.fsync_dir(droot.root)
    _atomic.fsync_dir(droot.releases_dir)
    return []


def apply_switch(plan: SwitchPlan) -> None:
    """Carry out a plan from :func:`plan_switch` in the crash-safe order described in the module docstring."""
    droot = plan.droot
    ops = plan.meta.ops
    _write_ops(droot, ops, ('repair',))
    had_meta_dir = os.path.isdir(droot.meta_dir)
    saved = _save_meta(droot, [name for phase, name, _fields, _create in ops if phase == 'before'])
    _write_ops(droot, ops, ('before',))
    if plan.link_changes:
        try:
            if plan.migrate is not None:
                plan.warnings.extend(_migrate_directory(droot, plan.text, plan.migrate))
                plan.switched_at = time.time()
            else:
                plan.switched_at = point_link(droot, plan.text)
        except BaseException:
            # The link did not change (both ways of changing it are all-or-nothing): take the intent back.
            _restore_meta(droot, saved)
            if not had_meta_dir:
                try:
                    os.rmdir(droot.meta_dir)
                except OSError:
                    pass
            raise
    _write_ops(droot, ops, ('after',))


def _save_meta(droot: DeployRoot, names: list[str]) -> dict[str, bytes | None]:
    saved: dict[str, bytes | None] = {}
    for name in names:
        try:
            with open(droot.meta_path(name), 'rb') as f:
                saved[name] = f.read()
        except FileNotFoundError:
            saved[name] = None
    return saved


def _restore_meta(droot: DeployRoot, saved: dict[str, bytes | None]) -> None:
    for name, data in saved.items():
        if data is None:
            try:
                os.unlink(droot.meta_path(name))
            except FileNotFoundError:
                pass
        else:
            _atomic.write_bytes_atomic(droot.meta_path(name), data)


def switch(
    root: str,
    release: str | None = None,
    target: str | None = None,
    mode: str = MODE_RELEASES,
    force: bool = False,
    link: str = 'current',
    migrate_name: str | None = None,
    check_mode: bool = False,
    now: datetime.datetime | None = None,
) -> dict[str, t.Any]:
    """Plan and (unless ``check_mode``) carry out a switch; return the module result.

    Raises :class:`SwitchError` for a refused request (nothing was changed) and
    OSError when the filesystem fails part way.
    """
    try:
        plan = plan_switch(root, release=release, target=target, mode=mode, force=force, link=link,
                           migrate_name=migrate_name, now=now)
    except ValueError as exc:  # a metadata file that is not valid JSON (UTF-8)
        raise SwitchError('cannot read the metadata under %s: %s' % (DeployRoot(root).state_dir, exc)) from None
    if check_mode:
        return plan.result()
    if plan.changed:
        apply_switch(plan)
    plan.warnings.extend(prepare_spare(plan.droot))
    return plan.result()


# -- post commands, health check and revert (switch_checked) -------------------------------------
DEFAULT_RELEASE_HEADER = 'X-Release'
DEFAULT_HEALTH_TIMEOUT = 10.0
HEALTH_INTERVAL = 0.5
MAX_OUTPUT_CHARS = 4096
MAX_BODY_CHARS = 1024
PHASE_SWITCH = 'switch'
PHASE_REVERT = 'revert'

# run_command(argv) -> (rc, stdout, stderr); raises OSError when the program cannot be run
CommandRunner = t.Callable[[t.List[str]], t.Tuple[int, str, str]]
# fetch(url, header, timeout) -> (status or None, header value or None, body text, error or None)
Fetcher = t.Callable[[str, str, float], t.Tuple[t.Optional[int], t.Optional[str], str, t.Optional[str]]]


class SwitchFailed(SwitchError):
    """The switch happened, then a post command or the health check failed; ``result`` is the module result."""

    def __init__(self, msg: str, result: dict[str, t.Any]) -> None:
        super().__init__(msg)
        self.msg = msg
        self.result = result


def check_post_commands(commands: object) -> list[list[str]]:
    """Return ``commands`` as a list of argv lists, else raise :class:`SwitchError` naming the bad entry."""
    if commands is None:
        return []
    if not isinstance(commands, (list, tuple)):
        raise SwitchError('post_commands %r is invalid: use a list of argv lists such as [["systemctl", "reload", "php8.2-fpm"]]' % (commands,))
    checked = []
    for index, argv in enumerate(commands):
        if isinstance(argv, str):
            raise SwitchError(
                'post_commands[%d] is the string %r: give an argv list instead, such as %r (no shell is used)'
                % (index, argv, argv.split()))
        if not isinstance(argv, (list, tuple)) or not argv:
            raise SwitchError('post_commands[%d] %r is invalid: use a non-empty list of strings (program and arguments)' % (index, argv))
        for arg in argv:
            if not isinstance(arg, str) or '\0' in arg:
                raise SwitchError('post_commands[%d] %r is invalid: %r is not a string; every element must be a string' % (index, list(argv), arg))
        if not argv[0]:
            raise SwitchError('post_commands[%d] %r is invalid: the program name is empty' % (index, list(argv)))
        checked.append(list(argv))
    return checked


def check_health_args(url: str | None, header: str | None, timeout: object) -> None:
    """Refuse a health URL that is not http(s), a header name that is not a token, or a timeout that is not > 0."""
    if url is None:
        return
    scheme, sep, rest = url.partition('://')
    if not sep or scheme.lower() not in ('http', 'https') or not rest or rest.startswith('/') or any(c.isspace() for c in url):
        raise SwitchError('health_url %r is invalid: use an http:// or https:// URL such as http://127.0.0.1/health' % (url,))
    if header is None or (header and not all(33 <= ord(c) < 127 and c not in '()<>@,;:\\"/[]?={}' for c in header)):
        raise SwitchError('health_release_header %r is invalid: use an HTTP header name such as X-Release (or "" not to check a header)' % (header,))
    check_seconds('health_timeout', timeout)


def check_seconds(name: str, value: object) -> float:
    """``value`` (seconds, > 0) as given; :class:`SwitchError` naming ``name`` and the value otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float('inf'):
        raise SwitchError('%s %r is invalid: use a number of seconds greater than 0' % (name, value))
    return value


# the furthest ahead a switch may be asked to wait for its moment (at): a fleet's commit waits seconds, not minutes
MAX_SWITCH_WAIT = 300.0


def check_switch_at(at: object, wall: t.Callable[[], float] = time.time) -> float | None:
    """``at`` (the moment to switch at, seconds since the epoch) as a float; :class:`SwitchError` when it is no such moment.

    A moment in the past is allowed (the switch happens at once and reports how late it is); one
    more than :data:`MAX_SWITCH_WAIT` seconds ahead is refused, as no controller asks for that.
    """
    if at is None:
        return None
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not 0 < at < float('inf'):
        raise SwitchError('at %r is invalid: use the moment of the switch in seconds since the epoch, such as %.3f' % (at, wall() + 2))
    ahead = float(at) - wall()
    if ahead > MAX_SWITCH_WAIT:
        raise SwitchError('at %r is %.1f s from now, more than the %d s a switch waits for its moment: pick a moment '
                          'a few seconds ahead (is the clock of this host or of the controller wrong?)' % (at, ahead, MAX_SWITCH_WAIT))
    return float(at)


def wait_for_moment(at: float, wall: t.Callable[[], float] = time.time, sleep: t.Callable[[float], None] = time.sleep) -> float:
    """Sleep until ``at`` (seconds since the epoch); return how late the wait ended, in seconds (0.0 when on time).

    Sleeps in steps of at most half a second, so that a clock stepped while waiting is seen; the
    last step ends on the moment (``time.sleep`` is precise to about a millisecond on Linux).
    """
    while True:
        remaining = at - wall()
        if remaining <= 0:
            return round(-remaining, 6)
        sleep(min(remaining, 0.5))


def split_url(url: str) -> tuple[str, str, str]:
    """``(scheme, host[:port], path with query)`` of ``url``; the fragment is dropped, an empty path is ``/``."""
    scheme, _sep, rest = url.partition('://')
    cut = min([len(rest)] + [rest.index(c) for c in '/?#' if c in rest])
    hostport, path = rest[:cut], rest[cut:].split('#', 1)[0] or '/'
    if not path.startswith('/'):
        path = '/' + path
    return scheme, hostport, path


def _plain_http_target(url: str) -> tuple[str, int, str, str] | None:
    """``(host, port, host header, path)`` of a plain ``http://`` URL; None for anything else (https, user info)."""
    if '://' not in url:
        return None
    scheme, hostport, path = split_url(url)
    if scheme.lower() != 'http':
        return None
    if '@' in hostport or not hostport:
        return None
    if hostport.startswith('['):
        host, bracket, tail = hostport[1:].partition(']')
        if not bracket or (tail and not tail.startswith(':')):
            return None
        port_text = tail[1:]
    else:
        host, colon, port_text = hostport.rpartition(':') if ':' in hostport else (hostport, '', '')
        if not colon:
            host = hostport
    if port_text and not port_text.isdigit():
        return None
    return host, int(port_text) if port_text else 80, hostport, path


def _fetch_plain(target: tuple[str, int, str, str], header: str, timeout: float) -> tuple[int | None, str | None, str, str | None] | None:
    """One HTTP/1.0 GET over a socket: ``(status, header value, start of the body, error)``; None for a redirect."""
    host, port, host_header, path = target
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return None, None, '', 'cannot connect: %s' % (exc,)
    data = b''
    try:
        conn.sendall(('GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: stagehand.deploy.switch\r\nConnection: close\r\n\r\n'
                      % (path, host_header)).encode('latin-1'))
        while True:
            end = data.find(b'\r\n\r\n')
            if end >= 0 and len(data) - end - 4 >= MAX_BODY_CHARS:
                break
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) > 1024 * 1024:
                break
    except OSError as exc:
        return None, None, '', 'request failed: %s' % (exc,)
    finally:
        conn.close()
    head, sep, body = data.partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    status_line = lines[0].split(None, 2)
    if not sep or len(status_line) < 2 or not status_line[0].startswith('HTTP/') or not status_line[1].isdigit():
        return None, None, '', 'request failed: not an HTTP response: %r' % (lines[0][:80],)
    status = int(status_line[1])
    if 300 <= status < 400:
        return None  # redirects are followed by the standard library's client
    value = None
    if header:
        for line in lines[1:]:
            name, colon, field = line.partition(':')
            if colon and name.strip().lower() == header.lower():
                value = field.strip()
                break
    return status, value, body[:MAX_BODY_CHARS].decode('utf-8', errors='replace'), None


def fetch_url_status(url: str, header: str, timeout: float) -> tuple[int | None, str | None, str, str | None]:
    """One GET of ``url`` without any proxy: ``(status, value of header, start of the body, error)``.

    A plain ``http://`` URL (the usual ``http://127.0.0.1/health``) is fetched over a socket
    directly. HTTPS, redirects and URLs with user info go through ``urllib.request``, which
    follows redirects and verifies certificates; it is imported only then, because it costs
    about 25 ms on every run of this module (every rollback). The standard library is used
    rather than ``ansible.module_utils.urls`` for the same reason: the remote side compiles
    every module_utils source it imports on each run, while the standard library comes precompiled.
    """
    target = _plain_http_target(url)
    if target is not None:
        fetched = _fetch_plain(target, header, timeout)
        if fetched is not None:
            return fetched
    import urllib.error  # pylint: disable=import-outside-toplevel
    import urllib.request  # pylint: disable=import-outside-toplevel
    response: t.Any = None
    try:
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            request = urllib.request.Request(url, method='GET', headers={'User-Agent': 'stagehand.deploy.switch'})
            response = opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            response = exc
        status = int(getattr(response, 'status', None) or response.getcode())
        value = response.headers.get(header) if header else None
        try:
            body = response.read(MAX_BODY_CHARS).decode('utf-8', errors='replace')
        except (OSError, ValueError):
            body = ''
        return status, value, body, None
    except urllib.error.URLError as exc:
        return None, None, '', 'cannot connect: %s' % (exc.reason,)
    except (OSError, ValueError) as exc:  # timeouts, resets, invalid responses
        return None, None, '', 'request failed: %s' % (exc,)
    finally:
        if response is not None:
            try:
                response.close()
            except (OSError, AttributeError):
                pass


def wait_healthy(
    url: str,
    expected: str,
    header: str = DEFAULT_RELEASE_HEADER,
    timeout: float = DEFAULT_HEALTH_TIMEOUT,
    interval: float = HEALTH_INTERVAL,
    fetch: Fetcher | None = None,
    clock: t.Callable[[], float] | None = None,
    sleep: t.Callable[[float], None] | None = None,
) -> dict[str, t.Any]:
    """GET ``url`` every ``interval`` seconds until it answers 200 with ``header: expected``, or ``timeout`` passes.

    Always makes at least one attempt. Returns the ``health`` result:
    ``url, ok, status, release, expected, header, attempts, elapsed, error, body``.
    """
    fetch = fetch or fetch_url_status
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    start = clock()
    deadline = start + timeout
    attempts = 0
    while True:
        attempts += 1
        status, value, body, error = fetch(url, header, max(0.1, min(timeout, deadline - clock())))
        if error is None:
            if status != 200:
                error = 'HTTP status %s, expected 200' % status
            elif header and value is None:
                error = 'the response has no %s header, expected %r' % (header, expected)
            elif header and value.strip() != expected:
                error = '%s is %r, expected %r' % (header, value.strip(), expected)
        if error is None or clock() + interval > deadline:
            break
        sleep(interval)
    return {
        'url': url,
        'ok': error is None,
        'status': status,
        'release': value.strip() if value is not None else None,
        'expected': expected if header else None,
        'header': header or None,
        'attempts': attempts,
        'elapsed': round(clock() - start, 3),
        'error': error,
        'body': body if error is not None else '',
    }


def _clip(text: object) -> str:
    text = text if isinstance(text, str) else str(text or '')
    return text if len(text) <= MAX_OUTPUT_CHARS else text[:MAX_OUTPUT_CHARS] + ' ... (truncated)'


def run_post_commands(commands: list[list[str]], runner: CommandRunner, phase: str) -> tuple[list[dict[str, t.Any]], str | None]:
    """Run the commands in order, stopping at the first failure; ``(results, failure message or None)``."""
    results = []
    for argv in commands:
        try:
            rc, out, err = runner(list(argv))
        except OSError as exc:
            results.append({'argv': argv, 'rc': None, 'stdout': '', 'stderr': _clip(str(exc)), 'phase': phase})
            return results, 'post command %r could not be run: %s' % (argv, exc)
        results.append({'argv': argv, 'rc': rc, 'stdout': _clip(out), 'stderr': _clip(err), 'phase': phase})
        if rc != 0:
            detail = (err or out or '').strip().splitlines()
            return results, 'post command %r failed with rc %s%s' % (argv, rc, (': %s' % detail[-1]) if detail else '')
    return results, None


def _expected_release(plan: SwitchPlan) -> str:
    if plan.mode == MODE_SLOTS:
        try:
            meta = plan.droot.read_slot_meta(plan.name)
        except ValueError:
            meta = None
        label = meta.get('release') if isinstance(meta, dict) else None
        return label if isinstance(label, str) and label else plan.name
    return plan.name


def _describe_link(current: dict[str, t.Any], droot: DeployRoot) -> str:
    if current['kind'] == 'symlink':
        return '%s -> %s' % (droot.current, current['target'])
    if current['kind'] == 'directory':
        return '%s (a plain directory)' % droot.current
    return '%s (absent)' % droot.current


def revert_switch(plan: SwitchPlan, saved: dict[str, bytes | None]) -> str:
    """Point the live link back to what it was before :func:`apply_switch`; return the text it now has (or '' for none).

    Metadata written by the switch is put back as it was (``saved``), except
    that a plain directory migrated by the switch stays a release and is what
    the link points at again. Repairs of an earlier crash are kept.
    """
    droot = plan.droot
    kind = plan.current.get('kind')
    if kind == 'symlink':
        text = t.cast(str, plan.current['target'])
        point_link(droot, text)
    elif kind == 'directory' and plan.migrate is not None:
        text = DeployRoot.link_text(MODE_RELEASES, plan.migrate)
        point_link(droot, text)
        saved = {name: data for name, data in saved.items() if name != plan.migrate}
    else:
        text = ''
        try:
            os.unlink(droot.current)
        except FileNotFoundError:
            pass
        _atomic.fsync_dir(droot.root)
    _restore_meta(droot, saved)
    _write_ops(droot, plan.meta.ops, ('repair',))
    if plan.migrate is not None:
        meta = droot.read_meta(plan.migrate)
        if isinstance(meta, dict) and meta.get('next') is not None:
            meta['next'] = None
            droot.write_meta(plan.migrate, meta)
    return text


def _live_now(droot: DeployRoot) -> dict[str, t.Any]:
    current = droot.inspect_current()
    if current['mode'] == MODE_RELEASES:
        meta = droot.read_meta(current['name']) or {}
        chain = {'live': current['name'], 'previous': meta.get('previous'), 'next': meta.get('next')}
    elif current['mode'] == MODE_SLOTS:
        chain = droot.slot_chain(current['name'])
    else:
        chain = {'live': None, 'previous': None, 'next': None}
    path = droot.target_path(current['mode'], current['name']) if current['mode'] else None
    return {'current': current['name'], 'chain': chain, 'path': path}


def switch_checked(
    root: str,
    release: str | None = None,
    target: str | None = None,
    mode: str = MODE_RELEASES,
    force: bool = False,
    link: str = 'current',
    migrate_name: str | None = None,
    post_commands: object = None,
    health_url: str | None = None,
    health_release_header: str = DEFAULT_RELEASE_HEADER,
    health_timeout: float = DEFAULT_HEALTH_TIMEOUT,
    revert_on_failure: bool | None = None,
    run_command: CommandRunner | None = None,
    fetch: Fetcher | None = None,
    check_mode: bool = False,
    now: datetime.datetime | None = None,
    at: float | None = None,
) -> dict[str, t.Any]:
    """:func:`switch`, then the post commands and the health check, reverting the switch when one fails.

    With ``at`` (seconds since the epoch, :func:`check_switch_at`) the link changes at that moment:
    everything is checked and planned first, then the call sleeps until ``at``
    (:func:`wait_for_moment`), so that the hosts of a fleet switch together; ``late`` says how
    many seconds after ``at`` it switched, ``switched_at`` when (ISO 8601 UTC with milliseconds; None when
    the link did not change).

    Post commands run only when the link changed; the health check runs
    whenever ``health_url`` is set (a release that was already live and fails
    it is reported, with nothing to revert). In check mode nothing runs.
    Raises :class:`SwitchError` for a refused request (nothing changed) and
    :class:`SwitchFailed` (with the result) when a post command or the health
    check failed after the switch.
    """
    commands = check_post_commands(post_commands)
    check_health_args(health_url, health_release_header, health_timeout)
    moment = check_switch_at(at)
    if commands and run_command is None:
        raise SwitchError('post_commands are given but no command runner is available')
    revert = bool(health_url) if revert_on_failure is None else bool(revert_on_failure)
    try:
        plan = plan_switch(root, release=release, target=target, mode=mode, force=force, link=link,
                           migrate_name=migrate_name, now=now)
    except ValueError as exc:  # a metadata file that is not valid JSON (UTF-8)
        raise SwitchError('cannot read the metadata under %s: %s' % (DeployRoot(root).state_dir, exc)) from None
    result = plan.result()
    result.update(reverted=False, health=None, post_commands=[], switched_at=None, late=None)
    if check_mode:
        return result
    droot = plan.droot
    switched = plan.link_changes
    saved = _save_meta(droot, sorted({name for phase, name, _f, _c in plan.meta.ops if phase != 'repair'}))
    if moment is not None and switched:
        result['late'] = wait_for_moment(moment)
    if plan.changed:
        apply_switch(plan)
        if plan.switched_at is not None:
            result['switched_at'] = format_utc_ms(datetime.datetime.fromtimestamp(plan.switched_at, datetime.timezone.utc))
        crash_point('switch:switched')

    failure = None
    if switched and commands:
        outputs, failure = run_post_commands(commands, t.cast(CommandRunner, run_command), PHASE_SWITCH)
        result['post_commands'].extend(outputs)
    if failure is None and health_url:
        health = wait_healthy(health_url, _expected_release(plan), health_release_header, float(health_timeout), fetch=fetch)
        result['health'] = health
        if not health['ok']:
            failure = 'the health check of %s failed after %d attempt(s) in %.1f s: %s' % (
                health_url, health['attempts'], health['elapsed'], health['error'])
    if failure is None:
        crash_point('switch:healthy')
        result['warnings'] = list(result['warnings']) + prepare_spare(droot)
        return result

    after = _describe_link(droot.inspect_current(), droot)
    if not switched:
        msg = '%s was already live (%s), so nothing was switched or reverted; %s' % (plan.name, after, failure)
        raise SwitchFailed(msg, result)
    msg = 'switched %s to %s, then %s' % (_describe_link(plan.current, droot), plan.text, failure)
    if not revert:
        msg += '; revert_on_failure is false, so %s is left as it is' % after
        raise SwitchFailed(msg, result)
    try:
        text = revert_switch(plan, saved)
    except OSError as exc:
        msg += '; reverting the switch failed (%s): %s' % (exc, _describe_link(droot.inspect_current(), droot))
        raise SwitchFailed(msg, result) from None
    result['reverted'] = True
    result.update(_live_now(droot))
    msg += '. The switch was reverted: %s' % ('%s points at %s again' % (droot.current, text) if text else
                                              '%s was removed again (nothing was live before)' % droot.current)
    if commands:
        outputs, again = run_post_commands(commands, t.cast(CommandRunner, run_command), PHASE_REVERT)
        result['post_commands'].extend(outputs)
        msg += '; post_commands were run again' + (' and %s' % again if again else '')
    raise SwitchFailed(msg, result)


# -- switch_guarded: the deploy lock, the migrations record and the history in the same call -------
# The whole of a rollback in one module call: take the deploy lock, resolve and check the
# target (including the irreversible-migrations check against the on-disk record), switch
# with post commands and health check (switch_checked), append the history line, release
# the lock. Nothing here talks to the database.
MIGRATIONS_RECORD = 'migrations.json'
PHASE_LOCK = 'lock'
PHASE_CHECK = 'check'
PHASE_HEALTH = 'health'


class NeedsDatabaseCheck(SwitchError):
    """The migrations record cannot answer for this switch; nothing was changed. ``details`` is the migrations result."""

    def __init__(self, msg: str, details: dict[str, t.Any]) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


class GuardedFailure(SwitchError):
    """A guarded switch that was refused or failed; ``result`` is the module result (with ``failed_phase``)."""

    def __init__(self, msg: str, result: dict[str, t.Any]) -> None:
        super().__init__(msg)
        self.msg = msg
        self.result = result


def migrations_record_path(droot: DeployRoot) -> str:
    """``<root>/.stagehand/migrations.json``: the migrations applied to the database, as last seen by a deploy."""
    return os.path.join(droot.state_dir, MIGRATIONS_RECORD)


def check_migrations_dir(value: object) -> str:
    """Return ``value`` if it is a relative path inside a release, else raise :class:`SwitchError`."""
    if not isinstance(value, str) or not value or '\0' in value or os.path.isabs(value) \
            or '..' in value.replace('\\', '/').split('/'):
        raise SwitchError('migrations_dir %r is invalid: give the migrations directory relative to the release root, '
                          'such as migrations (no absolute path, no ..)' % (value,))
    return value


def _scan_ids(path: str) -> dict[str, bool] | None:
    """``id -> irreversible`` of the migrations in ``path`` ({} when it does not exist), None when it cannot be read."""
    try:
        return dict((m.id, m.irreversible) for m in _migrate.scan_migrations(path))
    except (_migrate.MigrateError, OSError):
        return None


def check_migrations_on_disk(droot: DeployRoot, target: str, live: str | None, migrations_dir: str,
                             database: str | None = None, trees: t.Mapping[str, str] | None = None,
                             label: str | None = None) -> dict[str, t.Any]:
    """Which irreversible migrations applied to the database ``target`` does not know, from the record on disk.

    The record (``.stagehand/migrations.json``, written by the deploy after its migrations and
    by a rollback that read the database) holds ``{"applied": [ids], "database": name}``. A
    migration applied but absent from ``releases/<target>/<migrations_dir>`` is *unknown*;
    whether it is irreversible is read from the release on this host that has it (the live one
    first), exactly as the migrate module decides it. The result has ``needs_db_check`` set (a
    reason) instead of an answer when the record is missing or unreadable, names another
    database, misses a migration of the live release (so it is older than what is live), or an
    unknown migration is in no release here. ``trees`` (slots mode: slot -> its directory) replaces
    the releases of the deploy root; ``label`` names the target in the guard's message.
    """
    path = migrations_record_path(droot)
    result: dict[str, t.Any] = {'record': path, 'applied': [], 'unknown': [], 'irreversible_since': [], 'needs_db_check': None,
                                'guard': None}

    def undecided(reason: str) -> dict[str, t.Any]:
        result['needs_db_check'] = reason
        return result

    try:
        record = _atomic.read_json(path)
    except (ValueError, OSError) as exc:
        return undecided('the migrations record %s cannot be read: %s' % (path, exc))
    if record is None:
        return undecided('there is no migrations record %s (written by each deploy once its migrations are done)' % path)
    applied = record.get('applied') if isinstance(record, dict) else None
    if not isinstance(applied, list) or not all(isinstance(mid, str) for mid in applied):
        return undecided('the migrations record %s is not valid (no list of applied migration ids)' % path)
    result['applied'] = sorted(set(applied))
    if database is not None and record.get('database') != database:
        return undecided('the migrations record %s is about database %r, not %r' % (path, record.get('database'), database))

    releases: dict[str, dict[str, bool] | None] = {}

    def ids_of(name: str) -> dict[str, bool] | None:
        if name not in releases:
            tree = trees[name] if trees is not None else droot.release_path(name)
            releases[name] = _scan_ids(os.path.join(tree, migrations_dir))
        return releases[name]

    if live is not None:
        live_ids = ids_of(live)
        missing = sorted(set(live_ids or ()) - set(result['applied']))
        if live_ids is None or missing:
            return undecided('the migrations record %s is older than the live release %s (%s)' % (
                path, live, 'which has migrations it does not list: %s' % ', '.join(missing) if missing
                else 'whose migrations cannot be read'))
    target_ids = ids_of(target)
    if target_ids is None:
        return undecided('the migrations of %s cannot be read' % target)
    result['unknown'] = [mid for mid in result['applied'] if mid not in target_ids]
    others = sorted(trees) if trees is not None else [name for name in droot.release_names() if is_release_name(name)]
    order = ([live] if live is not None else []) + [name for name in others if name != live]
    for mid in result['unknown']:
        irreversible = None
        for name in order:
            ids = ids_of(name)
            if ids is not None and mid in ids:
                irreversible = ids[mid]
                break
        if irreversible is None:
            return undecided('applied migration %s is in no release on this host, so whether it is irreversible is not known' % mid)
        if irreversible:
            result['irreversible_since'].append(mid)
    # the one schema guard (the migrate module applies it on what the database says)
    irreversible_of = dict((mid, mid in result['irreversible_since']) for mid in result['applied'])
    result['guard'] = _schema.assess(label or target, target_ids, irreversible_of, live=None if label else live,
                                     dumps_dir=_schema.dumps_path(droot.state_dir), database=database, pending_ok=False)
    return result


def check_lock_args(lock: t.Mapping[str, t.Any] | None) -> dict[str, t.Any] | None:
    """The arguments for :func:`_lock.acquire` from the ``lock`` option (None: no locking); raise :class:`SwitchError`."""
    if lock is None:
        return None
    if not isinstance(lock, t.Mapping):
        raise SwitchError('lock %r is invalid: use a mapping such as {"purpose": "rollback", "ttl": 3600}' % (lock,))
    unknown = sorted(str(key) for key in lock if key not in ('owner', 'controller', 'pid', 'controller_process', 'purpose', 'ttl'))
    if unknown:
        raise SwitchError('lock has unknown keys %s: use owner, controller, pid, controller_process, purpose, ttl' % ', '.join(unknown))
    args = {key: lock.get(key) for key in ('owner', 'controller', 'pid', 'purpose')}
    if isinstance(lock.get('controller_process'), t.Mapping):
        args['controller_process'] = dict(lock['controller_process'])
    ttl = lock.get('ttl')
    args['ttl'] = _lock.DEFAULT_TTL if ttl is None else ttl
    try:
        _lock.check_ttl(args['ttl'])
    except _lock.LockArgumentError as exc:
        raise SwitchError('lock.%s' % exc.msg) from None
    for key in ('owner', 'controller', 'purpose'):
        if args[key] is not None and not isinstance(args[key], str):
            raise SwitchError('lock.%s %r is invalid: use a string' % (key, args[key]))
    if args['pid'] is not None and (isinstance(args['pid'], bool) or not isinstance(args['pid'], int)):
        raise SwitchError('lock.pid %r is invalid: use a process id (a whole number)' % (args['pid'],))
    return args


def check_history_args(history: t.Mapping[str, t.Any] | None, now: datetime.datetime) -> dict[str, t.Any] | None:
    """The ``history`` option as a partial record, validated like the history module does; raise :class:`SwitchError`.

    ``action``, ``user``, ``controller`` are required; ``start`` defaults to now; ``phases`` are
    merged with the phases timed here; ``release``, ``previous``, ``outcome`` and ``error``
    override what the switch would record.
    """
    if history is None:
        return None
    if not isinstance(history, t.Mapping):
        raise SwitchError('history %r is invalid: use a mapping with action, user, controller (and start, phases)' % (history,))
    given = dict((key, value) for key, value in history.items() if value is not None)
    if 'end' in given:
        raise SwitchError('history.end cannot be given: it is the time the switch ends')
    probe = {'release': None, 'previous': None, 'outcome': 'success', 'start': format_utc(now), 'end': format_utc(now)}
    probe.update(given)
    try:
        _history.validate_record(probe, now)
    except _history.HistoryError as exc:
        raise SwitchError(str(exc).replace('record', 'history', 1)) from None
    return given


def _timed(phases: dict[str, float], name: str, started: float, clock: t.Callable[[], float]) -> None:
    phases[name] = round(phases.get(name, 0.0) + max(0.0, clock() - started), 3)


def _refused_result(droot: DeployRoot, mode: str, previous: str | None, warnings: list[str]) -> dict[str, t.Any]:
    """The switch part of the result when nothing was switched (refused before, or the switch itself failed early)."""
    result = _live_now(droot)
    result.update(changed=False, previous=previous, mode=mode, migrated=None, reverted=False, health=None,
                  post_commands=[], warnings=warnings, diff={})
    return result


def switch_guarded(
    root: str,
    lock: t.Mapping[str, t.Any] | None = None,
    history: t.Mapping[str, t.Any] | None = None,
    migrations_dir: str | None = None,
    migrations_database: str | None = None,
    require_live: bool = False,
    check_mode: bool = False,
    now: datetime.datetime | None = None,
    clock: t.Callable[[], float] | None = None,
    **switch_args: t.Any,
) -> dict[str, t.Any]:
    """:func:`switch_checked` under the deploy lock, with the target and migrations checked first and a history line.

    Order: validate every argument (a bad one changes nothing, takes no lock, writes no
    history) -> acquire the lock (``lock``; held by another: refused, naming the holder) ->
    check (``require_live``, the target, and with ``migrations_dir`` the irreversible
    migrations from the record on disk) -> :func:`switch_checked` -> append the history
    line (``history``) -> release the lock, whatever happened.

    Returns the result of :func:`switch_checked` plus ``lock``, ``migrations``, ``history``,
    ``needs_db_check`` and ``failed_phase``. Raises :class:`SwitchError` for bad arguments
    (nothing done) and :class:`GuardedFailure` (with the result) for a refusal or a failure;
    when the migrations record cannot answer, ``needs_db_check`` is true in that result, the
    lock is released and no history line is written. In check mode nothing is written (the
    lock is only checked, the history line is returned but not appended).
    """
    clock = clock or time.monotonic
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    mode = switch_args.get('mode', MODE_RELEASES)
    lock_args = check_lock_args(lock)
    record = check_history_args(history, moment)
    if migrations_dir is not None:
        check_migrations_dir(migrations_dir)
    check_post_commands(switch_args.get('post_commands'))
    check_health_args(switch_args.get('health_url'), switch_args.get('health_release_header', DEFAULT_RELEASE_HEADER),
                      switch_args.get('health_timeout', DEFAULT_HEALTH_TIMEOUT))
    check_switch_at(switch_args.get('at'))
    if switch_args.get('release') is not None:
        try:
            check_release_name(switch_args['release'])
        except InvalidName as exc:
            raise SwitchError(str(exc)) from None
    extra: dict[str, t.Any] = {'lock': None, 'migrations': None, 'history': None, 'needs_db_check': False, 'failed_phase': None}
    if lock_args is None and record is None and migrations_dir is None and not require_live:
        try:
            result = switch_checked(root, check_mode=check_mode, now=now, **switch_args)
        except SwitchFailed as exc:
            exc.result.update(extra)
            raise
        result.update(extra)
        return result

    droot = DeployRoot(root, switch_args.get('link', 'current'))
    phases: dict[str, float] = {}
    warnings: list[str] = []
    token: str | None = None
    phase = PHASE_LOCK
    # what was asked for, so that a refusal records it; replaced by the resolved target once known
    target: str | None = switch_args.get('release') if mode == MODE_RELEASES else None
    previous: str | None = None
    result: dict[str, t.Any] | None = None
    failure: Exception | None = None
    error: str | None = None
    outcome = 'success'
    started = clock()
    try:
        if lock_args is not None:
            extra['lock'] = {'path': droot.lock_path, 'acquired': False, 'released': False, 'holder': None}
            try:
                got = _lock.acquire(root, check_mode=check_mode, host_pid=os.getpid(), **lock_args)
            except (_lock.LockHeld, OSError) as exc:
                if isinstance(exc, _lock.LockHeld):
                    extra['lock']['holder'] = exc.holder
                previous = droot.live_label()  # for the history line and the report only: what is live, not changed
                raise
            token = None if check_mode else got['token']
            if token is not None:
                crash_point('switch:locked')
            extra['lock'].update(acquired=True, holder=got['holder'])
            warnings.extend(got['warnings'])
            _timed(phases, PHASE_LOCK, started, clock)

        phase, started = PHASE_CHECK, clock()
        current = droot.inspect_current()
        previous = droot.label(current['mode'], current['name']) if current['kind'] == 'symlink' else None
        if require_live and current['mode'] is None:
            raise SwitchError('nothing is live under %s (%s), so there is nothing to roll back; releases there: %s' % (
                droot.root, _describe_current(droot, current), describe_releases(droot)))
        try:
            plan = plan_switch(root, release=switch_args.get('release'), target=switch_args.get('target'), mode=mode,
                               force=switch_args.get('force', False), link=droot.link_name,
                               migrate_name=switch_args.get('migrate_name'), now=now)
        except ValueError as exc:  # a metadata file that is not valid JSON (UTF-8)
            raise SwitchError('cannot read the metadata under %s: %s' % (droot.state_dir, exc)) from None
        target = plan.name if mode == MODE_RELEASES else _expected_release(plan)
        previous = droot.label(mode, plan.previous)  # in slots mode the release label of the slot, as target
        live = current['name'] if current['mode'] == mode else None
        if migrations_dir is not None and plan.name != live:  # the live release: only the health check runs
            if mode == MODE_SLOTS:  # the two slots are the releases of the host; the guard names the slot's release
                trees = dict((slot, droot.slot_path(slot)) for slot in SLOT_NAMES)
                checked = check_migrations_on_disk(droot, plan.name, live, migrations_dir, migrations_database,
                                                   trees=trees, label=target)
            else:
                checked = check_migrations_on_disk(droot, plan.name, live, migrations_dir, migrations_database)
            extra['migrations'] = checked
            if checked['needs_db_check']:
                extra['needs_db_check'] = True
                raise NeedsDatabaseCheck(
                    'the irreversible-migrations check cannot be done from disk: %s. Check the database instead '
                    '(stagehand.deploy.migrate state=checked); nothing was changed' % checked['needs_db_check'], checked)
            if not checked['guard']['allowed']:
                raise SwitchError('%s (per %s)' % (checked['guard']['msg'], checked['record']))
        _timed(phases, PHASE_CHECK, started, clock)

        phase, started = PHASE_SWITCH, clock()
        args = dict(switch_args)
        if mode == MODE_RELEASES:
            args.pop('target', None)
            args['release'] = plan.name  # resolved once, under the lock
        result = switch_checked(root, check_mode=check_mode, now=now, **args)
    except NeedsDatabaseCheck as exc:
        failure, error = exc, exc.msg
    except SwitchFailed as exc:
        failure, error, result = exc, exc.msg, exc.result
        outcome = 'rolled_back' if exc.result.get('reverted') else 'failed'
    except (SwitchError, _lock.LockError) as exc:
        failure, error, outcome = exc, getattr(exc, 'msg', None) or str(exc), 'refused'
    except ValueError as exc:  # a metadata file that is not valid JSON (UTF-8), found before anything changed
        failure, outcome = exc, 'refused'
        error = 'cannot read the metadata under %s: %s' % (droot.state_dir, exc)
    except OSError as exc:
        failure, outcome = exc, 'failed'
        error = 'Could not switch %s in %s: %s' % (droot.link_name, droot.root, exc)
        if _atomic.is_disk_full(exc) and _atomic.disk_full_hint(droot.root) not in error:
            error += ' (%s)' % _atomic.disk_full_hint(droot.root)
    finally:
        if phase == PHASE_SWITCH:
            health = (result or {}).get('health') or {}
            seconds = max(0.0, clock() - started)
            if health:
                phases[PHASE_HEALTH] = round(float(health.get('elapsed') or 0.0), 3)
                seconds = max(0.0, seconds - phases[PHASE_HEALTH])
            phases[PHASE_SWITCH] = round(seconds, 3)
            if isinstance(failure, SwitchFailed) and health and not health.get('ok'):
                phase = PHASE_HEALTH
        elif failure is not None:
            _timed(phases, phase, started, clock)
        try:
            if record is not None and not isinstance(failure, NeedsDatabaseCheck):
                entry: dict[str, t.Any] = {'start': format_utc(moment), 'release': target, 'previous': previous,
                                           'outcome': outcome, 'error': error}
                entry.update(record)
                entry['phases'] = dict(record.get('phases') or {}, **phases)
                if (result or {}).get('switched_at') is not None:  # the moment of the rename, for the spread of a fleet
                    entry['switched'] = result['switched_at']
                try:
                    extra['history'] = _history.append_record(root, entry, check_mode=check_mode)['record']
                    if not check_mode:
                        crash_point('switch:recorded')
                except (_history.HistoryError, OSError) as exc:
                    full = _atomic.is_disk_full(exc)
                    warnings.append('the history line could not be written to %s: %s%s' % (
                        droot.history_path, exc, ('; %s (the switch itself needed no room)' % _atomic.disk_full_hint(droot.root))
                        if full else ''))
        finally:
            if token is not None:
                try:
                    released = _lock.release(root, token=token)
                    extra['lock']['released'] = released['released']
                    warnings.extend(released['warnings'])
                except (OSError, _lock.LockError) as exc:
                    warnings.append('the deploy lock %s could not be released: %s' % (droot.lock_path, getattr(exc, 'msg', exc)))

    if result is None:
        result = _refused_result(droot, mode, previous, [])
    result['warnings'] = list(result.get('warnings') or []) + warnings
    if extra['history'] is not None:
        result['changed'] = True  # a line was (or, in check mode, would be) appended
    if failure is not None:
        extra['failed_phase'] = phase
    result.update(extra)
    if failure is not None:
        raise GuardedFailure(t.cast(str, error), result)
    return result
