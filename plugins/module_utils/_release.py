# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Creating, removing and failing release directories, and populating A/B slots.

A release is built in a unique staging directory under
``<root>/.stagehand/stage/`` (same filesystem as ``releases/``), verified
against its manifest, synced, then renamed into ``releases/<name>`` in one
rename(2); metadata is written only after that. A crash therefore leaves
either nothing, a staging leftover, or a complete directory without metadata,
which the next run with the same source verifies and adopts.

Digests and files kept per release:

* ``manifest_digest`` (metadata and module result) is the digest of the
  *source* manifest: what the directory or tarball contains, before shared
  paths are linked in. It is the digest a build-side manifest of the artifact
  has, whatever ``shared`` says.
* ``.stagehand/manifests/<name>.json`` describes the release directory as it
  is on disk (shared paths are symlinks there), so
  ``verify_tree(releases/<name>, load_manifest(...)) == []`` holds. Its
  ``digest`` key is the digest of those entries (also stored as
  ``tree_digest`` in the metadata); it carries ``source_digest`` and
  ``shared`` as extra keys. Without shared paths both digests are equal.
* A/B slots keep the same data in ``.stagehand/slots/<slot>.json`` (metadata)
  and ``.stagehand/slots/<slot>.manifest.json`` (tree manifest). That name
  cannot collide with any release manifest, whatever the release is called.

