# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The outcome a run hands to its caller (set_stats key stagehand): one result per host and one for the run."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.stagehand.deploy.plugins.filter.run_stats import FilterModule, run_stats
from ansible_collections.stagehand.deploy.plugins.module_utils._result import host_result, run_stats as stats_of

LINE = {'action': 'deploy', 'release': 'v2', 'previous': 'v1', 'outcome': 'success', 'phases': {'ship': 0.5123, 'switch': '0.02'},
        'error': None}


class Exploding(dict):
    """hostvars whose variable cannot be templated any more (a task var of the role, out of scope)."""

    def __getitem__(self, name):
        if name == 'deploy__phases':
            raise RuntimeError('undefined')
        return super().__getitem__(name)


def test_a_fast_path_deploy_is_read_from_the_ship_calls_history_line():
    result = host_result('deploy', 'web1', {'stagehand__ended': True, 'deploy__shipped': {'history': LINE, 'compose_id': 'c1'}})
    assert result == {'action': 'deploy', 'outcome': 'success', 'release': 'v2', 'previous': 'v1', 'compose_id': 'c1',
                      'failed_phase': None, 'phases': {'ship': 0.512, 'switch': 0.02},
                      'message': 'v2 is live on web1 (before: v1)'}


def test_the_history_modules_line_is_the_last_written_and_wins():
    phases_line = dict(LINE, release='v3', previous='v2')
    result = host_result('deploy', 'web1', {'stagehand__ended': True, 'deploy__shipped': {'history': LINE},
                                            'deploy__recorded': {'record': phases_line}})
    assert (result['release'], result['previous']) == ('v3', 'v2')


def test_a_redeploy_of_what_is_live_writes_nothing_and_says_so():
    result = host_result('deploy', 'web1', {'stagehand__ended': True, 'deploy__store_compose': {'compose_id': 'c9', 'release': 'v2'},
                                            'deploy_release_name': 'v2'})
    assert result['outcome'] == 'success'
    assert result['compose_id'] == 'c9'
    assert result['message'] == 'web1: v2 was already live, nothing was changed'


@pytest.mark.parametrize('decided, line_outcome, want', [
    ('refused', None, 'refused'),
    ('rolled_back', 'rolled_back', 'rolled_back'),
    (None, 'rolled_back', 'rolled_back'),
    (None, 'refused', 'refused'),
    (None, None, 'failed'),
    ('success', 'success', 'failed'),   # the host did not reach the end: not a success, whatever was noted
    ('nonsense', None, 'failed'),
])
def test_a_host_that_did_not_reach_the_end_has_the_outcome_the_role_decided(decided, line_outcome, want):
    host_vars = {'deploy__message': 'deploy of v4 failed in phase switch on web1:  health\n check failed.',
                 'deploy__failed_phase': 'switch'}
    if decided is not None:
        host_vars['deploy__outcome'] = decided
    if line_outcome is not None:
        host_vars['deploy__recorded'] = {'record': dict(LINE, release='v4', outcome=line_outcome)}
    result = host_result('deploy', 'web1', host_vars)
    assert result['outcome'] == want
    assert result['failed_phase'] == 'switch'
    assert result['message'] == 'deploy of v4 failed in phase switch on web1: health check failed.'


def test_a_host_that_left_nothing_is_failed_and_the_message_says_why_nothing_is_known():
    result = host_result('rollback', 'web2', {})
    assert result['outcome'] == 'failed'
    assert result['release'] is None
    assert 'web2 failed or was unreachable before the rollback could report a result' in result['message']


def test_a_fast_rollback_is_read_from_the_switch_calls_history_line():
    line = {'action': 'rollback', 'release': 'v1', 'previous': 'v2', 'outcome': 'success', 'phases': {'switch': 0.1}}
    result = host_result('rollback', 'web1', {'stagehand__ended': True, 'deploy__fast': {'history': line}})
    assert result['message'] == 'v1 is live on web1 (before: v2)'


def test_cleanup_and_status_say_what_they_found():
    cleaned = host_result('cleanup', 'web1', {'stagehand__ended': True, 'deploy__cleaned': {'removed': ['v1', 'v0']}})
    assert cleaned['message'] == 'web1: removed v1, v0'
    status = host_result('status', 'web1', {'stagehand__ended': True, 'deploy__status': {'exists': True, 'live': 'v2',
                                                                                         'previous': 'v1'}})
    assert status['message'] == 'web1: v2 is live (previous: v1)'
    empty = host_result('status', 'web1', {'stagehand__ended': True, 'deploy__status': {'exists': False}})
    assert empty['message'] == 'web1: nothing deployed yet'


