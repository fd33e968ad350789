# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of ``stagehand.deploy.lock``: record who deploys from where, then run the module.

``owner``, ``controller`` and ``pid`` describe the controller, which the module
running on the managed host cannot know, so they are filled in here when the
task does not set them:

* ``owner``: :func:`getpass.getuser` (falls back to ``$USER``);
* ``controller``: :func:`socket.gethostname`;
* ``pid``: :func:`os.getppid` of this process. Action plugins run in a
  ``WorkerProcess`` forked by the ``ansible-playbook`` (or ``ansible``) main
  process for each task, so the worker's parent is that main process: the
  process to look for on the controller when deciding whether a lock is stale.
"""

from __future__ import annotations

import getpass
import os
import socket
import typing as t

from ansible.plugins.action import ActionBase

MODULE_NAME = 'stagehand.deploy.lock'


def controller_user() -> str | None:
    """The user running Ansible on the controller, or None if it cannot be told."""
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):  # no passwd entry and no LOGNAME/USER/...
        return os.environ.get('USER') or None


def controller_facts() -> dict[str, t.Any]:
    """The values the action plugin fills in: ``owner``, ``controller`` and ``pid``."""
    return {
        'owner': controller_user(),
        'controller': socket.gethostname(),
        'pid': os.getppid(),
    }


class ActionModule(ActionBase):
    """Fill ``owner``/``controller``/``pid`` from the controller, then execute the lock module."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: str | None = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        del tmp  # unused, see ActionBase.run

        module_args = dict(self._task.args)
        for key, value in controller_facts().items():
            if module_args.get(key) is None:
                module_args[key] = value

        try:
            result.update(self._execute_module(module_name=MODULE_NAME, module_args=module_args, task_vars=task_vars))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