Unchanged files are hardlinked from existing complete releases (or from the
slots, in A/B mode) instead of copied: a candidate with the same sha256,
mode, size and owner is found through the other trees' manifests, hashed
again right before ``os.link``, and copied instead when anything differs or
linking fails.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import shutil
import stat
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils._crash import crash_point
from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import (
    fsync_dir,
    read_json,
    temp_name,
    write_json_atomic,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._delta import is_kept, load_kept
from ansible_collections.stagehand.deploy.plugins.module_utils._manifest import (
    CHUNK_SIZE,
    TYPE_DIR,
    TYPE_FILE,
    TYPE_SYMLINK,
    Entry,
    SOURCE_DIR,
    SOURCE_TAR,
    Manifest,
    ManifestError,
    _scan_dir,
    build_manifest,
    check_shared_paths,
    compare_manifests,
    hash_file,
    load_manifest,
    load_manifest_document,
    manifest_from_json,
    mode_string,
    parents,
    save_manifest,
    scan_tar,
    source_kind,
    source_manifest,
    stat_fingerprint,
    verify_tree,
    with_shared,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._names import (
    SLOT_NAMES,
    InvalidName,
    account_id,
    check_release_name,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._state import (
    MODE_SLOTS,
    STATUS_COMPLETE,
    STATUS_FAILED,
    STATUS_INCOMPLETE,
    DeployRoot,
    inactive_slot,
    utc_now,
)

STATES = ('present', 'absent', 'failed')
SLOT_CHOICES = SLOT_NAMES + ('inactive',)
RELEASE_DEPTH = 2  # releases/<name> and slots/<slot> are two levels below the root
MAX_LINK_CANDIDATES = 3
MAX_NLINK = 60000  # stay clear of per-inode link limits (65000 on ext4)
MAX_PROBLEMS_SHOWN = 10
MAX_PROBLEMS_RETURNED = 100
CHAIN_KEYS = ('previous', 'next', 'activated')


class ReleaseError(Exception):
    """A refused or failed operation; ``msg`` says what and why, ``details`` go into the module result."""

    def __init__(self, msg: str, **details: t.Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


# -- disk space and filesystem errors ----------------------------------------------
# room left beside the files themselves: directories, inodes' blocks, metadata and manifests
SPACE_MARGIN = 1024 * 1024


def free_bytes(path: str) -> int:
    """Bytes an unprivileged writer may still use on the filesystem of ``path`` (``statvfs``)."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _size(count: int) -> str:
    for unit, scale in (('GiB', 1 << 30), ('MiB', 1 << 20), ('KiB', 1 << 10)):
        if count >= scale:
            return '%d bytes (%.1f %s)' % (count, count / scale, unit)
    return '%d bytes' % count


def check_free_space(root: str, needed: int | None, what: str) -> None:
    """Refuse, before anything is written, to stage ``what`` when the filesystem of ``root`` lacks ``needed`` bytes (and a margin).

    ``needed`` is the size of the files to write (those not hardlinked to content already on the host);
    None or 0 checks nothing.
    """
    if not needed or not os.path.isdir(root):
        return
    free = free_bytes(root)
    if free < needed + SPACE_MARGIN:
        raise ReleaseError('not enough space to stage %s in %r: its new files need %s (and about %s more for directories and '
                           'metadata), the filesystem has %s free; free some space there (remove old releases with cleanup.yml) '
                           'and deploy again. Nothing was staged' % (what, root, _size(needed), _size(SPACE_MARGIN), _size(free)),
                           needed=needed, free=free)


def explain_os_error(exc: OSError, root: str, needed: int | None = None) -> str:
    """A filesystem error as a message saying what happened, where, and (no space left) how much space is needed.

    ``ENOSPC``: the file being written, the filesystem's free space and ``needed``; ``EXDEV``: the two
    paths a rename or hardlink could not join, and that the deploy root must be one filesystem.
    Any other error: its text and the path, quoted.
    """
    paths = [p for p in (exc.filename, getattr(exc, 'filename2', None)) if p]
    if exc.errno == errno.ENOSPC:
        try:
            free = _size(free_bytes(root))
        except OSError:
            free = 'an unknown number of bytes'
        writing = (' while writing %r' % (paths[0],)) if paths else ''
        wanted = (', %s needed for the new files' % _size(needed)) if needed else ''
        return ('no space left on the filesystem of %r%s: %s free%s; free some space there (remove old releases with '
                'cleanup.yml) and deploy again' % (root, writing, free, wanted))
    if exc.errno == errno.EXDEV:
        return ('%s %s on different filesystems, and a rename or hardlink cannot cross from one to the other: keep %r '
                '(releases/, slots/, shared/ and .stagehand/) on one filesystem, without mount points inside it'
                % (' and '.join(repr(p) for p in paths) or 'the paths', 'are' if len(paths) > 1 else 'is', root))
    return '%s%s' % (exc.strerror or exc, (' (%s)' % ', '.join(repr(p) for p in paths)) if paths else '')


# -- small helpers ---------------------------------------------------------------
def release_manifest_path(droot: DeployRoot, name: str) -> str:
    """Where the tree manifest of release ``name`` is kept."""
    return droot.manifest_path(name)


def slot_manifest_path(droot: DeployRoot, slot: str) -> str:
    """Where the tree manifest of slot ``a``/``b`` is kept (beside the slot metadata)."""
    droot.slot_path(slot)
    return os.path.join(droot.slot_meta_dir, slot + '.manifest.json')


def _problems_text(problems: list[str]) -> str:
    shown = problems[:MAX_PROBLEMS_SHOWN]
    more = len(problems) - len(shown)
    return '; '.join(shown) + ('; and %d more' % more if more > 0 else '')


def resolve_owner(owner: str | None, group: str | None) -> tuple[int | None, int | None]:
    """Numeric uid/gid for user and group names (or numeric strings); None when not given."""
    try:
        uid = None if owner is None else account_id(owner)
        gid = None if group is None else account_id(group, group=True)
    except ValueError as exc:
        raise ReleaseError(str(exc)) from None
    return uid, gid


def _check_expected(source: Manifest, manifest_path: str | None) -> None:
    if manifest_path is None:
        return
    expected = load_manifest(manifest_path)
    problems = compare_manifests(expected, source)
    if problems:
        raise ReleaseError(
            'the source does not match the manifest %s (expected %s, source has %s): %s'
            % (manifest_path, expected.digest, source.digest, _problems_text(problems)),
            problems=problems[:MAX_PROBLEMS_RETURNED], manifest_digest=source.digest)


def _make_dirs(paths: t.Iterable[str]) -> list[str]:
    """Create missing directories (0755); return those created, outermost first."""
    created: list[str] = []
    for path in paths:
        missing = []
        current = os.path.abspath(path)
        while not os.path.lexists(current):
            missing.append(current)
            current = os.path.dirname(current)
        for directory in reversed(missing):
            os.mkdir(directory, 0o755)
            created.append(directory)
    return created


def _remove_created(created: list[str]) -> None:
    for directory in reversed(created):
        try:
            os.rmdir(directory)
        except OSError:
            pass


def _make_removable(path: str) -> None:
    """Give every directory below ``path`` u+rwx so that rmtree works for non-root users (no symlink is followed)."""
    stack = [path]
    while stack:
        current = stack.pop()
        st = os.lstat(current)
        if not stat.S_ISDIR(st.st_mode):
            continue
        if stat.S_IMODE(st.st_mode) & 0o700 != 0o700:
            os.chmod(current, stat.S_IMODE(st.st_mode) | 0o700)
        with os.scandir(current) as it:
            stack.extend(e.path for e in it if e.is_dir(follow_symlinks=False))


def remove_tree(path: str) -> None:
    """Remove a directory tree we own (staging or set aside), including read-only directories."""
    if not os.path.lexists(path):
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    _make_removable(path)
    shutil.rmtree(path)


def _sync_filesystem(path: str) -> None:
    """Flush everything written below ``path`` to disk: syncfs(2) on its filesystem, else sync(2)."""
    func = None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
        func = getattr(libc, 'syncfs', None)
    except OSError:
        func = None
    if func is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if func(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _default_gid(directory: str) -> int:
    """The group new entries get in ``directory`` (its group when it is setgid, else ours)."""
    try:
        st = os.stat(directory)
    except OSError:
        return os.getegid()
    return st.st_gid if st.st_mode & stat.S_ISGID else os.getegid()


# -- hardlinking ------------------------------------------------------------------
class LinkIndex:
    """Files of existing trees by (sha256, mode, size), to hardlink unchanged files instead of copying them.

    A file is used only after checking that it still holds its content: by hashing it, or, for a
    tree added with the ``stat_digest`` recorded when it was verified, by one lstat scan of that tree
    (done the first time one of its files is asked for) whose :func:`._manifest.stat_fingerprint` is
    still that digest. The type, size, mode, owner and link count of a file are then checked on the
    lstat of that scan.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, int], list[str]] = {}
        self._by_content: dict[tuple[str, int], list[str]] = {}
        self._verified: dict[str, bool] = {}
        self._hashed: dict[str, tuple[str, int] | None] = {}
        # (st_dev, st_ino) -> (sha256, size) of every file hashed (or trusted) here, so that a tree of
        # hardlinks to them is verified without reading the same inodes again (verify_tree's ``known``)
        self.inode_hashes: dict[tuple[int, int], tuple[str, int]] = {}
        self._tree_of: dict[str, tuple[str, str]] = {}  # file -> (tree top, its path in the tree), for trees with a digest
        self._digests: dict[str, str] = {}
        self._scans: dict[str, dict[str, os.stat_result] | None] = {}  # tree top -> its lstat scan, None: not trusted

    def add_tree(self, top: str, manifest: Manifest, stat_digest: str | None = None) -> None:
        if stat_digest:
            self._digests[top] = stat_digest
        for entry in manifest:
            if entry['type'] == TYPE_FILE:
                key = (entry['sha256'], entry['mode'], entry['size'])
                full = os.path.join(top, *entry['path'].split('/'))
                self._by_key.setdefault(key, []).append(full)
                self._by_content.setdefault((entry['sha256'], entry['size']), []).append(full)
                if stat_digest:
                    self._tree_of[full] = (top, entry['path'])

    def _scanned(self, path: str) -> os.stat_result | None:
        """The lstat of ``path`` from the scan of its tree when that tree's fingerprint is still the recorded one, else None."""
        found = self._tree_of.get(path)
        if found is None:
            return None
        top, rel = found
        if top not in self._scans:
            scan: dict[str, os.stat_result] | None = {}
            try:
                _scan_dir(top, strict=False, hash_files=False, stats=scan)
            except OSError:
                scan = None
            if scan is not None and stat_fingerprint(scan) != self._digests[top]:
                scan = None
            self._scans[top] = scan
        scan = self._scans[top]
        return scan.get(rel) if scan is not None else None

    def content(self, entry: Entry) -> str | None:
        """A regular file with ``entry``'s content (any mode or owner), checked by hashing it now: a source to copy from."""
        for path in self._by_content.get((entry['sha256'], entry['size']), [])[:MAX_LINK_CANDIDATES]:
            if path not in self._hashed:
                try:
                    seen = self._scanned(path)
                    st = seen if seen is not None else os.lstat(path)
                    if not stat.S_ISREG(st.st_mode):
                        self._hashed[path] = None
                    elif seen is not None:
                        self._hashed[path] = self.inode_hashes[(st.st_dev, st.st_ino)] = (entry['sha256'], entry['size'])
                    else:
                        self._hashed[path] = self._hash(path, st)
                except OSError:
                    self._hashed[path] = None
            if self._hashed[path] == (entry['sha256'], entry['size']):
                return path
        return None

    def __len__(self) -> int:
        return len(self._by_key)

    def candidate(self, entry: Entry, uid: int, gid: int) -> str | None:
        """A file with exactly ``entry``'s content, mode and the wanted owner, checked by hashing it now."""
        paths = self._by_key.get((entry['sha256'], entry['mode'], entry['size']), [])
        for path in paths[:MAX_LINK_CANDIDATES]:
            ok = self._verified.get(path)
            if ok is None:
                ok = self._check(path, entry, uid, gid)
                self._verified[path] = ok
            if ok:
                return path
        return None

    def _hash(self, path: str, st: os.stat_result) -> tuple[str, int]:
        hashed = hash_file(path)
        self.inode_hashes[(st.st_dev, st.st_ino)] = hashed
        return hashed

    def _check(self, path: str, entry: Entry, uid: int, gid: int) -> bool:
        try:
            seen = self._scanned(path)  # a file of a tree found unchanged moments ago: its lstat then
            st = seen if seen is not None else os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_size != entry['size'] or mode_string(st.st_mode) != entry['mode']:
                return False
            if st.st_uid != uid or st.st_gid != gid or st.st_nlink >= MAX_NLINK:
                return False
            if seen is not None:
                self.inode_hashes[(st.st_dev, st.st_ino)] = (entry['sha256'], entry['size'])
                return True
            return self._hash(path, st) == (entry['sha256'], entry['size'])
        except OSError:
            return False


def save_tree_manifest(droot: DeployRoot, path: str, tree: Manifest, source: Manifest, shared: list[str]) -> None:
    """Write the tree manifest ``path`` of a release or slot (its source with the shared links).

    When the host keeps the source (a compose in ``.stagehand/composes/``, in full or as a
    manifest delta, which stays while a release refers to it) only a reference is written: the
    source digest, the shared paths and the tree digest, a few hundred bytes instead of a second
    copy of a 10,000-entry manifest. :func:`load_tree_manifest` rebuilds the tree and checks its digest.
    """
    if is_kept(droot, source.digest):
        write_json_atomic(path, {'version': 1, 'derived': True, 'digest': tree.digest, 'source_digest': source.digest, 'shared': shared})
    else:
        save_manifest(path, tree, source_digest=source.digest, shared=shared)


def _kept_compose(state_dir: str, digest: str) -> Manifest | None:
    """The manifest of a compose the host keeps (in either form, see :func:`_delta.load_kept`); None when it keeps none usable."""
    kept = load_kept(DeployRoot(os.path.dirname(state_dir)), digest)
    return kept[0] if kept is not None else None


def load_tree_manifest(path: str) -> Manifest | None:
    """The tree manifest of a release or slot (full, or a reference to a kept compose manifest); None when unusable."""
    try:
        doc = read_json(path)
        if isinstance(doc, dict) and doc.get('derived') is True:
            digest, shared = doc.get('source_digest'), doc.get('shared')
            if not isinstance(digest, str) or not digest.startswith('sha256:') or not isinstance(shared, list):
                return None
            source = _kept_compose(os.path.dirname(os.path.dirname(os.path.abspath(path))), digest)
            if source is None:
                return None
            tree = with_shared(source, shared, RELEASE_DEPTH) if shared else source
            return tree if source.digest == digest and tree.digest == doc.get('digest') else None
        return manifest_from_json(doc, 'manifest file %s' % path)
    except (ManifestError, OSError, ValueError):
        return None


def release_link_index(droot: DeployRoot, exclude: str | None = None) -> LinkIndex:
    """Index of the files of every complete release (through their manifests)."""
    index = LinkIndex()
    for name in droot.release_names():
        if name == exclude:
            continue
        try:
            status = droot.release_status(name)
        except (InvalidName, ValueError, OSError):
            continue
        meta = _read_json_quietly(droot.read_meta, name) if status == STATUS_COMPLETE else None
        if not meta:
            continue
        manifest = load_tree_manifest(release_manifest_path(droot, name))
        if manifest is not None:
            index.add_tree(droot.release_path(name), manifest, recorded_stat_digest(meta, manifest))
    return index


def recorded_stat_digest(meta: t.Mapping[str, t.Any], manifest: Manifest) -> str | None:
    """The fingerprint recorded with ``meta``, when it was taken of the tree ``manifest`` describes (else None)."""
    digest = meta.get('stat_digest')
    return digest if isinstance(digest, str) and meta.get('tree_digest') == manifest.digest else None


def slot_link_index(droot: DeployRoot, index: LinkIndex | None = None) -> LinkIndex:
    """Index of the files of both slots that hold complete content (added to ``index`` when given)."""
    index = LinkIndex() if index is None else index
    for slot in SLOT_NAMES:
        meta = _read_json_quietly(droot.read_slot_meta, slot)
        if not meta or meta.get('status') != STATUS_COMPLETE or not os.path.isdir(droot.slot_path(slot)):
            continue
        manifest = load_tree_manifest(slot_manifest_path(droot, slot))
        if manifest is not None:
            index.add_tree(droot.slot_path(slot), manifest, recorded_stat_digest(meta, manifest))
    return index


def content_index(droot: DeployRoot, exclude: str | None = None) -> LinkIndex:
    """Index of the files of every complete release and both complete slots: where partial sources take missing content."""
    return slot_link_index(droot, release_link_index(droot, exclude))


def _read_json_quietly(reader: t.Callable[[str], t.Any], key: str) -> dict[str, t.Any] | None:
    """Metadata as a dict, or None when missing, unreadable or not a JSON object."""
    try:
        data = reader(key)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def plan_links(tree: Manifest, index: LinkIndex, uid: int, gid: int) -> dict[str, str]:
    """``path -> existing file`` for every file of ``tree`` that can be hardlinked."""
    links: dict[str, str] = {}
    if not len(index):
        return links
    for entry in tree:
        if entry['type'] == TYPE_FILE:
            found = index.candidate(entry, uid, gid)
            if found is not None:
                links[entry['path']] = found
    return links


def _link(existing: str, dest: str) -> bool:
    try:
        os.link(existing, dest)
    except OSError as exc:
        if exc.errno in (errno.EMLINK, errno.EXDEV, errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise
    return True


# -- staging ----------------------------------------------------------------------
class Staged:
    """The outcome of staging: source and tree manifests and how files were obtained."""

    def __init__(self, source: Manifest, tree: Manifest, linked: int, stat_digest: str | None = None) -> None:
        self.source = source
        self.tree = tree
        self.linked = linked
        self.stat_digest = stat_digest  # of the verified tree (a slot records it, see _manifest.stat_fingerprint)

    @property
    def copied(self) -> int:
        return self.tree.files - self.linked


def _copy_file(src: str, dest: str, entry: Entry) -> None:
    """Copy ``src`` to a new file ``dest`` (0600), checking that the content is still what the manifest says."""
    try:
        fd_in = os.open(src, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))
    except OSError as exc:
        raise ReleaseError('cannot read source file %s: %s' % (src, exc.strerror or exc)) from None
    try:
        fd_out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600)
        try:
            h = hashlib.sha256()
            size = 0
            while True:
                try:
                    chunk = os.read(fd_in, CHUNK_SIZE)
                except OSError as exc:
                    raise ReleaseError('cannot read source file %s: %s' % (src, exc.strerror or exc)) from None
                if not chunk:
                    break
                h.update(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd_out, view):]
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
    if (h.hexdigest(), size) != (entry['sha256'], entry['size']):
        raise ReleaseError('source file %s changed while it was being copied: try again once the source is stable' % src)


