#!/usr/bin/python
# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: release_info
short_description: Describe the releases, slots, live chain and lock of a deploy root
version_added: 0.1.0
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
description:
  - Reads a deploy root and returns its releases with status, size and chain flags, what is live, the rollback
    target, the A/B slots and the deploy lock. It never changes anything.
  - What is live is read from the C(current) symlink (see O(link)); the release metadata only adds the chain.
  - A root that does not exist is not an error; RV(exists) is false and the lists are empty.
options:
  root:
    description:
      - The deploy root.
    type: path
    required: true
  name:
    description:
      - Return only this release in RV(releases) (an empty list when it does not exist).
      - Sizes are computed the same way as for the full list.
    type: str
  mode:
    description:
      - V(releases) describes C(releases/) and the chain kept in the release metadata.
      - V(slots) also describes C(slots/a) and C(slots/b) in RV(slots); RV(live) and RV(previous) are then slot names.
      - V(detect) uses the mode C(current) points into; without a usable C(current), V(slots) when there is a
        C(slots/) directory and no C(releases/), else V(releases). RV(mode) says which one was used.
    type: str
    choices: [releases, slots, detect]
    default: releases
  history:
    description:
      - How many of the last entries of the deploy history (C(.stagehand/history.jsonl), written by
        M(stagehand.deploy.history)) to return in RV(history).
      - V(0) returns none. Must not be negative.
    type: int
    default: 10
  sizes:
    description:
      - Compute RV(releases[].size), RV(releases[].apparent_size) and the same for RV(slots) by walking every tree.
      - V(false) walks nothing (the sizes are null), which keeps the module fast for releases with very many files;
        the deploy role uses it to learn what a host holds before shipping.
    type: bool
    default: true
  expect:
    description:
      - A release name and a compose id to compare with what is live; RV(expected_live) says whether they match
        RV(live_compose). The deploy role passes what the version composed to, to end a redeploy of it at once.
      - An empty dictionary compares with nothing (RV(expected_live) is false).
    type: dict
    suboptions:
      release:
        description: The release name.
        type: str
      compose_id:
        description: The compose id, C(sha256:<hex>).
        type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - stagehand.deploy.live_link
attributes:
  check_mode:
    support: full
    details:
      - The module only reads, so it runs the same in check mode.
  diff_mode:
    support: none
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: full
  platform:
    support: full
    platforms: posix
notes:
  - Sizes are computed by walking every release, which takes a while for roots with very many files.
seealso:
  - module: stagehand.deploy.switch
  - module: stagehand.deploy.lock
"""

EXAMPLES = r"""
- name: Read the state of the deploy root
  stagehand.deploy.release_info:
    root: /srv/app
  register: app

- name: Show what a rollback would go to
  ansible.builtin.debug:
    msg: "Live is {{ app.live }}, a rollback goes to {{ app.previous }}"

- name: Fail early when a deploy lock is held
  ansible.builtin.assert:
    that: app.lock is none
    fail_msg: "Deploy locked by {{ app.lock.owner | default('?') }} since {{ app.lock.acquired | default('?') }}"

- name: Names of the failed releases
  ansible.builtin.debug:
    msg: "{{ app.releases | selectattr('status', 'equalto', 'failed') | map(attribute='name') | list }}"

- name: The last three deploys, rollbacks and cleanups
  stagehand.deploy.release_info:
    root: /srv/app
    history: 3
  register: recent

- name: Show them
  ansible.builtin.debug:
    msg: "{{ recent.history | map(attribute='outcome') | list }}"

- name: A/B mode
  stagehand.deploy.release_info:
    root: /srv/app
    mode: slots
  register: ab
"""

RETURN = r"""
exists:
  description: Whether O(root) exists.
  returned: always
  type: bool
  sample: true
root:
  description: Absolute path of the deploy root.
  returned: always
  type: str
  sample: /srv/app
mode:
  description: The mode used (the detected one with O(mode=detect)).
  returned: always
  type: str
  sample: releases
