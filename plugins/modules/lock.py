#!/usr/bin/python
# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: lock
short_description: Acquire or release the deploy lock of a deploy root
version_added: 0.1.0
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
description:
  - Takes or gives back the single deploy lock of a deploy root, the file C(<root>/.stagehand/lock), so that two deploys
    never work on the same root at the same time.
  - The lock file holds JSON with C(owner), C(controller), C(host) (the managed host's hostname), C(pid), C(purpose),
    C(token), C(acquired), C(expires) (ISO 8601 UTC) and C(ttl).
  - Acquiring is atomic without check-then-write. The lock content is written to a unique temporary file in
    C(.stagehand/) and fsynced, then hard-linked to C(lock); the link fails if the lock exists, so of many concurrent
    acquirers exactly one wins.
  - On a full disk (no room for the temporary file, or for the link on a filesystem that counts it as an inode) the
    content is written in place into C(.stagehand/lock.reserve), prepared in advance by M(stagehand.deploy.switch) and
    M(stagehand.deploy.cleanup), and put in place with C(renameat2(RENAME_NOREPLACE)), which is as exclusive as the
    link. Without a reserve the task fails with the C(No space left on device) error.
  - A lock held by another token that has not expired makes the task fail with a message naming the holder (owner,
    controller, pid, purpose, since when, until when) and how to release the lock by hand.
  - A lock whose holder is provably dead is taken over at once, with a warning naming it. Provably dead means that the
    holder's C(ansible-playbook) process (recorded by the action plugin as O(controller_process)) or its process on the
    host (recorded by the M(stagehand.deploy.ship) and M(stagehand.deploy.switch) modules) belongs to the same machine
    boot and pid namespace as the one checking, and that pid is gone or now belongs to a process with another start
    time. The action plugin checks the controller side on the controller and passes the holder's token as
    O(stale_token). When nothing can be proven (another controller, a reboot, no C(/proc)), the lock waits for its
    expiry as before.
  - Taking over the lock of a run that recorded an O(action) appends a line with outcome C(interrupted) to the history
    (what that run was deploying, what was live before it, and what is live now), so the history of a run killed
    midway is complete.
  - Whoever takes the lock (free or taken over) removes what no live run owns, left by runs that were killed, and
    returns it in RV(swept) - the entries of C(.stagehand/stage/) and the C(upload-*) files in C(.stagehand/); and makes
    C(.stagehand) mode 0711 and the lock, its guard and the history 0600, its state
    directories 0700, so that the application user cannot open (and C(flock)) them.
  - The C(flock) on C(.stagehand/lock.guard) is waited for at most 30 seconds; then the task fails with a message
    naming the file and the process holding it.
  - A lock past its expiry time (C(ttl) seconds after it was acquired) is taken over. The takeover and every release
    happen under an C(flock) on C(.stagehand/lock.guard), after re-reading the lock, so of many concurrent takers
    exactly one wins and a release never removes a lock that changed hands meanwhile.
  - A lock file that is not a valid lock is treated as held and never taken over automatically; remove it with
    O(state=absent) and O(force=true) once you know no deploy is running.
  - Releasing never fails because of the lock's state, so it can run from C(always) and C(rescue) sections. An
    absent lock is left alone; a lock held by another token is kept and reported in a warning.
  - This module has an action plugin that runs first on the controller and fills in O(owner), O(controller) and
    O(pid) when they are not set.
  - The module is not part of any action group; set C(module_defaults) for it under its own name
    C(stagehand.deploy.lock).
options:
  root:
    description:
      - The deploy root.
      - When acquiring, the root and its C(.stagehand/) directory are created if they are missing.
    type: path
    required: true
  state:
    description:
      - V(present) acquires the lock, V(absent) releases it.
    type: str
    choices: [present, absent]
    default: present
  owner:
    description:
      - Who deploys, recorded in the lock.
      - Filled by the action plugin with the user running Ansible on the controller when not set.
    type: str
  controller:
    description:
      - Host name of the controller, recorded in the lock.
      - Filled by the action plugin with the controller's host name when not set.
    type: str
  pid:
    description:
      - Process id of the C(ansible-playbook) process on the controller, recorded in the lock.
      - Filled by the action plugin when not set, with the parent process id of the worker process that runs the task,
        which is the C(ansible-playbook) (or C(ansible)) process.
    type: int
  controller_process:
    description:
      - Identity of the O(pid) process on the controller, recorded in the lock so that a later run on the same
        controller can prove it dead - C(pid), C(start) (clock ticks after boot, from C(/proc/<pid>/stat)), C(boot) (the
        kernel's boot id) and C(pidns) (its pid namespace).
      - Filled by the action plugin when it fills O(pid) and the controller has C(/proc); otherwise not recorded.
    type: dict
  action:
    description:
      - What the lock is taken for, recorded so that the next run can complete the history if this one is interrupted.
    type: str
    choices: [deploy, rollback, cleanup]
  release:
    description:
      - The release being deployed (or rolled back to), when known; recorded for the same reason as O(action).
    type: str
  stale_token:
    description:
      - The token of a holder the caller proved dead; that holder is taken over even before its lock expires.
      - Set by the action plugin after it proved on the controller that the holder's C(ansible-playbook) is gone.
    type: str
  stale_reason:
    description:
      - How the holder of O(stale_token) was proven dead, for the warning and the history line.
    type: str
  ttl:
    description:
      - Seconds after acquiring at which the lock counts as expired and may be taken over by another deploy.
      - Must be greater than 0. Ignored with O(state=absent).
    type: int
    default: 3600
  token:
    description:
      - Identifies the holder.
      - With O(state=present), when not set a new random token is generated and returned in RV(token); acquiring again
        with the token that holds the lock changes nothing.
      - With O(state=absent), the lock is removed only if it is held with this token (unless O(force=true)).
    type: str
  purpose:
    description:
      - Free text recorded in the lock and shown to anyone who finds the lock held, for example V(deploy v1.4.0).
    type: str
  force:
    description:
      - With O(state=absent), remove the lock whoever holds it, even if it is not a valid lock file. Meant for operators
        cleaning up after a deploy that died.
      - Ignored with O(state=present).
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  action_group:
    description: Action is part of action_group(s), for convenient setting of module_defaults.
    support: none
    membership: []
    details:
      - Not part of any action group; use the name C(stagehand.deploy.lock) in C(module_defaults).
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - Reports what would happen and changes nothing; a lock held by someone else fails the task in check mode too.
  diff_mode:
    support: full
    details:
      - Before and after are the lock file's text, empty when there is no lock.
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: partial
    details:
      - Acquiring again with the O(token) that holds the lock and releasing an absent lock report no change.
      - Acquiring without O(token) generates a new token every time, so a second run finds the lock held by the
        first one and fails.
  platform:
    support: full
    platforms: posix
notes:
  - The lock file must be on a filesystem that supports hard links and C(flock).
seealso:
  - name: flock(2)
    description: The advisory lock used to guard changes to an existing lock.
    link: https://man7.org/linux/man-pages/man2/flock.2.html
"""

EXAMPLES = r"""
- name: Deploy under the lock, always releasing it
  block:
    - name: Take the deploy lock
      stagehand.deploy.lock:
        root: /srv/app
        purpose: deploy v1.4.0
        ttl: 1800
      register: deploy_lock

    - name: Deploy steps go here
      ansible.builtin.debug:
        msg: deploying with lock {{ deploy_lock.token }}
  always:
    - name: Release the deploy lock
      stagehand.deploy.lock:
        root: /srv/app
        state: absent
        token: "{{ deploy_lock.token | default(omit) }}"

- name: Acquire with a known token (re-running this task changes nothing)
  stagehand.deploy.lock:
    root: /srv/app
    token: "release-{{ release_name }}"

- name: Operator cleanup after a deploy died, whoever holds the lock
  stagehand.deploy.lock:
    root: /srv/app
    state: absent
    force: true
"""

RETURN = r"""
acquired:
  description: Whether the lock is held with RV(token) after an acquire (also when it already was). Always false for a release.
  returned: success
  type: bool
  sample: true
released:
  description: Whether the lock was removed (would be, in check mode). Always false for an acquire.
  returned: success
  type: bool
  sample: false
token:
  description: The holder token; the generated one when acquiring without O(token). Pass it to the release.
  returned: always
  type: str
  sample: 8f14e45fceea167a5a36dedd4bea2543
holder:
  description:
    - The lock content after the task (in check mode what it would be), null when there is no lock.
    - On failure, the holder that keeps the lock.
    - For an unreadable lock file that is left in place, a dictionary with only C(raw), its first bytes.
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
interrupted:
  description: The history record appended (with outcome C(interrupted)) for the holder that was taken over, else null.
  returned: success, when acquiring
  type: dict
  sample:
    action: deploy
    release: v1.4.0
    previous: v1.3.9
    live: v1.4.0
    outcome: interrupted
    error: "the deploy was interrupted (its ansible-playbook on ctl process 4242 is gone); v1.4.0 is live now"
swept:
  description: What no live run owned and was removed when the lock was taken (would be, in check mode).
  returned: success, when acquiring
  type: list
  elements: str
  sample: [/srv/app/.stagehand/stage/.release-v1.4.0.1f2e3d4c5b6a7988.tmp, /srv/app/.stagehand/upload-v1.4.0.tar.gz]
taken_over:
  description: The previous, expired or provably dead holder that was replaced when acquiring, else null.
  returned: success
  type: dict
  sample:
    owner: bob
    controller: ci-runner-3
    host: web1
    pid: 1203
    purpose: deploy v1.3.9
    token: 1679091c5a880faf6fb5e6087eb1b2dc
    acquired: "2026-11-21T08:00:00Z"
    expires: "2026-11-21T09:00:00Z"
    ttl: 3600
path:
  description: Path of the lock file.
  returned: always
  type: str
  sample: /srv/app/.stagehand/lock
raw:
  description: First bytes of a lock file that is not a valid lock, when acquiring is refused because of it.
  returned: failure
  type: str
  sample: "b'garbage'"
"""

from ansible_collections.stagehand.deploy.plugins.module_utils._crash import crash_point
from ansible_collections.stagehand.deploy.plugins.module_utils._module import StagehandModule, exit_with_result
from ansible_collections.stagehand.deploy.plugins.module_utils._lock import (
    DEFAULT_TTL,
    LockCorrupt,
    LockError,
    LockHeld,
    acquire,
    raw_head,
    release,
)
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot


def main() -> None:
    module = StagehandModule(
        argument_spec=dict(
            root=dict(type='path', required=True),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            owner=dict(type='str'),
            controller=dict(type='str'),
            pid=dict(type='int'),
            controller_process=dict(type='dict'),
            action=dict(type='str', choices=['deploy', 'rollback', 'cleanup']),
            release=dict(type='str'),
            stale_token=dict(type='str', no_log=False),
            stale_reason=dict(type='str'),
            ttl=dict(type='int', default=DEFAULT_TTL),
            token=dict(type='str', no_log=False),
            purpose=dict(type='str'),
            force=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    path = DeployRoot(params['root']).lock_path
    failed = dict(changed=False, acquired=False, released=False, token=params['token'], path=path)
    try:
        if params['state'] == 'present':
            result = acquire(
                params['root'],
                token=params['token'],
                owner=params['owner'],
                controller=params['controller'],
                pid=params['pid'],
                purpose=params['purpose'],
                ttl=params['ttl'],
                check_mode=module.check_mode,
                controller_process=params['controller_process'],
                action=params['action'],
                release=params['release'] or None,
                stale_token=params['stale_token'],
                stale_reason=params['stale_reason'],
            )
            if not module.check_mode:
                crash_point('lock:acquired')
        else:
            result = release(params['root'], token=params['token'], force=params['force'], check_mode=module.check_mode)
    except LockHeld as exc:
        module.fail_json(msg=exc.msg, holder=exc.holder, **failed)
    except LockCorrupt as exc:
        module.fail_json(msg=exc.msg, holder=None, raw=raw_head(exc.raw), **failed)
    except LockError as exc:
        module.fail_json(msg=exc.msg, holder=None, **failed)
    except OSError as exc:
        module.fail_json(msg='Could not %s the deploy lock %s: %s' % (
            'acquire' if params['state'] == 'present' else 'release', path, exc), holder=None, **failed)

    exit_with_result(module, result)


if __name__ == '__main__':
    main()
