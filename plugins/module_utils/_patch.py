# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Transactional patching of a file tree, in the phases of Karazeh's patcher.

0. **Recover** (:class:`Recovery`): a journal left by an interrupted run is
   rolled back completely before anything else; cache and backups without a
   journal are garbage and are removed.
1. **Stage** (:class:`Stage`): every operation is checked (preconditions,
   already-in-the-desired-state no-ops) and its new content is copied into the
   cache inside the work directory and fsynced. Nothing live is touched.
2. **Deploy** (:class:`Transaction`): the journal (what will be changed, where
   each original is kept, which parent directories will be created) is written
   and fsynced before the first change. Each original is kept by ``link(2)``
   (or moved, for ``delete``) into the backup directory, then replaced by
   ``rename(2)`` from the cache.
3. **Validate**: an optional command checks the patched tree.
4. **Commit**: the journal is removed (the point of no return), then backups
   and cache. On any failure before that, every operation is undone in
   reverse from the journal (:func:`undo_entries`), which is idempotent: the
   same undo run again after a crash at any point finishes the job.

All cache, backup and journal files live in the work directory, which must be
on the tree's filesystem so that every step is a ``rename(2)``.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import os
import re
import shlex
import stat
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import fsync_dir
from ansible_collections.stagehand.deploy.plugins.module_utils._crash import crash_point
from ansible_collections.stagehand.deploy.plugins.module_utils._journal import Journal, JournalError
from ansible_collections.stagehand.deploy.plugins.module_utils._names import account_id

JOURNAL_KIND = 'stagehand.patch'
DEFAULT_WORKDIR_NAME = '.stagehand-patch'
JOURNAL_NAME = 'patch-journal.json'
CACHE_NAME = 'patch-cache'
BACKUP_NAME = 'patch-backup'
OPS = ('create', 'update', 'delete', 'symlink')
DEFAULT_CREATE_MODE = 0o644
CREATED_DIR_MODE = 0o755
DIFF_MAX_BYTES = 64 * 1024
_CHUNK = 1024 * 1024

_MODE_RE = re.compile(r'\A(?:0o)?([0-7]{3,5})\Z')
_SHA256_RE = re.compile(r'\A(?:sha256:)?([0-9a-fA-F]{64})\Z')

# Which option each operation accepts (besides op and path).
_ALLOWED = {
    'create': ('content', 'src', 'mode', 'owner', 'group'),
    'update': ('content', 'src', 'sha256', 'mode', 'owner', 'group'),
    'delete': ('sha256',),
    'symlink': ('target', 'owner', 'group'),
}
_OPTIONAL_KEYS = ('content', 'src', 'sha256', 'mode', 'owner', 'group', 'target')

Runner = t.Callable[[t.List[str], str], t.Tuple[int, str, str]]


