# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What may be a deploy root, and how a directory is recognised as one.

A deploy root is written to by every deploy (releases, ``shared/.env`` with the database
password, the live link), so a wrong value must be refused before anything is written:

* :func:`check_root_path` (every module with a ``root`` option, before it does anything): the
  path is absolute and normalised (no ``.``, ``..``, ``//`` or trailing ``/``), it is not ``/``
  nor a system directory such as ``/srv`` or ``/var``, it is not inside a system tree such as
  ``/etc`` or ``/usr``, and, when it exists, where it resolves to passes the same checks.
* :func:`claim_decision` (before the deploy lock is taken, the first write of any run) and
  :func:`mark_root` (once the lock is held): a directory
  is a deploy root when it holds the marker ``.stagehand/deploy-root.json``. A directory without
  the marker is claimed (the marker written) only when it is new, empty, holds only what
  ``provision.yml`` creates (``shared/``; ``lost+found`` of a mounted volume), or only the layout
  of a deploy root (``releases/``, ``slots/``, ``current``, ``.stagehand/``: a root deployed by an
  earlier version, which wrote no marker). Any other directory is refused, naming what it holds.
"""

from __future__ import annotations

import os
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import fsync_dir, read_json, write_json_atomic

STATE_DIR = '.stagehand'
MARKER = 'deploy-root.json'
MARKER_FORMAT = 1

# A root may be nowhere inside these trees (the operating system's own files).
SYSTEM_TREES = ('/bin', '/boot', '/dev', '/etc', '/lib', '/lib32', '/lib64', '/libx32', '/proc', '/run', '/sbin', '/sys', '/usr')
# A root may be below these directories, but not one of them.
SYSTEM_DIRS = ('/', '/home', '/media', '/mnt', '/opt', '/root', '/srv', '/srv/www', '/tmp', '/var', '/var/backups',
               '/var/cache', '/var/lib', '/var/local', '/var/log', '/var/mail', '/var/opt', '/var/spool', '/var/tmp', '/var/www')
# What a directory may hold, besides nothing at all, to be claimed as a deploy root: what
# provision.yml creates, lost+found of a mounted volume, and the layout of a root deployed by an
# earlier version (which wrote no marker).
CLAIMABLE_ENTRIES = frozenset(('shared', 'lost+found', 'releases', 'slots', 'current', STATE_DIR))


class InvalidRoot(ValueError):
    """The deploy root is not acceptable; nothing was written."""


def _system_reason(path: str) -> str | None:
    if path in SYSTEM_DIRS:
        return 'is a system directory'
    for tree in SYSTEM_TREES:
        if path == tree or path.startswith(tree + '/'):
            return 'is inside the system directory %r' % tree
    return None


def check_root_path(root: object) -> str:
    """Return ``root`` when it may be a deploy root (see the module docstring), else raise :class:`InvalidRoot`."""
    example = "such as '/srv/www/shop'"
    if not isinstance(root, str) or not root:
        raise InvalidRoot('deploy root %r is not a path: give an absolute directory %s' % (root, example))
    if any(ord(c) < 32 or ord(c) == 127 for c in root):
        raise InvalidRoot('deploy root %r contains a control character: give an absolute directory %s' % (root, example))
    if not root.startswith('/'):
        raise InvalidRoot('deploy root %r is not absolute: give an absolute directory %s' % (root, example))
    normal = os.path.normpath(root)
    if normal.startswith('//'):
        normal = normal[1:]
    if normal != root:
        raise InvalidRoot("deploy root %r is not normalised: write it as %r (no '.', '..', '//' or trailing '/')" % (root, normal))
    reason = _system_reason(root)
    if reason:
        raise InvalidRoot('deploy root %r %s: give a directory of its own for the application, %s' % (root, reason, example))
    real = os.path.realpath(root)
    if real != root:
        reason = _system_reason(real)
        if reason:
            raise InvalidRoot('deploy root %r resolves to %r, which %s: give a directory of its own for the application, %s'
                              % (root, real, reason, example))
    return root


def marker_path(root: str) -> str:
    return os.path.join(root, STATE_DIR, MARKER)


def is_marked(root: str) -> bool:
    """Whether ``root`` holds a readable deploy-root marker."""
    try:
        data = read_json(marker_path(root))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get('format') == MARKER_FORMAT


def claim_decision(root: str) -> str:
    """Whether ``root`` is a marked deploy root (``'marked'``), is to be created (``'create'``) or may be claimed
    (``'claim'``); raise :class:`InvalidRoot` when it may not be a deploy root. Reads only."""
    check_root_path(root)
    if not os.path.lexists(root):
        return 'create'
    if not os.path.isdir(root):
        raise InvalidRoot('deploy root %r exists but is not a directory' % root)
    if is_marked(root):
        return 'marked'
    try:
        entries = sorted(os.listdir(root))
    except OSError as exc:
        raise InvalidRoot('deploy root %r cannot be read: %s' % (root, exc.strerror or exc)) from None
    others = [name for name in entries if name not in CLAIMABLE_ENTRIES]
    if not others:
        return 'claim'
    shown = ', '.join(repr(name) for name in others[:5]) + (' and %d more' % (len(others) - 5) if len(others) > 5 else '')
    raise InvalidRoot(
        'deploy root %r is not a deploy root: it holds %s and no %s/%s marker. Nothing was written. '
        'Give a new or empty directory (or one that holds only shared/, as provision.yml leaves it), '
        'or check deploy_root.' % (root, shown, STATE_DIR, MARKER))


def mark_root(root: str, now: str) -> None:
    """Write the deploy-root marker of ``root`` (atomically; its ``.stagehand`` is created when missing)."""
    state_dir = os.path.join(root, STATE_DIR)
    os.makedirs(state_dir, mode=0o755, exist_ok=True)
    data: dict[str, t.Any] = {'format': MARKER_FORMAT, 'root': root, 'claimed': now}
    write_json_atomic(marker_path(root), data)
    fsync_dir(state_dir)
