#!/usr/bin/python
# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: preview_health
short_description: Check a staged release through nginx's loopback preview server before it goes live
version_added: 0.1.0
description:
  - Points C(<root>/preview) at the staged release (C(releases/<release>)) or slot (C(slots/<target>)) with one
    rename(2), then sends the deploy's health request (the path and query of O(health_url)) to
    C(http://127.0.0.1:<port>), the loopback-only preview server of the M(stagehand.deploy.nginx) role, until it answers
    200 with O(release) in O(health_release_header), or O(health_timeout) passes.
  - The preview server serves the web root below C(<root>/preview) with C($realpath_root), so php-fpm runs the staged
    release's own code (against the database as it is after the migrations); a release that cannot answer is refused
    before anyone sees it. Nothing live changes; C(current) is never touched.
  - The deploy role runs it on every host after the migrations and before any host switches, so that a preview
    failure on one host means that no host switches. M(stagehand.deploy.ship) runs the same check itself before its
    switch.
  - When the check fails the task fails, naming the URL, what it answered and what is still live.
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - stagehand.deploy.health
attributes:
  check_mode:
    support: full
    details:
      - Says where C(<root>/preview) would point and which URL would be checked; nothing is pointed or requested.
  diff_mode:
    support: full
    details:
      - The link C(<root>/preview) before and after.
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: full
  platform:
    platforms: posix
options:
  root:
    description: Absolute path of the deploy root on the host.
    type: path
    required: true
  mode:
    description: V(releases) checks C(releases/<release>); V(slots) checks the slot O(target).
    type: str
    choices: [releases, slots]
    default: releases
  release:
    description:
      - The release staged (1 to 128 of C(A-Z a-z 0-9 . _ -), not starting with C(.)); the health answer must name it.
    type: str
    required: true
  target:
    description: With O(mode=slots), the staged slot, V(a) or V(b).
    type: str
    choices: [a, b]
  health_url:
    description:
      - The deploy's health URL (for example C(http://127.0.0.1/health)). Only its path and query are used; the request
        goes to C(http://127.0.0.1:<port>). Omitted, there is no check (as there is no health check).
    type: str
  port:
    description: The port of the preview server (the nginx role's C(nginx_preview_port)); V(0) for no check.
    type: int
    default: 8180
notes:
  - Without the preview server (a host whose nginx was not provisioned by this collection), the request is refused
    and the task fails saying so; set O(port=0) (the deploy role's C(deploy_preview_port)) to go without the check.
seealso:
  - module: stagehand.deploy.switch
  - module: stagehand.deploy.ship
"""

EXAMPLES = r"""
- name: Check the staged release before any host switches
  stagehand.deploy.preview_health:
    root: /srv/shop
    release: v1.4.0
    health_url: http://127.0.0.1/health
    port: 8180

- name: Check the patched slot b, by the status only
  stagehand.deploy.preview_health:
    root: /srv/shop
    mode: slots
    target: b
    release: v1.4.0
    health_url: http://127.0.0.1/
    health_release_header: ""
"""

RETURN = r"""
url:
  description: The URL checked (null when there was no check).
  returned: always
  type: str
  sample: http://127.0.0.1:8180/health
link:
  description: The preview link and where it points (null when there was no check).
  returned: always
  type: str
  sample: /srv/shop/preview -> releases/v1.4.0
skipped_check:
  description: True when there was no check (O(port=0) or no O(health_url)).
  returned: always
  type: bool
  sample: false
health:
  description: The check's result (C(ok), C(status), C(release), C(attempts), C(elapsed), C(error)); null in check mode.
  returned: always
  type: dict
  sample: {url: 'http://127.0.0.1:8180/health', ok: true, status: 200, release: v1.4.0, attempts: 1, elapsed: 0.01}
"""

from ansible_collections.stagehand.deploy.plugins.module_utils._module import StagehandModule, exit_with_result
from ansible_collections.stagehand.deploy.plugins.module_utils._preview_health import PreviewFailed, run
from ansible_collections.stagehand.deploy.plugins.module_utils._switch import SwitchError


def main() -> None:
    module = StagehandModule(
        argument_spec=dict(
            root=dict(type='path', required=True),
            mode=dict(type='str', choices=['releases', 'slots'], default='releases'),
            release=dict(type='str', required=True),
            target=dict(type='str', choices=['a', 'b']),
            health_url=dict(type='str'),
            health_release_header=dict(type='str', default='X-Release'),
            health_timeout=dict(type='float', default=10.0),
            port=dict(type='int', default=8180),
        ),
        required_if=[('mode', 'slots', ('target',))],
        supports_check_mode=True,
    )
    try:
        result = run(module.params, check_mode=module.check_mode)
    except SwitchError as exc:
        module.fail_json(msg=str(exc), changed=False)
    except PreviewFailed as exc:
        failed = dict(exc.result)
        failed.pop('changed', None)
        module.fail_json(msg=exc.msg, changed=exc.result.get('changed', False), **failed)
    exit_with_result(module, result)


if __name__ == '__main__':
    main()
