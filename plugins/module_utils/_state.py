# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The layout of a deploy root on a server, and the state kept under ``.stagehand/``.

::

    <root>/
      releases/<release>/        one immutable directory per release
      slots/a, slots/b           A/B mode instead of releases/
      shared/                    persistent files linked into each release
      current -> releases/<release>   the live pointer (relative symlink)
      .stagehand/
        lock                     deploy lock (see _lock.py)
        releases/<release>.json  release metadata (status, digest, chain links)
        manifests/<release>.json manifest the release was verified against
        slots/<a|b>.json         slot metadata in A/B mode
        stage/                   unique staging directories (same filesystem)
        history.jsonl            one JSON line per deploy, rollback, cleanup

The live release is whatever ``current`` points at: that symlink is the only
source of truth for "live". Everything else is metadata about releases.
"""

from __future__ import annotations

import datetime
import os
import stat
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import (
    read_json,
    write_json_atomic,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._names import (
    SLOT_NAMES,
    InvalidName,
    check_release_name,
    is_release_name,
)

STATE_DIR = '.stagehand'
STATUS_COMPLETE = 'complete'
STATUS_FAILED = 'failed'
STATUS_INCOMPLETE = 'incomplete'

MODE_RELEASES = 'releases'
MODE_SLOTS = 'slots'
# .stagehand/composes/<hex>.json or <hex>.delta.json: the compose manifests a host keeps (_delta.rebuild, _delta.load_kept)
COMPOSES_DIR = 'composes'

# Entries of the root that the live pointer may not be named after.
RESERVED_LINK_NAMES = ('releases', 'slots', 'shared', STATE_DIR)


def check_link_name(link: object) -> str:
    """Return ``link`` if it can name the live pointer (a plain entry of the root), else raise InvalidName."""
    check_release_name(link, 'link name')
    link = t.cast(str, link)
    if link in RESERVED_LINK_NAMES:
        raise InvalidName(
            'link name %r is reserved for the deploy layout: use a name other than %s' % (link, ', '.join(RESERVED_LINK_NAMES))
        )
    return link


def inactive_slot(live_slot: str | None) -> str:
    """The slot a deploy patches: the one that is not live, ``a`` when no slot is live."""
    if live_slot not in SLOT_NAMES:
        return SLOT_NAMES[0]
    return SLOT_NAMES[1 - SLOT_NAMES.index(t.cast(str, live_slot))]


def format_utc(moment: datetime.datetime) -> str:
    """``moment`` as an ISO 8601 UTC string with second precision (the format of :func:`utc_now`)."""
    return moment.astimezone(datetime.timezone.utc).replace(microsecond=0).isoformat().replace('+00:00', 'Z')


def format_utc_ms(moment: datetime.datetime) -> str:
    """``moment`` as an ISO 8601 UTC string with millisecond precision (the times of a history line)."""
    return moment.astimezone(datetime.timezone.utc).isoformat(timespec='milliseconds').replace('+00:00', 'Z')


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string with second precision."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace('+00:00', 'Z')


class DeployRoot:
    """Paths and metadata of one deploy root."""

    def __init__(self, root: str, link_name: str = 'current') -> None:
        self.root = os.path.abspath(root)
        self.link_name = link_name

    # -- paths -----------------------------------------------------------
    @property
    def releases_dir(self) -> str:
        return os.path.join(self.root, 'releases')

    @property
    def slots_dir(self) -> str:
        return os.path.join(self.root, 'slots')

    @property
    def shared_dir(self) -> str:
        return os.path.join(self.root, 'shared')

    @property
    def current(self) -> str:
        return os.path.join(self.root, self.link_name)

    @property
    def state_dir(self) -> str:
        return os.path.join(self.root, STATE_DIR)

    @property
    def meta_dir(self) -> str:
        return os.path.join(self.state_dir, 'releases')

    @property
    def manifests_dir(self) -> str:
        return os.path.join(self.state_dir, 'manifests')

    @property
    def slot_meta_dir(self) -> str:
        return os.path.join(self.state_dir, 'slots')

    @property
    def stage_dir(self) -> str:
        return os.path.join(self.state_dir, 'stage')

    @property
    def lock_path(self) -> str:
        return os.path.join(self.state_dir, 'lock')

    @property
    def history_path(self) -> str:
        return os.path.join(self.state_dir, 'history.jsonl')

    def release_path(self, name: str) -> str:
        return os.path.join(self.releases_dir, check_release_name(name))

    def slot_path(self, slot: str) -> str:
        if slot not in SLOT_NAMES:
            raise ValueError('slot %r is invalid: use one of %s' % (slot, ', '.join(SLOT_NAMES)))
        return os.path.join(self.slots_dir, slot)

    def meta_path(self, name: str) -> str:
        return os.path.join(self.meta_dir, check_release_name(name) + '.json')

    def manifest_path(self, name: str) -> str:
        return os.path.join(self.manifests_dir, check_release_name(name) + '.json')

    def slot_meta_path(self, slot: str) -> str:
        self.slot_path(slot)
        return os.path.join(self.slot_meta_dir, slot + '.json')

    def ensure_state_dirs(self) -> None:
        """Create ``.stagehand`` and its subdirectories (mode 0755) when missing."""
        for directory in (self.state_dir, self.meta_dir, self.manifests_dir, self.stage_dir):
            os.makedirs(directory, mode=0o755, exist_ok=True)

    # -- release metadata ------------------------------------------------
    def read_meta(self, name: str) -> dict[str, t.Any] | None:
        return read_json(self.meta_path(name))

    def meta_or_empty(self, name: str) -> dict[str, t.Any]:
        """Release metadata; ``{}`` when missing or unreadable (the release then shows as incomplete)."""
        try:
            meta = self.read_meta(name)
        except ValueError:  # not valid JSON
            return {}
        return meta if isinstance(meta, dict) else {}

    def write_meta(self, name: str, meta: dict[str, t.Any]) -> None:
        os.makedirs(self.meta_dir, mode=0o755, exist_ok=True)
        write_json_atomic(self.meta_path(name), meta)

    def read_slot_meta(self, slot: str) -> dict[str, t.Any] | None:
        return read_json(self.slot_meta_path(slot))

    def write_slot_meta(self, slot: str, meta: dict[str, t.Any]) -> None:
        os.makedirs(self.slot_meta_dir, mode=0o755, exist_ok=True)
        write_json_atomic(self.slot_meta_path(slot), meta)

    def release_names(self) -> list[str]:
        """Names of the release directories on disk, sorted (staging leftovers excluded)."""
        try:
            entries = os.listdir(self.releases_dir)
        except FileNotFoundError:
            return []
        names = []
        for entry in entries:
            if entry.startswith('.'):
                continue
            if os.path.isdir(os.path.join(self.releases_dir, entry)) and not os.path.islink(
                os.path.join(self.releases_dir, entry)
            ):
                names.append(entry)
        return sorted(names)

    def release_status(self, name: str) -> str:
        """``complete``, ``failed`` or ``incomplete`` (directory or metadata missing or unfinished)."""
        meta = self.read_meta(name)
        if not os.path.isdir(self.release_path(name)) or os.path.islink(self.release_path(name)):
            return STATUS_INCOMPLETE
        if not meta or meta.get('status') not in (STATUS_COMPLETE, STATUS_FAILED):
            return STATUS_INCOMPLETE
        return meta['status']

    # -- the live pointer ------------------------------------------------
    def current_target(self) -> str | None:
        """The raw target of ``current`` if it is a symlink, else None."""
        try:
            return os.readlink(self.current)
        except (FileNotFoundError, OSError):
            return None

    def live(self) -> tuple[str | None, str | None]:
        """Return ``(mode, name)`` of what ``current`` points at.

        ``mode`` is ``releases`` or ``slots``; ``(None, None)`` when ``current``
        is missing, is not a symlink, or points somewhere else. Every spelling
        of a link into the root counts (see :meth:`inspect_current`).
        """
        info = self.inspect_current()
        return info['mode'], info['name']

    def live_label(self) -> str | None:
        """How the history names what is live (:meth:`label` of :meth:`live`); None when nothing is or it cannot be read."""
        try:
            return self.label(*self.live())
        except (OSError, ValueError):
            return None

    def live_release(self) -> str | None:
        mode, name = self.live()
        return name if mode == MODE_RELEASES else None

    def label(self, mode: str | None, name: str | None) -> str | None:
        """How the history names what ``(mode, name)`` designates: a release by its name, a slot by its release label.

        A slot without a readable label is named by the slot itself.
        """
        if mode != MODE_SLOTS or name is None:
            return name
        try:
            meta = self.read_slot_meta(name)
        except (OSError, ValueError):
            meta = None
        label = meta.get('release') if isinstance(meta, dict) else None
        return label if isinstance(label, str) and label else name

    def chain(self) -> dict[str, str | None]:
        """The Plugbox chain around the live release: ``live``, ``previous`` and ``next``."""
        live = self.live_release()
        if live is None:
            return {'live': None, 'previous': None, 'next': None}
        meta = self.read_meta(live) or {}
        return {'live': live, 'previous': meta.get('previous'), 'next': meta.get('next')}

    # -- additions for switch / release_info ---------------------------------
    def inspect_current(self) -> dict[str, t.Any]:
        """Describe the live pointer without following it.

        Returns ``{'kind', 'target', 'mode', 'name'}`` where ``kind`` is
        ``missing``, ``symlink``, ``directory`` (a plain directory, e.g. a site
        deployed before stagehand) or ``other`` (a file, a socket, ...).
        For a symlink, ``target`` is its raw text and ``mode``/``name`` say
        which release or slot it designates, or are None when it points
        anywhere else. Unlike :meth:`live`, a link that designates the same
        place in another spelling (``/srv/app/releases/v1``,
        ``./releases/v1/``) is recognised too.
        """
        try:
            st = os.lstat(self.current)
        except FileNotFoundError:
            return {'kind': 'missing', 'target': None, 'mode': None, 'name': None}
        if stat.S_ISDIR(st.st_mode):
            return {'kind': 'directory', 'target': None, 'mode': None, 'name': None}
        if not stat.S_ISLNK(st.st_mode):
            return {'kind': 'other', 'target': None, 'mode': None, 'name': None}
        target = os.readlink(self.current)
        mode, name = self.designates(target)
        return {'kind': 'symlink', 'target': target, 'mode': mode, 'name': name}

    def designates(self, link_target: str) -> tuple[str | None, str | None]:
        """``(mode, name)`` of the release or slot a link text in the root designates, else ``(None, None)``."""
        full = os.path.normpath(os.path.join(self.root, link_target))
        parent, name = os.path.split(full)
        if parent == self.releases_dir and is_release_name(name):
            return MODE_RELEASES, name
        if parent == self.slots_dir and name in SLOT_NAMES:
            return MODE_SLOTS, name
        return None, None

    @staticmethod
    def link_text(mode: str, name: str) -> str:
        """The canonical relative text of a live pointer at a release or slot."""
        return '%s/%s' % ('slots' if mode == MODE_SLOTS else 'releases', name)

    def target_path(self, mode: str, name: str) -> str:
        """Absolute path of a release (``mode=releases``) or slot (``mode=slots``)."""
        return self.slot_path(name) if mode == MODE_SLOTS else self.release_path(name)

    def meta_names(self) -> list[str]:
        """Valid release names that have a metadata file, sorted."""
        try:
            entries = os.listdir(self.meta_dir)
        except FileNotFoundError:
            return []
        names = []
        for entry in entries:
            if entry.endswith('.json') and is_release_name(entry[:-5]):
                names.append(entry[:-5])
        return sorted(names)

    def slot_status(self, slot: str) -> str:
        """``complete``, ``failed`` or ``incomplete`` for a slot, like :meth:`release_status` (unreadable metadata: incomplete)."""
        path = self.slot_path(slot)
        if not os.path.isdir(path) or os.path.islink(path):
            return STATUS_INCOMPLETE
        try:
            meta = self.read_slot_meta(slot)
        except ValueError:  # not valid JSON
            return STATUS_INCOMPLETE
        if not isinstance(meta, dict) or meta.get('status') not in (STATUS_COMPLETE, STATUS_FAILED):
            return STATUS_INCOMPLETE
        return meta['status']

    def slot_chain(self, live_slot: str | None) -> dict[str, str | None]:
        """The chain in A/B mode: ``previous`` is the inactive slot when it holds a complete deploy."""
        if live_slot not in SLOT_NAMES:
            return {'live': None, 'previous': None, 'next': None}
        other = inactive_slot(live_slot)
        previous = other if self.slot_status(other) == STATUS_COMPLETE else None
        return {'live': live_slot, 'previous': previous, 'next': None}
