# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Patching an A/B slot IN PLACE to a wanted manifest, as one transaction of :mod:`._patch`.

The operations are not given by the user: they are the difference between what
the slot directory holds now (scanned, files hashed only where type, mode and
size already match) and the wanted tree (the wanted source manifest with the
shared paths linked in, exactly what ``populate_slot`` would build). Steps, in
this order:

1. ``delete`` files, symlinks (and odd entries) that are not wanted or whose path
   must become a directory; ``rmdir`` directories that are not wanted or must
   become something else, deepest first (each is empty by then);
2. ``mkdir`` new directories, parents first (staged in the cache, renamed in);
3. ``create``/``update`` files and ``symlink`` entries (staged in the cache,
   renamed over the old entry, the old one kept as a hard link in the backups);
4. ``chmod`` directories whose mode differs, deepest first.

New content is taken, by sha256 and size, from the sources: ``.tar.gz``
archives (read safely with :func:`._manifest.scan_tar`, extracted into a
temporary directory first), the slot itself and other directories (scanned;
only files of a wanted size are hashed). Every staged file is checked against
the wanted sha256.

A source that can be shared as it is (a regular file on the slots' filesystem
whose mode and owner already are the wanted ones, with fewer than
``MAX_NLINK`` links) is HARDLINKED into the cache instead of copied, so a slot
filled from the other slot costs no second copy of its unchanged files (see
:meth:`SlotTransaction._link_checked`). Sharing an inode with the live slot is
safe because nothing here ever changes a file in place: a staged file is never
chmodded or chowned once linked (only copies are), every file of the slot is
replaced by ``rename(2)`` (deploy and rollback alike), chmod steps apply to
directories only (which cannot be hardlinked), and the cache, the backups and
the archive extraction are removed by unlinking names. Removing a name never
changes the content the other names of the inode show.

