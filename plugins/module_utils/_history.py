# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The deploy history: ``<root>/.stagehand/history.jsonl``, one JSON object per line.

A record::

    {"action": "deploy"|"rollback"|"cleanup", "release": str|null, "previous": str|null,
     "user": str, "controller": str, "start": ISO-UTC, "end": ISO-UTC,
     "outcome": "success"|"failed"|"refused"|"rolled_back"|"interrupted",
     "phases": {"lock": 0.12, ...}, "error": str|null}

A record with outcome ``interrupted`` completes a run that died holding the deploy lock; the
run that took the lock over appends it, with ``previous`` what was live when the interrupted
run started and the extra key ``live``: what is live now.

Appending is one ``write(2)`` on a descriptor opened with ``O_APPEND`` (under
``flock``), then ``fsync``: concurrent writers never interleave inside a line, and a line is
either entirely in the file or not at all, except after a crash in the middle
of that write. Such a torn last line is skipped by :func:`read_history`, and
the next append starts on a new line.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import typing as t

from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import fsync_dir
from ansible_collections.stagehand.deploy.plugins.module_utils._flock import FlockTimeout, flock_within
from ansible_collections.stagehand.deploy.plugins.module_utils._names import InvalidName, check_release_name
from ansible_collections.stagehand.deploy.plugins.module_utils._root import InvalidRoot, claim_decision
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot, format_utc_ms

ACTIONS = ('deploy', 'rollback', 'cleanup')
OUTCOMES = ('success', 'failed', 'refused', 'rolled_back', 'interrupted')
RECORD_KEYS = ('action', 'release', 'previous', 'user', 'controller', 'start', 'end', 'outcome', 'phases', 'error')
# written only when set: what is live now, on the line completing an interrupted run; the moment the
# switch renamed the live link (milliseconds), on the line of a run that switched
OPTIONAL_KEYS = ('live', 'switched')
REQUIRED_KEYS = ('action', 'user', 'controller', 'start', 'outcome')
MAX_ERROR_CHARS = 4096
MAX_TEXT_CHARS = 256
TRUNCATED = ' ... (truncated)'
DEFAULT_HISTORY = 10
READ_CHUNK = 65536
FLOCK_WAIT = 30.0


class HistoryError(Exception):
    """A record or argument that is refused; the message names the value and what is allowed."""


