# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils._platform import (
    ConstraintError,
    PlatformError,
    Requirements,
    check,
    check_host,
    composer_requirements,
    extension_name,
    message,
    parse_constraint,
    satisfies,
    unfit_hosts,
)


@pytest.mark.parametrize('constraint, yes, no', [
    ('8.2.7', ['8.2.7'], ['8.2.8', '8.2.6']),
    ('=8.2.7', ['8.2.7'], ['8.2.8']),
    ('==8.2.7', ['8.2.7'], ['8.3.0']),
    ('>=8.2', ['8.2.0', '8.3.1', '9.0.0'], ['8.1.99']),
    ('>8.2', ['8.2.1'], ['8.2.0']),
    ('<8.3', ['8.2.99'], ['8.3.0']),
    ('<=8.3.0', ['8.3.0'], ['8.3.1']),
    ('!=8.2.5', ['8.2.4'], ['8.2.5']),
    ('<>8.2.5', ['8.2.6'], ['8.2.5']),
    ('^8.1', ['8.1.0', '8.4.2'], ['8.0.30', '9.0.0']),
    ('^8.1.3', ['8.1.3', '8.9.0'], ['8.1.2', '9.0.0']),
    ('^0.3', ['0.3.0', '0.3.9'], ['0.4.0', '0.2.9']),
    ('^0.0.3', ['0.0.3'], ['0.0.4']),
    ('^8', ['8.0.0', '8.9.9'], ['9.0.0', '7.4.33']),
    ('~8.1', ['8.1.0', '8.4.0'], ['9.0.0', '8.0.9']),
    ('~8.1.2', ['8.1.2', '8.1.30'], ['8.2.0', '8.1.1']),
    ('~8', ['8.0.0', '8.5.0'], ['9.0.0']),
    ('8.2.*', ['8.2.0', '8.2.30'], ['8.3.0', '8.1.9']),
    ('8.*', ['8.0.0', '8.4.1'], ['9.0.0', '7.4.0']),
    ('8.x', ['8.3.0'], ['9.0.0']),
    ('*', ['5.6.0', '8.2.7'], []),
    ('>=8.1 <8.3', ['8.1.0', '8.2.27'], ['8.3.0', '8.0.0']),
    ('>=8.1,<8.3', ['8.2.0'], ['8.3.0']),
    ('>= 8.1, < 8.3', ['8.2.0'], ['8.3.0']),
    ('^7.4 || ^8.0', ['7.4.33', '8.2.7'], ['7.3.0', '9.0.0']),
    ('^7.4|^8.0', ['8.0.0'], ['9.1.0']),
    ('7.4.* || >=8.1 <8.3', ['7.4.1', '8.2.0'], ['8.0.5', '8.3.0']),
    ('8.1 - 8.2', ['8.1.0', '8.2.99'], ['8.3.0', '8.0.9']),
    ('8.1 - 8.2.5', ['8.2.5'], ['8.2.6']),
    ('v8.2.0', ['8.2.0'], ['8.2.1']),
    ('>=8.2-dev', ['8.2.0'], ['8.1.0']),
    ('^8.1@stable', ['8.2.0'], ['9.0.0']),
])
def test_constraints(constraint, yes, no):
    for version in yes:
        assert satisfies(version, constraint), '%s should satisfy %s' % (version, constraint)
    for version in no:
        assert not satisfies(version, constraint), '%s should not satisfy %s' % (version, constraint)


@pytest.mark.parametrize('constraint', ['', 'latest', '>=', '>=8.2 || ', 'dev-main', '>8.*', '8.*.1', '>=eight', '8.2.1.3.4', '~8.*'])
def test_unsupported_constraints_name_the_constraint(constraint):
    with pytest.raises(ConstraintError) as exc:
        parse_constraint(constraint)
    text = str(exc.value)
    if constraint.strip():
        assert repr(constraint) in text
    else:
        assert 'empty' in text


def test_unsupported_lists_what_is_supported():
    with pytest.raises(ConstraintError) as exc:
        parse_constraint('latest')
    assert '^8.1' in str(exc.value) and '||' in str(exc.value)


def test_extension_names():
    assert extension_name('ext-PDO_MySQL') == 'pdo_mysql'
    assert extension_name('Zend OPcache') == 'opcache'
    assert extension_name('ext-zend-opcache') == 'opcache'
    assert extension_name('memcached') == 'memcached'


