# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""No secret in the line a module writes to the target's journal when it starts.

Every module that receives a secret or a token is run for real, with ``AnsibleModule.log``
(what writes to journald or syslog) recorded: neither the message nor the journal fields may
hold the secret, nested or not.
"""

from __future__ import annotations

import typing as t

import pytest

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.stagehand.deploy.plugins.module_utils._module import NOT_LOGGED, invocation_log_args
from ansible_collections.stagehand.deploy.plugins.modules import cleanup, lock, migrate, patch, ship

PASSWORD = 'S3cret-DB-pw'
TOKEN = 'f00dfeedcafe0123456789abcdef0000'
ENV = 'APP_ENV=production\nDB_PASSWORD=%s\nDB_HOST=localhost\n' % PASSWORD


@pytest.fixture
def journal(monkeypatch) -> list[str]:
    """Everything the modules send to the target's log in this test: messages and journal fields."""
    sent: list[str] = []

    def log(self, msg, log_args=None):
        sent.append(msg)
        sent.extend('%s=%s' % item for item in (log_args or {}).items())

    monkeypatch.setattr(AnsibleModule, 'log', log)
    return sent


def _assert_clean(journal: list[str], *secrets: str) -> None:
    assert journal, 'the module logged nothing: the test would prove nothing'
    assert any(line.startswith('Invoked with') for line in journal)
    for secret in secrets:
        leaked = [line for line in journal if secret in line]
        assert not leaked, 'secret %r reached the journal: %r' % (secret, leaked)


def test_ship_env_file_content_is_not_logged(run_module, journal, tmp_path):
    run_module(ship.main, dict(
        root=str(tmp_path / 'root'), release='v1', compose=dict(compose_id='0' * 64),
        env_file=dict(content=ENV, mode='0640'),
        lock=dict(owner='alice', controller='ctl', pid=1, purpose='deploy v1'),
    ))
    _assert_clean(journal, PASSWORD, 'DB_PASSWORD')
    # what is not secret is still there, so the journal stays useful
    assert any('release=v1' in line for line in journal)


def test_lock_token_is_not_logged(run_module, journal, tmp_path):
    run_module(lock.main, dict(root=str(tmp_path / 'root'), state='absent', token=TOKEN))
    _assert_clean(journal, TOKEN)


def test_stale_token_of_a_takeover_is_not_logged(run_module, journal, tmp_path):
    # the rerun after a killed deploy takes the dead holder's lock over, naming its token
    run_module(lock.main, dict(root=str(tmp_path / 'root'), state='present', owner='alice', controller='ctl', pid=1,
                               purpose='deploy v1', stale_token=TOKEN, stale_reason='its process is gone'))
    _assert_clean(journal, TOKEN)


def test_ship_stale_token_is_not_logged(run_module, journal, tmp_path):
    run_module(ship.main, dict(
        root=str(tmp_path / 'root'), release='v1', compose=dict(compose_id='0' * 64),
        lock=dict(owner='alice', controller='ctl', pid=1, purpose='deploy v1', stale_token=TOKEN),
    ))
    _assert_clean(journal, TOKEN)


def test_cleanup_token_is_not_logged(run_module, journal, tmp_path):
    run_module(cleanup.main, dict(root=str(tmp_path / 'root'), keep=2, token=TOKEN))
    _assert_clean(journal, TOKEN)


def test_migrate_password_is_not_logged(run_module, journal, tmp_path):
    run_module(migrate.main, dict(
        path=str(tmp_path / 'migrations'), database='app', login_user='app', login_password=PASSWORD,
        login_host='127.0.0.1',
    ))
    _assert_clean(journal, PASSWORD)


def test_patch_secret_file_content_is_not_logged(run_module, journal, tmp_path):
    (tmp_path / 'etc').mkdir()
    result = run_module(patch.main, dict(
        path=str(tmp_path / 'etc'), operations=[dict(op='create', path='app.env', content=ENV, mode='0600')],
    ))
    assert not result.get('failed'), result
    assert (tmp_path / 'etc' / 'app.env').read_text() == ENV
    _assert_clean(journal, PASSWORD)


SPEC: dict[str, t.Any] = dict(
    env_file=dict(type='dict', options=dict(content=dict(type='str', no_log=True), mode=dict(type='str'))),
    token=dict(type='str', no_log=False),
    db_password=dict(type='str'),
    login_password=dict(type='str', no_log=True),
    items=dict(type='list'),
    name=dict(type='str'),
)


def test_nested_no_log_value_is_masked_before_it_becomes_text():
    params = dict(env_file=dict(content=ENV, mode='0640'), token=None, db_password=None, login_password=None,
                  items=[dict(note='x' + ENV)], name='v1')
    logged = invocation_log_args(params, SPEC, [ENV])
    assert ENV not in ''.join(logged.values())
    assert PASSWORD not in ''.join(logged.values())
    assert logged['name'] == 'v1'
    assert "'mode': '0640'" in logged['env_file']


def test_redacted_options_and_password_names_are_not_logged_at_any_depth():
    params = dict(env_file=None, token=TOKEN, db_password=PASSWORD, login_password=PASSWORD,
                  items=[dict(content='anything', token=TOKEN, keep=1)], name='v1')
    logged = invocation_log_args(params, SPEC, [])
    assert logged['token'] == NOT_LOGGED
    assert logged['db_password'] == NOT_LOGGED
    assert logged['login_password'] == NOT_LOGGED
    assert TOKEN not in logged['items'] and 'anything' not in logged['items']
    assert "'keep': 1" in logged['items']
