# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The deploy role's start checks, run by ansible-playbook on two local hosts.

These checks come before anything is read or written on a host, so the hosts are the local
machine itself (``ansible_connection=local``); each test proves the refusal and that the
deploy roots of both hosts and the artifact store were not touched.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import ansible_collections.stagehand.deploy as collection

from ansible_collections.stagehand.deploy.tests.unit.conftest import snapshot_tree

# <collections>/ansible_collections/stagehand/deploy: ansible-playbook finds the role under <collections>
COLLECTIONS = os.path.dirname(os.path.dirname(os.path.dirname(list(collection.__path__)[0])))
PLAYBOOK = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')


def run_play(tmp_path, entry, serial, *extra):
    """Run the role's ``entry`` (tasks_from) on web1 and web2, with ``serial`` (None: none); the completed process."""
    roots = [tmp_path / 'web1', tmp_path / 'web2']
    for root in roots:
        root.mkdir()
    inventory = tmp_path / 'inventory.ini'
    inventory.write_text(''.join('%s ansible_connection=local ansible_python_interpreter=%s deploy_root=%s\n'
                                 % (root.name, sys.executable, root) for root in roots))
    playbook = tmp_path / 'play.yml'
    playbook.write_text('- name: Run the role\n  hosts: all\n  gather_facts: false\n%s  tasks:\n'
                        '    - name: Run the %s entry point\n      ansible.builtin.include_role:\n'
                        '        name: stagehand.deploy.deploy\n        tasks_from: %s\n'
                        % ('  serial: %d\n' % serial if serial else '', entry, entry))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='0',
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'), ANSIBLE_HOME=str(tmp_path / 'home'))
    before = [snapshot_tree(str(root)) for root in roots]
    done = subprocess.run([PLAYBOOK, '-i', str(inventory), str(playbook), '-e', 'deploy_repo=%s' % tmp_path,
                           '-e', 'deploy_artifact_store=%s' % (tmp_path / 'store')] + list(extra),
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert [snapshot_tree(str(root)) for root in roots] == before
    assert not (tmp_path / 'store').exists()
    return done


@pytest.mark.parametrize('entry, extra', [('main', ['-e', 'version=v1']), ('rollback', [])])
def test_a_play_with_serial_is_refused_before_anything_is_read(tmp_path, entry, extra):
    done = run_play(tmp_path, entry, 1, *extra)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert 'runs its hosts in batches (serial: a batch of 1 of 2 hosts)' in out, out
    assert 'remove serial: from the play. Nothing was changed' in out, out


def test_the_same_play_without_serial_goes_past_that_check(tmp_path):
    done = run_play(tmp_path, 'main', None)
    out = done.stdout + done.stderr
    # refused by the check after it (nothing to deploy given), not by the serial one
    assert done.returncode != 0 and 'give exactly one of -e version=REF' in out and 'in batches' not in out, out
