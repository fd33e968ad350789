# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Manifests: a content description of a directory tree, and the safety rules for release sources.

A manifest is a sorted list of entries, one per path below the tree's root
(the root itself is not an entry)::

    {"path": "app/index.php", "type": "file", "mode": "0644", "sha256": "<hex>", "size": 1234}
    {"path": "app", "type": "dir", "mode": "0755"}
    {"path": "public/storage", "type": "symlink", "target": "../storage"}

Paths are relative, ``/``-separated, valid UTF-8, without ``.``, ``..`` or
empty components. Every parent of an entry is itself a ``dir`` entry.
Owners and times are not part of a manifest, so two trees with the same
content have the same :func:`digest` wherever and whenever they were built.

Sources (a directory or a ``.tar.gz``) must be *safe* before anything is
built from them; :class:`UnsafeSource` names the offending path for:
absolute paths and ``..`` components, duplicate entries, device files, fifos
and sockets, setuid/setgid bits, world-writable files and directories, tar hardlinks to paths outside the archive
or to members not seen before, paths below a symlink or a file, and symlinks
that resolve outside the tree. Symlinks are resolved component by component
against a virtual root, following symlinks inside the tree (at most
:data:`MAX_SYMLINK_FOLLOWS`), so ``d -> .`` plus ``e -> d/..`` is caught
although no target contains a lexical escape on its own.

The JSON file form (:func:`save_manifest`, :func:`load_manifest`) is
``{"version": 1, "digest": "sha256:<hex>", "entries": [...]}`` plus optional
extra keys chosen by the writer.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import stat
import tarfile
import typing as t
import zlib

from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import (
    read_json,
    write_json_atomic,
)

MANIFEST_VERSION = 1
MAX_SYMLINK_FOLLOWS = 40
CHUNK_SIZE = 1024 * 1024

TYPE_FILE = 'file'
TYPE_DIR = 'dir'
TYPE_SYMLINK = 'symlink'
ENTRY_TYPES = (TYPE_FILE, TYPE_DIR, TYPE_SYMLINK)
DEFAULT_DIR_MODE = '0755'

TAR_SUFFIXES = ('.tar.gz', '.tgz')

Entry = t.Dict[str, t.Any]

_MODE_RE = re.compile(r'\A[0-7]{4}\Z')
_SHA_RE = re.compile(r'\A[0-9a-f]{64}\Z')
_DIGEST_RE = re.compile(r'\Asha256:[0-9a-f]{64}\Z')
_KEYS = {
    TYPE_FILE: {'path', 'type', 'mode', 'sha256', 'size'},
    TYPE_DIR: {'path', 'type', 'mode'},
    TYPE_SYMLINK: {'path', 'type', 'target'},
}


