# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Shipping only what changed: delta archives, manifest deltas and the host's copy of compose manifests.

Controller side (:func:`create`): given the new manifest file (a compose's
``manifest.json``), the full artifact and what a host already holds (the
compose ids of its complete releases and slots), write

* a *delta archive*: a ``.tar.gz`` holding, for every sha256 the host lacks,
  one regular file of the new release tree with that content (the first path
  in sort order). Nothing else: no directories, symlinks or files whose
  content the host has. Byte-for-byte deterministic (sorted members, owner 0,
  mtime 0, gzip header without name or time).
* a *manifest delta*: the new manifest expressed against a base manifest the
  host keeps (entries to set, paths to remove, the other top-level keys of the
  document, and the sha256/size of the exact ``manifest.json`` bytes). It is
  only used when rebuilding it on the controller gives back the very same
  bytes; otherwise the full ``manifest.json`` is shipped.

Host side (:func:`rebuild`): rebuild ``manifest.json`` from the manifest
delta and the base (or take a fully uploaded one, or the host's own copy when
nothing had to be sent), check that its digest is the compose id and its bytes
the ones the controller had (so a signature over ``manifest.json`` still
verifies), write it atomically, and keep it (and its ``.sig``) in
``<root>/.stagehand/composes/``: the base of the next deploy's manifest delta.
A compose is kept in one of two forms (see :func:`load_kept`):

* ``<hex>.json``: the exact bytes of its ``manifest.json``;
* ``<hex>.delta.json``: the manifest delta it was rebuilt from (a few hundred
  bytes instead of megabytes), when the base of that delta is kept too and
  its chain of deltas is shorter than :data:`MAX_CHAIN_DEPTH`.

The signature stays ``<hex>.json.sig`` either way. Composes no release or
slot refers to, and that no kept delta needs as a base, are pruned there.

What a host "has" is the content of the regular files of its complete
releases and slots, as described by their compose manifests with the shared
paths of each release dropped (nothing of the source is kept below a shared
path). The ``release`` module (partial mode) and the ``patch`` module take
every file not in the delta archive from there, by sha256.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import typing as t
import zlib