def _stage_from_dir(src: str, staging: str, tree: Manifest, links: dict[str, str]) -> int:
    linked = 0
    for entry in tree:
        dest = os.path.join(staging, *entry['path'].split('/'))
        if entry['type'] == TYPE_DIR:
            os.mkdir(dest, 0o700)
        elif entry['type'] == TYPE_SYMLINK:
            os.symlink(entry['target'], dest)
        elif entry['path'] in links and _link(links[entry['path']], dest):
            linked += 1
        else:
            _copy_file(os.path.join(src, *entry['path'].split('/')), dest, entry)
    return linked


def _apply_shared(staging: str, tree: Manifest, shared: list[str]) -> None:
    """Make the extracted tree follow ``tree`` at the shared paths (replace what is there by the symlink)."""
    for path in shared:
        for parent in parents(path):
            full = os.path.join(staging, *parent.split('/'))
            if not os.path.lexists(full):
                os.mkdir(full, 0o700)
        dest = os.path.join(staging, *path.split('/'))
        if os.path.lexists(dest):
            remove_tree(dest)
        entry = tree.get(path)
        if entry is None or entry['type'] != TYPE_SYMLINK:
            raise AssertionError('shared path %s is a symlink in the release manifest' % path)
        os.symlink(entry['target'], dest)


