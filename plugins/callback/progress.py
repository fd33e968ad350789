# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: progress
type: stdout
short_description: A job log a person can read, one line per step that changed something
version_added: 0.2.0
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
description:
  - The default callback, quieter. Per host it prints one line for each task that changed something, with the seconds
    it took, and the messages of C(ansible.builtin.debug) tasks. Failures are printed in full, after the header of the
    task they come from, as the default callback prints them. Plays, lines the collection's action plugins print (for
    example the progress line before a large shipment and the line that says what a deploy did) and the recap are kept.
  - The headers of tasks and the results that are ok or skipped are not printed. With C(-v) or more, the output is the
    default callback's.
  - While a task runs for longer than O(heartbeat) seconds, a line every O(heartbeat) seconds says which task runs, on
    which hosts it has not ended and since when, so a job log never sits silent during a long build or shipment.
  - Works under ansible-runner and AWX, which wrap the stdout callback named in E(ANSIBLE_STDOUT_CALLBACK)
    (see docs/runner.md and docs/awx.md of the collection).
extends_documentation_fragment:
  - default_callback
  - result_format_callback
options:
  heartbeat:
    description:
      - Seconds of silence after which a line says which task is still running, and on which hosts.
      - V(0) prints no such line.
    type: int
    default: 10
    env:
      - name: STAGEHAND_PROGRESS_HEARTBEAT
    ini:
      - section: callback_stagehand_progress
        key: heartbeat
requirements:
  - set as stdout callback in configuration (C(stdout_callback = stagehand.deploy.progress) in ansible.cfg, or
    E(ANSIBLE_STDOUT_CALLBACK=stagehand.deploy.progress))