class ManifestError(ValueError):
    """A manifest (or a manifest file) is malformed; ``path`` is the offending entry or file when known."""

    def __init__(self, msg: str, path: str | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.path = path


class UnsafeSource(ManifestError):
    """A source tree or archive contains something a release must never contain."""


class CorruptSource(ManifestError):
    """A source cannot be read completely (missing, unreadable, truncated or corrupt archive)."""


# -- paths --------------------------------------------------------------------
def check_rel_path(path: object, what: str = 'path') -> str:
    """Return ``path`` if it is a canonical relative manifest path, else raise :class:`UnsafeSource`."""
    if not isinstance(path, str):
        raise UnsafeSource('%s %r is not a string' % (what, path), None)
    if path == '':
        raise UnsafeSource('%s is empty' % what, path)
    if '\x00' in path:
        raise UnsafeSource('%s %r contains a NUL character' % (what, path), path)
    try:
        path.encode('utf-8')
    except UnicodeEncodeError:
        raise UnsafeSource('%s %r is not valid UTF-8' % (what, path), path) from None
    if path.startswith('/'):
        raise UnsafeSource('%s %r is absolute: only paths relative to the tree are allowed' % (what, path), path)
    for part in path.split('/'):
        if part == '..':
            raise UnsafeSource("%s %r contains a '..' component: it would point outside the tree" % (what, path), path)
        if part in ('', '.'):
            raise UnsafeSource("%s %r has an empty or '.' component: use a canonical relative path" % (what, path), path)
    return path


def normalize_member_name(name: str) -> str:
    """Canonical manifest path of a tar member name.

    Leading ``./`` prefixes and trailing slashes are dropped (``./app/`` ->
    ``app``); the archive root ``.`` gives ``''``. Absolute names and ``..``
    components are refused by :func:`check_rel_path` on the result, and the
    absolute check runs on the raw name so ``/etc`` is never turned into ``etc``.
    """
    if name.startswith('/'):
        raise UnsafeSource('archive member %r has an absolute path: only relative paths are allowed' % name, name)
    result = name
    while result.startswith('./'):
        result = result[2:].lstrip('/')
    result = result.rstrip('/')
    if result == '.':
        result = ''
    return result


def parents(path: str) -> list[str]:
    """The proper ancestors of ``path``, outermost first (``a/b/c`` -> ``['a', 'a/b']``)."""
    parts = path.split('/')
    return ['/'.join(parts[:i]) for i in range(1, len(parts))]


def mode_string(st_mode: int) -> str:
    """The permission bits of a ``st_mode`` as a 4-digit octal string (``0644``)."""
    return '%04o' % stat.S_IMODE(st_mode)


def is_tar_path(path: str) -> bool:
    """True when ``path`` names a gzip-compressed tarball by its suffix (``.tar.gz`` or ``.tgz``)."""
    return path.lower().endswith(TAR_SUFFIXES)


# -- the manifest -------------------------------------------------------------
def _check_entry(entry: object) -> Entry:
    if not isinstance(entry, dict):
        raise ManifestError('manifest entry %r is not an object' % (entry,))
    path = entry.get('path')
    try:
        check_rel_path(path, 'manifest entry path')
    except UnsafeSource as exc:
        raise ManifestError(exc.msg, exc.path) from None
    kind = entry.get('type')
    if kind not in ENTRY_TYPES:
        raise ManifestError('manifest entry %r has type %r: use one of %s' % (path, kind, ', '.join(ENTRY_TYPES)), path)
    keys = set(entry)
    if keys != _KEYS[kind]:
        raise ManifestError(
            'manifest entry %r (%s) has keys %s: exactly %s are required'
            % (path, kind, ', '.join(sorted(keys)), ', '.join(sorted(_KEYS[kind]))), path)
    if kind in (TYPE_FILE, TYPE_DIR) and not (isinstance(entry['mode'], str) and _MODE_RE.match(entry['mode'])):
        raise ManifestError('manifest entry %r has mode %r: use a 4-digit octal string such as "0644"' % (path, entry['mode']), path)
    if kind == TYPE_FILE:
        if not (isinstance(entry['sha256'], str) and _SHA_RE.match(entry['sha256'])):
            raise ManifestError('manifest entry %r has sha256 %r: use 64 lowercase hex digits' % (path, entry['sha256']), path)
        if isinstance(entry['size'], bool) or not isinstance(entry['size'], int) or entry['size'] < 0:
            raise ManifestError('manifest entry %r has size %r: use a non-negative integer' % (path, entry['size']), path)
    if kind == TYPE_SYMLINK:
        target = entry['target']
        if not isinstance(target, str) or not target or '\x00' in target:
            raise ManifestError('manifest entry %r has symlink target %r: use a non-empty string' % (path, target), path)
    return dict(entry)


class Manifest:
    """An immutable, validated, sorted list of entries (see the module docstring)."""

    __slots__ = ('_entries', '_by_path', '_digest')

    def __init__(self, entries: t.Iterable[t.Mapping[str, t.Any]]) -> None:
        by_path: dict[str, Entry] = {}
        for raw in entries:
            entry = _check_entry(dict(raw))
            if entry['path'] in by_path:
                raise ManifestError('manifest has a duplicate entry %r' % entry['path'], entry['path'])
            by_path[entry['path']] = entry
        for path in by_path:
            for parent in parents(path):
                kind = by_path.get(parent, {}).get('type')
                if kind != TYPE_DIR:
                    raise ManifestError(
                        'manifest entry %r: its parent %r is %s, not a dir entry'
                        % (path, parent, 'missing' if kind is None else 'a ' + kind), path)
        self._by_path = by_path
        self._entries = [by_path[p] for p in sorted(by_path)]
        self._digest: str | None = None

    @classmethod
    def trusted(cls, by_path: dict[str, Entry]) -> Manifest:
        """A manifest of ``path -> entry`` already checked (built from validated manifests), not validated again.

        The caller hands over ``by_path`` (it must not change it afterwards).
        """
        self = cls.__new__(cls)
        self._by_path = by_path
        self._entries = [by_path[p] for p in sorted(by_path)]
        self._digest = None
        return self

    @property
    def entries(self) -> list[Entry]:
        """A copy of the sorted entries."""
        return [dict(e) for e in self._entries]

    def get(self, path: str) -> Entry | None:
        entry = self._by_path.get(path)
        return dict(entry) if entry is not None else None

    def __contains__(self, path: object) -> bool:
        return path in self._by_path

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> t.Iterator[Entry]:
        return iter(self.entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Manifest):
            return NotImplemented
        return self._entries == other._entries

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return 'Manifest(%d entries, %s)' % (len(self._entries), self.digest)

    @property
    def digest(self) -> str:
        if self._digest is None:  # immutable: computed once
            self._digest = digest(self)
        return self._digest

    @property
    def files(self) -> int:
        """Number of regular files."""
        return sum(1 for e in self._entries if e['type'] == TYPE_FILE)

    @property
    def bytes(self) -> int:
        """Total size of the regular files."""
        return sum(e['size'] for e in self._entries if e['type'] == TYPE_FILE)

    def to_json(self, **extra: t.Any) -> dict[str, t.Any]:
        """The JSON document form; ``extra`` keys are added beside version, digest and entries."""
        doc = dict(extra)
        doc.update({'version': MANIFEST_VERSION, 'digest': self.digest, 'entries': self.entries})
        return doc


def canonical_json(manifest: Manifest) -> bytes:
    """The bytes the digest is computed over: the entries as compact JSON with sorted keys."""
    return json.dumps(manifest._entries, sort_keys=True, separators=(',', ':')).encode('utf-8')  # pylint: disable=protected-access


def digest(manifest: Manifest) -> str:
    """``sha256:<hex>`` of :func:`canonical_json` (independent of mtimes, owners and walk order)."""
    return 'sha256:' + hashlib.sha256(canonical_json(manifest)).hexdigest()


def manifest_from_json(doc: object, source: str = 'manifest') -> Manifest:
    """Validate a JSON document (``{"version": 1, "digest"?, "entries": [...]}``) and return its manifest."""
    if not isinstance(doc, dict):
        raise ManifestError('%s is not a JSON object with "version" and "entries"' % source, source)
    if doc.get('version') != MANIFEST_VERSION:
        raise ManifestError('%s has version %r: only version %d is supported' % (source, doc.get('version'), MANIFEST_VERSION), source)
    entries = doc.get('entries')
    if not isinstance(entries, list):
        raise ManifestError('%s has no "entries" list' % source, source)
    try:
        manifest = Manifest(entries)
    except ManifestError as exc:
        raise ManifestError('%s: %s' % (source, exc.msg), exc.path) from None
    recorded = doc.get('digest')
    if recorded is not None:
        if not (isinstance(recorded, str) and _DIGEST_RE.match(recorded)):
            raise ManifestError('%s has digest %r: expected "sha256:<64 hex digits>"' % (source, recorded), source)
        if recorded != manifest.digest:
            raise ManifestError(
                '%s is corrupt: its digest %s does not match its entries (%s)' % (source, recorded, manifest.digest), source)
    return manifest


_LOADED: dict[tuple[str, int, int, int, int], tuple[Manifest, dict[str, t.Any]]] = {}


def _loaded_key(path: str) -> tuple[str, int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def remember_loaded(path: str, manifest: Manifest, doc: dict[str, t.Any]) -> None:
    """Note that the file ``path`` (just written) holds ``doc``, validated as ``manifest``: not parsed again here."""
    key = _loaded_key(path)
    if key is not None:
        while len(_LOADED) >= 4:  # keep the last few only: manifests can be large
            del _LOADED[next(iter(_LOADED))]
        _LOADED[key] = (manifest, doc)


def load_manifest_document(path: str) -> tuple[Manifest, dict[str, t.Any]]:
    """Read a manifest file; return the manifest and the whole validated document (with any extra keys).

    A file read before in this process and unchanged since (same inode, size and mtime) is
    not parsed again: a deploy reads the same compose manifest for several purposes.
    """
    key = _loaded_key(path)
    if key is not None and key in _LOADED:
        manifest, doc = _LOADED[key]
        return manifest, dict(doc)
    try:
        doc = read_json(path)
    except (OSError, ValueError) as exc:
        raise ManifestError('cannot read manifest file %s: %s' % (path, exc), path) from None
    if doc is None:
        raise ManifestError('manifest file %s does not exist' % path, path)
    manifest = manifest_from_json(doc, 'manifest file %s' % path)
    remember_loaded(path, manifest, doc)
    return manifest, dict(doc)


def load_manifest_with_digest(path: str, digest: str) -> tuple[Manifest, dict[str, t.Any]] | None:
    """The manifest in ``path`` and its document, when its entries have exactly ``digest`` (a compose id); else None.

    For manifests whose digest is known beforehand (an artifact store names each compose by it):
    the entries are not validated one by one, only their digest is checked, which is several
    times faster for 10,000 entries. Use :func:`load_manifest` for anything else.
    """
    try:
        doc = read_json(path)
    except (OSError, ValueError):
        return None
    manifest = manifest_with_digest(doc, digest)
    return (manifest, doc) if manifest is not None else None


def manifest_with_digest(doc: object, digest: str) -> Manifest | None:
    """The manifest of the JSON document ``doc`` when its entries have exactly ``digest``, else None.

    Only the shape (a list of objects with a path, no path twice) and the digest are checked, not
    each entry: for documents named by their digest (see :func:`load_manifest_with_digest`).
    """
    entries = doc.get('entries') if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get('path'), str) for e in entries):
        return None
    by_path = {e['path']: e for e in entries}
    if len(by_path) != len(entries):
        return None
    manifest = Manifest.trusted(by_path)
    return manifest if manifest.digest == digest else None


