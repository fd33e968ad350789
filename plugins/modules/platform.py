#!/usr/bin/python
# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: platform
short_description: Check that the host's php-fpm meets a release's PHP version and extension requirements
version_added: 0.1.0
description:
  - Runs C(<php_binary> -v) and C(<php_binary> -m) on the managed host and compares the PHP version with every
    constraint of O(php) and the loaded modules with O(extensions). The module list of php-fpm itself is used
    (not the CLI's), because that is what the application gets.
  - Fails with a message listing B(everything) that is missing (each unmet constraint with the host's version, and every
    missing extension), so one run shows the whole fix. Changes nothing, ever.
  - Constraints use composer's syntax, for example C(>=8.2), C(^8.1), C(~8.2.0), C(8.2.*), C(>=8.1 <8.4),
    C(^7.4 || ^8.0), C(8.1 - 8.3). Unsupported syntax fails with a message naming the constraint.
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
attributes:
  check_mode:
    support: full
    description: Runs the same read-only checks in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
  idempotent:
    support: full
    description: Never changes anything.
options:
  php:
    description:
      - Composer version constraints for PHP, a string or a list of strings that must B(all) hold.
      - An empty list checks no version.
    type: raw
    default: []
  extensions:
    description:
      - Names of PHP extensions that must be loaded, with or without the C(ext-) prefix (C(ext-pdo_mysql) or C(pdo_mysql)).
        Case does not matter; C(opcache) matches C(Zend OPcache).
    type: list
    elements: str
    default: []
  php_binary:
    description: The php-fpm binary on the host whose version and modules are checked (a name in C(PATH) or a path).
    type: str
    default: php-fpm8.2
notes:
  - The platform requirements of a composed release are returned by M(stagehand.deploy.compose) as RV(stagehand.deploy.compose#module:platform).
  - Extension version constraints (such as C(^3.2) for C(ext-memcached)) are not checked, only that the extension is loaded.
seealso:
  - module: stagehand.deploy.compose
'''

EXAMPLES = r'''
- name: Check the platform before staging anything
  stagehand.deploy.platform:
    php: ">=8.2"
    extensions: [ext-pdo_mysql, ext-memcached, opcache]

- name: Check what the composed release needs, against another php-fpm
  stagehand.deploy.platform:
    php: "{{ compose.platform.php }}"
    extensions: "{{ compose.platform.extensions }}"
    php_binary: /usr/sbin/php-fpm8.3
'''

RETURN = r'''
version:
  description: The PHP version reported by O(php_binary).
  returned: when the binary could be run
  type: str
  sample: 8.2.7
modules:
  description: The modules loaded by O(php_binary), canonical names (lower case, C(opcache) for C(Zend OPcache)), sorted.
  returned: when the binary could be run
  type: list
  elements: str
  sample: [core, date, memcached, opcache, pdo, pdo_mysql]
missing:
  description: Every unmet requirement, one line each (empty when all are met).
  returned: when the binary could be run
  type: list
  elements: str
  sample: ["php 8.2.7 does not satisfy the constraint ^8.3", "extension redis is not loaded"]
missing_extensions:
  description: The required extensions that are not loaded.
  returned: when the binary could be run
  type: list
  elements: str
  sample: [redis]
php_failed:
  description: The constraints the PHP version does not satisfy.
  returned: when the binary could be run
  type: list
  elements: str
  sample: ["^8.3"]
'''


from ansible_collections.stagehand.deploy.plugins.module_utils._module import StagehandModule
from ansible_collections.stagehand.deploy.plugins.module_utils._platform import PlatformError, check_host, message


def main() -> None:
    module = StagehandModule(
        argument_spec=dict(
            php=dict(type='raw', default=[]),
            extensions=dict(type='list', elements='str', default=[]),
            php_binary=dict(type='str', default='php-fpm8.2'),
        ),
        supports_check_mode=True,
    )
    php = module.params['php']
    if php is None or php == '':
        php = []
    elif isinstance(php, (str, int, float)) and not isinstance(php, bool):
        php = [str(php)]
    elif isinstance(php, list) and all(isinstance(c, str) for c in php):
        php = list(php)
    else:
        module.fail_json(msg='php must be a composer version constraint (such as ">=8.2") or a list of them, got %r' % (php,))
    binary = module.params['php_binary']
    try:
        result = check_host(binary, php, module.params['extensions'])
    except PlatformError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    if result['missing']:
        module.fail_json(msg=message(binary, result), changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
