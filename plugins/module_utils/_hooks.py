# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The hook files of a deploy, checked before the lock is taken.

A hook point (``before_switch``, ``prepare``, ...) names a task file or a list of them, absolute or
relative to the hooks directory. A file that is missing would fail only when its hook point is
reached, possibly after the release went live; :func:`hook_file_problems` finds every such file
up front and :func:`hook_files_message` says which, so the deploy is refused before it starts.
"""

from __future__ import annotations

import os
import typing as t


def _files(value: object) -> list[object]:
    if value is None or value == '':
        return []
    if isinstance(value, (list, tuple)):
        out: list[object] = []
        for item in value:
            out.extend(_files(item))
        return out
    return [value]


def hook_path(name: str, hooks_dir: str) -> str:
    """Where the deploy role looks for the hook file ``name``: itself when absolute, else below ``hooks_dir``."""
    return name if os.path.isabs(name) else os.path.join(hooks_dir, name)


def hook_file_problems(hooks: t.Mapping[str, object], hooks_dir: str) -> list[str]:
    """One line per hook file that cannot be run: ``<hook point>: '<path>' <why>``, in the order of ``hooks``."""
    problems = []
    for point, value in hooks.items():
        for name in _files(value):
            if not isinstance(name, str):
                problems.append('%s: %r is not a file name (give a path, or a list of paths, to task files)' % (point, name))
                continue
            path = hook_path(name, hooks_dir)
            if not os.path.exists(path):
                problems.append('%s: %r does not exist' % (point, path))
            elif not os.path.isfile(path):
                problems.append('%s: %r is not a file' % (point, path))
            elif not os.access(path, os.R_OK):
                problems.append('%s: %r cannot be read' % (point, path))
    return problems


def hook_files_message(hooks: t.Mapping[str, object], hooks_dir: str) -> str:
    """The refusal for :func:`hook_file_problems`, or an empty string when every hook file can be run."""
    problems = hook_file_problems(hooks, hooks_dir)
    if not problems:
        return ''
    return ('%d hook file(s) cannot be run: %s (relative paths are read below deploy_hooks_dir %r); fix the path or create '
            'the file, nothing was locked or changed' % (len(problems), '; '.join(problems), hooks_dir))
