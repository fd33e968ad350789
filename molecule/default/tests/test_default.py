# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Verify the host after playbooks/provision.yml, then playbooks/deploy.yml of v1 and of v2."""

from __future__ import annotations

import json

ROOT = '/srv/www/shop'
# The test value molecule.yml gives stagehand_db_password.
DB_PASSWORD = 'molecule-default-pw'
# the phases of a deploy through them (v1, v2: migrations to apply); ship and stage are one call, 'prepare'
DEPLOY_PHASES = {'build', 'platform', 'lock', 'prepare', 'migrate', 'preview', 'switch', 'post_switch'}
# The page text v2 adds (tests/fixtures/app-repo/v2.patch).
V2_GREETING = 'Welcome to the stagehand example app! Visits now record the browser.'


def _json(host, path):
    return json.loads(host.file(path).content_string)


def _get(host, path):
    """(status, headers, body) of a GET through nginx on the host."""
    out = host.check_output('curl -sS -D - -o /tmp/molecule-body http://127.0.0.1%s', path)
    status_line, _sep, rest = out.partition('\r\n')
    headers = {}
    for line in rest.splitlines():
        name, sep, value = line.partition(':')
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, host.file('/tmp/molecule-body').content_string


def _history(host):
    return [json.loads(line) for line in host.file(ROOT + '/.stagehand/history.jsonl').content_string.splitlines() if line.strip()]


def test_services_are_running(host):
    for unit in ('nginx', 'php8.2-fpm', 'memcached', 'mariadb'):
        assert host.service(unit).is_running, unit


def test_current_points_at_v2(host):
    current = host.file(ROOT + '/current')
    assert current.is_symlink
    # a relative link, so the root can be moved or mounted elsewhere
    assert host.check_output('readlink %s', ROOT + '/current') == 'releases/v2'
    assert host.file(ROOT + '/releases/v2/RELEASE').content_string == 'v2\n'


def test_site_serves_v2(host):
    status, headers, body = _get(host, '/')
    assert status == 200
    assert headers['x-release'] == 'v2'
    # nginx names the release that served the request itself, from the real path of the web root
    assert headers['x-served-release'] == 'v2'
    assert V2_GREETING in body
    assert 'release: v2' in body
    # the memcached namespace is the release
    assert 'shop:v2:' in body


def test_health_answers_200_for_v2(host):
    status, headers, body = _get(host, '/health')
    assert status == 200
    assert headers['x-release'] == 'v2'
    assert json.loads(body) == {'release': 'v2', 'db': 'ok', 'cache': 'ok'}


def test_both_releases_are_complete_and_chained(host):
    v1 = _json(host, ROOT + '/.stagehand/releases/v1.json')
    v2 = _json(host, ROOT + '/.stagehand/releases/v2.json')
    for meta, name in ((v1, 'v1'), (v2, 'v2')):
        assert meta['name'] == name
        assert meta['status'] == 'complete'
        assert meta['manifest_digest'].startswith('sha256:')
        assert meta['failed_reason'] is None
        assert meta['activated']
        assert host.file(ROOT + '/releases/' + name).is_directory
    assert v2['previous'] == 'v1'
    assert v1['next'] == 'v2'
    assert v1['manifest_digest'] != v2['manifest_digest']


def test_releases_are_owned_by_root_and_built_without_git(host):
    for name in ('v1', 'v2'):
        release = ROOT + '/releases/' + name
        assert host.file(release + '/public/index.php').user == 'root'
        assert not host.file(release + '/public/index.php').mode & 0o022
        assert not host.file(release + '/.git').exists
        # composer ran on the controller: the optimized autoloader is in the release
        assert host.file(release + '/vendor/autoload.php').exists
        assert host.file(release + '/vendor/composer/autoload_classmap.php').exists


def test_shared_env_is_linked_and_private(host):
    env = host.file(ROOT + '/shared/.env')
    assert env.is_file
    assert env.mode == 0o640
    assert env.user == 'root'
    assert env.group == 'www-data'
    assert 'DB_PASSWORD="%s"' % DB_PASSWORD in env.content_string
    assert 'dbname=shop' in env.content_string
    for name in ('v1', 'v2'):
        link = host.file(ROOT + '/releases/%s/.env' % name)
        assert link.is_symlink
        assert host.check_output('readlink -f %s', link.path) == ROOT + '/shared/.env'
        storage = ROOT + '/releases/%s/storage' % name
        assert host.file(storage).is_symlink
        assert host.check_output('readlink -f %s', storage) == ROOT + '/shared/storage'
    assert host.file(ROOT + '/shared/storage').user == 'www-data'


def test_history_has_two_successful_deploys(host):
    history = _history(host)
    assert [(e['action'], e['release'], e['previous'], e['outcome']) for e in history] == [
        ('deploy', 'v1', None, 'success'),
        ('deploy', 'v2', 'v1', 'success'),
    ]
    for entry in history:
        assert entry['error'] is None
        assert entry['user']
        assert entry['start'] <= entry['end']
        assert set(entry['phases']) == DEPLOY_PHASES, entry['phases']
        assert all(isinstance(s, (int, float)) and s >= 0 for s in entry['phases'].values())


def test_lock_is_free_and_nothing_left_over(host):
    assert not host.file(ROOT + '/.stagehand/lock').exists
    assert host.check_output('ls -A %s', ROOT + '/.stagehand/stage') == ''
    # the uploaded archives are removed after each deploy
    assert host.check_output('find %s -maxdepth 1 -name "upload-*"', ROOT + '/.stagehand') == ''


def test_database_has_the_v2_migrations(host):
    out = host.check_output(
        "mysql -N -B -e 'SELECT id, `release`, irreversible FROM stagehand_migrations ORDER BY id' shop")
    assert [line.split('\t') for line in out.splitlines()] == [
        ['0001_create_visits', 'v1', '0'],
        ['0002_add_visits_user_agent', 'v2', '0'],
    ]
    columns = host.check_output("mysql -N -B -e 'SHOW COLUMNS FROM visits' shop")
    assert 'user_agent' in columns
    # a dump was taken before each deploy that applied migrations
    for name in ('v1', 'v2'):
        dump = host.file(ROOT + '/.stagehand/dumps/%s.sql.gz' % name)
        assert dump.is_file
        assert dump.mode == 0o600
