#!/usr/bin/python
# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: opcache
short_description: Invalidate php-fpm's opcache for files of a deploy root, through the pool's FastCGI socket
version_added: 0.1.0
description:
  - Runs a small PHP script inside a php-fpm pool, through the pool's unix socket with a FastCGI request (as nginx
    would), that calls C(opcache_invalidate(file, true)) for every file in O(files) and every script opcache holds
    below O(prefix), then checks with C(opcache_is_script_cached) that none of them is cached any more, and answers
    JSON. The task fails when a script is still cached afterwards.
  - Used in A/B slots mode before the flip to a slot that was patched in place, so that php-fpm cannot run the code
    the slot held the last time it was live (same paths, other content). Forced invalidation is immediate for every
    worker of the pool (opcache is shared memory), unlike C(opcache_reset()), which waits until no request runs.
  - The script is written to C(<root>/.stagehand/opcache-<digest>.php) (mode 0644, owned by the user running the
    module), outside every document root, and only acts on paths below O(root). Its name carries a digest of its
    content, so a new version is a new path that opcache cannot confuse with the old one.
  - A file that was removed cannot be invalidated (opcache looks scripts up by real path); such files are listed in
    RV(gone). Nothing can include them by that path any more, and if they come back they have a new timestamp.
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Asks the pool which of the scripts are cached (a read-only run of the script) and reports V(changed=true)
        when some are; nothing is invalidated. When the script is not in place yet, nothing is asked and the result
        is V(changed=true).
  diff_mode:
    support: none
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: full
    details:
      - The second run finds nothing cached to invalidate (unless requests compiled the files again in between).
  platform:
    platforms: posix
options:
  root:
    description:
      - The deploy root. The script is kept in C(<root>/.stagehand/), which must exist.
    type: path
    required: true
  socket:
    description:
      - The php-fpm pool's unix socket, for example C(/run/php/app-fpm.sock).
    type: path
    required: true
  files:
    description:
      - Files to invalidate. Relative paths are taken below O(prefix) (or O(root) without it); every path must be
        below O(root).
    type: list
    elements: str
    default: []
  prefix:
    description:
      - A directory below O(root), for example a slot C(<root>/slots/a). Every script opcache holds below it is
        invalidated too (listed with C(opcache_get_status); when the pool restricts that API, only O(files) are).
    type: path
  timeout:
    description:
      - Seconds to wait for the pool's answer.
    type: float
    default: 30
notes:
  - The user running the module must be able to connect to the socket (root can), and the pool user must be able to
    read the script in C(<root>/.stagehand/).
  - When opcache is disabled in the pool, nothing is done and RV(enabled) is V(false).
seealso:
  - module: stagehand.deploy.patch
  - module: stagehand.deploy.switch
"""

EXAMPLES = r"""
- name: Forget the old code of slot a before making it live
  stagehand.deploy.opcache:
    root: /srv/www/app
    socket: /run/php/app-fpm.sock
    prefix: /srv/www/app/slots/a
    files: "{{ patched.changed_files }}"
"""

RETURN = r"""
changed:
  description: Whether a cached script was invalidated (or, in check mode, would be) or the script was written.
  returned: always
  type: bool
  sample: true
script:
  description: Path of the PHP script run in the pool.
  returned: always
  type: str
  sample: /srv/www/app/.stagehand/opcache-0c5a1e9b7d3f2a64.php
script_written:
  description: Whether the script was written (missing or outdated).
  returned: always
  type: bool
  sample: false
socket:
  description: The socket used.
  returned: always
  type: str
  sample: /run/php/app-fpm.sock
enabled:
  description: Whether opcache is enabled in the pool; null when it could not be asked (check mode, script missing).
  returned: always
  type: bool
  sample: true
listed:
  description: Whether the pool listed its cached scripts (false when C(opcache.restrict_api) forbids it).
  returned: when the pool answered
  type: bool
  sample: true
candidates:
  description: Number of distinct paths considered (O(files) plus the cached scripts below O(prefix)).
  returned: always
  type: int
  sample: 12
cached:
  description: The paths that were cached before the run.
  returned: always
  type: list
  elements: str
  sample: [/srv/www/app/slots/a/public/index.php]
invalidated:
  description: The paths invalidated (empty in check mode).
  returned: always
  type: list
  elements: str
  sample: [/srv/www/app/slots/a/public/index.php]
still_cached:
  description: Paths still cached after the invalidation; the task fails when this is not empty.
  returned: always
  type: list
  elements: str
  sample: []
gone:
  description: Cached or named paths whose file no longer exists (they cannot be invalidated by path).
  returned: always
  type: list
  elements: str
  sample: []
pid:
  description: Process id of the php-fpm worker that ran the script.
  returned: when the pool answered
  type: int
  sample: 1234
php:
  description: PHP version of the pool.
  returned: when the pool answered
  type: str
  sample: 8.2.7
"""

from ansible_collections.stagehand.deploy.plugins.module_utils._module import StagehandModule
from ansible_collections.stagehand.deploy.plugins.module_utils._opcache import OpcacheError, invalidate


def main() -> None:
    module = StagehandModule(
        argument_spec=dict(
            root=dict(type='path', required=True),
            socket=dict(type='path', required=True),
            files=dict(type='list', elements='str', default=[]),
            prefix=dict(type='path'),
            timeout=dict(type='float', default=30.0),
        ),
        supports_check_mode=True,
    )
    if module.params['timeout'] <= 0:
        module.fail_json(msg='timeout %s is invalid: give a number of seconds above 0' % module.params['timeout'])
    try:
        result = invalidate(
            module.params['root'],
            module.params['socket'],
            files=module.params['files'],
            prefix=module.params['prefix'],
            check_mode=module.check_mode,
            timeout=module.params['timeout'],
        )
    except OpcacheError as exc:
        module.fail_json(msg=exc.msg, **exc.result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
