# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The switch action plugin fills the controller facts into lock and history, and changes nothing else."""

from __future__ import annotations

import datetime
import importlib
import os
from unittest import mock

import pytest

from ansible.module_utils import _internal as module_utils_internal


@pytest.fixture(name='switch_action')
def fixture_switch_action(monkeypatch):
    """Import the action plugin without leaving the process in controller mode (see test_lock_action.py)."""
    monkeypatch.setattr(module_utils_internal, 'is_controller', module_utils_internal.is_controller)
    return importlib.import_module('ansible_collections.stagehand.deploy.plugins.action.switch')


def make_action(switch_action, args, async_val=0):
    task = mock.MagicMock()
    task.args = dict(args)
    task.async_val = async_val
    task.check_mode = False
    task.action = 'stagehand.deploy.switch'
    connection = mock.MagicMock()
    connection._shell.tmpdir = None
    connection.has_native_async = False
    return switch_action.ActionModule(task, connection, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(), None)


def run(action):
    with mock.patch.object(action, '_execute_module', return_value={'changed': True, 'current': 'v1'}) as execute:
        with mock.patch.object(action, '_remove_tmp_path') as remove_tmp:
            result = action.run(task_vars={'inventory_hostname': 'web1'})
    return result, execute, remove_tmp


FACTS = {'owner': 'alice', 'controller': 'ctl.example.org', 'pid': 4242}
NOW = datetime.datetime(2026, 11, 22, 10, 0, 0, tzinfo=datetime.timezone.utc)


def test_fills_lock_and_history(switch_action):
    args = {'root': '/srv/app', 'target': 'previous_good', 'lock': {'purpose': 'rollback', 'ttl': 60},
            'history': {'action': 'rollback'}}
    filled = switch_action.fill_controller_args(args, FACTS, NOW)
    assert filled['lock'] == {'purpose': 'rollback', 'ttl': 60, 'owner': 'alice', 'controller': 'ctl.example.org', 'pid': 4242}
    assert filled['history'] == {'action': 'rollback', 'user': 'alice', 'controller': 'ctl.example.org',
                                 'start': '2026-11-22T10:00:00.000Z'}
    assert filled['root'] == '/srv/app' and filled['target'] == 'previous_good'
    # the arguments given are not modified
    assert args['lock'] == {'purpose': 'rollback', 'ttl': 60} and args['history'] == {'action': 'rollback'}


def test_given_values_win(switch_action):
    args = {'root': '/srv/app', 'release': 'v1', 'lock': {'owner': 'ci', 'controller': 'runner-3', 'pid': 1},
            'history': {'action': 'rollback', 'user': 'ci', 'controller': 'runner-3', 'start': '2026-01-01T00:00:00Z'}}
    assert switch_action.fill_controller_args(args, FACTS, NOW) == args


def test_runs_the_module_with_the_filled_arguments(switch_action):
    action = make_action(switch_action, {'root': '/srv/app', 'release': 'v1', 'lock': {}, 'history': {'action': 'rollback'}})
    result, execute, remove_tmp = run(action)
    assert result['changed'] is True and result['current'] == 'v1'
    kwargs = execute.call_args.kwargs
    assert kwargs['module_name'] == 'stagehand.deploy.switch' and kwargs['wrap_async'] is False
    assert kwargs['module_args']['lock']['pid'] == os.getppid()
    assert kwargs['module_args']['history']['user'] and kwargs['module_args']['history']['start'].endswith('Z')
    remove_tmp.assert_called_once()


def test_a_plain_switch_is_passed_through(switch_action):
    args = {'root': '/srv/app', 'release': 'v1', 'post_commands': [['systemctl', 'reload', 'php8.2-fpm']]}
    result, execute, remove_tmp = run(make_action(switch_action, args))
    assert execute.call_args.kwargs['module_args'] == args
    remove_tmp.assert_called_once()


def test_async_is_passed_on(switch_action):
    result, execute, remove_tmp = run(make_action(switch_action, {'root': '/srv/app', 'release': 'v1'}, async_val=30))
    assert execute.call_args.kwargs['wrap_async'] is True
    remove_tmp.assert_not_called()


ROLLED_BACK = {'changed': True, 'previous': 'v2', 'current': 'v1', 'health': {'elapsed': 0.012, 'attempts': 1},
               'history': {'phases': {'lock': 0.001, 'switch': 0.002, 'health': 0.012}}}


def test_report_line_says_what_a_rollback_did(switch_action):
    line = switch_action.report_line(ROLLED_BACK, 'web1', 'rollback')
    assert line == ('rolled back from v2 to v1 on web1. Health check: healthy after 0.012 s; '
                    'seconds per phase: {"health":0.012,"lock":0.001,"switch":0.002}')


def test_report_line_other_cases(switch_action):
    same = dict(ROLLED_BACK, previous='v1', health=None, history=None)
    assert switch_action.report_line(same, 'web1', 'rollback') == (
        'v1 was already live on web1, nothing switched. Health check: none; seconds per phase: {}')
    first = dict(ROLLED_BACK, previous=None)
    assert switch_action.report_line(first, 'web2', 'deploy', check_mode=True).startswith(
        'switched from nothing to v1 on web2. Check mode: nothing was changed. Health check: healthy after 0.012 s;')


def run_reporting(switch_action, args, module_result, check_mode=False):
    action = make_action(switch_action, args)
    action._play_context = mock.MagicMock(check_mode=check_mode)
    with mock.patch.object(action, '_execute_module', return_value=dict(module_result)):
        with mock.patch.object(action, '_remove_tmp_path'):
            with mock.patch.object(switch_action.display, 'display') as display:
                result = action.run(task_vars={'inventory_hostname': 'web1'})
    return result, display


def test_report_prints_one_line_after_a_successful_call(switch_action):
    args = {'root': '/srv/app', 'target': 'previous_good', 'report': True, 'history': {'action': 'rollback'}}
    result, display = run_reporting(switch_action, args, ROLLED_BACK)
    display.assert_called_once_with(switch_action.report_line(ROLLED_BACK, 'web1', 'rollback'))
    assert result['current'] == 'v1'


def test_report_prints_nothing_on_failure_or_without_the_option(switch_action):
    failed = dict(ROLLED_BACK, failed=True, msg='lock held by bob')
    args = {'root': '/srv/app', 'target': 'previous_good', 'report': True, 'history': {'action': 'rollback'}}
    result, display = run_reporting(switch_action, args, failed)
    display.assert_not_called()
    assert result['failed'] is True
    result, display = run_reporting(switch_action, {'root': '/srv/app', 'release': 'v1'}, ROLLED_BACK)
    display.assert_not_called()


def test_a_late_switch_is_warned_about_naming_the_host_and_how_late(switch_action):
    action = make_action(switch_action, {'root': '/srv/app', 'release': 'v1', 'at': 1796630400.0})
    answer = {'changed': True, 'current': 'v1', 'late': 0.6565, 'switched_at': '2026-12-07T11:13:10.934Z'}
    with mock.patch.object(action, '_execute_module', return_value=answer):
        with mock.patch.object(action, '_remove_tmp_path'):
            with mock.patch.object(switch_action.display, 'warning') as warning:
                action.run(task_vars={'inventory_hostname': 'web3'})
    (message,), _kwargs = warning.call_args
    assert message.startswith('web3 switched 656.5 ms after the moment it was given (at)') and 'deploy_switch_delay' in message


@pytest.mark.parametrize('late', [None, 0.0, 0.05, True])
def test_a_switch_on_time_or_without_a_moment_is_not_warned_about(switch_action, late):
    assert switch_action.late_warning({'late': late}, 'web1') is None