class PatchError(Exception):
    """The patch was refused or failed; ``msg`` says why, ``result`` holds extra result keys."""

    def __init__(self, msg: str, **result: t.Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.result = result


# -- small helpers ------------------------------------------------------------
def is_within(path: str, root: str) -> bool:
    """Whether absolute normalized ``path`` is ``root`` or below it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def parse_mode(value: object, what: str) -> int:
    """An octal string ('0644', '644', '0o2775') or an int (the numeric mode) -> int."""
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        if 0 <= value <= 0o7777:
            return value
    elif isinstance(value, str):
        match = _MODE_RE.match(value.strip())
        if match and int(match.group(1), 8) <= 0o7777:
            return int(match.group(1), 8)
    raise PatchError("%s %r is invalid: use an octal string such as '0644' (at most 07777)" % (what, value))


def parse_sha256(value: object, what: str) -> str:
    if isinstance(value, str):
        match = _SHA256_RE.match(value.strip())
        if match:
            return match.group(1).lower()
    raise PatchError('%s %r is invalid: use 64 hexadecimal digits, optionally prefixed by "sha256:"' % (what, value))


def resolve_id(value: object, what: str, group: bool = False) -> int:
    """A user (or group) name or numeric id -> uid (or gid)."""
    try:
        return account_id(value, group)
    except ValueError as exc:
        raise PatchError('%s %s' % (what, exc)) from None


def normalize_relpath(value: object, what: str) -> str:
    """Check a path relative to the tree (no absolute path, no '..') and return it normalized."""
    allowed = 'use a path relative to the tree, without ".." components'
    if not isinstance(value, str) or not value:
        raise PatchError('%s %r is invalid: %s' % (what, value, allowed))
    if '\x00' in value:
        raise PatchError('%s %r contains a NUL character: %s' % (what, value, allowed))
    if value.startswith('/'):
        raise PatchError('%s %r is absolute: %s' % (what, value, allowed))
    components = value.split('/')
    if '..' in components:
        raise PatchError('%s %r contains "..": %s' % (what, value, allowed))
    parts = [part for part in components if part not in ('', '.')]
    if not parts:
        raise PatchError('%s %r names the tree itself: name an entry inside the tree' % (what, value))
    return '/'.join(parts)


def hash_file(path: str, keep: int = 0) -> tuple[str, int, bytes | None]:
    """(sha256 hex, size, the content if it is at most ``keep`` bytes) of a regular file, streamed."""
    digest = hashlib.sha256()
    size = 0
    kept: list[bytes] | None = [] if keep else None
    with open(path, 'rb') as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
            if kept is not None:
                if size <= keep:
                    kept.append(chunk)
                else:
                    kept = None
    return digest.hexdigest(), size, (b''.join(kept) if kept is not None else None)


def _unlink_if_exists(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def _rmdir_if_empty(path: str) -> bool:
    try:
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            return False
        raise


def _fsync_dirs(directories: t.Iterable[str]) -> None:
    for directory in sorted(set(directories)):
        if os.path.isdir(directory):
            fsync_dir(directory)


# -- state of one directory entry ----------------------------------------------
@dataclasses.dataclass
class EntryState:
    """What is at a path: ``kind`` is absent, file, symlink, directory or other."""

    kind: str
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    sha256: str | None = None
    link_target: str | None = None
    content: bytes | None = None
    fingerprint: tuple[int, ...] | None = None

    @classmethod
    def read(cls, path: str, keep: int = 0, digest: bool = True) -> 'EntryState':
        """lstat ``path``; for a regular file also hash it (unless ``digest`` is false) and keep up to ``keep`` bytes."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return cls('absent')
        state = cls('other', mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid, size=st.st_size,
                    fingerprint=(st.st_dev, st.st_ino, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns))
        if stat.S_ISLNK(st.st_mode):
            state.kind, state.link_target = 'symlink', os.readlink(path)
        elif stat.S_ISDIR(st.st_mode):
            state.kind = 'directory'
        elif stat.S_ISREG(st.st_mode):
            state.kind = 'file'
            if digest:
                state.sha256, _size, state.content = hash_file(path, keep)
        return state

    def describe(self) -> str:
        if self.kind == 'file':
            return 'a regular file (mode %04o, sha256 %s)' % (self.mode or 0, self.sha256)
        if self.kind == 'symlink':
            return 'a symlink to %r' % self.link_target
        return {'absent': 'absent', 'directory': 'a directory'}.get(self.kind, 'a special file')


# -- operations ----------------------------------------------------------------
@dataclasses.dataclass
class Operation:
    """One checked operation. ``target`` and ``missing_dirs`` are set by :meth:`resolve`."""

    index: int
    op: str
    path: str
    content: bytes | None = None
    src: str | None = None
    sha256: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    link: str | None = None
    target: str = ''
    missing_dirs: list[str] = dataclasses.field(default_factory=list)

    @property
    def what(self) -> str:
        return 'operations[%d] (%s %s)' % (self.index, self.op, self.path)

    def resolve(self, tree: str, workdir: 'Workdir') -> None:
        """Find the real location of the target and the parent directories to create.

        The target must stay inside ``tree`` even through existing symlinked
        parent directories, must not touch the work directory and must be on
        the work directory's filesystem.
        """
        parent_rel = os.path.dirname(self.path)
        parent = os.path.realpath(os.path.join(tree, parent_rel)) if parent_rel else tree
        if not is_within(parent, tree):
            raise PatchError(
                '%s: the parent directory %r resolves to %s, outside the tree %s (through a symlink): '
                'operations must stay inside the tree' % (self.what, parent_rel, parent, tree)
            )
        self.target = os.path.join(parent, os.path.basename(self.path))
        if is_within(self.target, workdir.path) or is_within(workdir.path, self.target):
            raise PatchError('%s: %s is (or contains) the work directory %s; operations may not target it'
                             % (self.what, self.target, workdir.path))
        missing: list[str] = []
        existing = parent
        while not os.path.lexists(existing):
            missing.append(existing)
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing) or os.path.islink(existing):
            raise PatchError('%s: %s exists and is not a directory, so it cannot hold %s' % (self.what, existing, self.path))
        if os.stat(existing).st_dev != workdir.dev:
            raise PatchError(
                '%s: %s is on another filesystem than the work directory %s; every change must be a rename(2): '
                'choose a workdir on the same filesystem' % (self.what, existing, workdir.path)
            )
        self.missing_dirs = list(reversed(missing))


def parse_operations(raw_ops: object) -> list[Operation]:
    """Check the options of every operation (no filesystem access except users, groups and ``src``)."""
    if not isinstance(raw_ops, list):
        raise PatchError('operations must be a list of dicts, got %s' % type(raw_ops).__name__)
    result: list[Operation] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_ops):
        if not isinstance(raw, dict):
            raise PatchError('operations[%d] must be a dict, got %s' % (index, type(raw).__name__))
        op = raw.get('op')
        if op not in OPS:
            raise PatchError('operations[%d].op %r is invalid: use one of %s' % (index, op, ', '.join(OPS)))
        path = normalize_relpath(raw.get('path'), 'operations[%d].path' % index)
        what = 'operations[%d] (%s %s)' % (index, op, path)
        given = [key for key in _OPTIONAL_KEYS if raw.get(key) is not None]
        refused = [key for key in given if key not in _ALLOWED[op]]
        if refused:
            raise PatchError('%s: %s not allowed with op=%s (allowed: %s)'
                             % (what, ', '.join(refused), op, ', '.join(_ALLOWED[op]) or 'nothing'))
        if path in seen:
            raise PatchError('%s: the path %r is already used by operations[%d]; each path may appear only once'
                             % (what, path, seen[path]))
        seen[path] = index
        operation = Operation(index=index, op=op, path=path)
        if op in ('create', 'update'):
            if raw.get('content') is not None and raw.get('src') is not None:
                raise PatchError('%s: content and src are mutually exclusive: give one of them' % what)
            if raw.get('content') is None and raw.get('src') is None:
                raise PatchError('%s: op=%s needs content or src' % (what, op))
            if raw.get('content') is not None:
                if not isinstance(raw['content'], str):
                    raise PatchError('%s: content must be a string' % what)
                operation.content = raw['content'].encode('utf-8', 'surrogateescape')
            else:
                src = raw['src']
                if not isinstance(src, str) or not os.path.isabs(src):
                    raise PatchError('%s: src %r must be an absolute path on the managed host' % (what, src))
                if not os.path.isfile(src):
                    raise PatchError('%s: src %s does not exist or is not a regular file' % (what, src))
                operation.src = src
        if raw.get('mode') is not None:
            operation.mode = parse_mode(raw['mode'], '%s: mode' % what)
        if raw.get('sha256') is not None:
            operation.sha256 = parse_sha256(raw['sha256'], '%s: sha256' % what)
        if raw.get('owner') is not None:
            operation.uid = resolve_id(raw['owner'], '%s: owner' % what)
        if raw.get('group') is not None:
            operation.gid = resolve_id(raw['group'], '%s: group' % what, group=True)
        if op == 'symlink':
            link = raw.get('target')
            if not isinstance(link, str) or not link or '\x00' in link:
                raise PatchError('%s: op=symlink needs target, the (non-empty) path the link points to' % what)
            operation.link = link
        result.append(operation)
    return result


