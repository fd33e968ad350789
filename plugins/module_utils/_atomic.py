# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Crash-safe filesystem primitives.

Every change that users rely on is built aside under a unique temporary name
in the same directory, made durable with fsync, then put in place with
rename(2), and the directory is fsynced so the rename itself survives a crash.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import secrets
import typing as t

RENAME_EXCHANGE = 2  # from <linux/fs.h>
AT_FDCWD = -100

_libc: t.Any = None


def temp_name(directory: str, prefix: str) -> str:
    """Return an unused, unique path in ``directory`` (nothing is created)."""
    return os.path.join(directory, '.%s.%s.tmp' % (prefix, secrets.token_hex(8)))


def fsync_dir(path: str) -> None:
    """fsync a directory so that renames and unlinks inside it are durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str) -> None:
    """fsync the contents of an existing regular file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` by a file holding ``data``: write aside, fsync, rename, fsync the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = temp_name(directory, os.path.basename(path))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(directory)


def dump_json(data: t.Any) -> bytes:
    """Serialize ``data`` the way every state file of the collection is written."""
    return (json.dumps(data, indent=2, sort_keys=True) + '\n').encode('utf-8')


def write_json_atomic(path: str, data: t.Any, mode: int = 0o644) -> None:
    """Atomically replace ``path`` with ``data`` as JSON."""
    write_bytes_atomic(path, dump_json(data), mode)


def read_json(path: str, default: t.Any = None) -> t.Any:
    """Read a JSON file; return ``default`` when it does not exist."""
    try:
        with open(path, 'rb') as f:
            return json.loads(f.read().decode('utf-8'))
    except FileNotFoundError:
        return default


def replace_symlink(link: str, target: str) -> None:
    """Point ``link`` at ``target`` atomically: a new symlink beside it, rename(2), fsync of the directory.

    There is no moment at which ``link`` is missing. ``link`` must not be a
    directory (see :func:`exchange` for that case).
    """
    directory = os.path.dirname(os.path.abspath(link))
    tmp = temp_name(directory, os.path.basename(link))
    os.symlink(target, tmp)
    try:
        os.rename(tmp, link)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(directory)


def _renameat2() -> t.Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
    func = getattr(_libc, 'renameat2', None)
    if func is None:
        raise OSError(errno.ENOSYS, 'renameat2 is not available in this C library')
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


def exchange(path_a: str, path_b: str) -> None:
    """Atomically swap two existing directory entries (renameat2 with RENAME_EXCHANGE).

    Raises OSError (EINVAL, ENOSYS, ...) when the kernel, C library or
    filesystem does not support it; callers decide on a fallback.
    """
    func = _renameat2()
    res = func(AT_FDCWD, os.fsencode(path_a), AT_FDCWD, os.fsencode(path_b), RENAME_EXCHANGE)
    if res != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path_a, None, path_b)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