def load_manifest(path: str) -> Manifest:
    """Read and validate a manifest file written by :func:`save_manifest` (or by hand in the same shape)."""
    return load_manifest_document(path)[0]


def save_manifest(path: str, manifest: Manifest, **extra: t.Any) -> None:
    """Atomically write ``manifest`` as JSON to ``path``; ``extra`` keys are stored beside it."""
    write_json_atomic(path, manifest.to_json(**extra))


# -- safety -------------------------------------------------------------------
def _kind_of(st_mode: int) -> str:
    if stat.S_ISCHR(st_mode) or stat.S_ISBLK(st_mode):
        return 'device file'
    if stat.S_ISFIFO(st_mode):
        return 'fifo'
    if stat.S_ISSOCK(st_mode):
        return 'socket'
    return 'unsupported file type'


def check_mode_bits(path: str, mode: str) -> None:
    """Refuse setuid and setgid bits, and entries that every user of the host may write."""
    bits = int(mode, 8)
    if bits & (stat.S_ISUID | stat.S_ISGID):
        which = ' and '.join(n for n, b in (('setuid', stat.S_ISUID), ('setgid', stat.S_ISGID)) if bits & b)
        raise UnsafeSource('%r has the %s bit set (mode %s): releases may not contain setuid/setgid entries' % (path, which, mode), path)
    if bits & stat.S_IWOTH:
        # any local user (the application's own included) could change the code that runs
        raise UnsafeSource('%r is writable by every user (mode %s): releases may not contain world-writable entries; '
                           'remove that bit in the build (chmod o-w), or put what the application writes in a shared path'
                           % (path, mode), path)


