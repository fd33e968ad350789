# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Removing old releases, staging leftovers and database dumps from a deploy root.

Only the holder of the deploy lock may clean up, so no deploy can be creating
or switching to a release meanwhile. What stays:

* the ``keep`` newest complete releases (by their ``created`` time);
* the live release and its rollback target (``previous`` of the live one),
  whatever their age or status;
* staging directories younger than an hour;
* the dumps ``.stagehand/dumps/<release>.sql.gz`` of the releases that stay.

Everything else goes: failed releases first, then incomplete ones, then the
oldest complete ones. Releases are removed with :func:`_release.remove_release`
(renamed aside into ``.stagehand/stage/`` first, so ``releases/`` never holds
a half-deleted release).

On a full filesystem the cleanup frees room before it needs any: when setting a
release aside fails for lack of room (``stage/`` cannot be created, say), its
metadata and manifest are removed first, which makes it an incomplete release
that nothing switches to, then its tree is removed in place. The deploy lock it
runs under is written into a reserve prepared earlier (see :mod:`._lock`), and
once room is freed the spares for the next full disk are prepared again.
"""

from __future__ import annotations

import os
import stat
import time
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils import _switch
from ansible_collections.stagehand.deploy.plugins.module_utils._crash import crash_point
from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import fsync_dir, is_disk_full
from ansible_collections.stagehand.deploy.plugins.module_utils._lock import (
    LockArgumentError,
    LockCorrupt,
    check_token,
    describe_holder,
    is_expired,
    read_lock,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._names import is_release_name
from ansible_collections.stagehand.deploy.plugins.module_utils._release import (
    ReleaseError,
    release_manifest_path,
    remove_release,
    remove_tree,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._state import (
    MODE_RELEASES,
    STATUS_COMPLETE,
    STATUS_FAILED,
    STATUS_INCOMPLETE,
    DeployRoot,
)

DEFAULT_KEEP = 5
STAGE_MAX_AGE = 3600
DUMPS_DIR = 'dumps'
DUMP_SUFFIX = '.sql.gz'
_REMOVAL_ORDER = {STATUS_FAILED: 0, STATUS_INCOMPLETE: 1, STATUS_COMPLETE: 2}


class CleanupError(Exception):
    """A refused or failed cleanup; ``details`` (what was removed so far) go into the module result."""

    def __init__(self, msg: str, **details: t.Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


def dumps_dir(droot: DeployRoot) -> str:
    """``<root>/.stagehand/dumps``: the database dumps taken before each release's migrations."""
    return os.path.join(droot.state_dir, DUMPS_DIR)


def check_keep(keep: object) -> int:
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise CleanupError('keep %r is invalid: use a whole number of releases >= 1 (default %d)' % (keep, DEFAULT_KEEP))
    return keep


def check_lock(droot: DeployRoot, token: object, check_mode: bool) -> list[str]:
    """Refuse unless ``token`` holds the unexpired deploy lock; return warnings.

    In check mode a missing lock is only a warning, because the lock module
    does not take the lock in check mode either.
    """
    try:
        token = check_token(token)
    except LockArgumentError as exc:
        raise CleanupError('%s: pass the token returned by stagehand.deploy.lock' % exc.msg) from None
    try:
        holder = read_lock(droot.lock_path)
    except LockCorrupt as exc:
        raise CleanupError('refusing to clean up: %s' % exc.msg) from None
    if holder is None:
        if check_mode:
            return ['no deploy lock is held on %s; a real run refuses to clean up without it' % droot.root]
        raise CleanupError(
            'refusing to clean up %s without the deploy lock (no lock is held): take it with stagehand.deploy.lock '
            'and pass its token, so that no deploy runs during the cleanup' % droot.root)
    if holder.get('token') != token:
        raise CleanupError(
            'refusing to clean up %s: the deploy lock %s is held by %s, not with the token given; '
            'a deploy may be running' % (droot.root, droot.lock_path, describe_holder(holder)), holder=holder)
    if is_expired(holder):
        raise CleanupError(
            'refusing to clean up %s: the deploy lock held with this token expired at %s and may be taken over by '
            'another deploy at any moment; release it and acquire it again' % (droot.root, holder.get('expires')), holder=holder)
    return []


