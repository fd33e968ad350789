#!/usr/bin/python
# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: switch
short_description: Atomically point the live symlink of a deploy root at a release or slot
version_added: 0.1.0
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
description:
  - Points C(<root>/current) (see O(link)) at C(releases/<release>) or, in A/B mode, at C(slots/a) or C(slots/b).
  - The symlink target is always relative, so the root can be moved or mounted elsewhere.
  - The switch is atomic. A new symlink is created beside the old one and renamed over it with C(rename(2)), then the
    root directory is fsynced. At every moment a request resolving a path through C(current) finds either the old
    or the new release, never nothing. The first deploy (no C(current) yet) is done the same way.
  - When C(current) is still a plain directory (a site deployed before stagehand), it is migrated. The new symlink is
    swapped in for the directory with C(renameat2(RENAME_EXCHANGE)), one atomic step that also leaves the old
    directory at C(releases/<migrated name>) (see O(migrate_name)). Complete metadata is written for it, and it is
    recorded as the previous release of the new live one, so O(target=previous) rolls back to it.
  - If the kernel or filesystem does not support C(RENAME_EXCHANGE), the directory is renamed aside and the symlink is
    renamed into place right after; the module then returns a warning that there was a brief gap without C(current).
  - C(current) is the only truth for which release is live. The module keeps a chain of releases in
    C(.stagehand/releases/<name>.json). When a release goes live for the first time (its C(activated) is null), its
    C(previous) becomes the release that was live and that release's C(next) becomes it, and C(activated) is set.
    Switching to a release that was live before (a rollback, or forward again) does not change the chain.
  - If a crash happened between the symlink rename and the metadata update, the next run completes the metadata of
    the release that C(current) points at (its C(activated), and C(next) of its previous release).
  - A target that does not exist, is incomplete or is marked failed is refused and nothing changes, unless
    O(force=true), which allows incomplete and failed targets but never a missing one.
  - C(current) that is neither a symlink nor a directory, or a symlink pointing outside C(releases/) and C(slots/), is
    never replaced; the task fails and names it.
  - Locking is not done here; run the switch under the deploy lock (M(stagehand.deploy.lock)).
options:
  root:
    description:
      - The deploy root, the directory holding C(releases/), C(slots/), C(.stagehand/) and the live symlink.
      - It must exist.
    type: path
    required: true
  mode:
    description:
      - V(releases) switches between directories under C(releases/) and keeps the previous/next chain.
      - V(slots) switches between C(slots/a) and C(slots/b) (A/B mode). Only the symlink changes; the chain is not
        recorded, the rollback target is always the inactive slot.
    type: str
    choices: [releases, slots]
    default: releases
  release:
    description:
      - Name of the release to make live, a directory under C(releases/).
      - Only with O(mode=releases). Mutually exclusive with O(target); one of them is required.
    type: str
  target:
    description:
      - With O(mode=releases), V(previous) switches to the recorded previous release of the live release (a rollback).
        It fails when the live release has no previous release.
      - With O(mode=slots), V(a) or V(b) names the slot to make live, and V(inactive) flips to the slot that is not live.
      - Mutually exclusive with O(release); one of them is required.
    type: str
    choices: [previous, a, b, inactive]
  force:
    description:
      - Allow switching to a release or slot whose status is V(failed) or V(incomplete) (metadata missing or
        unfinished).
      - A release or slot that does not exist is refused even with O(force=true).
    type: bool
    default: false
  link:
    description:
      - Name of the live symlink inside O(root).
      - A plain name; V(releases), V(slots), V(shared) and V(.stagehand) are not allowed.
    type: str
    default: current
  migrate_name:
    description:
      - Release name given to a plain C(current) directory when it is migrated.
      - Defaults to C(migrated-<UTC time as yyyymmddTHHMMSS>). The name must not exist yet under C(releases/).
      - Ignored when C(current) is not a plain directory.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Changes nothing and returns the same values a real run would, including the chain and the migrated name.
  diff_mode:
    support: full
    details:
      - Before and after are the text of the symlink (V(releases/v1)); before is empty when there was no link and
        V((plain directory\)) for a directory to migrate.
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: partial
    details:
      - Switching to what is already live reports no change.
      - O(target=previous) and O(target=inactive) are relative to what is live, so running them again moves on
        (a second rollback, a flip back).
  platform:
    support: full
    platforms: posix
