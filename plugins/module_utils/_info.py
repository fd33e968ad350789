# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Read-only description of a deploy root: releases, slots, the live chain and the lock.

Sizes: ``size`` is the space on disk (allocated blocks) of the inodes of a
release, each inode counted once across the whole root and attributed to the
oldest release (or slot) holding it. Files hardlinked between releases
therefore count for the release that brought them, so the sizes add up to the
disk usage of ``releases/`` (and ``slots/``). ``apparent_size`` is the sum of
the byte sizes of the regular files of one release (each inode once within
it), what the release would weigh copied on its own.
"""

from __future__ import annotations

import json
import os
import stat
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils._delta import stored_composes
from ansible_collections.stagehand.deploy.plugins.module_utils._history import (
    DEFAULT_HISTORY,
    HistoryError,
    read_history,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._names import (
    SLOT_NAMES,
    InvalidName,
    check_release_name,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._state import (
    MODE_RELEASES,
    MODE_SLOTS,
    STATUS_COMPLETE,
    STATUS_INCOMPLETE,
    DeployRoot,
    check_link_name,
)

MODE_DETECT = 'detect'
INFO_MODES = (MODE_RELEASES, MODE_SLOTS, MODE_DETECT)
RAW_LOCK_CHARS = 200


class InfoError(Exception):
    """Invalid arguments; the message names the value and what is allowed."""


def tree_usage(path: str, seen: set[tuple[int, int]]) -> tuple[int, int]:
    """``(size, apparent_size)`` of the tree at ``path`` (symlinks not followed).

    ``size`` counts the allocated blocks of every inode not yet in ``seen``
    (and adds it to ``seen``); ``apparent_size`` counts the byte size of each
    regular file once within this tree. Entries vanishing during the walk are skipped.
    """
    size = 0
    apparent = 0
    local: set[tuple[int, int]] = set()

    def account(full: str) -> None:
        nonlocal size, apparent
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            return
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            blocks = getattr(st, 'st_blocks', None)
            size += blocks * 512 if blocks is not None else st.st_size
        if stat.S_ISREG(st.st_mode) and key not in local:
            local.add(key)
            apparent += st.st_size

    if not os.path.isdir(path) or os.path.islink(path):
        return 0, 0
    account(path)
    for dirpath, dirnames, filenames in os.walk(path):
        for entry in dirnames + filenames:
            account(os.path.join(dirpath, entry))
    return size, apparent


def read_lock(droot: DeployRoot) -> dict[str, t.Any] | None:
    """The lock content, None without a lock, ``{'raw': <first characters>}`` for a lock that is not JSON."""
    try:
        with open(droot.lock_path, 'rb') as f:
            raw = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        data = json.loads(raw.decode('utf-8'))
    except ValueError:
        data = None
    if isinstance(data, dict):
        return data
    return {'raw': raw[:RAW_LOCK_CHARS].decode('utf-8', errors='replace')}


def _detect_mode(droot: DeployRoot, current: dict[str, t.Any]) -> str:
    if current['mode'] in (MODE_RELEASES, MODE_SLOTS):
        return t.cast(str, current['mode'])
    if os.path.isdir(droot.slots_dir) and not os.path.isdir(droot.releases_dir):
        return MODE_SLOTS
    return MODE_RELEASES


def _slot_meta(droot: DeployRoot, slot: str) -> dict[str, t.Any]:
    try:
        meta = droot.read_slot_meta(slot)
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _status(read_status: t.Callable[[str], str], name: str) -> str:
    try:
        return read_status(name)
    except ValueError:  # metadata that is not valid JSON
        return STATUS_INCOMPLETE


def _sort_key(entry: dict[str, t.Any]) -> tuple[bool, str, str]:
    created = entry['created']
    return (not isinstance(created, str), created if isinstance(created, str) else '', entry['name'])


def release_info(root: str, name: str | None = None, mode: str = MODE_RELEASES, link: str = 'current',
                 history: int = DEFAULT_HISTORY, sizes: bool = True) -> dict[str, t.Any]:
    """Describe the deploy root (see the ``release_info`` module for the result).

    Without ``sizes`` no tree is walked (``size`` and ``apparent_size`` are None): cheap for large releases.
    """
    if isinstance(history, bool) or not isinstance(history, int) or history < 0:
        raise InfoError('history %r is invalid: use a number of entries >= 0 (0 returns none)' % (history,))
    if mode not in INFO_MODES:
        raise InfoError('mode %r is invalid: use one of %s' % (mode, ', '.join(INFO_MODES)))
    try:
        check_link_name(link)
        if name is not None:
            check_release_name(name)
    except InvalidName as exc:
        raise InfoError(str(exc)) from None

    droot = DeployRoot(root, link)
    result: dict[str, t.Any] = {
        'exists': False,
        'root': droot.root,
        'mode': MODE_RELEASES if mode == MODE_DETECT else mode,
        'current': {'kind': 'missing', 'target': None, 'mode': None, 'name': None},
        'releases': [],
        'slots': [],
        'live': None,
        'previous': None,
        'next': None,
        'lock': None,
        'history': [],
        'composes': [],
        'live_compose': None,
    }
    if not os.path.isdir(droot.root):
        return result
    try:
        result['history'] = read_history(droot.root, history)
    except HistoryError as exc:
        raise InfoError(str(exc)) from None

    current = droot.inspect_current()
    if mode == MODE_DETECT:
        mode = _detect_mode(droot, current)
    result.update(exists=True, mode=mode, current=current, lock=read_lock(droot), composes=stored_composes(droot))

    live_release = current['name'] if current['mode'] == MODE_RELEASES else None
    live_slot = current['name'] if current['mode'] == MODE_SLOTS else None
    if mode == MODE_RELEASES:
        live_meta = droot.meta_or_empty(live_release) if live_release else {}
        chain = {'live': live_release, 'previous': live_meta.get('previous'), 'next': live_meta.get('next')}
    else:
        chain = droot.slot_chain(live_slot)
    result.update(live=chain['live'], previous=chain['previous'], next=chain['next'])

    releases = []
    for release in sorted(set(droot.release_names()) | set(droot.meta_names())):
        meta = droot.meta_or_empty(release)
        releases.append({
            'name': release,
            'path': droot.release_path(release),
            'status': _status(droot.release_status, release),
            'created': meta.get('created'),
            'activated': meta.get('activated'),
            'manifest_digest': meta.get('manifest_digest'),
            'source': meta.get('source'),
            'failed_reason': meta.get('failed_reason'),
            'shared': meta.get('shared'),
            'live': release == live_release,
            'previous': mode == MODE_RELEASES and release == chain['previous'],
            'size': 0,
            'apparent_size': 0,
        })
    releases.sort(key=_sort_key)

    # One walk over everything, oldest first, so that shared inodes count once and for the oldest holder.
    seen: set[tuple[int, int]] = set()
    for entry in releases:
        entry['size'], entry['apparent_size'] = tree_usage(entry['path'], seen) if sizes else (None, None)

    if mode == MODE_SLOTS:
        slots = []
        for slot in SLOT_NAMES:
            meta = _slot_meta(droot, slot)
            path = droot.slot_path(slot)
            size, apparent = tree_usage(path, seen) if sizes else (None, None)
            slots.append({
                'name': slot,
                'path': path,
                'exists': os.path.isdir(path) and not os.path.islink(path),
                'status': _status(droot.slot_status, slot),
                'release': meta.get('release'),
                'created': meta.get('created'),
                'activated': meta.get('activated'),
                'manifest_digest': meta.get('manifest_digest'),
                'source': meta.get('source'),
                'failed_reason': meta.get('failed_reason'),
                'shared': meta.get('shared'),
                'live': slot == live_slot,
                'previous': slot == chain['previous'],
                'size': size,
                'apparent_size': apparent,
            })
        result['slots'] = slots

    live_entry = [entry for entry in (result['slots'] if mode == MODE_SLOTS else releases) if entry['live']]
    if live_entry and live_entry[0]['status'] == STATUS_COMPLETE and live_entry[0]['manifest_digest']:
        label = live_entry[0]['release'] if mode == MODE_SLOTS else live_entry[0]['name']
        result['live_compose'] = {'release': label or live_entry[0]['name'], 'compose_id': live_entry[0]['manifest_digest']}
    if name is not None:
        releases = [entry for entry in releases if entry['name'] == name]
    result['releases'] = releases
    return result