current:
  description: The live symlink as found on disk.
  returned: always
  type: dict
  contains:
    kind:
      description: V(missing), V(symlink), V(directory) (a plain directory, not yet migrated) or V(other).
      type: str
      sample: symlink
    target:
      description: The symlink's text, null unless RV(current.kind) is V(symlink).
      type: str
      sample: releases/v1.4.0
    mode:
      description: V(releases) or V(slots) when the symlink points at a release or slot, else null.
      type: str
      sample: releases
    name:
      description: The release or slot it points at, else null.
      type: str
      sample: v1.4.0
  sample:
    kind: symlink
    target: releases/v1.4.0
    mode: releases
    name: v1.4.0
releases:
  description:
    - The releases, directories under C(releases/) and releases with only metadata left, sorted by creation time,
      then name; releases without a creation time come last.
    - With O(name), only that release.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Release name.
      type: str
      sample: v1.4.0
    path:
      description: Absolute path of the release directory.
      type: str
      sample: /srv/app/releases/v1.4.0
    status:
      description: V(complete), V(failed), or V(incomplete) (directory or metadata missing or unfinished).
      type: str
      sample: complete
    created:
      description: When the release was created (ISO 8601 UTC), null without metadata.
      type: str
      sample: "2026-11-22T10:00:00Z"
    activated:
      description: When the release first went live, or null.
      type: str
      sample: "2026-11-22T10:05:00Z"
    manifest_digest:
      description: Digest of the manifest the release was verified against, or null.
      type: str
      sample: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    source:
      description: Where the release came from, as recorded in its metadata.
      type: str
      sample: build/app-1.4.0.tar.gz
    failed_reason:
      description: Why the release is marked failed, or null.
      type: str
      sample: null
    shared:
      description: The shared paths linked into the release, as recorded in its metadata, or null.
      type: list
      elements: str
      sample: [.env, storage]
    live:
      description: Whether C(current) points at this release.
      type: bool
      sample: true
    previous:
      description: Whether this release is the rollback target (the previous release of the live one).
      type: bool
      sample: false
    size:
      description:
        - Bytes allocated on disk for the release's inodes, each inode counted once across the whole root and
          attributed to the oldest release holding it, so files hardlinked between releases are not counted twice.
        - The sizes of all releases add up to the disk usage of C(releases/).
        - Null with O(sizes=false).
      type: int
      sample: 1052672
    apparent_size:
      description:
        - Sum of the byte sizes of the release's regular files (each inode once within the release).
        - Null with O(sizes=false).
      type: int
      sample: 3145728
slots:
  description: With O(mode=slots) (or detected), C(slots/a) and C(slots/b); an empty list otherwise.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: V(a) or V(b).
      type: str
      sample: a
    path:
      description: Absolute path of the slot directory.
      type: str
      sample: /srv/app/slots/a
    exists:
      description: Whether the slot directory exists.
      type: bool
      sample: true
    status:
      description: V(complete), V(failed) or V(incomplete), from the directory and C(.stagehand/slots/<slot>.json).
      type: str
      sample: complete
    release:
      description: The release label deployed into the slot, or null.
      type: str
      sample: v1.4.0
    created:
      description: When the slot content was created, or null.
      type: str
      sample: "2026-11-22T10:00:00Z"
    activated:
      description: C(activated) from the slot metadata, or null.
      type: str
      sample: null
    manifest_digest:
      description: Digest of the manifest of the slot content, or null.
      type: str
      sample: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    source:
      description: Where the slot content came from, or null.
      type: str
      sample: build/app-1.4.0.tar.gz
    failed_reason:
      description: Why the slot is marked failed, or null.
      type: str
      sample: null
    shared:
      description: The shared paths linked into the slot, as recorded in its metadata, or null.
      type: list
      elements: str
      sample: [.env, storage]
    live:
      description: Whether C(current) points at this slot.
      type: bool
      sample: false
    previous:
      description: Whether this is the inactive slot that a flip would go to (it holds a complete deploy).
      type: bool
      sample: true
    size:
      description: Like RV(releases[].size).
      type: int
      sample: 1052672
    apparent_size:
      description: Like RV(releases[].apparent_size).
      type: int
      sample: 3145728
live:
  description: The live release (a slot name in slots mode), null when C(current) is missing, a plain directory or points elsewhere.
  returned: always
  type: str
  sample: v1.4.0
previous:
  description: The rollback target, the recorded previous release of the live one (in slots mode the inactive slot when complete), or null.
  returned: always
  type: str
  sample: v1.3.0
