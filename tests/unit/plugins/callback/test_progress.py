# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The stdout callback stagehand.deploy.progress, run by ansible-playbook and by ansible-runner on a local play."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

import ansible_collections.stagehand.deploy as collection

from ansible_collections.stagehand.deploy.plugins.callback.progress import heartbeat_line

COLLECTIONS = os.path.dirname(os.path.dirname(os.path.dirname(list(collection.__path__)[0])))
PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')

PLAY = textwrap.dedent('''\
    - name: A play of every kind of result
      hosts: all
      gather_facts: false
      tasks:
        - name: Write a file
          ansible.builtin.copy:
            content: written
            dest: "{{ out }}/written"
        - name: Write it again
          ansible.builtin.copy:
            content: written
            dest: "{{ out }}/written"
        - name: Skip this task
          ansible.builtin.debug:
            msg: never shown
          when: false
        - name: Set a fact
          ansible.builtin.set_fact:
            quiet_fact: 1
        - name: Say one thing
          ansible.builtin.debug:
            msg: one thing said
        - name: Say two lines
          ansible.builtin.debug:
            msg: [first line, second line]
        - name: Say one line per item
          ansible.builtin.debug:
            msg: "item {{ item }} said"
          loop: [a, b]
        - name: Wait a while
          ansible.builtin.command: sleep 4
          changed_when: false
        - name: Count in a loop
          ansible.builtin.command: "echo {{ item }}"
          loop: [1, 2, 3]
          changed_when: item != 1
        - name: Fail and go on
          ansible.builtin.command: "false"
          ignore_errors: true
    ''')


@pytest.fixture
def play(tmp_path):
    path = tmp_path / 'play.yml'
    path.write_text(PLAY)
    inventory = tmp_path / 'inventory.ini'
    inventory.write_text('web1 ansible_connection=local ansible_python_interpreter=%s out=%s\n' % (sys.executable, tmp_path))
    return str(path), str(inventory)


def run(tmp_path, play, *args: str, heartbeat: str = '1') -> str:
    path, inventory = play
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_STDOUT_CALLBACK='stagehand.deploy.progress',
               ANSIBLE_NOCOLOR='1', ANSIBLE_HOME=str(tmp_path / 'home'), STAGEHAND_PROGRESS_HEARTBEAT=heartbeat,
               ANSIBLE_CALLBACK_RESULT_FORMAT='yaml')
    done = subprocess.run([PLAYBOOK, '-i', inventory, path] + list(args), env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_one_line_per_change_the_messages_and_failures_in_full(tmp_path, play):
    out = run(tmp_path, play)
    lines = out.splitlines()
    assert re.search(r'^\[web1\] Write a file: changed \(\d+\.\d s\)$', out, re.M), out
    assert '[web1] one thing said' in lines, out
    assert lines[lines.index('[web1]') + 1:lines.index('[web1]') + 3] == ['    first line', '    second line'], out
    assert re.search(r'^\[web1\] Count in a loop: changed 2 of 3 \(\d+\.\d s\)$', out, re.M), out
    assert '[web1 (item=a)] item a said' in lines and '[web1 (item=b)] item b said' in lines, out
    # a failure keeps the header of its task and everything the default callback prints of it
    assert 'TASK [Fail and go on]' in out and 'fatal: [web1]: FAILED!' in out and '...ignoring' in out, out
    # nothing else: no header of a task that only was ok or skipped, no ok or skipped result
    assert [line.split(']')[0] for line in lines if line.startswith('TASK [')] == ['TASK [Fail and go on'], out
    for hidden in ('Write it again', 'Skip this task', 'never shown', 'Set a fact', 'skipping:', 'ok: [web1]'):
        assert hidden not in out, out
    assert 'PLAY RECAP' in out and re.search(r'web1 +: ok=\d+ +changed=3 ', out), out


def test_a_long_task_is_named_while_it_runs(tmp_path, play):
    out = run(tmp_path, play)
    beats = re.findall(r'^\.\.\. Wait a while: still running on web1 \((\d+) s\)$', out, re.M)
    # the task takes 4 s and the heartbeat is 1 s: at least two lines, their seconds growing
    assert len(beats) >= 2 and [int(s) for s in beats] == sorted(int(s) for s in beats), out
    assert 'still running' not in run(tmp_path, play, heartbeat='0')


def test_verbose_is_the_default_callback(tmp_path, play):
    out = run(tmp_path, play, '-v')
    assert 'TASK [Set a fact]' in out and 'TASK [Skip this task]' in out and 'ok: [web1]' in out and 'skipping: [web1]' in out, out
    assert 'still running' not in out, out  # no heartbeat either


def test_under_ansible_runner_the_lines_are_events(tmp_path, play):
    runner = pytest.importorskip('ansible_runner')
    path, inventory = play
    data = tmp_path / 'runner'
    data.mkdir()
    # a timeout: a callback that deadlocks under awx_display fails the test instead of hanging it
    result = runner.run(private_data_dir=str(data), playbook=path, inventory=inventory, quiet=True, timeout=180,
                        envvars={'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS, 'ANSIBLE_STDOUT_CALLBACK': 'stagehand.deploy.progress',
                                 'STAGEHAND_PROGRESS_HEARTBEAT': '1', 'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_HOME': str(tmp_path / 'home'),
                                 'PATH': os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')})
    assert (result.status, result.rc) == ('successful', 0)
    said = [(event['event'], event['stdout']) for event in result.events if event.get('stdout')]
    assert ('runner_on_ok', '[web1] one thing said') in said, said
    assert any(event == 'runner_on_ok' and re.match(r'\[web1\] Write a file: changed \(\d+\.\d s\)$', text) for event, text in said), said
    # the heartbeat comes between events, as a line of output of its own (a "verbose" event in AWX's job log)
    assert any(event == 'verbose' and text.startswith('... Wait a while: still running on web1') for event, text in said), said
    assert not any(text.strip().startswith('TASK [Set a fact]') for event, text in said), said


def test_the_heartbeat_names_each_task_and_the_hosts_it_waits_for():
    running = dict(('web%d' % n, ('Ship the release', 90.0 + n)) for n in range(1, 8))
    running['db1'] = ('Apply the migrations', 95.0)
    assert heartbeat_line({}, 100.0, 200.0, 10) is None  # nothing runs
    assert heartbeat_line(running, 100.0, 109.0, 10) is None  # not silent long enough
    assert heartbeat_line(running, 100.0, 200.0, 0) is None  # no heartbeat
    assert heartbeat_line(running, 100.0, 110.0, 10) == ('... Apply the migrations: still running on db1 (15 s); '
                                                         'Ship the release: still running on web1, web2, web3, web4, web5 and 2 more (19 s)')