def check_overlaps(operations: t.Sequence[Operation], tree: str) -> None:
    """Refuse two operations on the same real path, or on a path and something beneath it."""
    by_target: dict[str, Operation] = {}
    for operation in operations:
        other = by_target.get(operation.target)
        if other is not None:
            raise PatchError('%s and %s both target %s: each path may appear only once'
                             % (other.what, operation.what, operation.target))
        by_target[operation.target] = operation
    for operation in operations:
        parent = os.path.dirname(operation.target)
        while is_within(parent, tree) and parent != tree:
            other = by_target.get(parent)
            if other is not None:
                raise PatchError('%s targets %s, beneath %s of %s: one changeset may not touch a path and its contents'
                                 % (operation.what, operation.target, parent, other.what))
            parent = os.path.dirname(parent)


# -- the work directory ----------------------------------------------------------
class Workdir:
    """The work directory: ``patch-journal.json``, ``patch-cache/`` and ``patch-backup/``.

    The default work directory (``<tree>/.stagehand-patch``) is removed when it
    is empty at the end of a run; a work directory given explicitly is created
    when missing (its parent must exist) and kept.
    """

    def __init__(self, path: str, is_default: bool) -> None:
        self.path = os.path.realpath(path)
        self.is_default = is_default
        self.journal = Journal(os.path.join(self.path, JOURNAL_NAME), JOURNAL_KIND)
        self.cache_dir = os.path.join(self.path, CACHE_NAME)
        self.backup_dir = os.path.join(self.path, BACKUP_NAME)
        self.dev = -1

    def check(self, tree: str) -> None:
        """Refuse a work directory that is not a directory, is the tree (or above it) or is on another filesystem."""
        if is_within(tree, self.path):
            raise PatchError('workdir %s is the tree %s or one of its parents: use a dedicated directory' % (self.path, tree))
        if os.path.lexists(self.path):
            if not os.path.isdir(self.path):
                raise PatchError('workdir %s exists and is not a directory' % self.path)
            try:
                self.check_trusted(self.path)
            except JournalError as exc:
                raise PatchError(str(exc)) from exc
            probe = self.path
        else:
            probe = os.path.dirname(self.path)
            if not os.path.isdir(probe):
                raise PatchError('the parent %s of workdir %s does not exist: create it or choose another workdir'
                                 % (probe, self.path))
        self.dev = os.stat(probe).st_dev
        if self.dev != os.stat(tree).st_dev:
            raise PatchError(
                'workdir %s is on another filesystem than the tree %s; cache and backups must be renamed into '
                'the tree, so choose a workdir on the same filesystem (the default is %s inside the tree)'
                % (self.path, tree, DEFAULT_WORKDIR_NAME)
            )

    def check_trusted(self, *paths: str) -> None:
        """Refuse (JournalError) a work directory or journal that another user could have written.

        Recovery renames and removes what the journal names, so only a journal
        nobody else can write is acted upon.
        """
        for path in paths or (self.path, self.journal.path):
            st = os.lstat(path)
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                raise JournalError(
                    '%s cannot be trusted as the work directory or journal of patch: it is owned by uid %d with mode %04o; '
                    'it must belong to uid %d and not be writable by group or others' % (path, st.st_uid, stat.S_IMODE(st.st_mode), os.geteuid())
                )

    def cache_path(self, index: int) -> str:
        return os.path.join(self.cache_dir, str(index))

    def backup_path(self, index: int) -> str:
        return os.path.join(self.backup_dir, str(index))

    def ensure(self) -> None:
        """Create the work directory and its cache and backup directories (durably)."""
        if not os.path.lexists(self.path):
            os.mkdir(self.path, 0o700)
            fsync_dir(os.path.dirname(self.path))
        for directory in (self.cache_dir, self.backup_dir):
            if not os.path.lexists(directory):
                os.mkdir(directory, 0o700)
        fsync_dir(self.path)

    def _journal_temps(self) -> list[str]:
        try:
            names = os.listdir(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return []
        prefix = '.%s.' % JOURNAL_NAME
        return [os.path.join(self.path, name) for name in names if name.startswith(prefix) and name.endswith('.tmp')]

    def garbage(self) -> list[str]:
        """Leftover cache entries, backups and journal temporaries (meaningful only without a journal)."""
        found = self._journal_temps()
        for directory in (self.cache_dir, self.backup_dir):
            if os.path.isdir(directory) and not os.path.islink(directory):
                found.extend(os.path.join(directory, name) for name in sorted(os.listdir(directory)))
                found.append(directory)
        if self.is_default and os.path.isdir(self.path) and not found and not os.listdir(self.path):
            found.append(self.path)
        return found

    def remove_garbage(self) -> None:
        """Remove cache, backups and journal temporaries, then the empty subdirectories (and the default workdir).

        Nothing here needs to be durable: garbage that reappears after a power
        loss is garbage again for the next run (there is no journal by now).
        """
        for path in self._journal_temps():
            _unlink_if_exists(path)
        for directory in (self.cache_dir, self.backup_dir):
            if not os.path.isdir(directory) or os.path.islink(directory):
                continue
            for name in os.listdir(directory):
                entry = os.path.join(directory, name)
                if os.path.isdir(entry) and not os.path.islink(entry):
                    # an empty directory is a staged or removed one of a slot patch; anything else is left for a human
                    _rmdir_if_empty(entry)
                    continue
                _unlink_if_exists(entry)
            _rmdir_if_empty(directory)
        if self.is_default and os.path.isdir(self.path):
            _rmdir_if_empty(self.path)


# -- journal entries and undo -----------------------------------------------------
_ENTRY_FIELDS: dict[str, t.Any] = {
    'index': int, 'op': str, 'path': str, 'target': str, 'existed': bool,
    'backup': str, 'cache': (str, type(None)), 'staged_ino': (int, type(None)), 'created_dirs': list,
}


def check_journal_payload(workdir: 'Workdir', payload: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    """The entries of a loaded journal, after checking their shape (JournalError otherwise).

    Targets and created directories must lie inside the journal's tree and
    backups inside this work directory: recovery renames and removes exactly
    those paths, so nothing else may be named there.
    """
    tree, entries = payload.get('tree'), payload.get('entries')
    bad = 'journal %s is corrupt: ' % workdir.journal.path
    if not isinstance(tree, str) or not os.path.isabs(tree) or not isinstance(entries, list):
        raise JournalError(bad + '"tree" or "entries" is missing or invalid')
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise JournalError(bad + 'entry %d is not an object' % number)
        for key, kind in _ENTRY_FIELDS.items():
            if not isinstance(entry.get(key), kind) or (kind is int and isinstance(entry.get(key), bool)):
                raise JournalError(bad + 'entry %d has an invalid %r' % (number, key))
        inside = [entry['target']] + entry['created_dirs']
        if not all(isinstance(p, str) and os.path.isabs(p) and is_within(os.path.normpath(p), tree) and p != tree
                   for p in inside):
            raise JournalError(bad + 'entry %d names a relative path or a path outside the tree %s' % (number, tree))
        if os.path.dirname(os.path.normpath(entry['backup'])) != workdir.backup_dir:
            raise JournalError(bad + 'entry %d keeps its backup outside %s' % (number, workdir.backup_dir))
        old_mode = entry.get('old_mode')
        if old_mode is not None and (isinstance(old_mode, bool) or not isinstance(old_mode, int) or not 0 <= old_mode <= 0o7777):
            raise JournalError(bad + 'entry %d has an invalid %r' % (number, 'old_mode'))
    return entries


def undo_entry(entry: t.Mapping[str, t.Any]) -> set[str]:
    """Undo one journal entry, whatever point its deploy reached; return the directories touched.

    Idempotent: every step looks at the filesystem first, so running it again
    (after a crash in the middle of a rollback) does the remaining work only.
    """
    target = entry['target']
    backup = entry['backup']
    touched = {os.path.dirname(target)}
    if entry.get('old_mode') is not None:
        # A mode change of a directory (slot patches): put the old mode back; nothing was moved.
        try:
            st = os.lstat(target)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) != entry['old_mode']:
            os.chmod(target, entry['old_mode'])
        return touched
    if entry['existed']:
        # The original is in the backup (link or rename) until it is restored;
        # no backup means the original was never touched or is already back.
        if os.path.lexists(backup):
            os.rename(backup, target)
            if os.path.lexists(backup):
                # rename() between two links of the same inode does nothing:
                # the deploy stopped between link() and rename(); drop the extra link.
                st_backup, st_target = os.lstat(backup), os.lstat(target)
                if (st_backup.st_dev, st_backup.st_ino) != (st_target.st_dev, st_target.st_ino):
                    raise OSError(errno.EEXIST, 'backup still exists after restoring it', backup)
                os.unlink(backup)
            touched.add(os.path.dirname(backup))
    elif entry['staged_ino'] is not None:
        # The target did not exist: remove it only if it is the staged entry we put there.
        try:
            st = os.lstat(target)
        except (FileNotFoundError, NotADirectoryError):  # never deployed (its parent may not be a directory yet)
            st = None
        if st is not None and st.st_ino == entry['staged_ino']:
            if stat.S_ISDIR(st.st_mode):
                _rmdir_if_empty(target)  # a directory created by a slot patch (its content is undone before it)
            else:
                os.unlink(target)
    for directory in reversed(entry['created_dirs']):
        if _rmdir_if_empty(directory):
            touched.add(os.path.dirname(directory))
    return touched


def undo_entries(entries: t.Sequence[t.Mapping[str, t.Any]]) -> None:
    """Undo all entries in reverse order and fsync every directory touched."""
    touched: set[str] = set()
    for entry in reversed(entries):
        touched |= undo_entry(entry)
    _fsync_dirs(touched)


class Recovery:
    """Phase 0: roll back an interrupted run's journal, or remove garbage without a journal."""

    def __init__(self, workdir: Workdir) -> None:
        self.workdir = workdir

    def pending(self) -> dict[str, t.Any] | None:
        """The payload of an interrupted run's journal, if any (JournalError if it cannot be trusted)."""
        payload = self.workdir.journal.load()
        if payload is not None:
            self.workdir.check_trusted()
            check_journal_payload(self.workdir, payload)
        return payload

    def recover(self) -> tuple[bool, bool, str | None]:
        """Return (rolled back, removed garbage, warning)."""
        payload = self.pending()
        if payload is None:
            if self.workdir.garbage():
                self.workdir.remove_garbage()
                return False, True, None
            return False, False, None
        entries = payload['entries']
        undo_entries(entries)
        self.workdir.journal.clear()
        self.workdir.remove_garbage()
        warning = ('an interrupted patch run was found (journal in %s for the tree %s); its %d operation(s) were '
                   'rolled back and every original restored before this run'
                   % (self.workdir.path, payload.get('tree'), len(entries)))
        return True, True, warning


# -- staging -----------------------------------------------------------------------
@dataclasses.dataclass
class Change:
    """The plan for one operation: before, after, and whether anything changes."""

    operation: Operation
    before: EntryState
    changed: bool
    after_sha256: str | None = None
    after_size: int | None = None
    after_content: bytes | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    created_dirs: list[str] = dataclasses.field(default_factory=list)
    cache: str | None = None
    backup: str | None = None
    staged_ino: int | None = None

    def report(self) -> dict[str, t.Any]:
        op = self.operation
        after_link = op.link if op.op == 'symlink' else None
        if not self.changed:
            after_sha = self.before.sha256
            after_link = self.before.link_target
        else:
            after_sha = self.after_sha256
        return {
            'path': op.path,
            'op': op.op,
            'changed': self.changed,
            'before_sha256': self.before.sha256,
            'after_sha256': after_sha,
            'before_target': self.before.link_target,
            'after_target': after_link,
        }

    def diff(self) -> dict[str, str]:
        op = self.operation
        before_text = _diff_text(self.before.kind, self.before.content, self.before.size, self.before.sha256,
                                 self.before.link_target)
        if op.op == 'delete':
            after_kind = 'absent'
        elif op.op == 'symlink':
            after_kind = 'symlink'
        else:
            after_kind = 'file'
        after_text = _diff_text(after_kind, self.after_content, self.after_size, self.after_sha256, op.link)
        return {
            'before_header': _diff_header(op.path, self.before.kind, self.before.mode),
            'after_header': _diff_header(op.path, after_kind, self.mode),
            'before': before_text,
            'after': after_text,
        }


def _diff_header(path: str, kind: str, mode: int | None) -> str:
    if kind == 'file':
        return '%s (mode %04o)' % (path, mode or 0)
    return '%s (%s)' % (path, kind)


def _diff_text(kind: str, content: bytes | None, size: int | None, sha: str | None, link: str | None) -> str:
    if kind == 'absent':
        return ''
    if kind == 'symlink':
        return 'symlink -> %s\n' % link
    if kind != 'file':
        return '(%s)\n' % kind
    if content is None:
        return '(large file: %d bytes, sha256 %s; content not shown)\n' % (size or 0, sha)
    try:
        if b'\x00' not in content:
            return content.decode('utf-8')
    except UnicodeDecodeError:
        pass
    return '(binary file: %d bytes, sha256 %s; content not shown)\n' % (len(content), sha)


class Stage:
    """Phase 1: check every operation against the disk and copy the new content into the cache.

    :meth:`plan` only reads. :meth:`fill_cache` writes only inside the work
    directory; on failure it removes what it wrote.
    """

    def __init__(self, operations: t.Sequence[Operation], workdir: Workdir, diff: bool = False) -> None:
        self.operations = operations
        self.workdir = workdir
        self.keep = DIFF_MAX_BYTES if diff else 0
        self.changes: list[Change] = []

    def plan(self) -> list[Change]:
        owned_dirs: set[str] = set()
        changes = []
        for operation in self.operations:
            change = self._plan_one(operation)
            if change.changed and change.before.kind == 'absent':
                change.created_dirs = [d for d in operation.missing_dirs if d not in owned_dirs]
                owned_dirs.update(change.created_dirs)
            changes.append(change)
        self.changes = changes
        return changes

    def _new_content(self, operation: Operation) -> tuple[str, int, bytes | None]:
        if operation.content is not None:
            data = operation.content
            return hashlib.sha256(data).hexdigest(), len(data), data if len(data) <= self.keep else None
        if operation.src is None:
            raise AssertionError('an operation without content has a src')
        try:
            return hash_file(operation.src, self.keep)
        except OSError as exc:
            raise PatchError('%s: cannot read src %s: %s' % (operation.what, operation.src, exc)) from exc

    def _plan_one(self, operation: Operation) -> Change:
        what = operation.what
        before = EntryState.read(operation.target, self.keep)
        op = operation.op
        if op == 'delete':
            if before.kind == 'absent':
                return Change(operation, before, changed=False)
            if before.kind not in ('file', 'symlink'):
                raise PatchError('%s: %s is %s; delete removes only files and symlinks' % (what, operation.target, before.describe()))
            if operation.sha256 is not None and before.sha256 != operation.sha256:
                raise PatchError('%s: sha256 precondition failed: expected %s, found %s'
                                 % (what, operation.sha256, before.describe()))
            return Change(operation, before, changed=True)
        if op == 'symlink':
            uid = operation.uid if operation.uid is not None else (before.uid if before.kind == 'symlink' else None)
            gid = operation.gid if operation.gid is not None else (before.gid if before.kind == 'symlink' else None)
            identical = (before.kind == 'symlink' and before.link_target == operation.link
                         and (operation.uid is None or before.uid == operation.uid)
                         and (operation.gid is None or before.gid == operation.gid))
            if identical:
                return Change(operation, before, changed=False)
            if before.kind not in ('absent', 'file', 'symlink'):
                raise PatchError('%s: %s is %s; a symlink may replace only a file, a symlink or nothing'
                                 % (what, operation.target, before.describe()))
            return Change(operation, before, changed=True, uid=uid, gid=gid)
        # create / update
        sha, size, content = self._new_content(operation)
        identical = (before.kind == 'file' and before.sha256 == sha
                     and (operation.mode is None or before.mode == operation.mode)
                     and (operation.uid is None or before.uid == operation.uid)
                     and (operation.gid is None or before.gid == operation.gid))
        if identical:
            return Change(operation, before, changed=False, after_sha256=sha, after_size=size, after_content=content,
                          mode=before.mode)
        if op == 'create':
            if before.kind != 'absent':
                raise PatchError('%s: %s already exists and differs (it is %s); create needs an absent path: '
                                 'use op=update to replace a file' % (what, operation.target, before.describe()))
            mode = operation.mode if operation.mode is not None else DEFAULT_CREATE_MODE
            gid = operation.gid
            parent = os.path.dirname(operation.target)
            if gid is None and not operation.missing_dirs and os.stat(parent).st_mode & stat.S_ISGID:
                gid = os.stat(parent).st_gid  # what creating the file in place would have done
            return Change(operation, before, changed=True, after_sha256=sha, after_size=size, after_content=content,
                          mode=mode, uid=operation.uid, gid=gid)
        # update
        if before.kind == 'absent':
            raise PatchError('%s: %s does not exist; update needs an existing regular file: use op=create'
                             % (what, operation.target))
        if before.kind != 'file':
            raise PatchError('%s: %s is %s, not a regular file; update replaces only regular files'
                             % (what, operation.target, before.describe()))
        if operation.sha256 is not None and before.sha256 != operation.sha256:
            raise PatchError('%s: sha256 precondition failed: expected %s, found %s'
                             % (what, operation.sha256, before.sha256))
        return Change(operation, before, changed=True, after_sha256=sha, after_size=size, after_content=content,
                      mode=operation.mode if operation.mode is not None else before.mode,
                      uid=operation.uid if operation.uid is not None else before.uid,
                      gid=operation.gid if operation.gid is not None else before.gid)

    def fill_cache(self) -> None:
        """Copy the new content of every changed operation into the cache and fsync it all."""
        try:
            self.workdir.ensure()
            for change in self.changes:
                if not change.changed:
                    continue
                index = change.operation.index
                change.backup = self.workdir.backup_path(index)
                if change.operation.op == 'delete':
                    continue
                change.cache = self.workdir.cache_path(index)
                if change.operation.op == 'symlink':
                    self._stage_symlink(change)
                else:
                    self._stage_file(change)
                change.staged_ino = os.lstat(change.cache).st_ino
            fsync_dir(self.workdir.cache_dir)
        except PatchError:
            self.discard()
            raise
        except OSError as exc:
            self.discard()
            raise PatchError('staging failed: %s; nothing in the tree was changed' % exc) from exc

    def _stage_symlink(self, change: Change) -> None:
        if change.cache is None or change.operation.link is None:
            raise AssertionError('a staged symlink has a cache path and a target')
        os.symlink(change.operation.link, change.cache)
        if change.uid is not None or change.gid is not None:
            st = os.lstat(change.cache)
            if (change.uid, change.gid) != (st.st_uid, st.st_gid):
                self._chown(change, lambda: os.lchown(change.cache or '', _id(change.uid), _id(change.gid)))

    def _stage_file(self, change: Change) -> None:
        operation = change.operation
        if change.cache is None:
            raise AssertionError('a staged file has a cache path')
        digest = hashlib.sha256()
        fd = os.open(change.cache, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600)
        try:
            for chunk in _new_chunks(operation):
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            st = os.fstat(fd)
            uid = change.uid if change.uid is not None else st.st_uid
            gid = change.gid if change.gid is not None else st.st_gid
            if (uid, gid) != (st.st_uid, st.st_gid):
                self._chown(change, lambda: os.fchown(fd, uid, gid))
            os.fchmod(fd, change.mode if change.mode is not None else DEFAULT_CREATE_MODE)
            os.fsync(fd)
        finally:
            os.close(fd)
        if digest.hexdigest() != change.after_sha256:
            raise PatchError('%s: src %s changed while it was being staged (sha256 %s, expected %s); nothing was changed'
                             % (operation.what, operation.src, digest.hexdigest(), change.after_sha256))

    @staticmethod
    def _chown(change: Change, func: t.Callable[[], None]) -> None:
        try:
            func()
        except OSError as exc:
            raise PatchError('%s: cannot set owner/group %s:%s on the staged copy: %s; nothing was changed'
                             % (change.operation.what, change.uid, change.gid, exc)) from exc

    def discard(self) -> None:
        """Remove everything staged (used when staging fails)."""
        self.workdir.remove_garbage()


def _id(value: int | None) -> int:
    return -1 if value is None else value


def _new_chunks(operation: Operation) -> t.Iterator[bytes]:
    """The new content of a create/update operation, in chunks."""
    if operation.content is not None:
        yield operation.content
        return
    with open(operation.src or '', 'rb') as f:
        yield from iter(lambda: f.read(_CHUNK), b'')


# -- deploy, validate, commit, rollback ---------------------------------------------
class Transaction:
    """Phases 2 to 4 for staged changes: deploy under a journal, validate, then commit or roll back."""

    def __init__(self, tree: str, workdir: Workdir, changes: t.Sequence[Change]) -> None:
        self.tree = tree
        self.workdir = workdir
        self.changes = [change for change in changes if change.changed]
        self.entries: list[dict[str, t.Any]] = []

    def journal_payload(self) -> dict[str, t.Any]:
        entries = []
        for change in self.changes:
            operation = change.operation
            entries.append({
                'index': operation.index,
                'op': operation.op,
                'path': operation.path,
                'target': operation.target,
                'existed': change.before.kind != 'absent',
                'backup': change.backup,
                'cache': change.cache,
                'staged_ino': change.staged_ino,
                'created_dirs': change.created_dirs,
            })
        return {'tree': self.tree, 'workdir': self.workdir.path, 'entries': entries}

    def deploy(self) -> None:
        """Write the journal, then apply every change. Raises on the first failure (call :meth:`rollback`)."""
        payload = self.journal_payload()
        self.workdir.journal.write(payload)  # fsyncs the journal and the work directory
        self.entries = payload['entries']
        touched = {self.workdir.backup_dir}
        for index, (change, entry) in enumerate(zip(self.changes, self.entries)):
            touched |= self._deploy_one(change, entry)
            if index == 0:
                crash_point('patch:deployed-one')  # the crash suite: killed with the journal naming the rest
        _fsync_dirs(touched)
        crash_point('patch:deployed')  # every change applied, not yet validated nor committed

    def _deploy_one(self, change: Change, entry: dict[str, t.Any]) -> set[str]:
        operation = change.operation
        target = operation.target
        now = EntryState.read(target, digest=False)
        if now.kind != change.before.kind or now.fingerprint != change.before.fingerprint:
            raise PatchError('%s: %s changed since it was staged (now %s); refusing to overwrite it'
                             % (operation.what, target, now.describe()))
        touched = {os.path.dirname(target)}
        for directory in entry['created_dirs']:
            os.mkdir(directory, CREATED_DIR_MODE)
            os.chmod(directory, CREATED_DIR_MODE)
            touched.add(os.path.dirname(directory))
        backup = entry['backup']
        if operation.op == 'delete':
            os.rename(target, backup)
            return touched
        if entry['existed']:
            try:
                os.link(target, backup, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP, errno.ENOTSUP):
                    raise
                # No hard links here: move the original aside (the path is briefly absent).
                os.rename(target, backup)
            fsync_dir(self.workdir.backup_dir)
        os.rename(entry['cache'], target)
        return touched

    def validate(self, command: str, display_path: str, runner: Runner) -> dict[str, t.Any]:
        """Run the validate command; raise PatchError (with rc/stdout/stderr) when it fails."""
        args = [arg.replace('%s', display_path) for arg in shlex.split(command)]
        try:
            rc, out, err = runner(args, self.tree)
        except (OSError, ValueError) as exc:
            rc, out, err = 127, '', str(exc)
        info = {'cmd': args, 'rc': rc, 'stdout': out, 'stderr': err}
        if rc != 0:
            raise PatchError('validate command %s failed with rc=%s' % (shlex.join(args), rc),
                             validate=info, rc=rc, stdout=out, stderr=err)
        return info

    def commit(self) -> None:
        """Remove the journal (the point of no return), then the backups and the cache."""
        self.workdir.journal.clear()
        self.workdir.remove_garbage()

    def rollback(self) -> None:
        """Undo every journaled change in reverse, then remove the journal and everything staged."""
        if self.workdir.journal.exists():
            undo_entries(self.entries or self.journal_payload()['entries'])
            self.workdir.journal.clear()
        self.workdir.remove_garbage()


# -- the whole run -----------------------------------------------------------------
class TreeLock:
    """An exclusive, non-blocking flock on the tree's root directory for the duration of a run."""

    def __init__(self, tree: str) -> None:
        self.tree = tree
        self.fd = -1

    def __enter__(self) -> 'TreeLock':
        self.fd = os.open(self.tree, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self.fd)
            self.fd = -1
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise PatchError('another patch run is working on %s (its flock is held); try again when it is done'
                                 % self.tree) from exc
            raise
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def run_patch(
    path: str,
    operations: object,
    workdir: str | None = None,
    validate: str | None = None,
    check_mode: bool = False,
    diff: bool = False,
    runner: Runner | None = None,
) -> dict[str, t.Any]:
    """Run all phases; return the module result or raise PatchError (whose ``result`` goes into fail_json)."""
    abs_path = os.path.abspath(path)
    if not os.path.isdir(abs_path):
        raise PatchError('path %s does not exist or is not a directory: give the root of an existing tree' % abs_path)
    tree = os.path.realpath(abs_path)
    work = Workdir(workdir if workdir else os.path.join(tree, DEFAULT_WORKDIR_NAME), is_default=not workdir)
    work.check(tree)
    parsed = parse_operations(operations)
    if validate is not None and not shlex.split(validate):
        raise PatchError('validate is empty: give a command such as "nginx -t -c %s/nginx.conf"')
    result: dict[str, t.Any] = {'changed': False, 'recovered': False, 'operations': [], 'warnings': []}
    if diff:
        result['diff'] = []
    recovery = Recovery(work)
    if check_mode:
        return _check_run(tree, work, recovery, parsed, diff, result)
    with TreeLock(tree):
        try:
            recovered, removed, warning = recovery.recover()
        except JournalError as exc:
            raise PatchError('%s; nothing was changed: inspect the tree and remove the journal by hand' % exc) from exc
        except OSError as exc:
            raise PatchError('recovery of an interrupted run failed: %s; the journal %s is kept and the next run will retry'
                             % (exc, work.journal.path)) from exc
        if warning:
            result['warnings'].append(warning)
        result['recovered'] = recovered
        result['changed'] = removed or recovered
        try:
            _apply(tree, abs_path, work, parsed, validate, diff, runner, result)
        except PatchError as exc:
            # Whatever failed, say what the recovery before it did.
            exc.result.setdefault('recovered', result['recovered'])
            exc.result.setdefault('changed', result['changed'] or exc.result.get('restored') is False)
            exc.result.setdefault('warnings', result['warnings'])
            raise
    return result


def _apply(tree: str, abs_path: str, work: Workdir, parsed: list[Operation], validate: str | None, diff: bool,
           runner: Runner | None, result: dict[str, t.Any]) -> None:
    """Phases 1 to 4 (after recovery, under the lock)."""
    for operation in parsed:
        operation.resolve(tree, work)
    check_overlaps(parsed, tree)
    stage = Stage(parsed, work, diff)
    changes = stage.plan()
    _report(result, changes, diff)
    if not any(change.changed for change in changes):
        return
    stage.fill_cache()
    transaction = Transaction(tree, work, changes)
    validate_info = None
    try:
        transaction.deploy()
        if validate is not None:
            validate_info = transaction.validate(validate, abs_path, runner or _no_runner)
    except BaseException as exc:  # roll back on anything, even KeyboardInterrupt, then re-raise
        _rollback(transaction, exc, result)
        raise
    transaction.commit()
    result['changed'] = True
    if validate_info is not None:
        result['validate'] = validate_info


def _no_runner(args: list[str], cwd: str) -> tuple[int, str, str]:
    raise OSError(errno.ENOSYS, 'no command runner available to run %s in %s' % (args, cwd))


def _rollback(transaction: Transaction, exc: BaseException, result: dict[str, t.Any]) -> None:
    """Roll back after ``exc``; turn ``exc`` into a PatchError (raised) when it is an ordinary error."""
    extra = dict(exc.result) if isinstance(exc, PatchError) else {}
    reason = exc.msg if isinstance(exc, PatchError) else '%s: %s' % (type(exc).__name__, exc)
    try:
        transaction.rollback()
    except Exception as undo_exc:  # pylint: disable=broad-except
        raise PatchError(
            '%s; the rollback failed too (%s): the journal %s is kept and the next run will finish restoring the tree'
            % (reason, undo_exc, transaction.workdir.journal.path),
            restored=False, operations=result['operations'], **extra
        ) from exc
    if isinstance(exc, Exception):
        raise PatchError('%s; every operation was rolled back and the tree restored' % reason,
                         restored=True, operations=result['operations'], **extra) from exc


def _report(result: dict[str, t.Any], changes: t.Sequence[Change], diff: bool) -> None:
    result['operations'] = [change.report() for change in changes]
    if diff:
        result['diff'] = [change.diff() for change in changes if change.changed]


def _check_run(tree: str, work: Workdir, recovery: Recovery, parsed: list[Operation], diff: bool,
               result: dict[str, t.Any]) -> dict[str, t.Any]:
    """Check mode: recovery is only announced; operations are planned but nothing is written."""
    try:
        pending = recovery.pending()
    except JournalError as exc:
        raise PatchError('%s: inspect the tree and remove the journal by hand' % exc) from exc
    if pending is not None:
        result['changed'] = True
        result['msg'] = ('an interrupted patch run would be rolled back first (journal %s); the operations were not '
                         'evaluated because the tree is in an intermediate state' % work.journal.path)
        result['warnings'].append(result['msg'])
        return result
    if work.garbage():
        result['changed'] = True
    for operation in parsed:
        operation.resolve(tree, work)
    check_overlaps(parsed, tree)
    changes = Stage(parsed, work, diff).plan()
    _report(result, changes, diff)
    if any(change.changed for change in changes):
        result['changed'] = True
    return result