def test_the_run_has_the_worst_outcome_of_its_hosts_and_names_the_hosts_that_did_not_succeed():
    ok = host_result('deploy', 'web1', {'stagehand__ended': True, 'deploy__shipped': {'history': LINE}})
    bad = host_result('deploy', 'web2', {'deploy__outcome': 'rolled_back', 'deploy__message': 'v2 went live and failed'})
    refused = host_result('deploy', 'web3', {'deploy__outcome': 'refused', 'deploy__message': 'lock held'})
    run = stats_of('deploy', {'web2': bad, 'web1': ok, 'web3': refused})
    assert run['outcome'] == 'rolled_back'
    assert run['message'] == 'web2: v2 went live and failed; web3: lock held'
    assert list(run['hosts']) == ['web1', 'web2', 'web3']
    assert stats_of('deploy', {'web1': ok, 'web3': refused})['outcome'] == 'refused'
    failed = host_result('deploy', 'web4', {})
    assert stats_of('deploy', {'web1': ok, 'web2': bad, 'web4': failed})['outcome'] == 'failed'


def test_a_successful_run_names_its_release_when_every_host_has_the_same():
    one = host_result('deploy', 'web1', {'stagehand__ended': True, 'deploy__shipped': {'history': LINE}})
    two = host_result('deploy', 'web2', {'stagehand__ended': True, 'deploy__shipped': {'history': LINE}})
    run = stats_of('deploy', {'web1': one, 'web2': two})
    assert (run['outcome'], run['release'], run['previous']) == ('success', 'v2', 'v1')
    assert run['message'] == 'deploy of v2: success on 2 hosts'
    other = host_result('deploy', 'web3', {'stagehand__ended': True, 'deploy__shipped': {'history': dict(LINE, release='v3')}})
    assert stats_of('deploy', {'web1': one, 'web3': other})['release'] is None


def test_a_run_on_no_host_is_refused():
    assert stats_of('status', {}) == {'action': 'status', 'outcome': 'refused', 'release': None, 'previous': None, 'hosts': {},
                                      'message': 'no host matched: the status ran nowhere'}


def test_the_filter_reads_only_the_known_variables_and_skips_those_that_cannot_be_templated():
    hostvars = {'web1': Exploding(stagehand__ended=True, deploy__shipped={'history': LINE}, deploy__phases={}, secret='x'),
                'web2': {}}
    run = run_stats(hostvars, 'deploy', ['web1', 'web2', 'gone'])
    assert run['hosts']['web1']['outcome'] == 'success'
    assert run['hosts']['gone']['outcome'] == 'failed'
    assert 'secret' not in repr(run)


def test_an_unknown_action_is_refused_by_name():
    with pytest.raises(AnsibleFilterError, match="action 'deplyo' is not one of deploy, rollback, cleanup, status, provision, build"):
        run_stats({}, 'deplyo', ['web1'])


def test_the_filter_is_registered():
    assert FilterModule().filters() == {'run_stats': run_stats}


def test_build_and_provision_say_what_they_did():
    built = host_result('build', 'web1', {'stagehand__ended': True, 'deploy__compose': {'release': 'v2', 'compose_id': 'c7'}})
    assert (built['release'], built['compose_id'], built['message']) == ('v2', 'c7', 'composed v2 (c7)')
    assert host_result('provision', 'web1', {'stagehand__ended': True})['message'] == 'web1: provisioned'


def test_a_check_mode_deploy_hands_over_the_preview_of_each_host():
    preview = {'line': 'web1: would send 1 file(s) of 9 (10 bytes), stage releases/v3 and switch current from v2 to v3',
               'send': {'files': 1, 'bytes': 10}, 'refused': None}
    result = host_result('deploy', 'web1', {'stagehand__ended': True,
                                            'deploy__shipped': {'preview': preview, 'release': 'v3', 'previous': 'v2', 'history': None}})
    assert (result['outcome'], result['release'], result['previous']) == ('success', 'v3', 'v2')
    assert result['message'] == preview['line']
    assert result['preview'] == preview
    assert 'preview' not in host_result('deploy', 'web1', {'stagehand__ended': True, 'deploy__shipped': {'history': LINE}})
