# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One factory for the release directories and metadata the unit tests start from.

Import it as ``from ansible_collections.stagehand.deploy.tests.unit.releases import write_release``.
"""

from __future__ import annotations

import io
import os
import tarfile
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot


def write_release(
    root: object,
    name: str,
    files: t.Mapping[str, str | bytes] | None = None,
    status: str = 'complete',
    meta: bool = True,
    directory: bool = True,
    **fields: t.Any,
) -> str:
    """Make ``<root>/releases/<name>`` holding ``files`` (path -> content; default ``index.php`` naming
    the release) and, unless ``meta`` is false, its metadata; ``fields`` override metadata values.

    The metadata has every key the release module writes, with test values: status ``status``,
    no digest, created 2026-01-01, the number and total size of ``files``, no chain, and a
    ``failed_reason`` when the status is ``failed``. Returns the release path.
    """
    path = os.path.join(str(root), 'releases', name)
    contents = {'index.php': name} if files is None else dict(files)
    if directory:
        os.makedirs(path)
        for rel, content in contents.items():
            target = os.path.join(path, *rel.split('/'))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, 'wb') as f:
                f.write(content.encode() if isinstance(content, str) else content)
    if meta:
        data: dict[str, t.Any] = {
            'name': name, 'status': status, 'manifest_digest': None, 'created': '2026-01-01T00:00:00Z',
            'source': 'test', 'files': len(contents),
            'bytes': sum(len(c.encode() if isinstance(c, str) else c) for c in contents.values()),
            'previous': None, 'next': None, 'activated': None,
            'failed_reason': 'health check failed' if status == 'failed' else None,
        }
        data.update(fields)
        DeployRoot(str(root)).write_meta(name, data)
    return path


def write_tree(top: object, files: t.Mapping[str, t.Any], links: t.Mapping[str, str] | None = None,
               dirs: t.Iterable[str] = ()) -> str:
    """Make a source tree at ``top``: ``files`` maps a path to bytes or ``(bytes, mode)`` (default mode 0644),
    ``links`` a path to a symlink target, ``dirs`` names extra (empty) directories. Returns the path."""
    os.makedirs(str(top), exist_ok=True)
    for rel in dirs:
        os.makedirs(os.path.join(str(top), rel), exist_ok=True)
    for rel, content in files.items():
        mode = 0o644
        if isinstance(content, tuple):
            content, mode = content
        full = os.path.join(str(top), rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, 'wb') as f:
            f.write(content)
        os.chmod(full, mode)
    for rel, target in (links or {}).items():
        os.symlink(target, os.path.join(str(top), rel))
    return str(top)


def tar_of(path: object, top: object) -> str:
    """A ``.tar.gz`` at ``path`` of the tree ``top`` (members relative to it, as ``./...``). Returns the path."""
    with tarfile.open(str(path), 'w:gz') as tar:
        tar.add(str(top), arcname='.')
    return str(path)


def raw_tar(path: object, members: t.Iterable[tuple[str, bytes, bytes, int, str]], truncate: int | None = None) -> str:
    """A ``.tar.gz`` at ``path`` with exactly ``members``, ``(name, type, data, mode, linkname)`` each, written by
    hand so that unsafe archives can be made; ``truncate`` cuts the file to that many bytes. Returns the path."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as tar:
        for name, kind, data, mode, linkname in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = mode
            info.linkname = linkname
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    data = buf.getvalue()
    if truncate is not None:
        data = data[:truncate]
    with open(str(path), 'wb') as f:
        f.write(data)
    return str(path)
