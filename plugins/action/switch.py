# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of ``stagehand.deploy.switch``: say who switches from where, then run the module.

Only the ``lock`` and ``history`` options need the controller: when the task gives them
without ``owner``/``controller``/``pid`` (lock) or ``user``/``controller``/``start``
(history), they are filled in here, with the same facts the lock action plugin records
(:func:`controller_facts`), and ``start`` with the controller's current UTC time. Every other
argument goes to the module unchanged, so a switch without those options runs as it
would without this plugin (asynchronous tasks included).
"""

from __future__ import annotations

import datetime
import typing as t

from ansible.plugins.action import ActionBase

from ansible_collections.stagehand.deploy.plugins.action.lock import controller_facts

MODULE_NAME = 'stagehand.deploy.switch'


def fill_controller_args(args: dict[str, t.Any], facts: dict[str, t.Any], now: datetime.datetime | None = None) -> dict[str, t.Any]:
    """``args`` with the controller facts filled into ``lock`` and ``history`` where those are mappings lacking them."""
    args = dict(args)
    lock = args.get('lock')
    if isinstance(lock, dict):
        lock = dict(lock)
        for key in ('owner', 'controller', 'pid'):
            if lock.get(key) is None:
                lock[key] = facts.get(key)
        args['lock'] = lock
    history = args.get('history')
    if isinstance(history, dict):
        history = dict(history)
        if history.get('user') is None:
            history['user'] = facts.get('owner')
        if history.get('controller') is None:
            history['controller'] = facts.get('controller')
        if history.get('start') is None:
            moment = now or datetime.datetime.now(datetime.timezone.utc)
            history['start'] = moment.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
        args['history'] = history
    return args


class ActionModule(ActionBase):
    """Fill the controller facts into ``lock`` and ``history``, then execute the switch module."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp: str | None = None, task_vars: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
        result = super().run(tmp, task_vars)
        del tmp  # unused, see ActionBase.run

        module_args = dict(self._task.args)
        if isinstance(module_args.get('lock'), dict) or isinstance(module_args.get('history'), dict):
            module_args = fill_controller_args(module_args, controller_facts())
        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        result.update(self._execute_module(module_name=MODULE_NAME, module_args=module_args, task_vars=task_vars,
                                           wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