def _relink(staging: str, links: dict[str, str]) -> int:
    """Replace extracted files by hardlinks to identical existing files; return how many were replaced."""
    linked = 0
    for path, existing in sorted(links.items()):
        dest = os.path.join(staging, *path.split('/'))
        tmp = temp_name(os.path.dirname(dest), 'link')
        if not _link(existing, tmp):
            continue
        os.rename(tmp, dest)
        linked += 1
    return linked


def _finalize(staging: str, tree: Manifest, linked: set[str], uid: int | None, gid: int | None) -> None:
    """Apply owner/group and the manifest modes, deepest entries first; linked files are left alone."""
    chown = uid is not None or gid is not None
    for entry in reversed(tree.entries):
        if entry['path'] in linked:
            continue
        full = os.path.join(staging, *entry['path'].split('/'))
        if chown:
            os.lchown(full, -1 if uid is None else uid, -1 if gid is None else gid)
        if entry['type'] != TYPE_SYMLINK:
            os.chmod(full, int(entry['mode'], 8))
    if chown:
        os.lchown(staging, -1 if uid is None else uid, -1 if gid is None else gid)
    os.chmod(staging, 0o755)


# -- partial sources (deltas) ------------------------------------------------------------
def _check_partial(delta: Manifest, expected: Manifest, src: str | None, manifest_path: str) -> None:
    """Every entry of a partial source must be an entry of the manifest, files with the same content and mode."""
    problems: list[str] = []
    for entry in delta:
        exp = expected.get(entry['path'])
        if exp is None:
            problems.append('extra: %s (%s) is not in the manifest' % (entry['path'], entry['type']))
        elif exp['type'] != entry['type']:
            problems.append('type: %s is %s, expected %s' % (entry['path'], entry['type'], exp['type']))
        elif entry['type'] == TYPE_FILE:
            if (entry['sha256'], entry['size']) != (exp['sha256'], exp['size']):
                problems.append('sha256: %s has content %s (%d bytes), expected %s (%d bytes)'
                                % (entry['path'], entry['sha256'], entry['size'], exp['sha256'], exp['size']))
            elif entry['mode'] != exp['mode']:
                problems.append('mode: %s is %s, expected %s' % (entry['path'], entry['mode'], exp['mode']))
        elif entry['type'] == TYPE_SYMLINK and entry['target'] != exp['target']:
            problems.append('target: %s -> %s, expected -> %s' % (entry['path'], entry['target'], exp['target']))
    if problems:
        raise ReleaseError('the partial source %s does not match the manifest %s (%s): %s'
                           % (src, manifest_path, expected.digest, _problems_text(problems)),
                           problems=problems[:MAX_PROBLEMS_RETURNED], manifest_digest=expected.digest)


def _partial_source(src: str | None, manifest_path: str | None) -> tuple[Manifest, Manifest]:
    """``(expected source manifest, manifest of the partial source)``, checked against each other, writing nothing."""
    if manifest_path is None:
        raise ReleaseError('partial: true needs manifest: the partial source only holds some files of the release')
    expected = load_manifest(manifest_path)
    delta = source_manifest(src) if src is not None else Manifest([])
    _check_partial(delta, expected, src, manifest_path)
    return expected, delta


def _source(src: str | None, manifest_path: str | None, partial: bool) -> Manifest:
    """The (checked) manifest of the release source; for a partial source, the manifest it completes."""
    if partial:
        return _partial_source(src, manifest_path)[0]
    source = source_manifest(t.cast(str, src))
    _check_expected(source, manifest_path)
    return source


def _missing_error(missing: list[str], src: str | None) -> ReleaseError:
    shown = ', '.join(missing[:MAX_PROBLEMS_SHOWN]) + (' and %d more' % (len(missing) - MAX_PROBLEMS_SHOWN) if len(missing) > MAX_PROBLEMS_SHOWN else '')
    return ReleaseError(
        '%d file(s) of the manifest are neither in the partial source %s nor (same sha256) in any complete release or slot '
        'on this host: %s. Nothing was staged; ship them (or the full artifact)' % (len(missing), src or '(none)', shown),
        missing=missing[:MAX_PROBLEMS_RETURNED])


def plan_partial(tree: Manifest, delta: Manifest, index: LinkIndex, uid: int, gid: int, src: str | None) -> tuple[int, int]:
    """``(linked, copied)`` for assembling ``tree`` from a partial source and ``index``; refuses missing content."""
    in_delta = {e['path'] for e in delta if e['type'] == TYPE_FILE}
    delta_content = {e['sha256'] for e in delta if e['type'] == TYPE_FILE}
    linked = copied = 0
    missing: list[str] = []
    for entry in tree:
        if entry['type'] != TYPE_FILE:
            continue
        if entry['path'] in in_delta:
            copied += 1
        elif index.candidate(entry, uid, gid) is not None:
            linked += 1
        elif entry['sha256'] in delta_content or index.content(entry) is not None:
            copied += 1
        else:
            missing.append(entry['path'])
    if missing:
        raise _missing_error(missing, src)
    return linked, copied