next:
  description:
    - The release that first went live right after the live one, or null.
    - After a rollback it names a newer release; in slots mode it is always null.
  returned: always
  type: str
  sample: null
lock:
  description:
    - The content of C(.stagehand/lock) (see M(stagehand.deploy.lock)), null when there is no lock.
    - For a lock file that is not JSON, a dictionary with only C(raw), its first characters.
  returned: always
  type: dict
  sample:
    owner: alice
    controller: laptop.example.org
    host: web1
    pid: 41721
    purpose: deploy v1.4.0
    token: 8f14e45fceea167a5a36dedd4bea2543
    acquired: "2026-11-22T10:00:00Z"
    expires: "2026-11-22T11:00:00Z"
    ttl: 3600
composes:
  description:
    - Compose ids (C(sha256:<hex>)) whose C(manifest.json) the host keeps in C(.stagehand/composes/), sorted;
      the manifests the deploy role can send a manifest delta against (see M(stagehand.deploy.delta)).
    - A compose is kept either in full (C(<hex>.json)) or as the manifest delta it was rebuilt from
      (C(<hex>.delta.json)); both are listed, except a delta whose chain of bases is broken (it counts as not kept).
  returned: always
  type: list
  elements: str
  sample: [sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08]
expected_live:
  description: True when O(expect) names exactly what is live (RV(live_compose)).
  returned: always
  type: bool
  sample: false
live_compose:
  description:
    - What is live, as a deploy names it, when the live release (or slot) is complete and has a manifest digest;
      else null. A deploy of the same release and compose id would change nothing.
  returned: always
  type: dict
  contains:
    release:
      description: The live release (in slots mode the release label of the live slot, or the slot name without one).
      type: str
      sample: v1.4.0
    compose_id:
      description: Its manifest digest, the compose id of the build it came from.
      type: str
      sample: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
history:
  description:
    - The last O(history) entries of the deploy history, oldest first, as written by M(stagehand.deploy.history).
    - Lines that are not JSON objects (a line torn by a crash) are skipped. Empty when there is no history.
  returned: always
  type: list
  elements: dict
  contains:
    action:
      description: V(deploy), V(rollback) or V(cleanup).
      type: str
      sample: deploy
    release:
      description: The release deployed or rolled back to, or null.
      type: str
      sample: v2
    previous:
      description: The release live before, or null.
      type: str
      sample: v1
    user:
      description: Who ran it.
      type: str
      sample: alice
    controller:
      description: The controller it was run from.
      type: str
      sample: laptop.example.org
    start:
      description: When it started (ISO 8601 UTC).
      type: str
      sample: "2026-11-22T10:00:00Z"
    end:
      description: When it ended (ISO 8601 UTC).
      type: str
      sample: "2026-11-22T10:01:02Z"
    outcome:
      description: V(success), V(failed), V(refused) or V(rolled_back).
      type: str
      sample: success
    phases:
      description: Seconds spent per phase.
      type: dict
      sample:
        lock: 0.12
        build: 31.5
    error:
      description: What went wrong, or null.
      type: str
      sample: null
"""

from ansible_collections.stagehand.deploy.plugins.module_utils._module import StagehandModule
from ansible_collections.stagehand.deploy.plugins.module_utils._history import DEFAULT_HISTORY
from ansible_collections.stagehand.deploy.plugins.module_utils._info import (
    INFO_MODES,
    InfoError,
    release_info,
)


def main() -> None:
    module = StagehandModule(
        argument_spec=dict(
            root=dict(type='path', required=True),
            name=dict(type='str'),
            mode=dict(type='str', choices=list(INFO_MODES), default='releases'),
            link=dict(type='str', default='current'),
            history=dict(type='int', default=DEFAULT_HISTORY),
            sizes=dict(type='bool', default=True),
            expect=dict(type='dict', options=dict(release=dict(type='str'), compose_id=dict(type='str'))),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        result = release_info(params['root'], name=params['name'], mode=params['mode'], link=params['link'],
                              history=params['history'], sizes=params['sizes'])
    except InfoError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg='Could not read the deploy root %s: %s' % (params['root'], exc))
    expect = params['expect'] or {}
    result['expected_live'] = bool(expect.get('release') and expect.get('compose_id')) and result['live_compose'] == {
        'release': expect['release'], 'compose_id': expect['compose_id']}
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
