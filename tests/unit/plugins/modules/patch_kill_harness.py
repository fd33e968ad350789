# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fault-injection harness: run the ``patch`` module's ``main()`` and SIGKILL it at the Nth counted call.

A spec (JSON) says what to run and where to crash::

    {"args": {...module args...},
     "journal": "/path/to/workdir/patch-journal.json",
     "kill_at": N,                      # 0: never kill, only count
     "funcs": ["rename", "replace"],    # os functions to count
     "from_start": false,               # false: count only while the journal exists
     "log": "/path/to/log"}             # one line per counted call, written before the call

The named ``os`` functions are wrapped before the module runs (the production
code has no test hook). A call is counted when ``from_start`` is true or the
journal exists at the time of the call. At the ``kill_at``-th counted call the
process sends itself SIGKILL *before* doing the call, so the files are left as
the calls before it left them. Each log line is ``<count> <func> <journal
exists: 0|1> <journal seen so far: 0|1>``; a run that is not killed ends the
log with ``done <count>``.

Two ways to run it:

* ``python patch_kill_harness.py SPEC.json``: one run in this process; the
  module result (JSON) is on stdout, the exit status is the module's.
* ``python patch_kill_harness.py --serve``: reads one spec per line on stdin;
  for each, forks a child that redirects its stdout/stderr to the spec's
  ``stdout``/``stderr`` files and runs the spec, and answers one JSON line
  ``{"signal": n}`` or ``{"exit": code}``. Python and Ansible are imported
  once, so a test can crash the module at dozens of points quickly.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import traceback
import typing as t


def run_spec(spec: dict[str, t.Any]) -> int:
    """Run the module once with the fault injected; return its exit status (unless killed)."""
    # pylint: disable-next=import-outside-toplevel
    from ansible_collections.stagehand.deploy.tests.unit.module_args import patch_module_args
    from ansible_collections.stagehand.deploy.plugins.modules.patch import main  # pylint: disable=import-outside-toplevel

    journal = spec['journal']
    kill_at = int(spec.get('kill_at', 0))
    from_start = bool(spec.get('from_start', False))
    lexists = os.path.lexists
    state = {'count': 0, 'seen': False}
    with open(spec['log'], 'a', buffering=1, encoding='utf-8') as log:

        def wrap(name: str, original: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
            def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
                journal_exists = lexists(journal)
                state['seen'] = state['seen'] or journal_exists
                if from_start or journal_exists:
                    state['count'] += 1
                    log.write('%d %s %d %d\n' % (state['count'], name, int(journal_exists), int(state['seen'])))
                    if state['count'] == kill_at:
                        log.flush()
                        os.kill(os.getpid(), signal.SIGKILL)
                result = original(*args, **kwargs)
                state['seen'] = state['seen'] or lexists(journal)
                return result
            return wrapper

        originals = {name: getattr(os, name) for name in spec.get('funcs', ['rename', 'replace'])}
        for name, original in originals.items():
            setattr(os, name, wrap(name, original))
        code: t.Any = 0
        try:
            with patch_module_args(spec['args']):
                try:
                    main()
                except SystemExit as exc:
                    code = exc.code
        finally:
            for name, original in originals.items():
                setattr(os, name, original)
        log.write('done %d\n' % state['count'])
    return int(code or 0)


def serve() -> int:
    # Import once in the server; each forked child starts with everything loaded.
    importlib.import_module('ansible_collections.stagehand.deploy.tests.unit.module_args')
    importlib.import_module('ansible_collections.stagehand.deploy.plugins.modules.patch')

    for line in sys.stdin:
        if not line.strip():
            continue
        spec = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # child: never returns
            status = 70
            try:
                for fd, key in ((1, 'stdout'), (2, 'stderr')):
                    target = os.open(spec[key], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    os.dup2(target, fd)
                    os.close(target)
                status = run_spec(spec)
            except BaseException:  # pylint: disable=broad-except  # report anything, then leave the child
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)  # pylint: disable=protected-access
        _pid, wait_status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(wait_status):
            answer = {'signal': os.WTERMSIG(wait_status)}
        else:
            answer = {'exit': os.WEXITSTATUS(wait_status)}
        sys.stdout.write(json.dumps(answer) + '\n')
        sys.stdout.flush()
    return 0


def main() -> int:
    if sys.argv[1:] == ['--serve']:
        return serve()
    if len(sys.argv) != 2:
        sys.stderr.write('usage: %s SPEC.json | --serve\n' % sys.argv[0])
        return 2
    with open(sys.argv[1], encoding='utf-8') as f:
        return run_spec(json.load(f))


if __name__ == '__main__':
    sys.exit(main())