def _stage_partial(src: str | None, kind: str | None, staging: str, expected: Manifest, tree: Manifest, shared: list[str],
                   manifest_path: str, index: LinkIndex, uid: int, gid: int) -> dict[str, str]:
    """Put the partial source into ``staging``, then every other entry of ``tree``; return the hardlinked files."""
    if kind == SOURCE_TAR:
        delta = scan_tar(t.cast(str, src), staging)
    elif kind == SOURCE_DIR:
        delta = build_manifest(t.cast(str, src))
    else:
        delta = Manifest([])
    _check_partial(delta, expected, src, manifest_path)
    plan_partial(tree, delta, index, uid, gid, src)  # refuses missing content before anything more is written
    if kind == SOURCE_DIR:
        for entry in delta:
            dest = os.path.join(staging, *entry['path'].split('/'))
            if entry['type'] == TYPE_DIR:
                os.mkdir(dest, 0o700)
            elif entry['type'] == TYPE_SYMLINK:
                os.symlink(entry['target'], dest)
            else:
                _copy_file(os.path.join(t.cast(str, src), *entry['path'].split('/')), dest, entry)
    _apply_shared(staging, tree, shared)
    from_delta = {}
    for entry in delta:
        if entry['type'] == TYPE_FILE and tree.get(entry['path']) == expected.get(entry['path']):
            from_delta.setdefault(entry['sha256'], os.path.join(staging, *entry['path'].split('/')))
    # what the partial source and the shared links put there already (a delta lists the parents of its entries)
    present = {entry['path'] for entry in delta}
    for path in shared:
        present.add(path)
        present.update(parents(path))
    links: dict[str, str] = {}
    missing: list[str] = []
    for entry in tree:  # sorted by path: parents come before their children
        if entry['path'] in present:
            continue
        dest = os.path.join(staging, *entry['path'].split('/'))
        if entry['type'] == TYPE_DIR:
            os.mkdir(dest, 0o700)
        elif entry['type'] == TYPE_SYMLINK:
            os.symlink(entry['target'], dest)
        else:
            found = index.candidate(entry, uid, gid)
            if found is not None and _link(found, dest):
                links[entry['path']] = found
                continue
            other = from_delta.get(entry['sha256']) or index.content(entry)
            if other is None:
                missing.append(entry['path'])
                continue
            _copy_file(other, dest, entry)
    if missing:
        raise _missing_error(missing, src)
    return links


def stage(
    droot: DeployRoot,
    src: str | None,
    kind: str | None,
    shared: list[str],
    manifest_path: str | None,
    index: LinkIndex,
    uid: int | None,
    gid: int | None,
    label: str,
    partial: bool = False,
) -> tuple[str, Staged]:
    """Build a verified tree from ``src`` in a new staging directory; return its path and what was staged.

    With ``partial``, ``src`` (a directory, a tarball or None) holds only some
    files of the manifest; every other file is taken from ``index`` by sha256.
    On any error the staging directory is removed and the error re-raised.
    """
    staging = temp_name(droot.stage_dir, label)
    os.mkdir(staging, 0o700)
    try:
        want_uid = os.geteuid() if uid is None else uid
        want_gid = _default_gid(staging) if gid is None else gid
        if partial:
            if manifest_path is None:
                raise ReleaseError('partial: true needs manifest: the partial source only holds some files of the release')
            source = load_manifest(manifest_path)
            tree = with_shared(source, shared, RELEASE_DEPTH)
            links = _stage_partial(src, kind, staging, source, tree, shared, manifest_path, index, want_uid, want_gid)
        elif kind == SOURCE_DIR:
            source = build_manifest(src)
            _check_expected(source, manifest_path)
            tree = with_shared(source, shared, RELEASE_DEPTH)
            links = plan_links(tree, index, want_uid, want_gid)
            _stage_from_dir(src, staging, tree, links)
        else:
            source = scan_tar(src, staging)
            _check_expected(source, manifest_path)
            tree = with_shared(source, shared, RELEASE_DEPTH)
            _apply_shared(staging, tree, shared)
            links = plan_links(tree, index, want_uid, want_gid)
            _relink(staging, links)
        # a partial stage lists only the links it made (os.link succeeded); the others are checked by inode
        linked_paths = set(links) if partial else {p for p in links if _same_inode(os.path.join(staging, *p.split('/')), links[p])}
        _finalize(staging, tree, linked_paths, uid, gid)
        stats: dict[str, os.stat_result] = {}
        problems = verify_tree(staging, tree, index.inode_hashes, stats)
        if problems:
            raise ReleaseError('the staged tree does not match the source manifest (did the source change while it was read?): %s'
                               % _problems_text(problems), problems=problems[:MAX_PROBLEMS_RETURNED])
        _sync_filesystem(staging)
    except BaseException:
        remove_tree(staging)
        raise
    # renaming the staging directory into place changes none of its entries: the fingerprint stays true
    return staging, Staged(source, tree, len(linked_paths), stat_fingerprint(stats))


def _same_inode(a: str, b: str) -> bool:
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


# -- metadata -----------------------------------------------------------------------
def _meta(old: dict[str, t.Any] | None, name: str, status: str, source: Manifest | None, tree: Manifest | None,
          src: str | None, shared: list[str], reason: str | None = None) -> dict[str, t.Any]:
    meta: dict[str, t.Any] = {
        'name': name,
        'status': status,
        'manifest_digest': source.digest if source is not None else None,
        'tree_digest': tree.digest if tree is not None else None,
        'created': utc_now(),
        'source': src,
        'files': tree.files if tree is not None else None,
        'bytes': tree.bytes if tree is not None else None,
        'shared': list(shared),
        'failed_reason': reason,
    }
    for key in CHAIN_KEYS:
        meta[key] = (old or {}).get(key)
    return meta


def _summary(what: str, info: t.Mapping[str, t.Any] | None) -> str:
    if not info:
        return '%s: absent\n' % what
    lines = ['%s: %s' % (what, info.get('status') or 'present')]
    for key in ('release', 'manifest_digest', 'files', 'bytes'):
        if info.get(key) is not None:
            lines.append('%s: %s' % (key, info[key]))
    if info.get('shared'):
        lines.append('shared: %s' % ', '.join(info['shared']))
    if info.get('failed_reason'):
        lines.append('failed_reason: %s' % info['failed_reason'])
    return '\n'.join(lines) + '\n'