"""

import threading
import time
import typing as t

from ansible import constants as C
from ansible.playbook.task_include import TaskInclude
from ansible.plugins.callback.default import CallbackModule as DefaultCallbackModule
from ansible.utils.fqcn import add_internal_fqcns


DEBUG_ACTIONS = frozenset(add_internal_fqcns(('debug',)))
FREE_STRATEGIES = frozenset(add_internal_fqcns(('free', 'host_pinned')))
# the most hosts a heartbeat line names one by one
NAMED_HOSTS = 5


def parts(result: t.Any) -> tuple[dict[str, t.Any], t.Any, t.Any]:
    """(the result's data, its task, its host), from a CallbackTaskResult (ansible-core 2.19 and later) or a TaskResult."""
    if hasattr(result, 'task'):
        return result.result, result.task, result.host
    return result._result, result._task, result._host


def heartbeat_line(running: t.Mapping[str, tuple[str, float]], said_at: float, now: float, heartbeat: float) -> str | None:
    """What to say at ``now`` when the last line was said at ``said_at`` and ``running`` maps each host that has not ended
    its task to (the task's name, when it started); None: nothing yet (less than ``heartbeat`` seconds of silence, or
    nothing runs)."""
    if not running or heartbeat <= 0 or now - said_at < heartbeat:
        return None
    by_task: dict[str, list[tuple[str, float]]] = {}
    for host, (name, started) in sorted(running.items()):
        by_task.setdefault(name, []).append((host, started))
    parts = []
    for name, hosts in sorted(by_task.items()):
        named = ', '.join(host for host, started in hosts[:NAMED_HOSTS])
        if len(hosts) > NAMED_HOSTS:
            named += ' and %d more' % (len(hosts) - NAMED_HOSTS)
        parts.append('%s: still running on %s (%d s)' % (name, named, now - min(started for host, started in hosts)))
    return '... ' + '; '.join(parts)


class CallbackModule(DefaultCallbackModule):
    """The default callback without task headers, ok and skipped results; one line per change; a heartbeat."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'stagehand.deploy.progress'

    def __init__(self) -> None:
        super().__init__()
        # guards _running and _said_at only: never held while printing, as ansible-runner's awx_display holds the
        # display's lock while it calls this callback (a lock taken in both orders would deadlock the two threads)
        self._guard = threading.Lock()
        # host name -> (the name of the task it runs, when it started)
        self._running: dict[str, tuple[str, float]] = {}
        self._said_at = time.monotonic()
        self._stopped = threading.Event()
        self._beating: threading.Thread | None = None

    def set_options(self, task_keys=None, var_options=None, direct=None) -> None:
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        if not self._verbose():
            # what the default callback then leaves out: the headers of tasks whose results are not shown
            self.set_option('display_ok_hosts', False)
            self.set_option('display_skipped_hosts', False)
        if not self._verbose() and self.get_option('heartbeat') > 0 and self._beating is None:
            self._beating = threading.Thread(target=self._beat, name='stagehand-progress-heartbeat', daemon=True)
            self._beating.start()

    def _verbose(self) -> bool:
        return self._display.verbosity > 0

    def _said(self) -> None:
        """Note that a line was printed just now (the heartbeat counts its silence from there)."""
        with self._guard:
            self._said_at = time.monotonic()

    def _say(self, line: str, color: str | None = None) -> None:
        self._display.display(line, color=color)
        self._said()

    @staticmethod
    def _task_name(task: t.Any) -> str:
        """The task's name without the role's ("deploy : "): a line starts with the host's."""
        name = task.get_name(include_role_fqcn=False).strip()
        if task._role and ' : ' in name:
            name = name.split(' : ', 1)[1]
        return name or task.action

    def _seconds(self, host: str) -> str:
        with self._guard:
            started = self._running.pop(host, None)
        return '' if started is None else ' (%.1f s)' % (time.monotonic() - started[1])

    # what runs, for the heartbeat

    def v2_runner_on_start(self, host, task) -> None:
        with self._guard:
            self._running[host.get_name()] = (self._task_name(task), time.monotonic())
        super().v2_runner_on_start(host, task)

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        self._task_started()
        super().v2_playbook_on_task_start(task, is_conditional)

    def v2_playbook_on_handler_task_start(self, task) -> None:
        self._task_started()
        super().v2_playbook_on_handler_task_start(task)

    def _task_started(self) -> None:
        with self._guard:
            # with the linear strategy a task starts when every host ended the one before; with free and
            # host_pinned hosts run different tasks at once
            if self._play is None or self._play.strategy not in FREE_STRATEGIES:
                self._running.clear()
            self._said_at = time.monotonic()

    def v2_playbook_on_stats(self, stats) -> None:
        self._stopped.set()
        if self._beating is not None:
            self._beating.join(timeout=2.0)
        with self._guard:
            self._running.clear()
        super().v2_playbook_on_stats(stats)

    def _beat(self) -> None:
        while not self._stopped.wait(1.0):
            with self._guard:
                line = heartbeat_line(self._running, self._said_at, time.monotonic(), self.get_option('heartbeat'))
            if line:
                self._say(line, C.COLOR_SKIP)

    # results

    def _warn(self, result: t.Any) -> None:
        """Show the warnings (and, from ansible-core 2.19, the exception) of a result, as the default callback does."""
        if hasattr(self, '_handle_warnings_and_exception'):
            self._handle_warnings_and_exception(result)
        else:
            self._handle_warnings(parts(result)[0])

    def v2_runner_on_ok(self, result) -> None:
        data, task, host = parts(result)
        seconds = self._seconds(host.get_name())
        if self._verbose():
            super().v2_runner_on_ok(result)
            return
        if isinstance(task, TaskInclude):
            # an include says nothing of its own; what it includes does
            return
        self._warn(result)
        label = self.host_label(result)
        if task.action in DEBUG_ACTIONS and task.loop and 'results' in data:
            for item in data['results']:
                self._say_debug('%s (item=%s)' % (label, self._get_item_label(item)), item)
        elif task.action in DEBUG_ACTIONS:
            self._say_debug(label, data)
        elif not data.get('changed'):
            return
        elif task.loop and 'results' in data:
            changed = sum(1 for item in data['results'] if item.get('changed'))
            self._say('[%s] %s: changed %d of %d%s' % (label, self._task_name(task), changed, len(data['results']), seconds), C.COLOR_CHANGED)
        else:
            self._say('[%s] %s: changed%s' % (label, self._task_name(task), seconds), C.COLOR_CHANGED)

    def _say_debug(self, host: str, result: dict[str, t.Any]) -> None:
        msg = result.get('msg')
        if isinstance(msg, str):
            self._say('[%s] %s' % (host, msg), C.COLOR_OK)
        elif isinstance(msg, list) and all(isinstance(line, str) for line in msg):
            self._say('[%s]\n%s' % (host, '\n'.join('    ' + line for line in msg)), C.COLOR_OK)
        else:
            shown = dict((key, value) for key, value in result.items() if not key.startswith('_') and key != 'changed')
            self._say('[%s] => %s' % (host, self._dump_results(shown)), C.COLOR_OK)

    def v2_runner_item_on_ok(self, result) -> None:
        # a loop's changed items are counted on one line when the task ends
        if self._verbose():
            super().v2_runner_item_on_ok(result)

    def v2_runner_on_failed(self, result, ignore_errors: bool = False) -> None:
        self._seconds(parts(result)[2].get_name())
        super().v2_runner_on_failed(result, ignore_errors=ignore_errors)
        self._said()

    def v2_runner_item_on_failed(self, result) -> None:
        super().v2_runner_item_on_failed(result)
        self._said()

    def v2_on_file_diff(self, result) -> None:
        super().v2_on_file_diff(result)
        self._said()

    def v2_runner_on_unreachable(self, result) -> None:
        self._seconds(parts(result)[2].get_name())
        super().v2_runner_on_unreachable(result)
        self._said()

    def v2_runner_on_skipped(self, result) -> None:
        self._seconds(parts(result)[2].get_name())
        super().v2_runner_on_skipped(result)

    def v2_playbook_on_include(self, included_file) -> None:
        if self._verbose():
            super().v2_playbook_on_include(included_file)