def parse_utc(value: object, what: str) -> datetime.datetime:
    """Parse an ISO 8601 time (``Z``, an offset, or none meaning UTC); raise :class:`HistoryError` otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise HistoryError('%s %r is invalid: use an ISO 8601 UTC time such as 2026-11-22T10:00:00Z' % (what, value))
    text = value.strip()
    if text.endswith(('Z', 'z')):
        text = text[:-1] + '+00:00'
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None and ' ' not in text and '.' in text:
        # Python < 3.11 only parses 3 or 6 fractional digits: drop the fraction.
        head, _dot, rest = text.partition('.')
        digits = len(rest) - len(rest.lstrip('0123456789'))
        try:
            moment = datetime.datetime.fromisoformat(head + rest[digits:])
        except ValueError:
            moment = None
    if moment is None:
        raise HistoryError('%s %r is invalid: use an ISO 8601 UTC time such as 2026-11-22T10:00:00Z' % (what, value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def _text(record: t.Mapping[str, t.Any], key: str, required: bool, limit: int = MAX_TEXT_CHARS) -> str | None:
    value = record.get(key)
    if value == '' and not required:
        value = None  # what a template gives for "nothing"
    if value is None:
        if required:
            raise HistoryError('record.%s is missing: it is required (a non-empty string)' % key)
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise HistoryError('record.%s %r is invalid: use a non-empty string' % (key, value))
    if len(value) > limit:
        value = value[:limit - len(TRUNCATED)] + TRUNCATED
    return value


def _choice(record: t.Mapping[str, t.Any], key: str, choices: tuple[str, ...]) -> str:
    value = record.get(key)
    if value not in choices:
        raise HistoryError('record.%s %r is invalid: use one of %s' % (key, value, ', '.join(choices)))
    return t.cast(str, value)


def _name(record: t.Mapping[str, t.Any], key: str) -> str | None:
    value = record.get(key)
    if value is None or value == '':
        return None
    try:
        return check_release_name(value, 'record.%s' % key)
    except InvalidName as exc:
        raise HistoryError('%s (or null)' % exc) from None


def _phases(value: object) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HistoryError('record.phases %r is invalid: use a mapping of phase name to seconds, e.g. {"lock": 0.12}' % (value,))
    phases: dict[str, float] = {}
    for key, seconds in value.items():
        if not isinstance(key, str) or not key:
            raise HistoryError('record.phases has the key %r: phase names must be non-empty strings' % (key,))
        number: float | None = None
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
            number = float(seconds)
        elif isinstance(seconds, str):
            try:
                number = float(seconds)
            except ValueError:
                number = None
        if number is None or not math.isfinite(number) or number < 0:
            raise HistoryError('record.phases.%s %r is invalid: use a number of seconds >= 0' % (key, seconds))
        phases[key] = round(number, 3)
    return phases


def validate_record(record: object, now: datetime.datetime | None = None) -> dict[str, t.Any]:
    """Return the record as it is written (times normalised to UTC, ``end`` defaulting to now); raise :class:`HistoryError`."""
    if not isinstance(record, dict):
        raise HistoryError('record %r is invalid: use a mapping with the keys %s' % (record, ', '.join(RECORD_KEYS)))
    unknown = sorted(str(key) for key in record if key not in RECORD_KEYS + OPTIONAL_KEYS)
    if unknown:
        raise HistoryError('record has unknown keys %s: use only %s' % (', '.join(unknown), ', '.join(RECORD_KEYS + OPTIONAL_KEYS)))
    start = parse_utc(record.get('start'), 'record.start')
    if record.get('end') is None:
        end = (now or datetime.datetime.now(datetime.timezone.utc))
    else:
        end = parse_utc(record.get('end'), 'record.end')
    entry = {
        'action': _choice(record, 'action', ACTIONS),
        'release': _name(record, 'release'),
        'previous': _name(record, 'previous'),
        'user': _text(record, 'user', True),
        'controller': _text(record, 'controller', True),
        'start': format_utc_ms(start),
        'end': format_utc_ms(end),
        'outcome': _choice(record, 'outcome', OUTCOMES),
        'phases': _phases(record.get('phases')),
        'error': _text(record, 'error', False, MAX_ERROR_CHARS),
    }
    live = _name(record, 'live')
    if live is not None:  # only the line of an interrupted run says what is live now
        entry['live'] = live
    if record.get('switched') is not None:
        entry['switched'] = format_utc_ms(parse_utc(record['switched'], 'record.switched'))
    return entry


def record_line(record: dict[str, t.Any]) -> bytes:
    """The line written for a validated record (ASCII JSON, sorted keys, one ``\\n``)."""
    return (json.dumps(record, sort_keys=True, ensure_ascii=True) + '\n').encode('ascii')


def _check_root(droot: DeployRoot) -> None:
    if not os.path.isdir(droot.root):
        raise HistoryError('root %s does not exist or is not a directory: give the deploy root' % droot.root)
    try:
        # never a history in a directory that may not be a deploy root (the shared/ or a release of one, /etc)
        claim_decision(droot.root)
    except InvalidRoot as exc:
        raise HistoryError('nothing was recorded: %s' % exc) from None
    if os.path.lexists(droot.state_dir) and not os.path.isdir(droot.state_dir):
        raise HistoryError('%s exists but is not a directory' % droot.state_dir)
    if os.path.lexists(droot.history_path) and not os.path.isfile(droot.history_path):
        raise HistoryError('%s exists but is not a regular file' % droot.history_path)


def append_line(path: str, line: bytes) -> None:
    """Append ``line`` to ``path`` with write(2) on an O_APPEND descriptor, then fsync.

    A write that fails part way (a full filesystem) is undone: the file is truncated back to
    its size before, so no torn line is left behind, and the OSError (ENOSPC) is raised.

    If the file does not end with a newline (a torn write after a crash), the
    line is preceded by one, in the same write. Appenders hold ``flock`` on the
    file for that check and the write, so a write in progress is never taken
    for a torn one. A newly created file is made durable by an fsync of its
    directory.
    """
    created = not os.path.exists(path)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, 'O_CLOEXEC', 0), 0o600)
    try:
        try:
            flock_within(fd, path, FLOCK_WAIT)
        except FlockTimeout as exc:
            raise HistoryError(exc.msg) from None
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b'\n':
            line = b'\n' + line
        try:
            view = memoryview(line)
            while view:  # a short write is followed by another, which says why it stopped (ENOSPC, say)
                view = view[os.write(fd, view):]
        except OSError:
            try:
                os.ftruncate(fd, size)  # no torn line left behind
            except OSError:
                pass
            raise
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(os.path.dirname(path))


def append_record(root: str, record: object, check_mode: bool = False,
                  now: datetime.datetime | None = None) -> dict[str, t.Any]:
    """Validate ``record`` and append it to the history of ``root`` (not in check mode); return the module result."""
    droot = DeployRoot(root)
    entry = validate_record(record, now)
    _check_root(droot)
    line = record_line(entry)
    if not check_mode:
        try:
            os.mkdir(droot.state_dir, 0o711)
        except FileExistsError:
            pass
        append_line(droot.history_path, line)
    return {
        'changed': True,
        'path': droot.history_path,
        'record': entry,
        'diff': {
            'before': '',
            'after': line.decode('ascii'),
            'before_header': droot.history_path,
            'after_header': '%s (appended line)' % droot.history_path,
        },
    }


def _reverse_lines(path: str) -> t.Iterator[bytes]:
    """The non-blank lines of ``path`` from the last to the first, read backwards in chunks."""
    with open(path, 'rb') as f:
        f.seek(0, os.SEEK_END)
        pos = f.tell()
        rest = b''
        while pos > 0:
            step = min(READ_CHUNK, pos)
            pos -= step
            f.seek(pos)
            parts = (f.read(step) + rest).split(b'\n')
            rest = parts[0]  # may continue in the previous chunk
            for line in reversed(parts[1:]):
                if line.strip():
                    yield line
        if rest.strip():
            yield rest


def read_history(root: str, count: int = DEFAULT_HISTORY) -> list[dict[str, t.Any]]:
    """The last ``count`` records of the history of ``root``, oldest first; lines that are not JSON objects are skipped."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise HistoryError('history %r is invalid: use a number of entries >= 0 (0 returns none)' % (count,))
    if count == 0:
        return []
    path = DeployRoot(root).history_path
    records: list[dict[str, t.Any]] = []
    try:
        for line in _reverse_lines(path):
            try:
                data = json.loads(line.decode('utf-8'))
            except ValueError:
                continue
            if isinstance(data, dict):
                records.append(data)
                if len(records) == count:
                    break
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return []
    records.reverse()
    return records