def _status(droot: DeployRoot, name: str) -> str:
    try:
        return droot.release_status(name)
    except ValueError:
        return STATUS_INCOMPLETE


def _created(meta: dict[str, t.Any]) -> str:
    created = meta.get('created')
    return created if isinstance(created, str) else ''


def freed_size(paths: t.Iterable[str]) -> int:
    """Bytes on disk freed by removing every tree in ``paths``.

    An inode counts only when all its hard links are inside those trees: a file
    hardlinked from a release that stays frees nothing.
    """
    inodes: dict[tuple[int, int], list[int]] = {}
    total = 0
    for top in paths:
        for path in _walk(top):
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            size = st.st_blocks * 512 if hasattr(st, 'st_blocks') else st.st_size
            if stat.S_ISDIR(st.st_mode):
                total += size
                continue
            entry = inodes.setdefault((st.st_dev, st.st_ino), [st.st_nlink, size, 0])
            entry[2] += 1
    return total + sum(size for nlink, size, seen in inodes.values() if seen >= nlink)


def _walk(top: str) -> t.Iterator[str]:
    if not os.path.lexists(top):
        return
    yield top
    if os.path.isdir(top) and not os.path.islink(top):
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                yield os.path.join(dirpath, name)


def _entries(directory: str) -> list[tuple[str, os.stat_result]]:
    """``(path, lstat)`` of the entries of ``directory``, sorted; empty when it does not exist."""
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    entries = []
    for name in names:
        path = os.path.join(directory, name)
        try:
            entries.append((path, os.lstat(path)))
        except FileNotFoundError:
            continue
    return entries


def _old_entries(directory: str, now: float) -> list[str]:
    """Entries of ``directory`` last modified more than :data:`STAGE_MAX_AGE` seconds before ``now``."""
    return [path for path, st in _entries(directory) if now - st.st_mtime > STAGE_MAX_AGE]


def _dumps_to_remove(directory: str, keep_names: set[str], now: float) -> list[str]:
    """Dumps ``<release>.sql.gz`` of releases not kept, and our temporary files older than :data:`STAGE_MAX_AGE`."""
    found = []
    for path, st in _entries(directory):
        if stat.S_ISDIR(st.st_mode):
            continue
        entry = os.path.basename(path)
        stem = entry[:-len(DUMP_SUFFIX)] if entry.endswith(DUMP_SUFFIX) else None
        if stem is not None and is_release_name(stem):
            if stem not in keep_names:
                found.append(path)
        elif entry.startswith('.') and entry.endswith('.tmp') and now - st.st_mtime > STAGE_MAX_AGE:
            found.append(path)
    return found


def plan_cleanup(root: str, keep: int, now: float | None = None) -> dict[str, t.Any]:
    """What a cleanup of ``root`` keeping ``keep`` complete releases removes; nothing is changed."""
    droot = DeployRoot(root)
    moment = time.time() if now is None else now
    current = droot.inspect_current()
    live = current['name'] if current['mode'] == MODE_RELEASES else None
    rollback = droot.meta_or_empty(live).get('previous') if live else None
    if not is_release_name(rollback):
        rollback = None

    releases = []
    for name in sorted(set(droot.release_names()) | set(droot.meta_names())):
        meta = droot.meta_or_empty(name)
        releases.append({'name': name, 'status': _status(droot, name), 'created': _created(meta)})
    newest = sorted((r for r in releases if r['status'] == STATUS_COMPLETE), key=lambda r: (r['created'], r['name']), reverse=True)
    keep_names = {r['name'] for r in newest[:keep]} | {n for n in (live, rollback) if n}
    kept = [r['name'] for r in sorted(releases, key=lambda r: (r['created'], r['name']), reverse=True) if r['name'] in keep_names]
    remove = sorted((r for r in releases if r['name'] not in keep_names),
                    key=lambda r: (_REMOVAL_ORDER.get(r['status'], 1), r['created'], r['name']))

    stage = _old_entries(droot.stage_dir, moment)

    gone = {r['name'] for r in remove}
    dumps = _dumps_to_remove(dumps_dir(droot), keep_names, moment)
    release_paths = [droot.release_path(r['name']) for r in remove]
    return {
        'droot': droot,
        'live': live,
        'rollback': rollback,
        'remove': remove,
        'removed': [r['name'] for r in remove],
        'kept': kept,
        'stage': stage,
        'dumps': dumps,
        'gone': gone,
        'freed_bytes': freed_size(release_paths + stage + dumps),
        'before': [r['name'] for r in releases],
    }


