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

RENAME_NOREPLACE = 1  # from <linux/fs.h>
RENAME_EXCHANGE = 2
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


_FLAT_ENCODERS: dict[int, json.JSONEncoder] = {}


def _flat_encoder(level: int) -> json.JSONEncoder:
    """The C encoder writing a container of scalars ``level`` deep as ``indent=2`` does, but for its brackets."""
    encoder = _FLAT_ENCODERS.get(level)
    if encoder is None:
        encoder = _FLAT_ENCODERS[level] = json.JSONEncoder(sort_keys=True, separators=(',\n' + '  ' * (level + 1), ': '))
    return encoder


def _is_flat(values: t.Iterable[t.Any]) -> bool:
    """Whether no value is a container."""
    return not any(isinstance(value, (dict, list, tuple)) for value in values)


def _dump_indented(data: t.Any, level: int, out: list[str]) -> None:
    """Append the ``json.dumps(data, indent=2, sort_keys=True)`` text of ``data``, ``level`` deep, to ``out``."""
    if isinstance(data, dict):
        items: t.Iterable[t.Any] = sorted(data.items())
        values: t.Iterable[t.Any] = data.values()
    elif isinstance(data, (list, tuple)):
        items = values = data
    else:
        out.append(json.dumps(data))
        return
    if not data:
        out.append('{}' if isinstance(data, dict) else '[]')
        return
    if _is_flat(values):
        # a flat container (a manifest entry, say): one call of the C encoder, whose item separator
        # carries the line break and the indentation; only the brackets are set apart here
        text = _flat_encoder(level).encode(data)
        out.extend((text[0], '\n', '  ' * (level + 1), text[1:-1], '\n', '  ' * level, text[-1]))
        return
    inner = '  ' * (level + 1)
    if isinstance(data, (list, tuple)) and all(isinstance(item, dict) and item and _is_flat(item.values()) for item in data):
        # a list of flat, non-empty objects (the entries of a manifest): one call of the C encoder for all of
        # them. Its only line breaks are the separators (a string never holds a raw one), so "},<break>{"
        # occurs exactly between two objects, where the indentation of the objects' own brackets goes.
        deeper = '  ' * (level + 2)
        text = _flat_encoder(level + 1).encode(data)
        text = text[2:-2].replace('},\n' + deeper + '{', '\n' + inner + '},\n' + inner + '{\n' + deeper)
        out.extend(('[\n', inner, '{\n', deeper, text, '\n', inner, '}\n', '  ' * level, ']'))
        return
    out.append('{\n' if isinstance(data, dict) else '[\n')
    for number, item in enumerate(items):
        out.append(',\n' + inner if number else inner)
        if isinstance(data, dict):
            key, item = item
            out.append(json.dumps(key) + ': ')
        _dump_indented(item, level + 1, out)
    out.append('\n' + '  ' * level + ('}' if isinstance(data, dict) else ']'))


def dump_json(data: t.Any) -> bytes:
    """Serialize ``data`` the way every state file of the collection is written.

    The bytes are exactly those of ``json.dumps(data, indent=2, sort_keys=True)`` plus a line break
    (a compose's ``manifest.json`` is rebuilt on the host byte for byte, and signed as such), written
    in a quarter of the time for a 10,000-entry manifest: ``indent`` makes :mod:`json` fall back to
    its pure-Python encoder, while each flat entry here goes through the C encoder.
    """
    out: list[str] = []
    _dump_indented(data, 0, out)
    out.append('\n')
    return ''.join(out).encode('utf-8')


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


# renameat2(2) by system call number, for a C library without the wrapper (glibc < 2.28, some musl)
_RENAMEAT2_SYSCALLS = {'x86_64': 316, 'amd64': 316, 'aarch64': 276, 'arm64': 276}


def _renameat2() -> t.Callable[[int, bytes, int, bytes, int], int]:
    """renameat2(2) of the C library, or by its system call number; OSError(ENOSYS) when neither is known."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
    func = getattr(_libc, 'renameat2', None)
    if func is not None:
        func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        func.restype = ctypes.c_int
        return t.cast(t.Callable[[int, bytes, int, bytes, int], int], func)
    number = _RENAMEAT2_SYSCALLS.get(os.uname().machine)
    syscall = getattr(_libc, 'syscall', None)
    if number is None or syscall is None:
        raise OSError(errno.ENOSYS, 'renameat2 is not available in this C library')
    syscall.restype = ctypes.c_long

    def by_number(olddirfd: int, old: bytes, newdirfd: int, new: bytes, flags: int) -> int:
        # variadic: every argument is passed as a long, the kernel takes the low 32 bits of the ints
        return int(syscall(ctypes.c_long(number), ctypes.c_long(olddirfd), ctypes.c_char_p(old),
                           ctypes.c_long(newdirfd), ctypes.c_char_p(new), ctypes.c_long(flags)))
    return by_number


def _rename2(path_a: str, path_b: str, flags: int) -> None:
    func = _renameat2()
    res = func(AT_FDCWD, os.fsencode(path_a), AT_FDCWD, os.fsencode(path_b), flags)
    if res != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path_a, None, path_b)


def exchange(path_a: str, path_b: str) -> None:
    """Atomically swap two existing directory entries (renameat2 with RENAME_EXCHANGE).

    Nothing is allocated: both entries exist before and after, only the inodes
    they name are swapped, so this works on a full filesystem too. Raises
    OSError (EINVAL, ENOSYS, EXDEV, ...) when the kernel, C library or
    filesystem does not support it; callers decide on a fallback.
    """
    _rename2(path_a, path_b, RENAME_EXCHANGE)


def rename_noreplace(src: str, dst: str) -> None:
    """rename(2) ``src`` to ``dst`` only if ``dst`` does not exist (renameat2 with RENAME_NOREPLACE).

    Raises FileExistsError when ``dst`` exists, and OSError (EINVAL, ENOSYS, ...)
    when the kernel, C library or filesystem does not support it.
    """
    _rename2(src, dst, RENAME_NOREPLACE)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is the filesystem (or the user's quota) running out of blocks or inodes."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full_hint(path: str) -> str:
    """What to say when a write under ``path`` failed because its filesystem is full."""
    return ('the filesystem holding %s is full (no free block or inode): free space on it, for instance with '
            'the cleanup entry point, which works on a full disk' % path)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
