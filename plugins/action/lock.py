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
  process to look for on the controller when deciding whether a lock is stale;
* ``controller_process``: that process's identity (pid, start time, boot id, pid
  namespace; :func:`._flock.process_identity`), when ``pid`` is filled here.

When acquiring is refused because of a holder, the holder is checked here, on the
controller (:func:`._lock.dead_reason`): when it ran on this controller and its
``ansible-playbook`` is provably gone, the module runs once more with its token as
``stale_token``, which takes the lock over.
"""

from __future__ import annotations

import getpass
import os
import socket
import typing as t

from ansible.plugins.action import ActionBase

from ansible_collections.stagehand.deploy.plugins.module_utils import _flock, _lock

MODULE_NAME = 'stagehand.deploy.lock'


def controller_user() -> str | None:
    """The user running Ansible on the controller, or None if it cannot be told."""
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):  # no passwd entry and no LOGNAME/USER/...
        return os.environ.get('USER') or None


def controller_facts() -> dict[str, t.Any]:
    """The values the action plugin fills in: ``owner``, ``controller``, ``pid`` and ``controller_process``."""
    return {
        'owner': controller_user(),
        'controller': socket.gethostname(),
        'pid': os.getppid(),
        'controller_process': _flock.process_identity(os.getppid()),
    }


def fill_lock_args(args: dict[str, t.Any], facts: dict[str, t.Any]) -> dict[str, t.Any]:
    """``args`` with ``owner``, ``controller`` and ``pid`` filled from ``facts`` when unset; ``controller_process`` only with our pid."""
    args = dict(args)
    filled_pid = args.get('pid') is None
    for key in ('owner', 'controller', 'pid'):
        if args.get(key) is None:
            args[key] = facts.get(key)
    if filled_pid and args.get('controller_process') is None and facts.get('controller_process') is not None:
        args['controller_process'] = facts['controller_process']
    return args


def stale_retry(result: t.Mapping[str, t.Any]) -> dict[str, str] | None:
    """``{stale_token, stale_reason}`` when ``result`` is a refusal by a holder that is provably dead seen from here."""
    holder = result.get('holder')
    if not result.get('failed') or not isinstance(holder, dict) or not isinstance(holder.get('token'), str):
        return None
    why = _lock.dead_reason(holder)
    if why is None:
        return None
    return {'stale_token': holder['token'], 'stale_reason': why}


class ActionModule(ActionBase):
    """Fill ``owner``/``controller``/``pid`` from the controller, then execute the lock module."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: str | None = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        del tmp  # unused, see ActionBase.run

        module_args = dict(self._task.args)
        if module_args.get('state', 'present') == 'present':
            module_args = fill_lock_args(module_args, controller_facts())
        else:
            module_args = fill_lock_args(module_args, dict(controller_facts(), controller_process=None))

        try:
            answer = self._execute_module(module_name=MODULE_NAME, module_args=module_args, task_vars=task_vars)
            retry = stale_retry(answer) if module_args.get('state', 'present') == 'present' else None
            if retry is not None and module_args.get('stale_token') is None:
                answer = self._execute_module(module_name=MODULE_NAME, module_args=dict(module_args, **retry), task_vars=task_vars)
            result.update(answer)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
