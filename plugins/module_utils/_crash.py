# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Named steps where the crash suite (tests/chaos) stops a module, to prove that every kill is survived.

A step calls :func:`crash_point` with its name. Unless the file :data:`CRASH_FILE` names that step,
nothing happens (one failed ``open`` of a file in a root-only directory). When it does:

* ``NAME:kill``: the module's process writes its pid to ``CRASH_FILE.reached`` and sends itself
  SIGKILL (a remote process that dies);
* ``NAME:pause``: the process writes its pid to ``CRASH_FILE.reached`` and waits, until the suite
  removes :data:`CRASH_FILE` (or ten minutes pass), then goes on; meanwhile the suite kills the
  controller, this process, or both, at a moment it knows.

The file is honoured only when it is owned by root and not writable by group or others, in a
directory with the same properties (``/run/stagehand``, a tmpfs emptied at every boot), so no
application user can stop a deploy through it.
"""

from __future__ import annotations

import os
import signal
import stat
import time
import typing as t

CRASH_FILE = '/run/stagehand/crash-at'
PAUSE_LIMIT = 600.0


def _trusted(path: str, kind: t.Callable[[int], bool]) -> bool:
    """Whether ``path`` is of ``kind`` (``stat.S_ISREG``, ``stat.S_ISDIR``), owned by root and writable by root alone."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return kind(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o022


def armed(name: str, path: str = CRASH_FILE) -> str | None:
    """What the crash file asks of the step ``name`` (``'kill'`` or ``'pause'``), or None."""
    try:
        with open(path, encoding='utf-8') as f:
            wanted = f.read(256).strip()
    except OSError:
        return None
    point, _sep, how = wanted.rpartition(':')
    if point != name or how not in ('kill', 'pause'):
        return None
    if not (_trusted(path, stat.S_ISREG) and _trusted(os.path.dirname(path), stat.S_ISDIR)):
        return None
    return how


def crash_point(name: str, path: str = CRASH_FILE) -> None:
    """Stop here when the crash suite asks for it (see the module docstring); otherwise return at once."""
    how = armed(name, path)
    if how is None:
        return
    reached = path + '.reached'
    with open(reached + '.tmp', 'w', encoding='utf-8') as f:
        f.write('%d\n' % os.getpid())
    os.replace(reached + '.tmp', reached)
    if how == 'kill':
        os.kill(os.getpid(), signal.SIGKILL)
    deadline = time.monotonic() + PAUSE_LIMIT
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