def resolve_symlink(manifest: Manifest, path: str) -> str:
    """Resolve the symlink entry ``path`` inside the tree and return the path it leads to (``''`` = the root).

    Components are walked against a virtual root: symlinks found on the way are
    followed (at most :data:`MAX_SYMLINK_FOLLOWS` in total), ``..`` above the
    root and absolute targets raise :class:`UnsafeSource`. Components that do
    not exist are taken literally (a dangling link inside the tree is allowed).
    """
    entry = manifest.get(path)
    if entry is None or entry['type'] != TYPE_SYMLINK:
        raise ValueError('%r is not a symlink entry' % path)
    resolved = path.split('/')[:-1]
    follows = 1
    pending = _target_parts(path, entry['target'], path)
    while pending:
        part = pending.pop(0)
        if part in ('', '.'):
            continue
        if part == '..':
            if not resolved:
                raise UnsafeSource(
                    'symlink %r -> %r escapes the tree (it resolves above the release root)' % (path, entry['target']), path)
            resolved.pop()
            continue
        candidate = '/'.join(resolved + [part])
        found = manifest.get(candidate)
        if found is not None and found['type'] == TYPE_SYMLINK:
            follows += 1
            if follows > MAX_SYMLINK_FOLLOWS:
                raise UnsafeSource(
                    'symlink %r -> %r: too many levels of symbolic links (more than %d)' % (path, entry['target'], MAX_SYMLINK_FOLLOWS),
                    path)
            pending = _target_parts(path, found['target'], candidate) + pending
            continue
        resolved.append(part)
    return '/'.join(resolved)


def _target_parts(link: str, target: str, via: str) -> list[str]:
    if target.startswith('/'):
        how = '' if via == link else ' (through symlink %r -> %r)' % (via, target)
        raise UnsafeSource('symlink %r points to an absolute path%s: it escapes the tree' % (link, how), link)
    return target.split('/')


def check_safe(manifest: Manifest) -> None:
    """Raise :class:`UnsafeSource` for setuid/setgid modes or symlinks that resolve outside the tree."""
    for entry in manifest.entries:
        if entry['type'] in (TYPE_FILE, TYPE_DIR):
            check_mode_bits(entry['path'], entry['mode'])
    for entry in manifest.entries:
        if entry['type'] == TYPE_SYMLINK:
            resolve_symlink(manifest, entry['path'])


def _check_parents_are_dirs(path: str, seen: t.Mapping[str, Entry]) -> None:
    for parent in parents(path):
        kind = seen.get(parent, {}).get('type')
        if kind == TYPE_SYMLINK:
            raise UnsafeSource('%r is below the symlink %r: writing it would follow the link' % (path, parent), path)
        if kind == TYPE_FILE:
            raise UnsafeSource('%r is below %r, which is a file' % (path, parent), path)