def test_check_lists_everything_missing():
    result = check('8.2.7', ['Core', 'PDO', 'pdo_mysql', 'Zend OPcache'], ['>=8.3', '^8.0'], ['ext-pdo', 'ext-memcached', 'redis', 'opcache'])
    assert result['php_failed'] == ['>=8.3']
    assert result['missing_extensions'] == ['memcached', 'redis']
    text = message('php-fpm8.2', result)
    assert 'PHP 8.2.7 does not satisfy >=8.3' in text
    assert '2 required PHP extensions are missing: memcached, redis' in text
    assert text.startswith('php-fpm8.2 on this host')
    assert result['missing'] == ['php 8.2.7 does not satisfy the constraint >=8.3', 'extension memcached is not loaded',
                                 'extension redis is not loaded']


def test_check_all_met():
    result = check('8.2.7', ['pdo', 'json'], ['>=8.2'], ['ext-json', 'PDO'])
    assert result['missing'] == []


def test_composer_requirements(tmp_path):
    (tmp_path / 'composer.json').write_text(json.dumps({'require': {'php': '>=8.2', 'ext-pdo': '*', 'ext-memcached': '^3.2', 'acme/x': '^1.0'}}))
    (tmp_path / 'composer.lock').write_text(json.dumps({'packages': [
        {'name': 'acme/x', 'require': {'php': '^8.1', 'ext-json': '*', 'ext-PDO': '*'}},
        {'name': 'acme/y', 'require': {'psr/log': '^3'}},
    ]}))
    req = composer_requirements(str(tmp_path))
    doc = req.to_json()
    assert doc['php'] == ['>=8.2', '^8.1']
    assert doc['extensions'] == ['json', 'memcached', 'pdo']
    assert doc['sources']['extensions']['pdo'] == ['composer.json', 'composer.lock package acme/x']


def test_composer_requirements_bad_constraint_names_the_source(tmp_path):
    (tmp_path / 'composer.json').write_text(json.dumps({'require': {'php': 'latest'}}))
    with pytest.raises(PlatformError) as exc:
        composer_requirements(str(tmp_path))
    assert "composer.json requires php 'latest'" in exc.value.msg


def test_requirements_refuse_bad_extension_name():
    with pytest.raises(PlatformError):
        Requirements().add_extension('pdo mysql; rm', 'stagehand.yml')


def fake_php(tmp_path, version='8.2.7', modules=('Core', 'PDO', 'pdo_mysql', 'Zend OPcache')):
    path = tmp_path / 'php-fpm-fake'
    body = ['#!/bin/sh', 'case "$1" in',
            '-v) echo "PHP %s (fpm-fcgi) (built: Jan 1 2026 00:00:00)"; echo "Copyright (c) The PHP Group";;' % version,
            '-m) echo "[PHP Modules]"; %s; echo; echo "[Zend Modules]"; echo "Zend OPcache";;' % '; '.join('echo "%s"' % m for m in modules),
            '*) exit 2;;', 'esac']
    path.write_text('\n'.join(body) + '\n')
    os.chmod(str(path), 0o755)
    return str(path)


def test_check_host_with_a_fake_binary(tmp_path):
    binary = fake_php(tmp_path)
    result = check_host(binary, ['>=8.2'], ['pdo_mysql', 'memcached'])
    assert result['version'] == '8.2.7'
    assert 'opcache' in result['modules'] and 'pdo' in result['modules']
    assert result['missing_extensions'] == ['memcached']


def test_check_host_missing_binary(tmp_path):
    with pytest.raises(PlatformError) as exc:
        check_host(str(tmp_path / 'php-fpm9'), [], [])
    assert 'php-fpm9' in exc.value.msg and 'not installed' in exc.value.msg


def test_check_host_bad_constraint_before_running(tmp_path):
    with pytest.raises(PlatformError) as exc:
        check_host(str(tmp_path / 'never-run'), ['>=8.2', 'newest'], [])
    assert "'newest'" in exc.value.msg


def test_unfit_hosts_names_each_host_and_what_it_lacks():
    req = Requirements()
    req.add_php('>=8.1', 'composer.json')
    req.add_extension('ext-Intl', 'composer.json')
    req.add_extension('ext-pdo_mysql', 'composer.lock package acme/db')
    hosts = {
        'web1': {'version': '8.2.7', 'modules': ['intl', 'pdo_mysql', 'opcache']},
        'web2': {'version': '8.2.7', 'modules': ['pdo_mysql']},
        'web3': {'version': '8.0.30', 'modules': []},
        'web4': {'skipped': True},                     # its check did not run: left to the check before staging
        'web5': {'version': None, 'msg': 'php-fpm8.2: not found'},
    }
    assert unfit_hosts(hosts, req) == {
        'web2': '1 required PHP extension is missing: intl',
        'web3': 'PHP 8.0.30 does not satisfy >=8.1; 2 required PHP extensions are missing: intl, pdo_mysql',
    }
    assert unfit_hosts({'web1': hosts['web1']}, req) == {}
    assert unfit_hosts(hosts, Requirements()) == {}
