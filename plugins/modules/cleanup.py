#!/usr/bin/python
# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cleanup
short_description: Remove old releases, staging leftovers and database dumps from a deploy root
version_added: 0.1.0
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
description:
  - Keeps the O(keep) newest complete releases of C(releases/) (newest by their C(created) time) and removes the
    others, failed releases first, then incomplete ones (a directory without metadata, or metadata without a
    directory), then the oldest complete ones.
  - The live release (what C(current) points at) and its rollback target (the C(previous) recorded for the live
    release) are never removed, whatever their age or status; they are kept in addition to the O(keep) newest.
  - Each release is removed with the same steps as M(stagehand.deploy.release) O(stagehand.deploy.release#module:state=absent).
    The directory is renamed into C(.stagehand/stage/) first, so C(releases/) never holds a half-deleted release,
    then it is deleted with its metadata and manifest.
  - Also removes the entries of C(.stagehand/stage/) last modified more than an hour ago (left by interrupted
    deploys), and from C(.stagehand/dumps/) the database dumps C(<release>.sql.gz) of every release that is not kept
    (the removed ones and those already gone), and temporary dump files older than an hour.
  - Runs only while the caller holds the deploy lock (O(token)), so that no deploy creates, switches or dumps
    anything meanwhile. Without it the task fails and nothing is removed.
  - Works on a full disk, as it writes nothing before it has freed room. A release that cannot be renamed aside for
    lack of room (C(.stagehand/stage/) cannot be created, say) loses its metadata and manifest first, which makes it
    an incomplete release, then its tree is removed in place. Once something was removed, the spare link and the lock
    reserve of M(stagehand.deploy.switch) are prepared again; failing that is only a warning.
options:
  root:
    description:
      - The deploy root. It must exist.
    type: path
    required: true
  keep:
    description:
      - How many of the newest complete releases to keep, at least 1.
    type: int
    default: 5
  token:
    description:
      - The token of the deploy lock, as returned by M(stagehand.deploy.lock). The cleanup is refused unless the lock
        of O(root) is held with this token and has not expired.
    type: str
    required: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Lists what would be removed and the bytes it would free; nothing is removed.
      - Because M(stagehand.deploy.lock) does not take the lock in check mode, a missing lock is only a warning in
        check mode; a lock held with another token still fails.
  diff_mode:
    support: full
    details:
      - Before and after are the names of the releases, one per line.
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: full
  platform:
    support: full
    platforms: posix
seealso:
  - module: stagehand.deploy.lock
  - module: stagehand.deploy.release
  - module: stagehand.deploy.release_info
"""

EXAMPLES = r"""
- name: Clean up under the deploy lock
  block:
    - name: Take the deploy lock
      stagehand.deploy.lock:
        root: /srv/www/app
        purpose: cleanup
      register: deploy_lock

    - name: Keep the three newest releases
      stagehand.deploy.cleanup:
        root: /srv/www/app
        keep: 3
        token: "{{ deploy_lock.token }}"
      register: cleaned

    - name: Report
      ansible.builtin.debug:
        msg: "Removed {{ cleaned.removed | join(', ') or 'nothing' }}, freed {{ cleaned.freed_bytes | human_readable }}"
  always:
    - name: Release the deploy lock
      stagehand.deploy.lock:
        root: /srv/www/app
        state: absent
        token: "{{ deploy_lock.token | default(omit) }}"
"""

RETURN = r"""
removed:
  description:
    - The releases removed (in check mode, that would be), in the order they were removed.
    - When the task fails part way, the releases removed before the failure.
  returned: always
  type: list
  elements: str
  sample: [v5-broken, v1, v2]
kept:
  description: The releases that stay, newest first.
  returned: success
  type: list
  elements: str
  sample: [v6, v4, v3]
removed_stage:
  description: The staging leftovers removed from C(.stagehand/stage/).
  returned: success
  type: list
  elements: str
  sample: [/srv/www/app/.stagehand/stage/.release-v7.3f2a9c1b.tmp]
removed_dumps:
  description: The dump files removed from C(.stagehand/dumps/).
  returned: success
  type: list
  elements: str
  sample: [/srv/www/app/.stagehand/dumps/v1.sql.gz]
freed_bytes:
  description:
    - Disk space freed (in check mode, that would be) by everything removed, in bytes allocated on disk.
    - A file hardlinked from a release that stays frees nothing and is not counted.
  returned: success
  type: int
  sample: 10485760
live:
  description: The live release, which is always kept; null when C(current) does not point at a release.
  returned: success
  type: str
  sample: v6
rollback_target:
  description: The rollback target of the live release, which is always kept, or null.
  returned: success
  type: str
  sample: v4
holder:
  description: The holder of the deploy lock, when the cleanup was refused because another token holds it.
  returned: failure
  type: dict
  sample:
    owner: bob
    controller: ci-runner-3
    purpose: deploy v7
    token: 1679091c5a880faf6fb5e6087eb1b2dc
    acquired: "2026-11-21T08:00:00Z"
    expires: "2026-11-21T09:00:00Z"
"""

from ansible_collections.stagehand.deploy.plugins.module_utils._module import StagehandModule, exit_with_result
from ansible_collections.stagehand.deploy.plugins.module_utils._cleanup import (
    DEFAULT_KEEP,
    CleanupError,
    cleanup,
)


def main() -> None:
    module = StagehandModule(
        argument_spec=dict(
            root=dict(type='path', required=True),
            keep=dict(type='int', default=DEFAULT_KEEP),
            token=dict(type='str', required=True, no_log=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        result = cleanup(params['root'], params['token'], keep=params['keep'], check_mode=module.check_mode)
    except CleanupError as exc:
        failed = dict(removed=[])
        failed.update(exc.details)
        module.fail_json(msg=exc.msg, **failed)
    except OSError as exc:
        module.fail_json(msg='Could not clean up %s: %s' % (params['root'], exc), removed=[])

    exit_with_result(module, result)


if __name__ == '__main__':
    main()