The journal, cache and backups are those of :mod:`._patch` (work directory
``.stagehand/patch-<slot>``), so an interrupted run is rolled back by the next
run, and any failure rolls every step back. Before committing, the whole slot
is verified against the wanted tree (:func:`._manifest.verify_tree`); a
mismatch rolls back. Only after the commit are the slot metadata and the slot
manifest written, with the helpers ``populate_slot`` uses; while the slot is
being changed its metadata says ``incomplete``, so ``switch`` refuses it.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import stat
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import fsync_dir, temp_name
from ansible_collections.stagehand.deploy.plugins.module_utils._crash import crash_point
from ansible_collections.stagehand.deploy.plugins.module_utils._journal import JournalError
from ansible_collections.stagehand.deploy.plugins.module_utils._manifest import (
    TYPE_DIR,
    TYPE_FILE,
    TYPE_SYMLINK,
    Entry,
    Manifest,
    ManifestError,
    _scan_dir,
    check_safe,
    check_shared_paths,
    hash_file,
    is_tar_path,
    load_manifest,
    manifest_from_tar,
    scan_tar,
    stat_fingerprint,
    verify_tree,
    with_shared,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._names import InvalidName, check_release_name
from ansible_collections.stagehand.deploy.plugins.module_utils._patch import (
    PatchError,
    Recovery,
    TreeLock,
    Workdir,
    undo_entries,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._release import (
    MAX_NLINK,
    RELEASE_DEPTH,
    ReleaseError,
    _default_gid,
    _sync_filesystem,
    load_tree_manifest,
    recorded_stat_digest,
    save_tree_manifest,
    _diff,
    _make_dirs,
    _meta,
    _read_json_quietly,
    _remove_created,
    _restore_slot_meta,
    remove_tree,
    resolve_owner,
    resolve_slot,
    slot_manifest_path,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._state import (
    STATUS_COMPLETE,
    STATUS_FAILED,
    STATUS_INCOMPLETE,
    DeployRoot,
)

STEP_KINDS = ('delete', 'rmdir', 'mkdir', 'create', 'update', 'symlink', 'chmod')
MAX_SHOWN = 10
MAX_DIFF_LINES = 200
_CHUNK = 1024 * 1024
# link(2) failures that only mean "copy instead": too many links, another filesystem, hard links not allowed
# (fs.protected_hardlinks, a file we may not write) or not supported
_NO_LINK_ERRNOS = (errno.EMLINK, errno.EXDEV, errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP)


def workdir_path(droot: DeployRoot, slot: str) -> str:
    """The work directory (journal, cache, backups) of patches of ``slot``: on the slots' filesystem, outside the slot."""
    return os.path.join(droot.state_dir, 'patch-' + slot)


@dataclasses.dataclass
class Step:
    """One change of the slot; ``before`` is the kind found at plan time (absent, file, dir, symlink or other)."""

    op: str
    path: str
    before: str
    entry: Entry | None = None
    old_mode: int | None = None
    source: str | None = None
    index: int = 0

    def line(self) -> str:
        entry = self.entry or {}
        if self.op in ('create', 'update'):
            return '%s %s (mode %s, sha256 %s)' % (self.op, self.path, entry.get('mode'), entry.get('sha256'))
        if self.op == 'symlink':
            return 'symlink %s -> %s' % (self.path, entry.get('target'))
        if self.op in ('mkdir', 'chmod'):
            return '%s %s (mode %s)' % (self.op, self.path, entry.get('mode'))
        return '%s %s' % (self.op, self.path)


# -- what is there, and what must change -----------------------------------------------------
def scan_slot(path: str, stats: dict[str, os.stat_result] | None = None) -> dict[str, Entry]:
    """The entries below the slot directory as they are (files without sha256; odd types reported as such).

    With ``stats``, the lstat result of every entry is put there by path.
    """
    if not os.path.isdir(path):
        return {}
    try:
        return _scan_dir(path, strict=False, hash_files=False, stats=stats)
    except OSError as exc:
        raise PatchError('cannot read the slot %s: %s' % (path, exc)) from exc


def _kind(entry: Entry | None) -> str:
    if entry is None:
        return 'absent'
    return {TYPE_FILE: 'file', TYPE_DIR: 'dir', TYPE_SYMLINK: 'symlink'}.get(entry['type'], 'other')


def _owner_differs(full: str, uid: int | None, gid: int | None, st: os.stat_result | None = None) -> bool:
    if uid is None and gid is None:
        return False
    st = st if st is not None else os.lstat(full)
    return (uid is not None and st.st_uid != uid) or (gid is not None and st.st_gid != gid)


def plan_steps(top: str, current: dict[str, Entry], wanted: Manifest, uid: int | None = None,
               gid: int | None = None, stats: t.Mapping[str, os.stat_result] | None = None) -> list[Step]:
    """The steps that turn the slot ``top`` (scanned as ``current``) into ``wanted``, in execution order.

    Files whose type, mode and size match are hashed to decide whether they changed (unless
    ``current`` has their sha256 already, see :func:`trust_record`); the sha256 found is stored in
    ``current`` (so the slot can serve as a content source). ``stats``: the lstat results of the scan,
    for the owner checks.
    """
    stats = stats or {}
    removals: list[Step] = []
    mkdirs: list[Step] = []
    writes: list[Step] = []
    chmods: list[Step] = []
    want = {e['path']: e for e in wanted}
    for path in sorted(current):
        cur = current[path]
        new = want.get(path)
        if new is None or (cur['type'] == TYPE_DIR) != (new['type'] == TYPE_DIR) or _kind(cur) == 'other':
            removals.append(Step('rmdir' if cur['type'] == TYPE_DIR else 'delete', path, _kind(cur)))
    removed = {s.path for s in removals}
    for path in sorted(want):
        new = want[path]
        cur = None if path in removed else current.get(path)
        full = os.path.join(top, *path.split('/'))
        before = _kind(cur)
        if new['type'] == TYPE_DIR:
            if cur is None:
                mkdirs.append(Step('mkdir', path, 'absent', new))
                if int(new['mode'], 8) & 0o700 != 0o700 and os.geteuid() != 0:
                    # staged 0700 so that its content can be created; the wanted mode comes last
                    chmods.append(Step('chmod', path, 'dir', new, old_mode=0o700))
            elif cur['mode'] != new['mode'] or _owner_differs(full, uid, gid, stats.get(path)):
                chmods.append(Step('chmod', path, 'dir', new, old_mode=int(cur['mode'], 8)))
        elif new['type'] == TYPE_SYMLINK:
            if cur is None:
                writes.append(Step('symlink', path, 'absent', new))
            elif cur['type'] != TYPE_SYMLINK or cur['target'] != new['target'] or _owner_differs(full, uid, gid, stats.get(path)):
                writes.append(Step('symlink', path, before, new))
        elif cur is None:
            writes.append(Step('create', path, 'absent', new))
        elif cur['type'] != TYPE_FILE or cur['mode'] != new['mode'] or cur['size'] != new['size']:
            writes.append(Step('update', path, before, new))
        else:
            if 'sha256' not in cur:
                cur['sha256'] = _hash_or_none(full)
            if cur['sha256'] != new['sha256'] or _owner_differs(full, uid, gid, stats.get(path)):
                writes.append(Step('update', path, before, new))
    removals.sort(key=lambda s: (-s.path.count('/'), s.path))
    chmods.sort(key=lambda s: (-s.path.count('/'), s.path))
    steps = removals + mkdirs + writes + chmods
    for index, step in enumerate(steps):
        step.index = index
    return steps


def trust_record(droot: DeployRoot, slot: str, meta: dict[str, t.Any] | None, current: dict[str, Entry],
                 stats: t.Mapping[str, os.stat_result]) -> bool:
    """Take the sha256 of the slot's files from its recorded tree manifest when lstat shows the slot unchanged since.

    The slot metadata keeps ``stat_digest``, the :func:`._manifest.stat_fingerprint` of the slot taken
    right after it was verified against that manifest (by a patch, or when it was filled). When the
    fingerprint of the scan ``stats`` is the same, no entry was added, removed, replaced, chmodded or
    written to since, so the recorded sha256 are put into ``current`` and no file is read to plan the
    patch. Otherwise (no fingerprint, a crash left the slot incomplete, anything touched) nothing is
    trusted and :func:`plan_steps` hashes what it must. Returns whether the record was trusted.
    """
    if not meta or meta.get('status') not in (STATUS_COMPLETE, STATUS_FAILED) or not meta.get('stat_digest'):
        return False
    recorded = load_tree_manifest(slot_manifest_path(droot, slot))
    if recorded is None or recorded_stat_digest(meta, recorded) != stat_fingerprint(stats):
        return False
    for path, cur in current.items():
        rec = recorded.get(path)
        if cur['type'] == TYPE_FILE and rec is not None and rec['type'] == TYPE_FILE and (rec['mode'], rec['size']) == (cur['mode'], cur['size']):
            cur['sha256'] = rec['sha256']
    return True


def known_inodes(current: t.Mapping[str, Entry], stats: t.Mapping[str, os.stat_result]) -> dict[tuple[int, int], tuple[str, int]]:
    """``(st_dev, st_ino) -> (sha256, size)`` of the files of a scan whose sha256 is known (hashed or trusted)."""
    known = {}
    for path, entry in current.items():
        if entry['type'] == TYPE_FILE and entry.get('sha256') and path in stats:
            st = stats[path]
            known[(st.st_dev, st.st_ino)] = (entry['sha256'], entry['size'])
    return known


def _hash_or_none(path: str) -> str | None:
    try:
        return hash_file(path)[0]
    except OSError:
        return None


def counts(steps: t.Sequence[Step]) -> dict[str, int]:
    """How many steps of each kind."""
    result = {kind: 0 for kind in STEP_KINDS}
    for step in steps:
        result[step.op] += 1
    return result


# -- where new content comes from -------------------------------------------------------------
class ContentIndex:
    """Finds a file with a wanted (sha256, size) in the sources."""

    def __init__(self, needed: t.Iterable[tuple[str, int]]) -> None:
        self.needed = set(needed)
        self.sizes = {size for _sha, size in self.needed}
        self.found: dict[tuple[str, int], str] = {}

    @property
    def missing(self) -> set[tuple[str, int]]:
        return self.needed - set(self.found)

    def add_entries(self, top: str, entries: t.Iterable[Entry]) -> None:
        """Files whose sha256 is known (an archive scanned or extracted, or a slot already hashed)."""
        for entry in entries:
            if entry['type'] != TYPE_FILE or entry.get('sha256') is None:
                continue
            key = (entry['sha256'], entry['size'])
            if key in self.needed and key not in self.found:
                self.found[key] = os.path.join(top, *entry['path'].split('/'))

    def add_dir(self, top: str, scanned: dict[str, Entry] | None = None) -> None:
        """A directory: files of a wanted size are hashed (only while something is still missing)."""
        if not self.missing:
            return
        entries = scanned if scanned is not None else scan_slot(top)
        for path in sorted(entries):
            entry = entries[path]
            if entry['type'] != TYPE_FILE or entry['size'] not in self.sizes:
                continue
            if entry.get('sha256') is None:
                entry['sha256'] = _hash_or_none(os.path.join(top, *path.split('/')))
            self.add_entries(top, [entry])
            if not self.missing:
                return


# -- the transaction ------------------------------------------------------------------------------
class SlotTransaction:
    """Stage, deploy (under the journal of :mod:`._patch`), verify, commit or roll back the steps.

    A staged file may be a hard link to a file of another tree (the live slot): see :meth:`_link_checked`.
    Nothing below changes such an inode in place, so neither a rollback nor a crash recovery can alter the
    other tree's files:

    * staging chmods and chowns only copies it has just created, new directories and new symlinks;
    * :meth:`deploy` replaces a slot entry by ``rename(2)`` of the cache entry over it, keeps the old entry as a
      new hard link (a name) in the backups, and chmods/chowns only directories (``chmod`` steps; directories
      cannot be hardlinked, so no directory is shared with another tree);
    * :func:`._patch.undo_entry` renames backups back over the targets, unlinks a target it created only when
      that name carries the ``staged_ino`` recorded here (for a linked file, the shared inode: what is removed
      is the slot's name for it, never the other tree's), and chmods only directories (``old_mode``);
    * :meth:`._patch.Workdir.remove_garbage` unlinks the names left in the cache and backups, and the archive
      extraction is removed with :func:`._release.remove_tree`, which unlinks names and chmods only directories.
    """

    def __init__(self, top: str, work: Workdir, steps: t.Sequence[Step], uid: int | None, gid: int | None) -> None:
        self.top = top
        self.work = work
        self.steps = list(steps)
        self.uid = uid
        self.gid = gid
        self.entries: list[dict[str, t.Any]] = []
        self.linked = 0
        self.copied = 0
        # (st_dev, st_ino) -> (sha256, size) of every staged file: each was checked against its sha256 when staged
        self.known: dict[tuple[int, int], tuple[str, int]] = {}
        self._cache_dev = -1
        self._owner = (-1, -1)

    def target(self, step: Step) -> str:
        return os.path.join(self.top, *step.path.split('/'))

    def stage(self) -> None:
        """Link or copy new content (checked against its sha256), symlinks and new directories into the cache."""
        self.work.ensure()
        self._cache_dev = os.stat(self.work.cache_dir).st_dev
        # the owner a copy staged in the cache gets (what _chown leaves on it): a linked file must already have it
        self._owner = (os.geteuid() if self.uid is None else self.uid,
                       _default_gid(self.work.cache_dir) if self.gid is None else self.gid)
        for step in self.steps:
            entry: dict[str, t.Any] = {
                'index': step.index, 'op': step.op, 'path': step.path, 'target': self.target(step),
                'existed': step.before != 'absent', 'backup': self.work.backup_path(step.index),
                'cache': None, 'staged_ino': None, 'created_dirs': [],
            }
            if step.op == 'chmod':
                entry['old_mode'] = step.old_mode
            elif step.op in ('mkdir', 'create', 'update', 'symlink'):
                cache = self.work.cache_path(step.index)
                self._stage_one(step, cache)
                entry['cache'] = cache
                # for a linked file this is the inode it shares with its source: undo_entry then removes
                # the slot's name for it only, which leaves the source's content alone
                staged = os.lstat(cache)
                entry['staged_ino'] = staged.st_ino
                if step.op in ('create', 'update') and step.entry:
                    self.known[(staged.st_dev, staged.st_ino)] = (step.entry['sha256'], step.entry['size'])
            self.entries.append(entry)
        if self.linked:
            # a linked source (an archive extraction, say) may not be on disk yet: one syncfs(2) for all of them
            # instead of a fsync(2) per file, which would commit the filesystem journal once per linked file
            _sync_filesystem(self.work.cache_dir)
        fsync_dir(self.work.cache_dir)

    def _chown(self, path: str) -> None:
        if self.uid is not None or self.gid is not None:
            os.lchown(path, -1 if self.uid is None else self.uid, -1 if self.gid is None else self.gid)

    def _stage_one(self, step: Step, cache: str) -> None:
        entry = t.cast(Entry, step.entry)
        if step.op == 'mkdir':
            os.mkdir(cache, 0o700)
            self._chown(cache)
            mode = int(entry['mode'], 8)
            if mode & 0o700 == 0o700 or os.geteuid() == 0:
                os.chmod(cache, mode)
            return
        if step.op == 'symlink':
            os.symlink(entry['target'], cache)
            self._chown(cache)
            return
        source = t.cast(str, step.source)
        if self._link_checked(source, cache, entry, self.target(step)):
            # shared with its source: never chmod or chown it (its mode and owner are already the wanted ones)
            self.linked += 1
            return
        _copy_checked(source, cache, entry)
        self._chown(cache)
        os.chmod(cache, int(entry['mode'], 8))
        self.copied += 1

    def _unshareable(self, st: os.stat_result, entry: Entry) -> str | None:
        """Why the file ``st`` cannot become ``entry`` as it is (None: it can be shared)."""
        if not stat.S_ISREG(st.st_mode):
            return 'not a regular file'
        if st.st_dev != self._cache_dev:
            return 'on another filesystem than %s' % self.work.cache_dir
        if st.st_size != entry['size']:
            return 'size %d, expected %d' % (st.st_size, entry['size'])
        if stat.S_IMODE(st.st_mode) != int(entry['mode'], 8):
            return 'mode %04o, expected %s' % (stat.S_IMODE(st.st_mode), entry['mode'])
        if (st.st_uid, st.st_gid) != self._owner:
            return 'owner %d:%d, expected %d:%d' % (st.st_uid, st.st_gid, self._owner[0], self._owner[1])
        return None

    def _link_checked(self, src: str, cache: str, entry: Entry, target: str) -> bool:
        """Hardlink ``src`` as the staged file ``cache`` when it can be shared as it is; False: copy it instead.

        Shared only when ``src`` is a regular file on the cache's filesystem with exactly the wanted mode and
        owner (so that no chmod/chown is ever needed on the shared inode) and fewer than ``MAX_NLINK`` links.
        The properties are checked again on the linked inode (``src`` may have been replaced meanwhile), and
        its content is hashed through the new name: a content other than ``entry``'s sha256 and size is
        refused (PatchError), as :func:`_copy_checked` refuses it. The name is in the private cache directory,
        so what is checked and hashed is the inode that will be renamed into the slot.

        Sources may also be the temporary extraction of an archive: linking those is as safe (the extraction
        is private to this run, written once from the checked archive and then removed by unlinking names), but
        :func:`._manifest.scan_tar` extracts files ``0600``, so they are mostly copied with their wanted mode;
        the extraction is removed after the run, so this costs time, not space.

        After the commit the slot and the source tree share the inode, as releases and slots populated by
        :mod:`._release` do: a later in-place write to the source (none of this collection's code does that)
        would show in both.
        """
        try:
            st = os.lstat(src)
        except OSError:
            return False
        if self._unshareable(st, entry) is not None or st.st_nlink >= MAX_NLINK:
            return False
        try:
            current = os.lstat(target)
        except OSError:
            current = None
        if current is not None and (current.st_dev, current.st_ino) == (st.st_dev, st.st_ino):
            return False  # the entry being replaced is that very inode: rename(2) between two of its names does nothing
        try:
            os.link(src, cache, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in _NO_LINK_ERRNOS:
                return False
            raise
        linked = os.lstat(cache)
        if (linked.st_dev, linked.st_ino) != (st.st_dev, st.st_ino) or self._unshareable(linked, entry) is not None:
            os.unlink(cache)  # src was replaced since it was looked at: drop our name, copy instead
            return False
        found = hash_file(cache)
        if found != (entry['sha256'], entry['size']):
            raise PatchError('%s: the content taken from %s is not the wanted one (sha256 %s and %d bytes, expected sha256 %s '
                             'and %d bytes); nothing was changed' % (entry['path'], src, found[0], found[1], entry['sha256'], entry['size']))
        return True  # made durable with the others, once, at the end of stage() (one syncfs, not a fsync per file)

    def deploy(self) -> None:
        """Write the journal, then apply every step in order (raises on the first problem)."""
        self.work.journal.write({'tree': self.top, 'workdir': self.work.path, 'entries': self.entries})
        touched = {self.work.backup_dir}
        for index, (step, entry) in enumerate(zip(self.steps, self.entries)):
            target = entry['target']
            now = _kind_on_disk(target)
            if now != step.before:
                raise PatchError('%s %s: it is %s now, but was %s when the patch was planned; refusing to continue'
                                 % (step.op, step.path, now, step.before))
            touched.add(os.path.dirname(target))
            # Only renames and links below: no file is written, chmodded or chowned in place, so a staged file
            # hardlinked to the other slot (or an old file of this slot that shares its inode with it) keeps
            # its content, mode and owner whatever happens next.
            if step.op in ('delete', 'rmdir'):
                os.rename(target, entry['backup'])
            elif step.op == 'chmod':
                # a directory (checked just above); directories cannot be hardlinked, so it is this slot's own
                os.chmod(target, int(t.cast(Entry, step.entry)['mode'], 8))
                self._chown(target)
            else:
                if entry['existed']:
                    os.link(target, entry['backup'], follow_symlinks=False)
                    fsync_dir(self.work.backup_dir)
                os.rename(entry['cache'], target)
            if index == 0:
                crash_point('slot_patch:deployed-one')  # the crash suite: killed with the journal naming the rest
        for directory in sorted(touched):
            if os.path.isdir(directory):
                fsync_dir(directory)
        crash_point('slot_patch:deployed')  # every step applied, not yet verified nor committed

    def commit(self) -> None:
        self.work.journal.clear()
        self.work.remove_garbage()

    def rollback(self) -> None:
        if self.work.journal.exists():
            undo_entries(self.entries)
            self.work.journal.clear()
        self.work.remove_garbage()


def _kind_on_disk(path: str) -> str:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 'absent'
    if stat.S_ISDIR(st.st_mode):
        return 'dir'
    if stat.S_ISREG(st.st_mode):
        return 'file'
    if stat.S_ISLNK(st.st_mode):
        return 'symlink'
    return 'other'


def _copy_checked(src: str, dest: str, entry: Entry) -> None:
    """Copy ``src`` to the new file ``dest`` (0600, fsynced); refuse content other than ``entry``'s sha256."""
    digest = hashlib.sha256()
    size = 0
    fd_in = os.open(src, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600)
        try:
            while True:
                chunk = os.read(fd_in, _CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        os.close(fd_in)
    if (digest.hexdigest(), size) != (entry['sha256'], entry['size']):
        raise PatchError('%s: the content taken from %s changed while it was copied (sha256 %s, expected %s)'
                         % (entry['path'], src, digest.hexdigest(), entry['sha256']))


# -- the whole run -----------------------------------------------------------------------------------
def _load_wanted(manifest_path: str, shared: list[str]) -> tuple[Manifest, Manifest]:
    try:
        source = load_manifest(manifest_path)
        check_safe(source)
        tree = with_shared(source, shared, RELEASE_DEPTH)  # shared links leave the slot on purpose
    except ManifestError as exc:
        raise PatchError('manifest %s is refused: %s' % (manifest_path, exc.msg), offending_path=exc.path) from None
    return source, tree


def _check_sources(sources: t.Sequence[str]) -> tuple[list[str], list[str]]:
    """(archives, directories) of the sources; directories that do not exist are skipped."""
    archives: list[str] = []
    dirs: list[str] = []
    for raw in sources:
        if not isinstance(raw, str) or not os.path.isabs(raw):
            raise PatchError('sources entry %r is invalid: give absolute paths of .tar.gz files or directories' % (raw,))
        path = os.path.normpath(raw)
        if os.path.isdir(path):
            dirs.append(path)
        elif os.path.isfile(path) and is_tar_path(path):
            archives.append(path)
        elif not os.path.lexists(path):
            continue
        else:
            raise PatchError('sources entry %s is neither a directory nor a .tar.gz/.tgz file' % path)
    return archives, dirs


def _recorded(droot: DeployRoot, slot: str, old_meta: dict[str, t.Any] | None, source: Manifest, tree: Manifest,
              shared: list[str], label: str | None) -> bool:
    """Whether the metadata and the slot manifest already record exactly this content."""
    if not old_meta or old_meta.get('status') != STATUS_COMPLETE:
        return False
    if old_meta.get('manifest_digest') != source.digest or old_meta.get('tree_digest') != tree.digest:
        return False
    if sorted(old_meta.get('shared') or []) != shared or old_meta.get('release') != label:
        return False
    try:
        return load_tree_manifest(slot_manifest_path(droot, slot)) == tree
    except ManifestError:
        return False


def _text(what: str, steps: t.Sequence[Step]) -> str:
    lines = [step.line() for step in steps[:MAX_DIFF_LINES]]
    if len(steps) > MAX_DIFF_LINES:
        lines.append('... and %d more' % (len(steps) - MAX_DIFF_LINES))
    return '%s: %d change(s)\n%s' % (what, len(steps), ''.join(line + '\n' for line in lines))


def patch_slot(
    root: str,
    slot: str,
    manifest: str,
    sources: t.Sequence[str] = (),
    shared: t.Sequence[str] = (),
    label: str | None = None,
    owner: str | None = None,
    group: str | None = None,
    check_mode: bool = False,
    diff: bool = False,
) -> dict[str, t.Any]:
    """Patch the (inactive) slot of ``root`` in place to ``manifest``; return the module result (PatchError on refusal)."""
    try:
        return _patch_slot(root, slot, manifest, sources, shared, label, owner, group, check_mode, diff)
    except (ReleaseError, InvalidName) as exc:
        raise PatchError(getattr(exc, 'msg', str(exc))) from None
    except ManifestError as exc:
        raise PatchError(exc.msg, offending_path=exc.path) from None


def _patch_slot(root: str, slot: str, manifest: str, sources: t.Sequence[str], shared: t.Sequence[str],
                label: str | None, owner: str | None, group: str | None, check_mode: bool, diff: bool) -> dict[str, t.Any]:
    if label is not None:
        check_release_name(label, 'release')
    shared_paths = check_shared_paths(shared)
    uid, gid = resolve_owner(owner, group)
    droot = DeployRoot(root)
    if not os.path.isdir(droot.root):
        raise PatchError('root %s does not exist or is not a directory' % droot.root)
    target = resolve_slot(droot, slot)
    top = droot.slot_path(target)
    if os.path.lexists(top) and (os.path.islink(top) or not os.path.isdir(top)):
        raise PatchError('slot %s (%s) is not a directory: refusing to patch it' % (target, top))
    source, tree = _load_wanted(os.path.abspath(manifest), shared_paths)
    archives, dirs = _check_sources(sources)
    work = Workdir(workdir_path(droot, target), is_default=False)
    old_meta = _read_json_quietly(droot.read_slot_meta, target)
    result: dict[str, t.Any] = {
        'changed': False, 'slot': target, 'path': top, 'release': label, 'status': STATUS_COMPLETE,
        'manifest_digest': source.digest, 'tree_digest': tree.digest, 'files': tree.files, 'bytes': tree.bytes,
        'shared': shared_paths, 'recovered': False, 'warnings': [],
    }
    if check_mode:
        return _check_run(droot, target, top, work, source, tree, archives, dirs, uid, gid, old_meta, label, shared_paths,
                          diff, result)
    created = _make_dirs([droot.slots_dir, droot.state_dir])
    made_slot = False
    try:
        if not os.path.lexists(top):
            os.mkdir(top, 0o755)
            made_slot = True
            if uid is not None or gid is not None:
                os.lchown(top, -1 if uid is None else uid, -1 if gid is None else gid)
            os.chmod(top, 0o755)
        with TreeLock(top):
            _recover(work, top, result)
            _run_locked(droot, target, top, work, source, tree, archives, dirs, uid, gid, old_meta, label,
                        shared_paths, os.path.abspath(manifest), diff, result)
    except BaseException:
        if made_slot and not result['changed']:
            try:
                os.rmdir(top)
            except OSError:
                pass
            _remove_created(created)
        raise
    return result


def _recover(work: Workdir, top: str, result: dict[str, t.Any]) -> None:
    work.check(top)
    if not os.path.lexists(work.path):
        return
    try:
        recovered, removed, warning = Recovery(work).recover()
    except JournalError as exc:
        raise PatchError('%s; nothing was changed: inspect the slot and remove the journal by hand' % exc) from exc
    if warning:
        result['warnings'].append(warning)
    result['recovered'] = recovered
    result['changed'] = bool(removed or recovered)


def _gather(top: str, current: dict[str, Entry], steps: t.Sequence[Step], archives: list[str], dirs: list[str],
            extract_into: str | None) -> ContentIndex:
    """Find the content of every create/update step; extract archives into ``extract_into`` (None: only scan them)."""
    needed = [(s.entry['sha256'], s.entry['size']) for s in steps if s.op in ('create', 'update') and s.entry]
    index = ContentIndex(needed)
    for number, archive in enumerate(archives):
        if not index.missing:
            break
        if extract_into is None:
            found = manifest_from_tar(archive)
            index.add_entries(archive, found)
        else:
            dest = os.path.join(extract_into, str(number))
            os.mkdir(dest, 0o700)
            index.add_entries(dest, scan_tar(archive, dest))
    index.add_dir(top, current)
    for directory in dirs:
        if os.path.realpath(directory) != os.path.realpath(top):
            index.add_dir(directory)
    missing = index.missing
    if missing:
        paths = sorted(s.path for s in steps if s.op in ('create', 'update') and s.entry
                       and (s.entry['sha256'], s.entry['size']) in missing)
        shown = ', '.join('%s (sha256 %s)' % (p, tree_sha) for p, tree_sha in
                          [(p, next(s.entry['sha256'] for s in steps if s.path == p and s.entry)) for p in paths[:MAX_SHOWN]])
        raise PatchError('the content of %d file(s) was found in none of the sources (%s): %s%s; nothing was changed'
                         % (len(paths), ', '.join(archives + dirs) or 'none given', shown,
                            ' and %d more' % (len(paths) - MAX_SHOWN) if len(paths) > MAX_SHOWN else ''),
                         missing=paths[:100])
    for step in steps:
        if step.op in ('create', 'update') and step.entry:
            step.source = index.found[(step.entry['sha256'], step.entry['size'])]
    return index


def _finish_result(result: dict[str, t.Any], steps: t.Sequence[Step], droot: DeployRoot, target: str,
                   old_meta: dict[str, t.Any] | None, after: dict[str, t.Any] | None, diff: bool) -> None:
    result['steps'] = counts(steps)
    result['changed_files'] = sorted(s.path for s in steps if s.op in ('create', 'update', 'delete', 'symlink'))
    if diff:
        what = 'slot %s' % target
        result['diff'] = _diff(what, old_meta, after if after is not None else old_meta)
        result['diff']['prepared'] = _text('slot %s (%s)' % (target, droot.slot_path(target)), steps)


def _check_run(droot: DeployRoot, target: str, top: str, work: Workdir, source: Manifest, tree: Manifest,
               archives: list[str], dirs: list[str], uid: int | None, gid: int | None, old_meta: dict[str, t.Any] | None,
               label: str | None, shared: list[str], diff: bool, result: dict[str, t.Any]) -> dict[str, t.Any]:
    if os.path.lexists(work.path):
        work.check(top)
        try:
            if Recovery(work).pending() is not None:
                result['changed'] = True
                result['warnings'].append('an interrupted patch of slot %s would be rolled back first (journal in %s)'
                                          % (target, work.path))
        except JournalError as exc:
            raise PatchError('%s: inspect the slot and remove the journal by hand' % exc) from exc
    stats: dict[str, os.stat_result] = {}
    current = scan_slot(top, stats)
    trust_record(droot, target, old_meta, current, stats)
    steps = plan_steps(top, current, tree, uid, gid, stats)
    _gather(top, current, steps, archives, dirs, None)
    recorded = _recorded(droot, target, old_meta, source, tree, shared, label)
    after = old_meta if (recorded and not steps) else _after_meta(old_meta, target, source, tree, shared, label, 'check mode')
    result['changed'] = result['changed'] or bool(steps) or not recorded or not os.path.isdir(top)
    _finish_result(result, steps, droot, target, old_meta, after, diff)
    return result


def _after_meta(old_meta: dict[str, t.Any] | None, target: str, source: Manifest, tree: Manifest, shared: list[str],
                label: str | None, src: str, stat_digest: str | None = None) -> dict[str, t.Any]:
    meta = _meta(old_meta, target, STATUS_COMPLETE, source, tree, src, shared)
    meta['release'] = label
    meta['stat_digest'] = stat_digest
    return meta


def _run_locked(droot: DeployRoot, target: str, top: str, work: Workdir, source: Manifest, tree: Manifest,
                archives: list[str], dirs: list[str], uid: int | None, gid: int | None, old_meta: dict[str, t.Any] | None,
                label: str | None, shared: list[str], manifest_path: str, diff: bool, result: dict[str, t.Any]) -> None:
    stats: dict[str, os.stat_result] = {}
    current = scan_slot(top, stats)
    trusted = trust_record(droot, target, old_meta, current, stats)
    result['trusted_record'] = trusted
    steps = plan_steps(top, current, tree, uid, gid, stats)
    if not steps:
        result.update(linked=0, copied=0)
        fingerprint = stat_fingerprint(stats)
        if not _recorded(droot, target, old_meta, source, tree, shared, label):
            _record(droot, target, old_meta, source, tree, shared, label, manifest_path, fingerprint)
            result['changed'] = True
        elif t.cast(dict, old_meta).get('stat_digest') != fingerprint:
            # the content was recorded already (every file was hashed just now): only the fingerprint is
            # refreshed, for the next patch; no change anyone relies on
            droot.write_slot_meta(target, dict(t.cast(dict, old_meta), stat_digest=fingerprint))
        _finish_result(result, steps, droot, target, old_meta, _read_json_quietly(droot.read_slot_meta, target), diff)
        return
    extract = temp_name(droot.state_dir, 'patch-extract-' + target)
    os.mkdir(extract, 0o700)
    try:
        _gather(top, current, steps, archives, dirs, extract)
        transaction = SlotTransaction(top, work, steps, uid, gid)
        try:
            transaction.stage()
        except BaseException:
            transaction.rollback()
            raise
        marker = dict(old_meta or {})
        marker.update({'name': target, 'status': STATUS_INCOMPLETE})
        droot.write_slot_meta(target, marker)
        # files unchanged by the steps keep the inodes the plan hashed (or trusted); staged files were
        # checked when staged: the verification below reads none of them again
        known = known_inodes(current, stats)
        known.update(transaction.known)
        after: dict[str, os.stat_result] = {}
        try:
            transaction.deploy()
            problems = verify_tree(top, tree, known, after)
            if problems:
                raise PatchError('the patched slot %s does not match the manifest: %s%s' % (
                    target, '; '.join(problems[:MAX_SHOWN]), ' and %d more' % (len(problems) - MAX_SHOWN) if len(problems) > MAX_SHOWN else ''),
                    problems=problems[:100])
        except BaseException as exc:  # roll back on anything, even KeyboardInterrupt; _roll_back re-raises
            _roll_back(transaction, exc, droot, target, old_meta)
        transaction.commit()
    finally:
        remove_tree(extract)
    result['changed'] = True
    result.update(linked=transaction.linked, copied=transaction.copied)
    _record(droot, target, old_meta, source, tree, shared, label, manifest_path, stat_fingerprint(after))
    _finish_result(result, steps, droot, target, old_meta, _read_json_quietly(droot.read_slot_meta, target), diff)


def _roll_back(transaction: SlotTransaction, exc: BaseException, droot: DeployRoot, target: str,
               old_meta: dict[str, t.Any] | None) -> t.NoReturn:
    """Undo everything after ``exc``, restore the old metadata and raise a PatchError saying so."""
    reason = exc.msg if isinstance(exc, PatchError) else '%s: %s' % (type(exc).__name__, exc)
    extra = dict(exc.result) if isinstance(exc, PatchError) else {}
    try:
        transaction.rollback()
    except Exception as undo_exc:  # pylint: disable=broad-except
        raise PatchError('%s; the rollback failed too (%s): the journal %s is kept, the slot stays marked incomplete and '
                         'the next run finishes restoring it' % (reason, undo_exc, transaction.work.journal.path),
                         restored=False, **extra) from exc
    _restore_slot_meta(droot, target, old_meta)
    if not isinstance(exc, Exception):
        raise exc
    raise PatchError('%s; every step was rolled back and slot %s restored' % (reason, target), restored=True, **extra) from exc


def _record(droot: DeployRoot, target: str, old_meta: dict[str, t.Any] | None, source: Manifest, tree: Manifest,
            shared: list[str], label: str | None, manifest_path: str, stat_digest: str) -> None:
    """Write the slot manifest, then the slot metadata (the same files ``populate_slot`` writes) with the fingerprint."""
    save_tree_manifest(droot, slot_manifest_path(droot, target), tree, source, shared)
    droot.write_slot_meta(target, _after_meta(old_meta, target, source, tree, shared, label, manifest_path, stat_digest))