def _diff(what: str, before: t.Mapping[str, t.Any] | None, after: t.Mapping[str, t.Any] | None) -> dict[str, str]:
    return {'before': _summary(what, before), 'after': _summary(what, after),
            'before_header': what, 'after_header': what}


def _info(status: str, source: Manifest, tree: Manifest, shared: list[str], label: str | None = None) -> dict[str, t.Any]:
    info = {'status': status, 'manifest_digest': source.digest, 'files': tree.files, 'bytes': tree.bytes, 'shared': shared}
    if label is not None:
        info['release'] = label
    return info


def _result(changed: bool, path: str, diff: dict[str, str], **values: t.Any) -> dict[str, t.Any]:
    result: dict[str, t.Any] = {'changed': changed, 'path': path, 'diff': diff, 'linked': 0, 'copied': 0, 'recovered': False}
    result.update(values)
    return result


# -- state=present (releases/) ---------------------------------------------------------
def _resolve_src(src: str | None, partial: bool) -> tuple[str | None, str | None]:
    """Absolute ``src`` and its kind; a partial source may be omitted (nothing had to be sent)."""
    if src is None:
        if not partial:
            raise ReleaseError('src is required with state=present unless partial is true')
        return None, None
    src = os.path.abspath(src)
    return src, source_kind(src)


def ensure_release(
    root: str,
    name: str,
    src: str | None,
    shared: t.Sequence[str] = (),
    manifest_path: str | None = None,
    owner: str | None = None,
    group: str | None = None,
    check_mode: bool = False,
    partial: bool = False,
    space_needed: int | None = None,
) -> dict[str, t.Any]:
    """Make ``releases/<name>`` hold exactly ``src`` (plus shared links); releases are immutable once complete.

    With ``partial``, ``src`` holds only some files of ``manifest_path`` (or is None) and the others
    are taken from the complete releases and slots of the root by sha256. ``space_needed`` (the bytes
    of the files to write) is checked against the free space of ``root`` before anything is staged.
    """
    check_release_name(name)
    shared_paths = check_shared_paths(shared)
    uid, gid = resolve_owner(owner, group)
    if partial and manifest_path is None:
        raise ReleaseError('partial: true needs manifest: the partial source only holds some files of the release')
    src, kind = _resolve_src(src, partial)
    droot = DeployRoot(root)
    path = droot.release_path(name)
    what = 'release %s' % name
    old_meta = _read_json_quietly(droot.read_meta, name)  # unreadable metadata counts as missing

    if os.path.lexists(path):
        if os.path.islink(path) or not os.path.isdir(path):
            raise ReleaseError('%s exists but is not a directory: remove it by hand, it is not a release' % path)
        source = _source(src, manifest_path, partial)
        tree = with_shared(source, shared_paths, RELEASE_DEPTH)
        known = old_meta or {}
        status = known.get('status')
        if status in (STATUS_COMPLETE, STATUS_FAILED):
            old_digest = known.get('manifest_digest')
            old_shared = sorted(known.get('shared') or [])
            if old_digest == source.digest and old_shared == shared_paths:
                return _result(False, path, _diff(what, known, known), release=name, status=status,
                               manifest_digest=old_digest, files=known.get('files'), bytes=known.get('bytes'), shared=old_shared)
            raise ReleaseError(
                'release %s already exists with digest %s (shared: %s); the source %s has digest %s (shared: %s); '
                'releases are immutable: deploy this source under a new release name'
                % (name, old_digest, ', '.join(old_shared) or 'none', src, source.digest, ', '.join(shared_paths) or 'none'),
                release=name, existing_digest=old_digest, manifest_digest=source.digest)
        problems = verify_tree(path, tree)
        if problems:
            raise ReleaseError(
                '%s exists without complete metadata (an interrupted run?) and does not match the source %s: %s. '
                'It was left untouched: inspect it, remove it with state=absent, or use a new release name'
                % (path, src, _problems_text(problems)), problems=problems[:MAX_PROBLEMS_RETURNED], release=name)
        new_meta = _meta(old_meta, name, STATUS_COMPLETE, source, tree, src, shared_paths)
        if not check_mode:
            os.makedirs(droot.manifests_dir, 0o755, exist_ok=True)
            save_tree_manifest(droot, release_manifest_path(droot, name), tree, source, shared_paths)
            droot.write_meta(name, new_meta)
        before = dict(old_meta or {}, status=STATUS_INCOMPLETE)
        return _result(True, path, _diff(what, before, new_meta), release=name, status=STATUS_COMPLETE, recovered=True,
                       manifest_digest=source.digest, files=tree.files, bytes=tree.bytes, shared=shared_paths)

    if check_mode:
        want_uid = os.geteuid() if uid is None else uid
        want_gid = _default_gid(droot.stage_dir) if gid is None else gid
        if partial:
            source, delta = _partial_source(src, manifest_path)
            tree = with_shared(source, shared_paths, RELEASE_DEPTH)
            linked = plan_partial(tree, delta, content_index(droot, name), want_uid, want_gid, src)[0]
        else:
            source = _source(src, manifest_path, partial)
            tree = with_shared(source, shared_paths, RELEASE_DEPTH)
            linked = len(plan_links(tree, release_link_index(droot, name), want_uid, want_gid))
        after = _info(STATUS_COMPLETE, source, tree, shared_paths)
        return _result(True, path, _diff(what, None, after), release=name, status=STATUS_COMPLETE,
                       manifest_digest=source.digest, files=tree.files, bytes=tree.bytes, shared=shared_paths,
                       linked=linked, copied=tree.files - linked)

    check_free_space(root, space_needed, 'release %r' % (name,))
    created = _make_dirs([droot.releases_dir, droot.meta_dir, droot.manifests_dir, droot.stage_dir])
    try:
        index = content_index(droot, name) if partial else release_link_index(droot, name)
        staging, staged = stage(droot, src, kind, shared_paths, manifest_path, index, uid, gid, 'release-' + name, partial)
        try:
            if os.path.lexists(path):
                raise ReleaseError('%s appeared while the release was being staged: another deploy is running?' % path)
            crash_point('release:staged')
            os.rename(staging, path)
        except BaseException:
            remove_tree(staging)
            raise
    except BaseException:
        _remove_created(created)
        raise
    fsync_dir(droot.releases_dir)
    fsync_dir(droot.stage_dir)
    save_tree_manifest(droot, release_manifest_path(droot, name), staged.tree, staged.source, shared_paths)
    new_meta = _meta(old_meta if old_meta and old_meta.get('name') == name else None, name, STATUS_COMPLETE,
                     staged.source, staged.tree, src, shared_paths)
    new_meta['stat_digest'] = staged.stat_digest
    droot.write_meta(name, new_meta)
    return _result(True, path, _diff(what, None, new_meta), release=name, status=STATUS_COMPLETE,
                   manifest_digest=staged.source.digest, files=staged.tree.files, bytes=staged.tree.bytes,
                   shared=shared_paths, linked=staged.linked, copied=staged.copied)