from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import (
    dump_json,
    fsync_dir,
    write_bytes_atomic,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._manifest import (
    CHUNK_SIZE,
    TYPE_FILE,
    Manifest,
    ManifestError,
    _TarReader,
    load_manifest_document,
    load_manifest_with_digest,
    manifest_from_json,
    manifest_with_digest,
    manifest_from_tar,
    normalize_member_name,
    remember_loaded,
    with_shared,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._names import SLOT_NAMES
from ansible_collections.stagehand.deploy.plugins.module_utils._state import (
    COMPOSES_DIR,
    STATUS_COMPLETE,
    DeployRoot,
)

DELTA_FORMAT = 'stagehand-manifest-delta'
DELTA_VERSION = 1
SIG_SUFFIX = '.sig'
DELTA_ARCHIVE = 'delta.tar.gz'
MANIFEST_DELTA = 'manifest-delta.json'
MANIFEST_FILE = 'manifest.json'
RELEASE_DEPTH = 2
DOC_KEYS = ('version', 'digest', 'entries')
_COMPOSE_ID_RE = re.compile(r'\Asha256:([0-9a-f]{64})\Z')
FULL_SUFFIX = '.json'
KEPT_DELTA_SUFFIX = '.delta.json'
_STORED_RE = re.compile(r'\A([0-9a-f]{64})(\.json|\.delta\.json)\Z')
# a compose kept as a delta whose base chain is this deep already is kept in full instead: chains stay short
MAX_CHAIN_DEPTH = 8
# reading gives up beyond this (a hand-made loop or an absurd chain): the compose counts as not kept
_MAX_READ_DEPTH = 64
_KEPT_CACHE_SIZE = MAX_CHAIN_DEPTH + 4  # a whole chain, and a few more
INDEX_SUFFIX = '.index.json'
INDEX_FORMAT = 'stagehand-artifact-index-1'
_DELTA_KEYS = {'format', 'version', 'base', 'digest', 'sha256', 'size', 'document', 'set', 'remove'}


class DeltaError(Exception):
    """A refused or failed operation; ``msg`` says what and why, ``details`` go into the module result."""

    def __init__(self, msg: str, **details: t.Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


# -- compose ids and the host's copies ----------------------------------------------------
def compose_hex(compose_id: object, what: str = 'compose id') -> str:
    """The 64 hex digits of a compose id ``sha256:<hex>``; :class:`DeltaError` for anything else."""
    match = _COMPOSE_ID_RE.match(compose_id) if isinstance(compose_id, str) else None
    if match is None:
        raise DeltaError('%s %r is invalid: use "sha256:" followed by 64 lowercase hex digits' % (what, compose_id))
    return match.group(1)


def composes_dir(droot: DeployRoot) -> str:
    """``<root>/.stagehand/composes``: the composes the host keeps (``<hex>.json`` or ``<hex>.delta.json``, and ``<hex>.json.sig``)."""
    return os.path.join(droot.state_dir, COMPOSES_DIR)


def stored_manifest_path(droot: DeployRoot, compose_id: str) -> str:
    """``<hex>.json``: where the host keeps the full ``manifest.json`` of ``compose_id`` (if kept in full; see :func:`load_kept`).

    Its signature is ``<hex>.json.sig`` whatever form the compose is kept in.
    """
    return os.path.join(composes_dir(droot), compose_hex(compose_id) + FULL_SUFFIX)


def stored_delta_path(droot: DeployRoot, compose_id: str) -> str:
    """``<hex>.delta.json``: where the host keeps ``compose_id`` as the manifest delta it was rebuilt from."""
    return os.path.join(composes_dir(droot), compose_hex(compose_id) + KEPT_DELTA_SUFFIX)


def _stored_ids(droot: DeployRoot) -> list[str]:
    """Compose ids with a file of either form in the composes directory, usable or not, sorted."""
    try:
        names = os.listdir(composes_dir(droot))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted({'sha256:' + m.group(1) for m in (_STORED_RE.match(n) for n in names) if m})


def stored_composes(droot: DeployRoot) -> list[str]:
    """Compose ids the host keeps (in either form), sorted.

    A compose kept as a delta whose chain of bases is broken (see :func:`is_kept`) is left out: it
    counts as not kept, so the controller ships its full manifest, which repairs it.
    """
    return [compose_id for compose_id in _stored_ids(droot) if is_kept(droot, compose_id)]


def referenced_composes(droot: DeployRoot) -> set[str]:
    """Compose ids (manifest digests) recorded in the metadata of the releases and slots of the root."""
    found: set[str] = set()
    readers: list[tuple[t.Callable[[str], t.Any], list[str]]] = [(droot.read_meta, droot.meta_names()), (droot.read_slot_meta, list(SLOT_NAMES))]
    for reader, keys in readers:
        for key in keys:
            try:
                meta = reader(key)
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and isinstance(meta.get('manifest_digest'), str):
                found.add(meta['manifest_digest'])
    return found


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_bytes(path: str) -> bytes:
    with open(path, 'rb') as f:
        return f.read()


def _read_if_exists(path: str) -> bytes | None:
    try:
        return _read_bytes(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _entry_map(manifest: Manifest) -> dict[str, dict[str, t.Any]]:
    return {e['path']: e for e in manifest}


# -- manifest deltas -----------------------------------------------------------------------
def make_manifest_delta(base: Manifest, new_doc: t.Mapping[str, t.Any], new_bytes: bytes, new: Manifest | None = None) -> dict[str, t.Any]:
    """The manifest delta turning ``base`` into the document ``new_doc`` whose file bytes are ``new_bytes``.

    ``new`` is the manifest of ``new_doc`` when the caller has it already (it is validated otherwise).
    """
    if new is None:
        new = manifest_from_json(dict(new_doc), 'the new manifest')
    old_by = _entry_map(base)
    new_by = _entry_map(new)
    return {
        'format': DELTA_FORMAT,
        'version': DELTA_VERSION,
        'base': base.digest,
        'digest': new.digest,
        'sha256': sha256_bytes(new_bytes),
        'size': len(new_bytes),
        'document': {k: v for k, v in new_doc.items() if k not in DOC_KEYS},
        'set': [new_by[p] for p in sorted(new_by) if old_by.get(p) != new_by[p]],
        'remove': sorted(p for p in old_by if p not in new_by),
    }


def check_manifest_delta(delta: object, source: str = 'manifest delta') -> dict[str, t.Any]:
    """Validate the shape of a manifest delta document; return it."""
    if not isinstance(delta, dict) or delta.get('format') != DELTA_FORMAT:
        raise DeltaError('%s is not a manifest delta (a JSON object with "format": "%s")' % (source, DELTA_FORMAT))
    if delta.get('version') != DELTA_VERSION:
        raise DeltaError('%s has version %r: only version %d is supported' % (source, delta.get('version'), DELTA_VERSION))
    if set(delta) != _DELTA_KEYS:
        raise DeltaError('%s has keys %s: exactly %s are required' % (source, ', '.join(sorted(delta)), ', '.join(sorted(_DELTA_KEYS))))
    compose_hex(delta['base'], '%s base' % source)
    compose_hex(delta['digest'], '%s digest' % source)
    if not (isinstance(delta['sha256'], str) and re.match(r'\A[0-9a-f]{64}\Z', delta['sha256'])):
        raise DeltaError('%s has sha256 %r: use 64 lowercase hex digits' % (source, delta['sha256']))
    if isinstance(delta['size'], bool) or not isinstance(delta['size'], int) or delta['size'] < 0:
        raise DeltaError('%s has size %r: use a non-negative integer' % (source, delta['size']))
    if not isinstance(delta['document'], dict) or set(delta['document']) & set(DOC_KEYS):
        raise DeltaError('%s: "document" must be an object without %s' % (source, ', '.join(DOC_KEYS)))
    if not isinstance(delta['set'], list) or not all(isinstance(e, dict) for e in delta['set']):
        raise DeltaError('%s: "set" must be a list of manifest entries' % source)
    if not isinstance(delta['remove'], list) or not all(isinstance(p, str) for p in delta['remove']):
        raise DeltaError('%s: "remove" must be a list of paths' % source)
    return delta


def apply_manifest_delta(base: Manifest, delta: object) -> bytes:
    """The exact ``manifest.json`` bytes described by ``delta`` applied to ``base`` (checked by digest and sha256)."""
    return _apply_manifest_delta(base, delta)[1]


def _apply_manifest_delta(base: Manifest, delta: object) -> tuple[Manifest, bytes]:
    """:func:`apply_manifest_delta`, also returning the manifest (trusted: see the comment in :func:`_apply_entries`)."""
    delta = check_manifest_delta(delta)
    manifest = _apply_entries(base, delta)
    return manifest, _delta_bytes(manifest, delta)


def _apply_entries(base: Manifest, delta: t.Mapping[str, t.Any]) -> Manifest:
    """The manifest of a checked ``delta`` applied to ``base``, checked by digest (not the bytes: :func:`_delta_bytes`)."""
    if base.digest != delta['base']:
        raise DeltaError('the manifest delta is against %s, but the base manifest given is %s' % (delta['base'], base.digest))
    by_path = _entry_map(base)
    for path in delta['remove']:
        if path not in by_path:
            raise DeltaError('the manifest delta removes %r, which the base manifest %s does not have' % (path, base.digest))
        del by_path[path]
    for entry in delta['set']:
        path = entry.get('path')
        if not isinstance(path, str):
            raise DeltaError('the manifest delta sets an entry without a path: %r' % (entry,))
        by_path[path] = entry
    # not validated here: the digest and the bytes must match what the controller validated, and
    # rebuild() validates the document it writes (manifest_from_json) before anything uses it
    manifest = Manifest.trusted(by_path)
    if manifest.digest != delta['digest']:
        raise DeltaError('the manifest rebuilt from the delta has digest %s, expected %s' % (manifest.digest, delta['digest']))
    return manifest


def _delta_bytes(manifest: Manifest, delta: t.Mapping[str, t.Any]) -> bytes:
    """The ``manifest.json`` bytes of ``manifest`` (from :func:`_apply_entries`), checked against the sha256 and size of ``delta``."""
    data = dump_json(manifest.to_json(**delta['document']))
    if (sha256_bytes(data), len(data)) != (delta['sha256'], delta['size']):
        raise DeltaError('the manifest.json rebuilt from the delta (%d bytes, sha256 %s) is not the file the controller has (%d bytes, sha256 %s)'
                         % (len(data), sha256_bytes(data), delta['size'], delta['sha256']))
    return data


# -- the composes the host keeps ----------------------------------------------------------------
_FileKey = t.Tuple[str, int, int, int, int]


class _Kept:
    """A kept compose, resolved: its manifest, what was read for it, and its exact ``manifest.json`` bytes (:meth:`data`)."""

    __slots__ = ('manifest', 'depth', 'chain', 'ids', '_delta', '_data')

    def __init__(self, manifest: Manifest, depth: int, chain: tuple[_FileKey, ...], ids: tuple[str, ...],
                 delta: t.Mapping[str, t.Any] | None = None, data: bytes | None = None) -> None:
        self.manifest = manifest
        self.depth = depth  # 0: kept in full; n: a manifest delta over a compose of depth n - 1
        self.chain = chain  # (path, dev, inode, size, mtime) of every file read, this compose's first
        self.ids = ids  # the compose ids of the chain, this one first
        self._delta = delta
        self._data = data

    def data(self) -> bytes:
        """The exact ``manifest.json`` bytes; made (and checked) on first use only, so the bases of a chain cost no dump."""
        if self._data is None:
            if self._delta is None:
                raise DeltaError('the kept compose %s has no bytes' % self.ids[0])
            try:
                self._data = _delta_bytes(self.manifest, self._delta)
            except DeltaError as exc:
                raise DeltaError('the kept manifest delta %s: %s' % (self.chain[0][0], exc.msg)) from None
        return self._data


# per process: a deploy reads the same kept composes several times (rebuild, staging, the tree manifests)
_KEPT: dict[str, _Kept] = {}


def _file_key(path: str) -> _FileKey | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _remember_kept(kept: _Kept) -> None:
    _KEPT.pop(kept.chain[0][0], None)
    while len(_KEPT) >= _KEPT_CACHE_SIZE:  # kept manifests can be large: only the last few
        del _KEPT[next(iter(_KEPT))]
    _KEPT[kept.chain[0][0]] = kept


def _trusted_manifest(raw: bytes, path: str, compose_id: str) -> Manifest:
    """The manifest of a full kept copy: validated when it was written (:func:`rebuild`), so its digest is what is checked."""
    try:
        doc = json.loads(raw.decode('utf-8'))
    except ValueError as exc:
        raise DeltaError('the kept manifest %s is not JSON: %s' % (path, exc)) from None
    manifest = manifest_with_digest(doc, compose_id)
    if manifest is None:
        raise DeltaError('the kept manifest %s is not the manifest of %s (not a list of entries with paths, or another digest)'
                         % (path, compose_id))
    return manifest


def _read_kept_delta(path: str) -> dict[str, t.Any]:
    """A kept (or fetched) manifest delta document, checked for shape."""
    try:
        doc = json.loads(_read_bytes(path).decode('utf-8'))
    except OSError as exc:
        raise DeltaError('cannot read the kept manifest delta %s: %s' % (path, exc.strerror or exc)) from None
    except ValueError as exc:
        raise DeltaError('the kept manifest delta %s is not JSON: %s' % (path, exc)) from None
    return check_manifest_delta(doc, 'the kept manifest delta %s' % path)


def _kept_delta_base(path: str) -> str | None:
    """The base of the manifest delta kept at ``path``; None when there is none (or it is not a manifest delta)."""
    try:
        return t.cast(str, _read_kept_delta(path)['base'])
    except DeltaError:
        return None


def _read_kept(directory: str, compose_id: str, path: str, key: _FileKey, seen: tuple[str, ...]) -> _Kept:
    cached = _KEPT.get(path)
    if cached is not None and cached.chain[0] == key:
        if len(cached.ids) == 1:
            return cached
        base = _resolve_kept(directory, cached.ids[1], seen + (compose_id,))
        if base.chain == cached.chain[1:]:
            return cached
    if path.endswith(KEPT_DELTA_SUFFIX):
        delta = _read_kept_delta(path)
        if delta['digest'] != compose_id:
            raise DeltaError('the kept manifest delta %s describes %s, not %s' % (path, delta['digest'], compose_id))
        try:
            base = _resolve_kept(directory, delta['base'], seen + (compose_id,))
        except DeltaError as exc:
            raise DeltaError('the base %s of the kept manifest delta %s is not usable: %s' % (delta['base'], path, exc.msg)) from None
        try:
            manifest = _apply_entries(base.manifest, delta)
        except DeltaError as exc:
            raise DeltaError('the kept manifest delta %s does not apply to its base %s: %s' % (path, delta['base'], exc.msg)) from None
        kept = _Kept(manifest, base.depth + 1, (key,) + base.chain, (compose_id,) + base.ids, delta=delta)
    else:
        try:
            raw = _read_bytes(path)
        except OSError as exc:
            raise DeltaError('cannot read the kept manifest %s: %s' % (path, exc.strerror or exc)) from None
        manifest = _trusted_manifest(raw, path, compose_id)
        kept = _Kept(manifest, 0, (key,), (compose_id,), data=raw)
    _remember_kept(kept)
    return kept


def _resolve_kept(directory: str, compose_id: str, seen: tuple[str, ...] = ()) -> _Kept:
    """The compose ``compose_id`` kept in ``directory`` (either form); :class:`DeltaError` saying why when it is not usable."""
    hexd = compose_hex(compose_id)
    if compose_id in seen:
        raise DeltaError('the kept manifest deltas form a loop: %s' % ' -> '.join(seen + (compose_id,)))
    if len(seen) >= _MAX_READ_DEPTH:
        raise DeltaError('the chain of kept manifest deltas from %s is longer than %d' % (seen[0], _MAX_READ_DEPTH))
    problems = []
    for suffix in (FULL_SUFFIX, KEPT_DELTA_SUFFIX):  # both exist only after a crash between writing one and removing the other
        path = os.path.join(directory, hexd + suffix)
        key = _file_key(path)
        if key is None:
            continue
        try:
            return _read_kept(directory, compose_id, path, key, seen)
        except DeltaError as exc:
            problems.append(exc.msg)
    if not problems:
        raise DeltaError('this host does not keep %s (neither %s nor %s is in %s)'
                         % (compose_id, hexd + FULL_SUFFIX, hexd + KEPT_DELTA_SUFFIX, directory))
    raise DeltaError('; '.join(problems))


def load_kept(droot: DeployRoot, compose_id: str) -> tuple[Manifest, bytes] | None:
    """The manifest and exact ``manifest.json`` bytes of a compose the host keeps; None when it keeps none usable.

    A compose kept as ``<hex>.delta.json`` is rebuilt from its base (itself kept in either form),
    checked by digest and sha256 at every step of the chain. Results are cached for this process
    while the files read for them are unchanged (same inode, size and mtime). A missing or broken
    chain gives None: the compose counts as not kept.
    """
    try:
        kept = _resolve_kept(composes_dir(droot), compose_id)
        return kept.manifest, kept.data()
    except (DeltaError, RecursionError):
        return None


def is_kept(droot: DeployRoot, compose_id: str) -> bool:
    """True when the host keeps ``compose_id``: in full, or as manifest deltas down to a compose kept in full.

    Cheaper than :func:`load_kept`: only the (small) kept deltas are read, not the manifests.
    """
    directory = composes_dir(droot)
    seen: set[str] = set()
    current = compose_id
    while len(seen) < _MAX_READ_DEPTH:
        try:
            hexd = compose_hex(current)
        except DeltaError:
            return False
        if os.path.isfile(os.path.join(directory, hexd + FULL_SUFFIX)):
            return True
        base = _kept_delta_base(os.path.join(directory, hexd + KEPT_DELTA_SUFFIX))
        if base is None or base in seen or base == current:
            return False
        seen.add(current)
        current = base
    return False


def kept_chain(droot: DeployRoot, compose_id: str) -> list[str]:
    """``compose_id`` and the bases its kept manifest deltas need, in order (as far as the kept files go)."""
    chain = [compose_id]
    while len(chain) <= _MAX_READ_DEPTH:
        try:
            base = _kept_delta_base(stored_delta_path(droot, chain[-1]))
        except DeltaError:  # not a compose id
            break
        if base is None or base in chain:
            break
        chain.append(base)
    return chain


# -- what the host has ------------------------------------------------------------------------
def _find_manifest(compose_id: str, dirs: t.Sequence[str]) -> str | None:
    hexd = compose_hex(compose_id)
    for directory in dirs:
        for candidate in (os.path.join(directory, hexd, 'manifest.json'), os.path.join(directory, hexd + '.json')):
            if os.path.isfile(candidate):
                return candidate
    return None


def _load_known(compose_id: str, dirs: t.Sequence[str], depth: int = 0) -> Manifest | None:
    path = _find_manifest(compose_id, dirs)
    if path is None:
        return _load_known_delta(compose_id, dirs, depth)
    # named by its digest: only the digest is checked (what the host holds only decides what is sent,
    # and the host checks every file it stages against the manifest it rebuilds)
    loaded = load_manifest_with_digest(path, compose_id)
    return loaded[0] if loaded is not None else None


def _load_known_delta(compose_id: str, dirs: t.Sequence[str], depth: int) -> Manifest | None:
    """A compose known as ``<dir>/<hex>.delta.json`` (fetched from a host that keeps it so), applied to its base found the same way."""
    if depth >= _MAX_READ_DEPTH:
        return None
    hexd = compose_hex(compose_id)
    for directory in dirs:
        path = os.path.join(directory, hexd + KEPT_DELTA_SUFFIX)
        if not os.path.isfile(path):
            continue
        try:
            delta = _read_kept_delta(path)
            if delta['digest'] != compose_id:
                continue
            base = _load_known(delta['base'], dirs, depth + 1)
            if base is None:
                continue
            data = _apply_manifest_delta(base, delta)[1]
            # it comes from a host: validated like any manifest read here
            return manifest_from_json(json.loads(data.decode('utf-8')), 'manifest of %s rebuilt from %s' % (compose_id, path))
        except (DeltaError, ManifestError, ValueError):
            continue
    return None


def held_content(manifest: Manifest, shared: t.Sequence[str]) -> set[str]:
    """The sha256 of the regular files a tree built from ``manifest`` with ``shared`` links holds."""
    tree = with_shared(manifest, shared, RELEASE_DEPTH) if shared else manifest
    return {e['sha256'] for e in tree if e['type'] == TYPE_FILE}


def _have_items(have: t.Iterable[t.Mapping[str, t.Any]]) -> list[tuple[str, list[str]]]:
    items: list[tuple[str, list[str]]] = []
    for item in have:
        if not isinstance(item, dict):
            raise DeltaError('have entries must be objects with manifest_digest (and status, shared); got %r' % (item,))
        if item.get('status', STATUS_COMPLETE) != STATUS_COMPLETE or not item.get('manifest_digest'):
            continue
        if item.get('exists') is False:
            continue
        compose_hex(item['manifest_digest'], 'have manifest_digest')
        items.append((item['manifest_digest'], sorted(item.get('shared') or [])))
    return items


# -- the delta archive -------------------------------------------------------------------------
def index_path(artifact: str) -> str:
    """Where the member index of ``artifact`` is kept: beside it, ``<artifact>.index.json``."""
    return artifact + INDEX_SUFFIX


def _artifact_key(artifact: str) -> list[int]:
    st = os.stat(artifact)
    return [st.st_size, st.st_mtime_ns]


def _read_index(artifact: str) -> dict[str, list[int]] | None:
    """``path -> [offset, size]`` of the regular files in the uncompressed tar stream, or None when unusable."""
    try:
        doc = json.loads(_read_bytes(index_path(artifact)).decode('utf-8'))
        key = _artifact_key(artifact)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get('format') != INDEX_FORMAT or doc.get('artifact') != key:
        return None
    members = doc.get('members')
    return members if isinstance(members, dict) else None


def _write_index(artifact: str, members: dict[str, list[int]]) -> None:
    """Keep the member index beside the artifact; best effort (a store that is read-only only costs speed)."""
    try:
        write_bytes_atomic(index_path(artifact), dump_json({'format': INDEX_FORMAT, 'artifact': _artifact_key(artifact),
                                                            'members': members}), 0o644)
    except OSError:
        pass


def _copy_checked(source: t.Iterable[bytes], out: str, entry: t.Mapping[str, t.Any], artifact: str, rel: str) -> None:
    h = hashlib.sha256()
    size = 0
    with open(out, 'wb') as f:
        for chunk in source:
            h.update(chunk)
            size += len(chunk)
            f.write(chunk)
    if (h.hexdigest(), size) != (entry['sha256'], entry['size']):
        raise DeltaError('the artifact %s does not match its manifest: %s has sha256 %s (%d bytes), the manifest says %s (%d bytes)'
                         % (artifact, rel, h.hexdigest(), size, entry['sha256'], entry['size']), offending_path=rel)


def _gzip_range(gz: gzip.GzipFile, position: int, offset: int, size: int) -> t.Iterator[bytes]:
    """The ``size`` bytes at ``offset`` of the uncompressed stream, read forward from ``position``."""
    skip = offset - position
    while skip > 0:
        got = gz.read(min(skip, CHUNK_SIZE))
        if not got:
            raise EOFError('unexpected end of data')
        skip -= len(got)
    remaining = size
    while remaining > 0:
        chunk = gz.read(min(remaining, CHUNK_SIZE))
        if not chunk:
            raise EOFError('unexpected end of data')
        remaining -= len(chunk)
        yield chunk


def _capture_indexed(artifact: str, index: dict[str, list[int]], picks: list[tuple[str, dict[str, t.Any]]],
                     work: str) -> dict[str, str] | None:
    """:func:`_capture` through the member index: no tar header parsed. None when the index does not serve."""
    located = []
    for rel, entry in picks:
        where = index.get(rel)
        if not isinstance(where, list) or len(where) != 2 or where[1] != entry['size']:
            return None
        located.append((where[0], rel, entry))
    located.sort(key=lambda item: item[0])
    captured: dict[str, str] = {}
    position = 0
    try:
        with gzip.open(artifact, 'rb') as gz:
            for offset, rel, entry in located:
                if offset < position:
                    return None
                out = os.path.join(work, entry['sha256'])
                _copy_checked(_gzip_range(gz, position, offset, entry['size']), out, entry, artifact, rel)
                position = offset + entry['size']
                captured[entry['sha256']] = out
    except (OSError, EOFError, zlib.error):
        return None
    except DeltaError:
        return None  # a stale index: the full scan decides
    return captured


def _capture(artifact: str, new: Manifest, wanted: set[str], work: str) -> dict[str, str]:
    """Copy the content of every sha256 in ``wanted`` out of the artifact into ``work``; ``sha -> file``.

    With the member index kept beside the artifact (``<artifact>.index.json``, written by the
    first full scan) only the bytes up to the last wanted member are decompressed and no tar
    header is parsed; every file is checked against the manifest either way.
    """
    by_path = _entry_map(new)
    picks: dict[str, tuple[str, dict[str, t.Any]]] = {}
    for rel in sorted(by_path):
        entry = by_path[rel]
        if entry['type'] == TYPE_FILE and entry['sha256'] in wanted and entry['sha256'] not in picks:
            picks[entry['sha256']] = (rel, entry)
    index = _read_index(artifact)
    if index is not None:
        fast = _capture_indexed(artifact, index, list(picks.values()), work)
        if fast is not None and set(fast) == set(wanted):
            return fast
    captured: dict[str, str] = {}
    members: dict[str, list[int]] = {}
    pending = set(wanted)
    reader = _TarReader(artifact)
    complete = False
    try:
        while True:
            member = reader.next()
            if member is None:
                complete = True
                break
            if not member.isreg():
                continue
            rel = normalize_member_name(member.name)
            members[rel] = [member.offset_data, member.size]
            entry = by_path.get(rel)
            if entry is None or entry['type'] != TYPE_FILE or entry['sha256'] not in pending:
                continue
            out = os.path.join(work, entry['sha256'])
            _copy_checked(reader.chunks(member), out, entry, artifact, rel)
            captured[entry['sha256']] = out
            pending.discard(entry['sha256'])
    finally:
        reader.close()
    if complete:
        _write_index(artifact, members)
    if pending:
        paths = sorted(p for p, e in by_path.items() if e['type'] == TYPE_FILE and e['sha256'] in pending)
        raise DeltaError('the artifact %s lacks the content of %d file(s) of its manifest: %s'
                         % (artifact, len(paths), ', '.join(paths[:10]) + (' ...' if len(paths) > 10 else '')), missing=paths[:100])
    return captured


def write_delta_archive(dest: str, members: t.Sequence[tuple[str, str, str]]) -> None:
    """Write a deterministic ``.tar.gz`` of ``(path, mode, content file)`` in the given order (regular files only)."""
    with open(dest, 'wb') as raw:
        with gzip.GzipFile(filename='', mode='wb', fileobj=raw, mtime=0, compresslevel=6) as gz:
            with tarfile.open(fileobj=gz, mode='w', format=tarfile.PAX_FORMAT) as tar:
                for path, mode, content in members:
                    info = tarfile.TarInfo(path)
                    info.type = tarfile.REGTYPE
                    info.mode = int(mode, 8)
                    info.size = os.path.getsize(content)
                    info.mtime = 0
                    info.uid = info.gid = 0
                    info.uname = info.gname = ''
                    with open(content, 'rb') as f:
                        tar.addfile(info, f)
        raw.flush()
        os.fsync(raw.fileno())


def _replace_if_different(src: str, dest: str) -> bool:
    """Move ``src`` over ``dest`` unless both have the same bytes (then ``src`` is removed); True when replaced."""
    if os.path.isfile(dest) and _same_file_content(src, dest):
        os.unlink(src)
        return False
    os.replace(src, dest)
    return True


def _same_file_content(a: str, b: str) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        while True:
            ca, cb = fa.read(CHUNK_SIZE), fb.read(CHUNK_SIZE)
            if ca != cb:
                return False
            if not ca:
                return True


def _manifest_of_artifact(artifact: str, dest: str, check_mode: bool) -> str:
    """Write the manifest of an artifact that came without one into ``dest``; return its path."""
    path = os.path.join(dest, MANIFEST_FILE)
    try:
        data = dump_json(manifest_from_tar(artifact).to_json())
    except ManifestError as exc:
        raise DeltaError('the artifact %s cannot be shipped: %s' % (artifact, exc.msg), offending_path=exc.path) from None
    if not check_mode and _read_if_exists(path) != data:
        write_bytes_atomic(path, data, 0o644)
    return path


def create(
    manifest_path: str | None,
    artifact: str,
    dest: str,
    have: t.Sequence[t.Mapping[str, t.Any]] = (),
    manifests: t.Sequence[str] = (),
    host_composes: t.Sequence[str] | None = None,
    shared: t.Sequence[str] = (),
    check_mode: bool = False,
    compose_id: str | None = None,
) -> dict[str, t.Any]:
    """Write the delta archive and the manifest delta for a host into ``dest`` (see the module docstring).

    Without ``manifest_path`` the manifest is computed from the artifact and written to ``dest/manifest.json``.
    With ``compose_id`` (the digest the manifest must have: an artifact store names composes by it) the
    manifest's entries are only checked against that digest, not validated one by one; the host
    validates the manifest it rebuilds in any case.
    """
    if not os.path.isfile(artifact):
        raise DeltaError('the artifact %s is not a file on the controller' % artifact)
    if not os.path.isdir(dest):
        raise DeltaError('dest %s is not a directory on the controller' % dest)
    written_manifest = None
    if manifest_path is None:
        manifest_path = written_manifest = _manifest_of_artifact(artifact, dest, check_mode)
        if check_mode and not os.path.exists(manifest_path):
            new_probe = manifest_from_tar(artifact)
            return {'changed': True, 'compose_id': new_probe.digest, 'manifest': None, 'archive': None, 'archive_bytes': 0,
                    'empty': False, 'files': new_probe.files, 'bytes': new_probe.bytes, 'paths': [], 'manifest_delta': None,
                    'base': None, 'manifest_entries': len(new_probe), 'total_files': new_probe.files, 'manifest_delta_entries': None,
                    'manifest_bytes': 0,
                    'sent_bytes': 0, 'known': [], 'unknown': [], 'held': 0}
    try:
        loaded = load_manifest_with_digest(manifest_path, compose_id) if compose_id is not None else load_manifest_document(manifest_path)
        if loaded is None:
            raise DeltaError('the manifest %s is not a manifest with the digest %s of its compose' % (manifest_path, compose_id))
        new, new_doc = loaded
        new_bytes = _read_bytes(manifest_path)
        tree = with_shared(new, shared, RELEASE_DEPTH) if shared else new
    except ManifestError as exc:
        raise DeltaError(exc.msg, offending_path=exc.path) from None
    except OSError as exc:
        raise DeltaError('cannot read the manifest %s: %s' % (manifest_path, exc.strerror or exc)) from None

    held: set[str] = set()
    known: dict[str, Manifest] = {}
    unknown: list[str] = []
    for compose_id, rel_shared in _have_items(have):
        manifest = known.get(compose_id) or _load_known(compose_id, manifests)
        if manifest is None:
            if compose_id not in unknown:
                unknown.append(compose_id)
            continue
        known[compose_id] = manifest
        try:
            held |= held_content(manifest, rel_shared)
        except ManifestError:
            continue

    # the content to send: one file per sha256 the host lacks, the first path in sort order
    first_path: dict[str, dict[str, t.Any]] = {}
    for entry in tree:
        if entry['type'] == TYPE_FILE and entry['sha256'] not in held and entry['sha256'] not in first_path:
            first_path[entry['sha256']] = entry
    send = sorted(first_path.values(), key=lambda e: e['path'])
    content_bytes = sum(e['size'] for e in send)

    # the manifest: a delta against the closest manifest the host keeps, when it rebuilds byte-exactly
    base_id = None
    manifest_delta = None
    stored = set(host_composes) if host_composes is not None else set(known)
    best = None
    for compose_id in sorted(stored & set(known)):
        candidate = make_manifest_delta(known[compose_id], new_doc, new_bytes, new)
        weight = len(candidate['set']) + len(candidate['remove'])
        if best is None or weight < best[0]:
            best = (weight, compose_id, candidate)
    if best is not None:
        try:
            if apply_manifest_delta(known[best[1]], best[2]) == new_bytes:
                base_id, manifest_delta = best[1], best[2]
        except DeltaError:
            pass
    delta_bytes = dump_json(manifest_delta) if manifest_delta is not None else None

    archive_path = os.path.join(dest, DELTA_ARCHIVE) if send else None
    delta_path = os.path.join(dest, MANIFEST_DELTA) if delta_bytes is not None else None
    changed = False
    archive_size = 0
    if not check_mode:
        if archive_path is not None:
            work = tempfile.mkdtemp(prefix='.delta-', dir=dest)
            try:
                captured = _capture(artifact, new, set(first_path), work)
                tmp = os.path.join(work, 'archive.tar.gz')
                write_delta_archive(tmp, [(e['path'], e['mode'], captured[e['sha256']]) for e in send])
                changed |= _replace_if_different(tmp, archive_path)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            archive_size = os.path.getsize(archive_path)
        else:
            changed |= _remove_quietly(os.path.join(dest, DELTA_ARCHIVE))
        if delta_path is not None and delta_bytes is not None:
            if _read_if_exists(delta_path) != delta_bytes:
                write_bytes_atomic(delta_path, delta_bytes, 0o644)
                changed = True
        else:
            changed |= _remove_quietly(os.path.join(dest, MANIFEST_DELTA))
    else:
        changed = True

    manifest_size = len(delta_bytes) if delta_bytes is not None else len(new_bytes)
    return {
        'changed': changed,
        'compose_id': new.digest,
        'manifest': written_manifest or manifest_path,
        'archive': archive_path,
        'archive_bytes': archive_size,
        'empty': not send,
        'files': len(send),
        'bytes': content_bytes,
        'paths': [e['path'] for e in send][:100],
        'manifest_delta': delta_path,
        'base': base_id,
        'manifest_entries': len(new),
        'total_files': new.files,
        'manifest_delta_entries': (len(manifest_delta['set']) + len(manifest_delta['remove'])) if manifest_delta else None,
        'manifest_bytes': manifest_size,
        'sent_bytes': archive_size + manifest_size,
        'known': sorted(known),
        'unknown': unknown,
        'held': len(held),
    }


def _remove_quietly(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


# -- host side: rebuild manifest.json ---------------------------------------------------------
def rebuild(root: str, compose_id: str, dest: str, delta_path: str | None = None, check_mode: bool = False) -> dict[str, t.Any]:
    """Make ``dest`` the ``manifest.json`` of ``compose_id`` and keep the compose (and its signature) on the host.

    The compose is kept as the manifest delta it was rebuilt from (``<hex>.delta.json``) when there
    was one and the chain of its base is shorter than :data:`MAX_CHAIN_DEPTH`, else in full
    (``<hex>.json``); a compose the host already keeps with the same bytes stays as it is.
    """
    compose_hex(compose_id)
    droot = DeployRoot(root)
    directory = composes_dir(droot)
    full_path, kept_delta_path = stored_manifest_path(droot, compose_id), stored_delta_path(droot, compose_id)
    kept: _Kept | None = None
    kept_data: bytes | None = None
    try:
        kept = _resolve_kept(directory, compose_id)
        kept_data = kept.data()
    except DeltaError:
        kept = None
    delta: dict[str, t.Any] | None = None
    base: _Kept | None = None
    if delta_path is not None:
        try:
            delta = json.loads(_read_bytes(delta_path).decode('utf-8'))
        except (OSError, ValueError) as exc:
            raise DeltaError('cannot read the manifest delta %s: %s' % (delta_path, exc)) from None
        delta = check_manifest_delta(delta, 'manifest delta %s' % delta_path)
        if delta['digest'] != compose_id:
            raise DeltaError('the manifest delta %s describes %s, not the compose %s' % (delta_path, delta['digest'], compose_id))
        try:
            base = _resolve_kept(directory, delta['base'])
        except DeltaError as exc:
            raise DeltaError('the base manifest of the delta %s (%s) is not usable on this host: %s. Ship the full manifest of %s instead'
                             % (delta_path, delta['base'], exc.msg, compose_id), base=delta['base']) from None
        data = _apply_manifest_delta(base.manifest, delta)[1]
        source = 'delta'
    else:
        data_or_none = _read_if_exists(dest)
        source = 'upload'
        if kept_data is not None and (data_or_none is None or _digest_of(data_or_none) != compose_id):
            data_or_none, source = kept_data, 'host'  # nothing uploaded (or a stale upload): the host's own copy
        if data_or_none is None:
            raise DeltaError('neither %s nor a kept copy of %s (in %s) exists: ship the manifest of %s' % (dest, compose_id, directory, compose_id))
        data = data_or_none
    try:
        doc = json.loads(data.decode('utf-8'))
        manifest = manifest_from_json(doc, 'manifest of %s' % compose_id)
    except (ValueError, ManifestError) as exc:
        raise DeltaError('the manifest of %s is invalid: %s' % (compose_id, getattr(exc, 'msg', exc))) from None
    if manifest.digest != compose_id:
        raise DeltaError('the manifest %s has digest %s, not the compose id %s' % (dest, manifest.digest, compose_id))

    # how the host keeps it: as it is already; else as the delta (chains stay short); else in full
    keep_bytes: bytes | None
    if kept is not None and kept_data == data:
        keep_path, keep_bytes = kept.chain[0][0], None
    elif delta is not None and base is not None and kept is None and base.depth < MAX_CHAIN_DEPTH and compose_id not in base.ids:
        keep_path, keep_bytes = kept_delta_path, dump_json(delta)
    else:
        keep_path, keep_bytes = full_path, data
    other = full_path if keep_path == kept_delta_path else kept_delta_path

    changed = False
    dest_sig, stored_sig = dest + SIG_SUFFIX, full_path + SIG_SUFFIX
    pruned: list[str] = []
    if not check_mode:
        if _read_if_exists(dest) != data:
            write_bytes_atomic(dest, data, 0o600)
            changed = True
        os.makedirs(directory, 0o755, exist_ok=True)
        if keep_bytes is not None and _read_if_exists(keep_path) != keep_bytes:
            write_bytes_atomic(keep_path, keep_bytes, 0o644)
            changed = True
        if _remove_quietly(other):  # one form per compose, removed once the other is written
            fsync_dir(directory)
            changed = True
        sig = _read_if_exists(dest_sig)
        if sig is not None and _read_if_exists(stored_sig) != sig:
            write_bytes_atomic(stored_sig, sig, 0o644)
            changed = True
        elif sig is None and os.path.isfile(stored_sig):
            write_bytes_atomic(dest_sig, _read_bytes(stored_sig), 0o600)
            changed = True
        pruned = prune(droot, keep={compose_id})
        changed |= bool(pruned)
        # the release module reads them next, in the same run
        remember_loaded(dest, manifest, doc)
        key = _file_key(keep_path)
        if keep_bytes is not None and key is not None:
            if keep_path == full_path:
                remember_loaded(full_path, manifest, doc)
                _remember_kept(_Kept(manifest, 0, (key,), (compose_id,), data=data))
            elif base is not None and delta is not None:
                _remember_kept(_Kept(manifest, base.depth + 1, (key,) + base.chain, (compose_id,) + base.ids, delta=delta, data=data))
    else:
        changed = (_read_if_exists(dest) != data or os.path.isfile(other)
                   or (keep_bytes is not None and _read_if_exists(keep_path) != keep_bytes))
    signature = dest_sig if os.path.isfile(dest_sig) or (check_mode and os.path.isfile(stored_sig)) else None
    return {'changed': changed, 'compose_id': compose_id, 'path': dest, 'signature': signature, 'source': source,
            'stored': keep_path, 'files': manifest.files, 'bytes': manifest.bytes,
            'entries': len(manifest), 'pruned': pruned}


def _digest_of(data: bytes) -> str | None:
    """The digest of a manifest document given as bytes, None when it is not one."""
    try:
        return manifest_from_json(json.loads(data.decode('utf-8'))).digest
    except (ValueError, ManifestError):
        return None


def prune(droot: DeployRoot, keep: t.Iterable[str] = ()) -> list[str]:
    """Remove the kept composes no release or slot metadata refers to (except ``keep``); return their ids.

    The bases the kept manifest deltas of those composes need (transitively) stay.
    """
    needed: set[str] = set()
    for compose_id in referenced_composes(droot) | set(keep):
        if compose_id not in needed:
            needed.update(kept_chain(droot, compose_id))
    removed: list[str] = []
    for compose_id in _stored_ids(droot):
        if compose_id in needed:
            continue
        path = stored_manifest_path(droot, compose_id)
        for victim in (path + SIG_SUFFIX, stored_delta_path(droot, compose_id), path):
            _remove_quietly(victim)
        removed.append(compose_id)
    if removed:
        fsync_dir(composes_dir(droot))
    return removed
