# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Partition switching: point the live symlink at another release or slot.

The switch is planned completely before anything is written, so a refused
request changes nothing and check mode reports exactly what a real run does.

Order of the writes for a release that goes live for the first time (``T``,
with ``L`` live before)::

    1. T.previous = L, T.next = null      (intent; T.activated stays null)
    2. current -> releases/T              (new symlink + rename(2), fsync of the root)
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

import datetime
import errno
import os
import stat
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils import _atomic
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
)

SWITCH_MODES = (MODE_RELEASES, MODE_SLOTS)
TARGET_PREVIOUS = 'previous'
TARGET_INACTIVE = 'inactive'
RELEASE_TARGETS = (TARGET_PREVIOUS,)
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


def _resolve_release(droot: DeployRoot, plan_meta: _MetaView, current: dict[str, t.Any],
                     release: str | None, target: str | None) -> str:
    if target is not None and release is None:
        if target != TARGET_PREVIOUS:
            raise SwitchError(
                'target %r is only valid in mode=slots; in mode=releases use target=previous or release=<name>' % (target,)
            )
        if current['mode'] != MODE_RELEASES:
            raise SwitchError(
                'target=previous needs a live release to go back from, but %s' % _describe_current(droot, current)
            )
        live = current['name']
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
        slot = SLOT_NAMES[1 - SLOT_NAMES.index(current['name'])]
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


def point_link(droot: DeployRoot, text: str) -> None:
    """Atomically point the live symlink at ``text`` (new symlink, rename(2), fsync of the root)."""
    _atomic.replace_symlink(droot.current, text)


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
            else:
                point_link(droot, plan.text)
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
    if plan.changed and not check_mode:
        apply_switch(plan)
    return plan.result()
