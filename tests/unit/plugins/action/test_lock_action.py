# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The lock action plugin fills in the controller facts and runs the module."""

from __future__ import annotations

import importlib
import os
import socket
from unittest import mock

import pytest

from ansible.module_utils import _internal as module_utils_internal


@pytest.fixture(name='lock_action')
def fixture_lock_action(monkeypatch):
    """Import the action plugin without leaving the process in controller mode.

    Importing controller code (ansible.errors, ansible.plugins.action) sets
    ``ansible.module_utils._internal.is_controller``, after which AnsibleModule
    sends its warnings to the controller's Display instead of the module result,
    which would break module tests that run later in the same process.
    """
    monkeypatch.setattr(module_utils_internal, 'is_controller', module_utils_internal.is_controller)
    return importlib.import_module('ansible_collections.stagehand.deploy.plugins.action.lock')


def make_action(lock_action, args, async_val=0, check_mode=False):
    task = mock.MagicMock()
    task.args = dict(args)
    task.async_val = async_val
    task.check_mode = check_mode
    task.action = 'stagehand.deploy.lock'
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    action = lock_action.ActionModule(task, connection, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(), None)
    return action


def run(action):
    with mock.patch.object(action, '_execute_module', return_value={'changed': True, 'token': 'tok'}) as execute:
        with mock.patch.object(action, '_remove_tmp_path') as remove_tmp:
            result = action.run(task_vars={'inventory_hostname': 'web1'})
    return result, execute, remove_tmp


def test_fills_controller_defaults(lock_action, monkeypatch):
    monkeypatch.setattr(lock_action.getpass, 'getuser', lambda: 'alice')
    monkeypatch.setattr(lock_action.socket, 'gethostname', lambda: 'ctl.example.org')
    action = make_action(lock_action, {'root': '/srv/app', 'purpose': 'deploy v1'})
    result, execute, remove_tmp = run(action)
    assert result == {'changed': True, 'token': 'tok'}
    execute.assert_called_once()
    kwargs = execute.call_args.kwargs
    assert kwargs['module_name'] == 'stagehand.deploy.lock'
    assert kwargs['task_vars'] == {'inventory_hostname': 'web1'}
    assert kwargs['module_args'] == {
        'root': '/srv/app',
        'purpose': 'deploy v1',
        'owner': 'alice',
        'controller': 'ctl.example.org',
        'pid': os.getppid(),
        'controller_process': lock_action.controller_facts()['controller_process'],
    }
    assert kwargs['module_args']['controller_process']['pid'] == os.getppid()
    remove_tmp.assert_called_once()
    # the task's own arguments are not modified
    assert action._task.args == {'root': '/srv/app', 'purpose': 'deploy v1'}


def test_user_values_win(lock_action):
    args = {'root': '/srv/app', 'owner': 'ci', 'controller': 'runner-3', 'pid': 1, 'state': 'absent', 'token': 't'}
    result, execute, dummy = run(make_action(lock_action, args))
    assert result['changed'] is True
    assert execute.call_args.kwargs['module_args'] == args


def test_real_defaults_are_plausible(lock_action):
    facts = lock_action.controller_facts()
    assert facts['controller'] == socket.gethostname()
    assert facts['pid'] == os.getppid()
    assert isinstance(facts['owner'], str) and facts['owner']


def test_owner_falls_back_to_user_env(lock_action, monkeypatch):
    def no_user():
        raise KeyError('getpwuid(): uid not found: 12345')
    monkeypatch.setattr(lock_action.getpass, 'getuser', no_user)
    monkeypatch.setenv('USER', 'fallback-user')
    assert lock_action.controller_user() == 'fallback-user'
    monkeypatch.delenv('USER')
    assert lock_action.controller_user() is None


def test_async_is_refused(lock_action):
    from ansible.errors import AnsibleActionFail  # pylint: disable=import-outside-toplevel  # see the lock_action fixture
    action = make_action(lock_action, {'root': '/srv/app'}, async_val=30)
    with pytest.raises(AnsibleActionFail, match='does not support async'):
        run(action)


def test_a_holder_proven_dead_on_the_controller_is_taken_over(lock_action, monkeypatch):
    """Issue 11.4: the module refuses, the action proves the holder's ansible-playbook gone and runs it again."""
    holder = {'token': 'old', 'controller': 'ctl', 'pid': 4242}
    monkeypatch.setattr(lock_action._lock, 'dead_reason', lambda h: 'its ansible-playbook on controller ctl: process 4242 is gone')
    answers = [{'failed': True, 'msg': 'held', 'holder': holder}, {'changed': True, 'acquired': True, 'token': 'new'}]
    action = make_action(lock_action, {'root': '/srv/app'})
    with mock.patch.object(action, '_execute_module', side_effect=answers) as execute:
        with mock.patch.object(action, '_remove_tmp_path'):
            result = action.run(task_vars={})
    assert result['acquired'] is True and execute.call_count == 2
    second = execute.call_args_list[1].kwargs['module_args']
    assert second['stale_token'] == 'old' and 'process 4242 is gone' in second['stale_reason']


def test_a_live_holder_is_not_retried(lock_action, monkeypatch):
    monkeypatch.setattr(lock_action._lock, 'dead_reason', lambda h: None)
    action = make_action(lock_action, {'root': '/srv/app'})
    refused = {'failed': True, 'msg': 'held', 'holder': {'token': 'old'}}
    with mock.patch.object(action, '_execute_module', return_value=refused) as execute:
        with mock.patch.object(action, '_remove_tmp_path'):
            result = action.run(task_vars={})
    assert result['failed'] and execute.call_count == 1