# -- state=absent ---------------------------------------------------------------------------
def remove_release(root: str, name: str, force: bool = False, check_mode: bool = False) -> dict[str, t.Any]:
    """Remove ``releases/<name>`` and its metadata; never the live release, the rollback target only with force."""
    check_release_name(name)
    droot = DeployRoot(root)
    path = droot.release_path(name)
    what = 'release %s' % name
    meta_files = [droot.meta_path(name), release_manifest_path(droot, name)]
    exists = os.path.lexists(path)
    if not exists and not any(os.path.lexists(p) for p in meta_files):
        return _result(False, path, _diff(what, None, None), release=name, status='absent')
    live = droot.live_release()
    if live == name:
        raise ReleaseError(
            'release %s is live (%s -> %s): switch to another release before removing it (force does not allow removing the live release)'
            % (name, droot.current, droot.current_target()), release=name)
    rollback = droot.chain()['previous']
    if rollback == name and not force:
        raise ReleaseError(
            'release %s is the rollback target of the live release %s: removing it would make rollback impossible; '
            'set force: true to remove it anyway' % (name, live), release=name)
    before = _read_json_quietly(droot.read_meta, name) or {'status': 'present'}
    diff = _diff(what, before, None)
    if check_mode:
        return _result(True, path, diff, release=name, status='absent')
    if exists:
        _make_dirs([droot.stage_dir])
        aside = temp_name(droot.stage_dir, 'removed-' + name)
        os.rename(path, aside)
        fsync_dir(droot.releases_dir)
        fsync_dir(droot.stage_dir)
        remove_tree(aside)
    for meta_file in meta_files:
        try:
            os.unlink(meta_file)
        except FileNotFoundError:
            continue
        fsync_dir(os.path.dirname(meta_file))
    return _result(True, path, diff, release=name, status='absent')


# -- state=failed ---------------------------------------------------------------------------
def mark_failed(root: str, name: str, reason: str | None = None, check_mode: bool = False) -> dict[str, t.Any]:
    """Set the status of an existing release to ``failed`` (with ``failed_reason``)."""
    check_release_name(name)
    droot = DeployRoot(root)
    path = droot.release_path(name)
    what = 'release %s' % name
    old = _read_json_quietly(droot.read_meta, name)
    if old is None and not os.path.isdir(path):
        raise ReleaseError('release %s does not exist under %s: only existing releases can be marked failed' % (name, droot.releases_dir),
                           release=name)
    if old is not None and old.get('status') == STATUS_FAILED:
        return _result(False, path, _diff(what, old, old), release=name, status=STATUS_FAILED,
                       manifest_digest=old.get('manifest_digest'), files=old.get('files'), bytes=old.get('bytes'))
    if old is not None:
        new = dict(old)
        new['status'] = STATUS_FAILED
        new['failed_reason'] = reason
    else:
        digest = None
        try:
            tree, doc = load_manifest_document(release_manifest_path(droot, name))
            digest = doc.get('source_digest', tree.digest)
        except ManifestError:
            pass
        new = {'name': name, 'status': STATUS_FAILED, 'manifest_digest': digest, 'created': utc_now(), 'source': None,
               'files': None, 'bytes': None, 'previous': None, 'next': None, 'activated': None, 'failed_reason': reason}
    if not check_mode:
        droot.write_meta(name, new)
    return _result(True, path, _diff(what, old or {'status': STATUS_INCOMPLETE}, new), release=name, status=STATUS_FAILED,
                   manifest_digest=new.get('manifest_digest'), files=new.get('files'), bytes=new.get('bytes'))


def mark_slot_failed(root: str, slot: str, reason: str | None = None, check_mode: bool = False) -> dict[str, t.Any]:
    """Set the status of slot ``a`` or ``b`` to ``failed`` (with ``failed_reason``), so nothing flips to it by accident.

    The live slot can be marked too: a deploy that went live and failed marks its slot after
    switching back, and a switch refuses a failed slot unless forced. The next deploy into the
    slot writes a complete status again.
    """
    if slot not in SLOT_NAMES:
        raise ReleaseError('slot %r cannot be marked failed: name slot a or b' % (slot,), slot=slot)
    droot = DeployRoot(root)
    path = droot.slot_path(slot)
    what = 'slot %s' % slot
    old = _read_json_quietly(droot.read_slot_meta, slot)
    if old is None:
        raise ReleaseError('slot %s has no metadata under %s: only a populated slot can be marked failed' % (slot, droot.slot_meta_dir),
                           slot=slot)
    values = dict(slot=slot, release=old.get('release'), status=STATUS_FAILED, manifest_digest=old.get('manifest_digest'),
                  files=old.get('files'), bytes=old.get('bytes'))
    if old.get('status') == STATUS_FAILED:
        return _result(False, path, _diff(what, old, old), **values)
    new = dict(old, status=STATUS_FAILED, failed_reason=reason)
    if not check_mode:
        droot.write_slot_meta(slot, new)
    return _result(True, path, _diff(what, old, new), **values)


# -- slots -------------------------------------------------------------------------------------
def resolve_slot(droot: DeployRoot, slot: str) -> str:
    """``a``/``b`` for ``slot`` (``inactive`` = the slot ``current`` does not point at, ``a`` when none is live).

    Refuses the live slot.
    """
    if slot not in SLOT_CHOICES:
        raise ReleaseError('slot %r is invalid: use one of %s' % (slot, ', '.join(SLOT_CHOICES)))
    mode, live = droot.live()
    active = live if mode == MODE_SLOTS else None
    if slot == 'inactive':
        return inactive_slot(active)
    if slot == active:
        other = inactive_slot(active)
        raise ReleaseError('slot %s is live (%s -> %s): populate the inactive slot %s instead (or use slot: inactive)'
                           % (slot, droot.current, droot.current_target(), other), slot=slot)
    return slot