# -- building manifests -------------------------------------------------------
def hash_file(path: str) -> tuple[str, int]:
    """``(sha256 hex, size)`` of a regular file, without following a final symlink."""
    h = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))
    try:
        while True:
            chunk = os.read(fd, CHUNK_SIZE)
            if not chunk:
                break
            h.update(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return h.hexdigest(), size


def _scan_dir(top: str, strict: bool, hash_files: bool = True, stats: dict[str, os.stat_result] | None = None) -> dict[str, Entry]:
    """Entries of the tree below ``top``. Strict: refuse unsafe content. Lenient: report odd types as such.

    Without ``hash_files``, file entries carry their size from lstat and no sha256. With ``stats``,
    the lstat result of every entry is put there by path (the same call that made the entry).
    """
    found: dict[str, Entry] = {}
    stack = ['']
    while stack:
        rel_dir = stack.pop()
        abs_dir = os.path.join(top, rel_dir) if rel_dir else top
        with os.scandir(abs_dir) as it:
            names = sorted(e.name for e in it)
        for name in names:
            rel = rel_dir + '/' + name if rel_dir else name
            full = os.path.join(abs_dir, name)
            st = os.lstat(full)
            if stats is not None:
                stats[rel] = st
            if strict:
                check_rel_path(rel)
            if stat.S_ISDIR(st.st_mode):
                found[rel] = {'path': rel, 'type': TYPE_DIR, 'mode': mode_string(st.st_mode)}
                stack.append(rel)
            elif stat.S_ISREG(st.st_mode) and hash_files:
                sha, size = hash_file(full)
                found[rel] = {'path': rel, 'type': TYPE_FILE, 'mode': mode_string(st.st_mode), 'sha256': sha, 'size': size}
            elif stat.S_ISREG(st.st_mode):
                found[rel] = {'path': rel, 'type': TYPE_FILE, 'mode': mode_string(st.st_mode), 'size': st.st_size}
            elif stat.S_ISLNK(st.st_mode):
                found[rel] = {'path': rel, 'type': TYPE_SYMLINK, 'target': os.readlink(full)}
            elif strict:
                raise UnsafeSource('%r in %s is a %s: releases may only contain files, directories and symlinks'
                                   % (rel, top, _kind_of(st.st_mode)), rel)
            else:
                found[rel] = {'path': rel, 'type': _kind_of(st.st_mode)}
            if strict and found[rel]['type'] in (TYPE_FILE, TYPE_DIR):
                check_mode_bits(rel, found[rel]['mode'])
    return found


def build_manifest(top: str) -> Manifest:
    """The manifest of the directory ``top`` (symlinks are recorded, never followed).

    Raises :class:`UnsafeSource` for anything a release may not contain and
    :class:`CorruptSource` when ``top`` is not a readable directory.
    """
    if not os.path.isdir(top):
        raise CorruptSource('%s is not a directory' % top, top)
    try:
        found = _scan_dir(top, strict=True)
    except UnsafeSource:
        raise
    except OSError as exc:
        raise CorruptSource('cannot read %s: %s' % (exc.filename or top, exc.strerror or exc), exc.filename or top) from None
    manifest = Manifest(found.values())
    check_safe(manifest)
    return manifest


class _TarReader:
    """Wraps reading from a tar stream so that read errors become :class:`CorruptSource` and write errors do not.

    Decompression goes through :class:`gzip.GzipFile`, which checks the CRC and
    length in the gzip trailer; tarfile's own ``r|gz`` stream never does, and
    would accept an archive whose end was cut off after the tar end marker.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.fileobj: t.BinaryIO = open(path, 'rb')  # pylint: disable=consider-using-with
        except OSError as exc:
            raise CorruptSource('cannot read %s: %s' % (path, exc.strerror or exc), path) from None
        self.gz = gzip.GzipFile(fileobj=self.fileobj, mode='rb')  # pylint: disable=consider-using-with
        try:
            self.tar = tarfile.open(fileobj=self.gz, mode='r|')  # pylint: disable=consider-using-with
        except BaseException as exc:
            self.gz.close()
            self.fileobj.close()
            if isinstance(exc, (tarfile.TarError, EOFError, zlib.error, OSError)):
                raise self.corrupt(exc) from None
            raise

    def corrupt(self, exc: BaseException) -> CorruptSource:
        return CorruptSource('%s is not a readable .tar.gz archive (truncated or corrupt?): %s' % (self.path, str(exc) or type(exc).__name__),
                             self.path)

    def next(self) -> tarfile.TarInfo | None:
        try:
            return self.tar.next()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise self.corrupt(exc) from None

    def chunks(self, member: tarfile.TarInfo) -> t.Iterator[bytes]:
        try:
            reader = self.tar.extractfile(member)
            if reader is None:
                raise tarfile.ReadError('member %r has no data' % member.name)
            remaining = member.size
            while True:
                chunk = reader.read(CHUNK_SIZE)
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
            if remaining != 0:
                raise tarfile.ReadError('member %r is shorter than its header says' % member.name)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise self.corrupt(exc) from None

    def finish(self) -> None:
        """Read the compressed stream to its end so that the gzip trailer (CRC, length) is checked."""
        try:
            while self.gz.read(CHUNK_SIZE):
                pass
        except (EOFError, zlib.error, OSError) as exc:
            raise self.corrupt(exc) from None

    def close(self) -> None:
        try:
            self.tar.close()
        finally:
            try:
                self.gz.close()
            finally:
                self.fileobj.close()


def _create_file(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def scan_tar(path: str, dest: str | None = None) -> Manifest:
    """Read a ``.tar.gz`` as a stream in one pass and return its manifest; extract it into ``dest`` when given.

    Every member is validated before anything is written for it, so nothing is
    ever written outside ``dest`` or through a symlink. ``dest`` must be an
    existing empty directory; extracted directories are created ``0700`` and
    files ``0600`` (the caller applies the manifest modes once the tree is
    complete). Tar hardlinks become independent copies of the member they
    name. Directories implied by member paths get mode ``0755``. Owners and
    times in the archive are ignored.

    Raises :class:`UnsafeSource` (naming the member) or :class:`CorruptSource`.
    Whatever was extracted into ``dest`` before an error stays there: the
    caller removes ``dest``.
    """
    seen: dict[str, Entry] = {}
    reader = _TarReader(path)
    try:
        while True:
            member = reader.next()
            if member is None:
                reader.finish()
                break
            rel = normalize_member_name(member.name)
            if rel == '':
                if member.isdir():
                    continue
                raise UnsafeSource('archive member %r of %s is not a directory but names the root' % (member.name, path), member.name)
            check_rel_path(rel, 'archive member')
            _check_parents_are_dirs(rel, seen)
            previous = seen.get(rel)
            if previous is not None and not (previous.get('implied') and member.isdir()):
                if previous.get('implied'):
                    raise UnsafeSource('archive member %r is not a directory, but earlier members of %s are below it' % (rel, path), rel)
                raise UnsafeSource('archive %s has a duplicate entry %r' % (path, rel), rel)
            for parent in parents(rel):
                if parent not in seen:
                    seen[parent] = {'path': parent, 'type': TYPE_DIR, 'mode': DEFAULT_DIR_MODE, 'implied': True}
                    if dest is not None:
                        os.mkdir(os.path.join(dest, parent), 0o700)
            mode = '%04o' % (member.mode & 0o7777)
            target_path = os.path.join(dest, rel) if dest is not None else None
            if member.isdir():
                check_mode_bits(rel, mode)
                seen[rel] = {'path': rel, 'type': TYPE_DIR, 'mode': mode}
                if target_path is not None and previous is None:
                    os.mkdir(target_path, 0o700)
            elif member.issym():
                if not member.linkname:
                    raise UnsafeSource('archive member %r is a symlink with an empty target' % rel, rel)
                seen[rel] = {'path': rel, 'type': TYPE_SYMLINK, 'target': member.linkname}
                if target_path is not None:
                    os.symlink(member.linkname, target_path)
            elif member.islnk():
                check_mode_bits(rel, mode)
                seen[rel] = _tar_hardlink(path, member, rel, mode, seen, dest)
            elif member.isreg():
                check_mode_bits(rel, mode)
                seen[rel] = _tar_file(reader, member, rel, mode, target_path)
            elif member.ischr() or member.isblk():
                raise UnsafeSource('archive member %r is a device file: releases may only contain files, directories and symlinks' % rel, rel)
            elif member.isfifo():
                raise UnsafeSource('archive member %r is a fifo: releases may only contain files, directories and symlinks' % rel, rel)
            else:
                raise UnsafeSource('archive member %r has the unsupported tar type %r' % (rel, member.type), rel)
    finally:
        reader.close()
    for entry in seen.values():
        entry.pop('implied', None)
    manifest = Manifest(seen.values())
    check_safe(manifest)
    return manifest


def _tar_file(reader: _TarReader, member: tarfile.TarInfo, rel: str, mode: str, target_path: str | None) -> Entry:
    h = hashlib.sha256()
    size = 0
    fd = _create_file(target_path) if target_path is not None else None
    try:
        for chunk in reader.chunks(member):
            h.update(chunk)
            size += len(chunk)
            if fd is not None:
                _write_all(fd, chunk)
    finally:
        if fd is not None:
            os.close(fd)
    return {'path': rel, 'type': TYPE_FILE, 'mode': mode, 'sha256': h.hexdigest(), 'size': size}


def _tar_hardlink(archive: str, member: tarfile.TarInfo, rel: str, mode: str, seen: t.Mapping[str, Entry], dest: str | None) -> Entry:
    link = member.linkname
    if link.startswith('/'):
        raise UnsafeSource('archive member %r is a hardlink to the absolute path %r: it points outside the archive' % (rel, link), rel)
    target = normalize_member_name(link)
    try:
        check_rel_path(target, 'hardlink target')
    except UnsafeSource:
        raise UnsafeSource('archive member %r is a hardlink to %r: it points outside the archive' % (rel, link), rel) from None
    found = seen.get(target)
    if found is None:
        raise UnsafeSource('archive member %r is a hardlink to %r, which is not an earlier member of %s' % (rel, link, archive), rel)
    if found['type'] != TYPE_FILE:
        raise UnsafeSource('archive member %r is a hardlink to %r, which is a %s, not a file' % (rel, link, found['type']), rel)
    if dest is not None:
        fd = _create_file(os.path.join(dest, rel))
        try:
            src = os.open(os.path.join(dest, target), os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))
            try:
                while True:
                    chunk = os.read(src, CHUNK_SIZE)
                    if not chunk:
                        break
                    _write_all(fd, chunk)
            finally:
                os.close(src)
        finally:
            os.close(fd)
    return {'path': rel, 'type': TYPE_FILE, 'mode': mode, 'sha256': found['sha256'], 'size': found['size']}


def manifest_from_tar(path: str) -> Manifest:
    """The manifest of a ``.tar.gz`` without extracting anything (see :func:`scan_tar`)."""
    return scan_tar(path, None)


SOURCE_DIR = 'dir'
SOURCE_TAR = 'tar'


def source_kind(src: str) -> str:
    """:data:`SOURCE_DIR` or :data:`SOURCE_TAR` for a usable release source, else :class:`CorruptSource` saying what is allowed."""
    if not os.path.lexists(src):
        raise CorruptSource('src %s does not exist on the managed host' % src, src)
    if os.path.isdir(src):
        if not os.access(src, os.R_OK | os.X_OK):
            raise CorruptSource('src %s is a directory that this user cannot read' % src, src)
        return SOURCE_DIR
    if os.path.isfile(src) and is_tar_path(src):
        if not os.access(src, os.R_OK):
            raise CorruptSource('src %s cannot be read by this user' % src, src)
        return SOURCE_TAR
    raise CorruptSource('src %s is neither a directory nor a .tar.gz/.tgz file' % src, src)


def source_manifest(src: str) -> Manifest:
    """The manifest of a release source (a directory or a ``.tar.gz``/``.tgz`` file), writing nothing."""
    if source_kind(src) == SOURCE_DIR:
        return build_manifest(src)
    return manifest_from_tar(src)


def stat_fingerprint(stats: t.Mapping[str, os.stat_result]) -> str:
    """``sha256:<hex>`` over what lstat says of every entry of a tree (as :func:`_scan_dir` collects it).

    Directories count by path, mode and owner; every other entry also by device, inode, size and
    mtime (nanoseconds). Recorded right after a tree was verified against its manifest, an equal
    fingerprint later means that no entry was added, removed, replaced, chmodded, chowned or
    written to since (a write changes the mtime), so the sha256 recorded then still hold, without
    reading a file. Link counts and ctimes are left out: hardlinking a file into another tree changes them.
    """
    h = hashlib.sha256()
    for path in sorted(stats):
        st = stats[path]
        if stat.S_ISDIR(st.st_mode):
            fields: tuple[t.Any, ...] = (path, st.st_mode, st.st_uid, st.st_gid)
        else:
            fields = (path, st.st_mode, st.st_uid, st.st_gid, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        h.update(('\0'.join(map(str, fields)) + '\n').encode('utf-8', 'surrogateescape'))
    return 'sha256:' + h.hexdigest()


# -- comparing ----------------------------------------------------------------
def compare_entries(expected: t.Mapping[str, Entry], actual: t.Mapping[str, Entry], hasher: t.Callable[[str], str] | None = None) -> list[str]:
    """Human-readable differences between two ``path -> entry`` maps, sorted by path.

    ``hasher(path)`` is called for files whose sha256 in ``actual`` is not
    known yet (lazy hashing for :func:`verify_tree`).
    """
    problems: list[str] = []
    for path in sorted(set(expected) | set(actual)):
        exp = expected.get(path)
        act = actual.get(path)
        if act is None:
            problems.append('missing: %s (%s)' % (path, t.cast(Entry, exp)['type']))
            continue
        if exp is None:
            problems.append('extra: %s (%s)' % (path, act['type']))
            continue
        if exp['type'] != act['type']:
            problems.append('type: %s is %s, expected %s' % (path, act['type'], exp['type']))
            continue
        if exp['type'] in (TYPE_FILE, TYPE_DIR) and exp['mode'] != act['mode']:
            problems.append('mode: %s is %s, expected %s' % (path, act['mode'], exp['mode']))
        if exp['type'] == TYPE_FILE:
            if exp['size'] != act['size']:
                problems.append('size: %s is %d bytes, expected %d' % (path, act['size'], exp['size']))
            else:
                sha = act.get('sha256')
                if sha is None and hasher is not None:
                    sha = hasher(path)
                if sha != exp['sha256']:
                    problems.append('sha256: %s has content %s, expected %s' % (path, sha, exp['sha256']))
        if exp['type'] == TYPE_SYMLINK and exp['target'] != act['target']:
            problems.append('target: %s -> %s, expected -> %s' % (path, act['target'], exp['target']))
    return problems


def compare_manifests(expected: Manifest, actual: Manifest) -> list[str]:
    """Differences between two manifests (empty list = identical)."""
    return compare_entries({e['path']: e for e in expected}, {e['path']: e for e in actual})


def verify_tree(top: str, manifest: Manifest, known: t.Mapping[tuple[int, int], tuple[str, int]] | None = None,
                stats: dict[str, os.stat_result] | None = None) -> list[str]:
    """Compare the directory ``top`` with ``manifest`` exactly; return the problems (empty list = match).

    Reports missing and extra paths, wrong types (including device files and
    the like), modes, sizes, content hashes and symlink targets. Files are
    hashed only when their type, mode and size already match. ``known`` maps
    ``(st_dev, st_ino)`` to the ``(sha256, size)`` of files hashed moments ago
    by the caller (the sources of hardlinks): those inodes are not read again. With ``stats``, the
    lstat result of every entry found is put there by path (see :func:`_scan_dir`).
    """
    if not os.path.isdir(top):
        return ['missing: %s is not a directory' % top]
    seen: dict[str, os.stat_result] = {} if stats is None else stats
    try:
        found = _scan_dir(top, strict=False, hash_files=False, stats=seen)
    except OSError as exc:
        return ['unreadable: %s: %s' % (exc.filename or top, exc.strerror or exc)]

    def hasher(path: str) -> str:
        try:
            if known:
                st = seen[path]  # the inode the scan found; the size was compared already
                hashed = known.get((st.st_dev, st.st_ino))
                if hashed is not None and hashed[1] == found[path]['size']:
                    return hashed[0]
            return hash_file(os.path.join(top, path))[0]
        except OSError as exc:
            return 'unreadable (%s)' % (exc.strerror or exc)

    return compare_entries({e['path']: e for e in manifest}, found, hasher)


# -- shared paths -------------------------------------------------------------
def shared_link_target(path: str, depth: int = 2) -> str:
    """Relative symlink target from ``<root>/<d1>/<d2>/<path>`` to ``<root>/shared/<path>``.

    ``depth`` is the number of directories between the deploy root and the
    release root (2 for ``releases/<name>`` and ``slots/<slot>``).
    """
    check_rel_path(path, 'shared path')
    up = depth + path.count('/')
    return '../' * up + 'shared/' + path


def check_shared_paths(shared: t.Iterable[object]) -> list[str]:
    """Validate and sort a list of shared paths: canonical relative paths, no duplicates, none inside another."""
    result: list[str] = []
    for raw in shared:
        if isinstance(raw, str):
            raw = raw.rstrip('/') if raw != '/' else raw
        try:
            path = check_rel_path(raw, 'shared path')
        except UnsafeSource as exc:
            raise ManifestError(exc.msg + " (shared paths are relative to the release, e.g. 'storage' or 'public/uploads')", exc.path) from None
        if path in result:
            raise ManifestError('shared path %r is listed twice' % path, path)
        result.append(path)
    result.sort()
    for a in result:
        for b in result:
            if b.startswith(a + '/'):
                raise ManifestError('shared path %r is inside shared path %r: list only %r' % (b, a, a), b)
    return result


def with_shared(manifest: Manifest, shared: t.Iterable[str], depth: int = 2) -> Manifest:
    """The manifest of the release tree: ``manifest`` where each shared path is a relative symlink to ``shared/``.

    Whatever the source has at or below a shared path is dropped; missing
    parent directories are added with mode ``0755``. A parent that is a file
    or symlink in the source raises :class:`ManifestError`.
    """
    by_path = {e['path']: e for e in manifest}
    for path in check_shared_paths(shared):
        for parent in parents(path):
            existing = by_path.get(parent)
            if existing is None:
                by_path[parent] = {'path': parent, 'type': TYPE_DIR, 'mode': DEFAULT_DIR_MODE}
            elif existing['type'] != TYPE_DIR:
                raise ManifestError('shared path %r cannot be linked: %r is a %s in the source, not a directory'
                                    % (path, parent, existing['type']), path)
        for other in [p for p in by_path if p == path or p.startswith(path + '/')]:
            del by_path[other]
        by_path[path] = {'path': path, 'type': TYPE_SYMLINK, 'target': shared_link_target(path, depth)}
    return Manifest.trusted(by_path)  # entries of a validated manifest, and well-formed links and directories