notes:
  - The atomic migration of a plain directory needs Linux 3.15 or later and a filesystem supporting
    C(RENAME_EXCHANGE) (ext4, XFS, btrfs, tmpfs, ...).
  - O(root) and C(releases/) must be on the same filesystem.
seealso:
  - module: stagehand.deploy.release_info
  - module: stagehand.deploy.lock
  - name: rename(2)
    description: The atomic replacement of the symlink, and RENAME_EXCHANGE used for the migration.
    link: https://man7.org/linux/man-pages/man2/rename.2.html
"""

EXAMPLES = r"""
- name: Make release v1.4.0 live
  stagehand.deploy.switch:
    root: /srv/app
    release: v1.4.0

- name: Roll back to the previous release
  stagehand.deploy.switch:
    root: /srv/app
    target: previous

- name: A/B mode, make the slot that was just deployed live
  stagehand.deploy.switch:
    root: /srv/app
    mode: slots
    target: inactive

- name: First stagehand deploy of a site whose current/ is a plain directory
  stagehand.deploy.switch:
    root: /srv/app
    release: v2.0.0
    migrate_name: legacy
  register: switched

- name: Show what was migrated
  ansible.builtin.debug:
    msg: "The old site is now release {{ switched.migrated }}"
  when: switched.migrated
"""

RETURN = r"""
previous:
  description:
    - What was live before this task (a release name, or a slot name in A/B mode), null when nothing was.
    - After a migration, the name the old directory got (the same as RV(migrated)).
  returned: success
  type: str
  sample: v1.3.0
current:
  description: What is live after this task (in check mode, would be).
  returned: success
  type: str
  sample: v1.4.0
chain:
  description:
    - The chain around the live release after the task.
    - In A/B mode C(previous) is the inactive slot when it holds a complete deploy, and C(next) is null.
  returned: success
  type: dict
  contains:
    live:
      description: The live release or slot.
      type: str
      sample: v1.4.0
    previous:
      description: Where O(target=previous) (or O(target=inactive)) would go, or null.
      type: str
      sample: v1.3.0
    next:
      description: The release that went live after this one the first time, or null.
      type: str
      sample: null
  sample:
    live: v1.4.0
    previous: v1.3.0
    next: null
mode:
  description: The mode used, V(releases) or V(slots).
  returned: success
  type: str
  sample: releases
path:
  description: Absolute path of the release or slot the symlink points at after the task.
  returned: success
  type: str
  sample: /srv/app/releases/v1.4.0
migrated:
  description: The release name the plain C(current) directory was migrated to, else null.
  returned: success
  type: str
  sample: migrated-20261122T100000
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.stagehand.deploy.plugins.module_utils._switch import (
    RELEASE_TARGETS,
    SLOT_TARGETS,
    SWITCH_MODES,
    SwitchError,
    switch,
)


class _SwitchModule(AnsibleModule):
    """AnsibleModule without the file attributes it adds for a returned ``path``.

    Those would overwrite the ``mode`` return value (releases/slots) with a file
    mode and add undocumented keys; ``path`` here is the new live target.
    """

    def add_path_info(self, kwargs):
        return kwargs


def main() -> None:
    module = _SwitchModule(
        argument_spec=dict(
            root=dict(type='path', required=True),
            mode=dict(type='str', choices=list(SWITCH_MODES), default='releases'),
            release=dict(type='str'),
            target=dict(type='str', choices=list(RELEASE_TARGETS + SLOT_TARGETS)),
            force=dict(type='bool', default=False),
            link=dict(type='str', default='current'),
            migrate_name=dict(type='str'),
        ),
        mutually_exclusive=[('release', 'target')],
        required_one_of=[('release', 'target')],
        supports_check_mode=True,
    )
    params = module.params
    try:
        result = switch(
            params['root'],
            release=params['release'],
            target=params['target'],
            mode=params['mode'],
            force=params['force'],
            link=params['link'],
            migrate_name=params['migrate_name'],
            check_mode=module.check_mode,
        )
    except SwitchError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg='Could not switch %s in %s: %s' % (params['link'], params['root'], exc))

    for warning in result.pop('warnings'):
        module.warn(warning)
    diff = result.pop('diff')
    if module._diff:
        result['diff'] = diff
    module.exit_json(**result)


if __name__ == '__main__':
    main()