def populate_slot(
    root: str,
    slot: str,
    src: str,
    label: str | None = None,
    shared: t.Sequence[str] = (),
    manifest_path: str | None = None,
    owner: str | None = None,
    group: str | None = None,
    check_mode: bool = False,
    partial: bool = False,
    space_needed: int | None = None,
) -> dict[str, t.Any]:
    """Replace the content of an inactive slot by ``src``; unchanged when the slot already holds the same digest.

    ``space_needed`` (the bytes of the files to write) is checked against the free space of ``root`` before anything is staged.
    """
    if label is not None:
        check_release_name(label)
    shared_paths = check_shared_paths(shared)
    uid, gid = resolve_owner(owner, group)
    if partial and manifest_path is None:
        raise ReleaseError('partial: true needs manifest: the partial source only holds some files of the release')
    src, kind = _resolve_src(src, partial)
    droot = DeployRoot(root)
    target = resolve_slot(droot, slot)
    path = droot.slot_path(target)
    what = 'slot %s' % target
    old_meta = _read_json_quietly(droot.read_slot_meta, target)
    before = None
    if old_meta and old_meta.get('status') == STATUS_COMPLETE and os.path.isdir(path) and not os.path.islink(path):
        before = old_meta  # the slot holds complete content

    if before is not None or check_mode:
        source, delta = _partial_source(src, manifest_path) if partial else (_source(src, manifest_path, False), None)
        tree = with_shared(source, shared_paths, RELEASE_DEPTH)
        if before is not None and before.get('manifest_digest') == source.digest and sorted(before.get('shared') or []) == shared_paths:
            values = dict(slot=target, release=label, status=STATUS_COMPLETE, manifest_digest=source.digest,
                          files=tree.files, bytes=tree.bytes, shared=shared_paths)
            if before.get('release') == label:
                return _result(False, path, _diff(what, before, before), **values)
            new_meta = dict(before)
            new_meta['release'] = label
            if not check_mode:
                droot.write_slot_meta(target, new_meta)
            return _result(True, path, _diff(what, before, new_meta), **values)
        if check_mode:
            want_uid = os.geteuid() if uid is None else uid
            want_gid = _default_gid(droot.stage_dir) if gid is None else gid
            if delta is not None:
                linked = plan_partial(tree, delta, content_index(droot), want_uid, want_gid, src)[0]
            else:
                linked = len(plan_links(tree, slot_link_index(droot), want_uid, want_gid))
            after = _info(STATUS_COMPLETE, source, tree, shared_paths, label)
            return _result(True, path, _diff(what, before, after), slot=target, release=label, status=STATUS_COMPLETE,
                           manifest_digest=source.digest, files=tree.files, bytes=tree.bytes, shared=shared_paths,
                           linked=linked, copied=tree.files - linked)

    check_free_space(root, space_needed, 'slot %r' % (target,))
    created = _make_dirs([droot.slots_dir, droot.slot_meta_dir, droot.stage_dir])
    try:
        index = content_index(droot) if partial else slot_link_index(droot)
        staging, staged = stage(droot, src, kind, shared_paths, manifest_path, index, uid, gid, 'slot-' + target, partial)
    except BaseException:
        _remove_created(created)
        raise
    aside = None
    try:
        marker = dict(old_meta or {})
        marker.update({'name': target, 'status': STATUS_INCOMPLETE})
        droot.write_slot_meta(target, marker)
        if os.path.lexists(path):
            aside = temp_name(droot.stage_dir, 'old-slot-' + target)
            os.rename(path, aside)
        os.rename(staging, path)
    except BaseException:
        if aside is not None and not os.path.lexists(path):
            os.rename(aside, path)
        remove_tree(staging)
        _restore_slot_meta(droot, target, old_meta)
        raise
    fsync_dir(droot.slots_dir)
    fsync_dir(droot.stage_dir)
    save_tree_manifest(droot, slot_manifest_path(droot, target), staged.tree, staged.source, shared_paths)
    new_meta = _meta(old_meta, target, STATUS_COMPLETE, staged.source, staged.tree, src, shared_paths)
    new_meta['release'] = label
    new_meta['stat_digest'] = staged.stat_digest
    droot.write_slot_meta(target, new_meta)
    if aside is not None:
        remove_tree(aside)
    return _result(True, path, _diff(what, before, new_meta), slot=target, release=label, status=STATUS_COMPLETE,
                   manifest_digest=staged.source.digest, files=staged.tree.files, bytes=staged.tree.bytes,
                   shared=shared_paths, linked=staged.linked, copied=staged.copied)


def _restore_slot_meta(droot: DeployRoot, slot: str, old_meta: dict[str, t.Any] | None) -> None:
    if old_meta:
        droot.write_slot_meta(slot, old_meta)
        return
    try:
        os.unlink(droot.slot_meta_path(slot))
    except FileNotFoundError:
        pass


# -- entry point for the module -------------------------------------------------------------------
def run(params: t.Mapping[str, t.Any], check_mode: bool = False) -> dict[str, t.Any]:
    """Dispatch the ``release`` module's parameters; every refusal is a :class:`ReleaseError`."""
    try:
        return _run(params, check_mode)
    except InvalidName as exc:
        raise ReleaseError(str(exc)) from None
    except ManifestError as exc:
        raise ReleaseError(exc.msg, offending_path=exc.path) from None
    except OSError as exc:
        raise ReleaseError(explain_os_error(exc, params['root'], params.get('space_needed'))) from None
    except ValueError as exc:  # unreadable JSON state files and the like
        raise ReleaseError(str(exc)) from None


def _run(params: t.Mapping[str, t.Any], check_mode: bool) -> dict[str, t.Any]:
    state = params.get('state') or 'present'
    name = params.get('name')
    slot = params.get('slot')
    if name is not None:
        check_release_name(name)
    if state not in STATES:
        raise ReleaseError('state %r is invalid: use one of %s' % (state, ', '.join(STATES)))
    if state == 'present':
        partial = bool(params.get('partial'))
        if not params.get('src') and not partial:
            raise ReleaseError('src is required with state=present unless partial is true')
        common = dict(src=params.get('src') or None, shared=params.get('shared') or [], manifest_path=params.get('manifest'),
                      owner=params.get('owner'), group=params.get('group'), check_mode=check_mode, partial=partial,
                      space_needed=params.get('space_needed'))
        if slot is not None:
            return populate_slot(params['root'], slot, label=name, **common)
        if name is None:
            raise ReleaseError('name is required with state=present unless slot is set')
        return ensure_release(params['root'], name, **common)
    if slot is not None and state == 'failed':
        return mark_slot_failed(params['root'], slot, reason=params.get('reason'), check_mode=check_mode)
    if slot is not None:
        raise ReleaseError('slot is only used with state=present or state=failed; slots are replaced, never removed')
    if name is None:
        raise ReleaseError('name is required with state=%s' % state)
    if state == 'absent':
        return remove_release(params['root'], name, force=bool(params.get('force')), check_mode=check_mode)
    return mark_failed(params['root'], name, reason=params.get('reason'), check_mode=check_mode)
