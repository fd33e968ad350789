# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os

import pytest

from ansible_collections.stagehand.deploy.plugins.modules.platform import main


@pytest.fixture
def php_fpm(tmp_path):
    path = tmp_path / 'bin' / 'php-fpm8.2'
    path.parent.mkdir()
    path.write_text('#!/bin/sh\ncase "$1" in\n'
                    '-v) echo "PHP 8.2.7 (fpm-fcgi) (built: Jan  1 2026 00:00:00)";;\n'
                    '-m) printf "[PHP Modules]\\nCore\\nPDO\\npdo_mysql\\njson\\n\\n[Zend Modules]\\nZend OPcache\\n";;\n'
                    'esac\n')
    os.chmod(str(path), 0o755)
    return str(path)


def test_all_met(run_module, php_fpm):
    result = run_module(main, {'php': '>=8.2', 'extensions': ['ext-pdo_mysql', 'opcache', 'JSON'], 'php_binary': php_fpm})
    assert not result.get('failed') and result['changed'] is False
    assert result['version'] == '8.2.7' and result['missing'] == []
    assert 'opcache' in result['modules']


def test_everything_missing_is_listed(run_module, php_fpm, tmp_path, snapshot):
    before = snapshot(str(tmp_path))
    result = run_module(main, {'php': ['^8.3', '>=8.0'], 'extensions': ['ext-memcached', 'ext-pdo', 'redis', 'intl'],
                               'php_binary': php_fpm})
    assert result['failed'] is True and result['changed'] is False
    assert 'PHP 8.2.7 does not satisfy ^8.3' in result['msg']
    assert '3 required PHP extensions are missing: intl, memcached, redis' in result['msg']
    assert php_fpm in result['msg']
    assert result['missing_extensions'] == ['intl', 'memcached', 'redis']
    assert result['php_failed'] == ['^8.3']
    assert snapshot(str(tmp_path)) == before


def test_check_mode_checks_too(run_module, php_fpm):
    result = run_module(main, {'extensions': ['redis'], 'php_binary': php_fpm}, check_mode=True)
    assert result['failed'] is True and 'redis' in result['msg']


@pytest.mark.parametrize('php, words', [
    ('newest', ["'newest'", 'supported are']),
    ({'a': 1}, ['php must be a composer version constraint']),
])
def test_bad_input(run_module, php_fpm, tmp_path, snapshot, php, words):
    before = snapshot(str(tmp_path))
    result = run_module(main, {'php': php, 'php_binary': php_fpm})
    assert result['failed'] is True
    for word in words:
        assert word in result['msg']
    assert snapshot(str(tmp_path)) == before


def test_missing_binary(run_module, tmp_path):
    result = run_module(main, {'php_binary': str(tmp_path / 'php-fpm7.0')})
    assert result['failed'] is True and 'php-fpm7.0 is not installed' in result['msg']