def _result(plan: dict[str, t.Any], changed: bool, warnings: list[str]) -> dict[str, t.Any]:
    droot = plan['droot']
    return {
        'changed': changed,
        'removed': plan['removed'],
        'kept': plan['kept'],
        'removed_stage': plan['stage'],
        'removed_dumps': plan['dumps'],
        'freed_bytes': plan['freed_bytes'],
        'live': plan['live'],
        'rollback_target': plan['rollback'],
        'warnings': warnings,
        'diff': {
            'before': ''.join('%s\n' % n for n in plan['before']),
            'after': ''.join('%s\n' % n for n in plan['before'] if n not in plan['gone']),
            'before_header': '%s (releases)' % droot.releases_dir,
            'after_header': '%s (releases)' % droot.releases_dir,
        },
    }


def cleanup(root: str, token: object, keep: object = DEFAULT_KEEP, check_mode: bool = False,
            now: float | None = None) -> dict[str, t.Any]:
    """Remove what :func:`plan_cleanup` lists (not in check mode), under the deploy lock held with ``token``."""
    keep = check_keep(keep)
    droot = DeployRoot(root)
    if not os.path.isdir(droot.root):
        raise CleanupError('root %s does not exist or is not a directory: give the deploy root' % droot.root)
    warnings = check_lock(droot, token, check_mode)
    plan = plan_cleanup(root, keep, now)
    changed = bool(plan['remove'] or plan['stage'] or plan['dumps'])
    if check_mode or not changed:
        return _result(plan, changed, warnings)

    done: list[str] = []
    for release in plan['remove']:
        try:
            try:
                remove_release(droot.root, release['name'])
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                remove_in_place(droot, release['name'])
        except (ReleaseError, OSError) as exc:
            raise CleanupError('removing release %s failed: %s; removed before it: %s' % (
                release['name'], getattr(exc, 'msg', None) or exc, ', '.join(done) or 'nothing'), removed=done) from None
        done.append(release['name'])
        crash_point('cleanup:removed-one')
    for path in plan['stage']:
        try:
            remove_tree(path)
        except OSError as exc:
            raise CleanupError('removing the staging leftover %s failed: %s' % (path, exc), removed=done) from None
    if plan['stage']:
        fsync_dir(droot.stage_dir)
    for path in plan['dumps']:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise CleanupError('removing the dump %s failed: %s' % (path, exc), removed=done) from None
    if plan['dumps']:
        fsync_dir(dumps_dir(droot))
    # now that there is room again: the spare link and the lock reserve for the next full disk
    warnings.extend(_switch.prepare_spare(droot))
    return _result(plan, True, warnings)


def remove_in_place(droot: DeployRoot, name: str) -> None:
    """Remove release ``name`` without needing any room: metadata and manifest first, then the tree where it is.

    Once its metadata is gone the release is incomplete, so an interrupted removal leaves a
    directory that no switch takes without force and that the next cleanup removes.
    """
    for meta_file in (droot.meta_path(name), release_manifest_path(droot, name)):
        try:
            os.unlink(meta_file)
        except FileNotFoundError:
            continue
        fsync_dir(os.path.dirname(meta_file))
    path = droot.release_path(name)
    if os.path.lexists(path):
        remove_tree(path)
        fsync_dir(droot.releases_dir)
