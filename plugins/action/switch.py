# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Controller side of ``stagehand.deploy.switch``: say who switches from where, run the module, say what it did.

Only the ``lock`` and ``history`` options need the controller: when the task gives them
without ``owner``/``controller``/``pid`` (lock) or ``user``/``controller``/``start``
(history), they are filled in here, with the same facts the lock action plugin records
(:func:`controller_facts`), and ``start`` with the controller's current UTC time. Every other
argument goes to the module unchanged, so a switch without those options runs as it
would without this plugin (asynchronous tasks included). With ``report: true`` the plugin
prints one line saying what the call did (:func:`report_line`), so a playbook needs no
separate task (and no extra round of the strategy) to say it.
"""

from __future__ import annotations

import datetime
import json
import typing as t

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.stagehand.deploy.plugins.action.lock import controller_facts
from ansible_collections.stagehand.deploy.plugins.module_utils._state import format_utc_ms

MODULE_NAME = 'stagehand.deploy.switch'

display = Display()


def report_line(result: t.Mapping[str, t.Any], host: str, action: str | None = None, check_mode: bool = False) -> str:
    """One line saying what a successful switch did on ``host``: what went live, the health check, the phases."""
    previous, current = result.get('previous'), result.get('current')
    if previous == current:
        line = '%s was already live on %s, nothing switched.' % (current, host)
    else:
        verb = 'rolled back' if action == 'rollback' else 'switched'
        line = '%s from %s to %s on %s.' % (verb, previous or 'nothing', current, host)
    if check_mode:
        line += ' Check mode: nothing was changed.'
    return line + health_and_phases(result)


# a switch this much (seconds) after its moment (at) is said to be late
LATE = 0.05


def late_warning(result: t.Mapping[str, t.Any], host: str) -> str | None:
    """The warning for a switch that renamed the link more than :data:`LATE` after its moment (``at``), else None."""
    late = result.get('late')
    if not isinstance(late, (int, float)) or isinstance(late, bool) or late <= LATE:
        return None
    return ('%s switched %.1f ms after the moment it was given (at): its call started late, so the hosts did not switch '
            'together; give the hosts more time (the deploy role: raise deploy_switch_delay, or forks to the number of hosts)'
            % (host, late * 1000))


def health_and_phases(result: t.Mapping[str, t.Any], phases: t.Mapping[str, t.Any] | None = None) -> str:
    """The end of a report line: how long the health check took and the seconds per phase (of the history line)."""
    health = result.get('health')
    if isinstance(health, dict) and health.get('elapsed') is not None:
        text = ' Health check: healthy after %s s;' % health['elapsed']
    else:
        text = ' Health check: none;'
    history = result.get('history')
    if isinstance(history, dict):
        phases = history.get('phases')
    return text + ' seconds per phase: %s' % json.dumps(phases or {}, sort_keys=True, separators=(',', ':'))


def fill_controller_args(args: dict[str, t.Any], facts: dict[str, t.Any], now: datetime.datetime | None = None) -> dict[str, t.Any]:
    """``args`` with the controller facts filled into ``lock`` and ``history`` where those are mappings lacking them."""
    args = dict(args)
    lock = args.get('lock')
    if isinstance(lock, dict):
        lock = dict(lock)
        if lock.get('pid') is None and lock.get('controller_process') is None and facts.get('controller_process') is not None:
            lock['controller_process'] = facts['controller_process']
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
            history['start'] = format_utc_ms(moment)
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
        report = boolean(module_args.get('report', False), strict=False)
        if isinstance(module_args.get('lock'), dict) or isinstance(module_args.get('history'), dict):
            module_args = fill_controller_args(module_args, controller_facts())
        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        result.update(self._execute_module(module_name=MODULE_NAME, module_args=module_args, task_vars=task_vars,
                                           wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        warning = late_warning(result, str((task_vars or {}).get('inventory_hostname') or self._play_context.remote_addr))
        if warning is not None:
            display.warning(warning)
        if report and not wrap_async and not result.get('failed'):
            history = module_args.get('history')
            action = history.get('action') if isinstance(history, dict) else None
            host = (task_vars or {}).get('inventory_hostname') or self._play_context.remote_addr
            display.display(report_line(result, str(host), action, bool(self._play_context.check_mode)))
        return result
