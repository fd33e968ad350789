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
  - The switch is atomic. The spare symlink C(.stagehand/<link>.next) is made to point at the target (unless it
    already does) and swapped with C(current) by C(renameat2(RENAME_EXCHANGE)), then the directories are fsynced. At
    every moment a request resolving a path through C(current) finds either the old or the new release, never
    nothing. The first deploy (no C(current) yet) renames the spare into place.
  - Every successful switch leaves the spare pointing at the rollback target of what it made live (the previous good
    release, or the other slot) and prepares the deploy lock's reserve C(.stagehand/lock.reserve), so that a
    rollback, its lock and a revert after a failed health check need no new block or inode, and work on a full disk.
    Where the spare cannot be prepared (a full disk), the switch still succeeds, with a warning.
  - Where C(RENAME_EXCHANGE) is not supported (for example on NFS), the spare is renamed over C(current) with
    C(rename(2)), which is atomic too and allocates nothing either.
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
  - Without O(lock), locking is not done here; run the switch under the deploy lock (M(stagehand.deploy.lock)). With
    O(lock), the module takes the deploy lock itself for the duration of the call, so a whole rollback (lock, checks,
    switch, post commands, health check, history line, unlock) is one module call; see O(lock), O(require_live),
    O(migrations_dir) and O(history).
  - After a switch that changed the link, O(post_commands) are run (for example a php-fpm reload), then, when
    O(health_url) is set, the URL is requested until it answers. When a post command or the health check fails and
    O(revert_on_failure) is true, the switch is reverted with the same atomic rename, the post commands are run again
    and the task fails with RV(reverted=true) and a message saying why.
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
      - With O(mode=releases), V(previous_good) is the rollback target of the deploy role. It is the recorded previous
        release of the live one when that release is complete. Otherwise it is the complete release that was activated
        most recently before the live one. It fails, listing the releases and their status, when there is none.
      - With O(mode=slots), V(a) or V(b) names the slot to make live, and V(inactive) flips to the slot that is not live.
      - Mutually exclusive with O(release); one of them is required.
    type: str
    choices: [previous, previous_good, a, b, inactive]
  force:
    description:
      - Allow switching to a release or slot whose status is V(failed) or V(incomplete) (metadata missing or
        unfinished).
      - A release or slot that does not exist is refused even with O(force=true).
    type: bool
    default: false
  migrate_name:
    description:
      - Release name given to a plain C(current) directory when it is migrated.
      - Defaults to C(migrated-<UTC time as yyyymmddTHHMMSS>). The name must not exist yet under C(releases/).
      - Ignored when C(current) is not a plain directory.
    type: str
  post_commands:
    description:
      - Commands run one after the other once the link has changed, before the health check, for example
        V([["systemctl", "reload", "php8.2-fpm"]]). Each command is a list of strings, the program and its arguments;
        no shell is used and nothing is expanded.
      - The first command that exits with a status other than 0 (or cannot be run) stops the list and counts as a
        failure (see O(revert_on_failure)).
      - Not run when the link did not change (the release was already live), and never in check mode.
      - After a revert the same commands are run again, so that services pick up the release that is live again.
    type: list
    elements: raw
    default: []
  health_url:
    description:
      - URL requested with C(GET) after the switch and the post commands, for example V(http://127.0.0.1/health).
        It must answer C(200) and, unless O(health_release_header) is empty, that header must equal the name of the
        release made live (in A/B mode, the release label of the slot, or the slot name without one).
      - The request is made directly, never through a proxy from the environment, and redirects are followed.
      - It is retried every 0.5 seconds until it succeeds or O(health_timeout) has passed.
      - Also checked when the release was already live; a failure then fails the task, with nothing to revert.
      - Not requested in check mode.
    type: str
  revert_on_failure:
    description:
      - When a post command or the health check fails after the link changed, point the link back at what was live
        before (the same atomic rename), put the release metadata back as it was, run O(post_commands) again, and fail
        with RV(reverted=true).
      - When nothing was live before, the link is removed again. A plain directory migrated by this switch stays
        migrated (it is a release now) and the link points back at it.
      - With V(false), the task fails and the link is left pointing at the new release.
      - Defaults to V(true) when O(health_url) is set, else V(false).
    type: bool
  at:
    description:
      - The moment to switch at, in seconds since the epoch (UTC), such as the controller's C(now().timestamp()) plus a
        few seconds. Everything is checked and planned first (and the lock taken, with O(lock)); then the call waits
        until that moment and renames the link, so that the hosts of a fleet switch together (the deploy role picks
        one moment for every host once all are ready to switch; see C(deploy_switch_delay)).
      - A moment already past switches at once; RV(late) says by how much. A moment more than 300 seconds ahead is
        refused before anything is done.
      - Only a switch that changes the link waits.
      - The hosts' clocks must agree with the controller's (NTP) for the hosts to switch at the same moment.
    type: float
  lock:
    description:
      - Take the deploy lock of O(root) (C(.stagehand/lock), the same lock as M(stagehand.deploy.lock)) before anything
        else, and release it at the end of the call whatever happened.
      - When another holder's lock has not expired, the task fails before anything is checked or changed, with a
        message and RV(lock.holder) naming the holder; with O(history) the refusal is recorded.
      - The keys describe the holder, as for M(stagehand.deploy.lock). The action plugin of this module fills in
        O(lock.owner), O(lock.controller) and O(lock.pid) from the controller when they are not set, as the lock
        module does. Use V({}) to take the lock with those defaults.
      - Omit it to switch without locking (the caller holds the lock).
    type: dict
    suboptions:
      owner:
        description: User running the deploy on the controller, recorded in the lock. Default the controller's user.
        type: str
      controller:
        description: Host name of the controller, recorded in the lock. Default the controller's host name.
        type: str
      pid:
        description: Process id of C(ansible-playbook) on the controller, recorded in the lock. Default that process.
        type: int
      controller_process:
        description:
          - Identity of that process (pid, start, boot, pidns), filled by the action plugin with O(lock.pid); see
            M(stagehand.deploy.lock). The module's own process is recorded too, so that a run killed while it holds the
            lock is taken over at once by the next one.
        type: dict
      purpose:
        description: What the lock is held for, for example V(rollback to v1).
        type: str
      ttl:
        description: Seconds after which the lock counts as stale and may be taken over.
        type: int
        default: 3600
  report:
    description:
      - Print one line on the controller when the call succeeded, saying what was switched on the host (V(rolled back
        from v2 to v1 on web1.) when O(history.action=rollback)), how long the health check took and the seconds per
        phase. The action plugin prints it, so a playbook needs no extra task to say what was done.
      - The module itself ignores this option.
    type: bool
    default: false
  require_live:
    description:
      - Refuse when nothing is live (no O(link), or it does not designate a release or slot), listing the releases.
        A rollback needs something to roll back from.
    type: bool
    default: false
  migrations_dir:
    description:
      - The migrations directory of a release, relative to the release root (V(migrations)). When set, the switch is
        refused if the database has irreversible migrations that the target release does not know. This is the schema guard
        that the deploy role applies to every deploy and rollback (see M(stagehand.deploy.migrate) O(stagehand.deploy.migrate#module:guard)). The
        message names the dump a restore would use, the one taken right before the oldest of them (from
        C(<root>/.stagehand/dumps/index.json)), only when that file is on this host. The live release is never
        refused; a switch to it only runs the post commands and the health check.
      - The database is not asked. The migrations applied to it are read from C(<root>/.stagehand/migrations.json),
        which the deploy role writes on every host once a deploy's migrations are done. It is JSON with the key
        C(applied), the list of migration ids, and C(database). An applied migration that is not in the target's
        O(migrations_dir) is unknown to it. Whether it is irreversible is read from the release on the host that has
        it, the live one first, by the rule of M(stagehand.deploy.migrate).
      - When that record cannot answer, the task fails with RV(needs_db_check=true), releases the lock, writes no
        history and changes nothing. The record cannot answer when it is missing or unreadable, names another
        O(migrations_database), or lacks a migration of the live release (it is older than what is live). It also
        cannot answer when an unknown migration is in no release on the host. Then check the database with
        M(stagehand.deploy.migrate) O(stagehand.deploy.migrate#module:state=checked).
      - In O(mode=slots) the two slots are the releases of the host. The target slot's O(migrations_dir) is checked,
        and the guard names the release label of the slot.
    type: str
  migrations_database:
    description:
      - The database the record must be about (its C(database) key); a record about another one cannot answer.
      - Only used with O(migrations_dir).
    type: str
  history:
    description:
      - Append one line to C(<root>/.stagehand/history.jsonl) at the end of the call, under the lock. The record is
        the same as the one M(stagehand.deploy.history) writes.
      - The module fills in V(release) (the target), V(previous) (what was live), V(outcome), V(end), V(error) and the
        V(phases) it timed (V(lock), V(check), V(switch), V(health)). V(outcome) is V(success); V(refused) (lock
        held, target refused, irreversible migrations); V(rolled_back) (switched, then a post command or the health
        check failed and the switch was reverted); or V(failed).
      - No line is written for invalid arguments, when RV(needs_db_check) is true, or in check mode (RV(history)
        then shows the line).
      - A line that cannot be written gives a warning; it does not fail a switch that worked.
    type: dict
    suboptions:
      action:
        description: The action recorded.
        type: str
        choices: [deploy, rollback, cleanup]
        required: true
      user:
        description:
          - Who runs it (user on the controller).
          - Filled in by the action plugin with the controller's user when not set.
        type: str
        required: true
      controller:
        description:
          - Host name of the controller.
          - Filled in by the action plugin with the controller's host name when not set.
        type: str
        required: true
      start:
        description:
          - When the run started (ISO 8601 UTC, for example V(2026-11-22T10:00:00Z)).
          - Filled in by the action plugin with the controller's time when the task started, when not set.
        type: str
      phases:
        description: Seconds per phase measured by the caller, recorded with those timed here.
        type: dict
      release:
        description: Record this release instead of the target.
        type: str
      previous:
        description: Record this as what was live before, instead of what was.
        type: str
      outcome:
        description: Record this outcome instead of the one of the call.
        type: str
        choices: [success, failed, refused, rolled_back]
      error:
        description: Record this error text instead of the one of the call (none on success).
        type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - stagehand.deploy.health
  - stagehand.deploy.live_link
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
    details:
      - The action plugin only fills in controller facts for O(lock) and O(history) and prints the O(report) line; the
        work is done on the host.
  action_group:
    description: Action is part of action_group(s), for convenient setting of module_defaults.
    support: none
    membership: []
    details:
      - Not part of any action group; use the name C(stagehand.deploy.switch) in C(module_defaults).
  async:
    support: full
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - Changes nothing and returns the same values a real run would, including the chain and the migrated name.
      - O(post_commands) are not run and O(health_url) is not requested; RV(health) is null.
      - With O(lock), a lock held by another is reported as in a real run, but the lock is not taken. With O(history),
        RV(history) is the line that would be appended.
  diff_mode:
    support: full
    details:
      - Before and after are the text of the symlink (V(releases/v1)); before is empty when there was no link and
        V((plain directory\)) for a directory to migrate.
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: partial
    details:
      - Switching to what is already live reports no change (O(post_commands) are not run again).
      - O(target=previous), O(target=previous_good) and O(target=inactive) are relative to what is live, so running
        them again moves on (a second rollback, a flip back).
      - With O(history), every run appends a line and reports a change.
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
  - module: stagehand.deploy.history
  - module: stagehand.deploy.migrate
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

- name: Switch, reload php-fpm and check the health endpoint; switch back if it does not answer
  stagehand.deploy.switch:
    root: /srv/www/app
    release: v2
    post_commands:
      - [systemctl, reload, php8.2-fpm]
    health_url: http://127.0.0.1/health
    health_timeout: 15
  register: switched

- name: A whole rollback in one call - lock, target, irreversible-migrations check, switch, reload, health, history
  stagehand.deploy.switch:
    root: /srv/www/app
    target: previous_good
    require_live: true
    lock:
      purpose: rollback
    migrations_dir: migrations
    migrations_database: app
    post_commands:
      - [systemctl, reload, php8.2-fpm]
    health_url: http://127.0.0.1/health
    history:
      action: rollback
  register: rolled_back
  failed_when: rolled_back is failed and not rolled_back.needs_db_check

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
switched_at:
  description:
    - When the link was renamed (read on the host right after the rename), an ISO 8601 UTC time with milliseconds;
      null when the link did not change (or in check mode). With O(history) the line records it as C(switched).
  returned: success, and failure after the switch
  type: str
  sample: "2026-11-22T10:00:02.003Z"
late:
  description:
    - With O(at), how many seconds after that moment the link was renamed (0 when the wait ended on time; more when the
      call started after the moment). Null without O(at), or when nothing switched.
  returned: success, and failure after the switch
  type: float
  sample: 0.0004
reverted:
  description:
    - Whether the switch was reverted because a post command or the health check failed (the task then fails).
    - When true, RV(current), RV(chain) and RV(path) describe what is live again.
  returned: success, and failure after the switch (a post command or the health check failed)
  type: bool
  sample: false
health:
  description:
    - The outcome of the health check, null when O(health_url) is not set, in check mode, or when a post command
      failed before it.
  returned: success, and failure after the switch (a post command or the health check failed)
  type: dict
  contains:
    url:
      description: The URL requested.
      type: str
      sample: http://127.0.0.1/health
    ok:
      description: Whether it answered 200 with the expected release.
      type: bool
      sample: true
    status:
      description: HTTP status of the last response, null when there was none.
      type: int
      sample: 200
    release:
      description: Value of the release header in the last response, or null.
      type: str
      sample: v2
    expected:
      description: The release name the header had to carry, null when no header was checked.
      type: str
      sample: v2
    header:
      description: The header checked (O(health_release_header)), or null.
      type: str
      sample: X-Release
    attempts:
      description: Number of requests made.
      type: int
      sample: 3
    elapsed:
      description: Seconds spent checking.
      type: float
      sample: 1.012
    error:
      description: Why the last attempt failed, null on success.
      type: str
      sample: null
    body:
      description: The first 1024 characters of the last response body when the check failed, else empty.
      type: str
      sample: ""
  sample:
    url: http://127.0.0.1/health
    ok: true
    status: 200
    release: v2
    expected: v2
    header: X-Release
    attempts: 1
    elapsed: 0.004
    error: null
    body: ""
post_commands:
  description: The post commands run, in order, with their results; empty when none ran.
  returned: success, and failure after the switch (a post command or the health check failed)
  type: list
  elements: dict
  contains:
    argv:
      description: The command.
      type: list
      elements: str
      sample: [systemctl, reload, php8.2-fpm]
    rc:
      description: Exit status, null when the program could not be run.
      type: int
      sample: 0
    stdout:
      description: Standard output (at most 4096 characters).
      type: str
      sample: ""
    stderr:
      description: Standard error, or why the program could not be run (at most 4096 characters).
      type: str
      sample: ""
    phase:
      description: V(switch) for the run after the switch, V(revert) for the run after a revert.
      type: str
      sample: switch
lock:
  description: The deploy lock taken with O(lock), null without it.
  returned: success and failure, when O(lock) is set and the arguments are valid
  type: dict
  contains:
    path:
      description: The lock file.
      type: str
      sample: /srv/www/app/.stagehand/lock
    acquired:
      description: Whether the lock was taken (in check mode, could be).
      type: bool
      sample: true
    released:
      description: Whether it was released again at the end (false in check mode, where it was not taken).
      type: bool
      sample: true
    holder:
      description: The lock content while held by this call, or the other holder's when refused.
      type: dict
      sample: {owner: alice, controller: laptop, purpose: rollback, acquired: "2026-11-22T10:00:00Z"}
  sample:
    path: /srv/www/app/.stagehand/lock
    acquired: true
    released: true
    holder: {owner: alice, controller: laptop, purpose: rollback}
migrations:
  description:
    - The irreversible-migrations check made with O(migrations_dir), null without it, when refused before it, or when
      the target is the live release (never checked).
  returned: success and failure, when O(migrations_dir) is set
  type: dict
  contains:
    record:
      description: The record of applied migrations read.
      type: str
      sample: /srv/www/app/.stagehand/migrations.json
    applied:
      description: The migrations applied to the database, per the record.
      type: list
      elements: str
      sample: [0001_create_visits, 0002_add_note]
    unknown:
      description: Applied migrations that the target release does not have.
      type: list
      elements: str
      sample: [0002_add_note]
    irreversible_since:
      description: Those of RV(migrations.unknown) that are irreversible; the switch is refused when any.
      type: list
      elements: str
      sample: []
    needs_db_check:
      description: Why the record cannot answer, or null.
      type: str
      sample: null
    guard:
      description:
        - What the schema guard decided from the record (the keys of RV(stagehand.deploy.migrate#module:guard)), null
          when the record cannot answer.
      type: dict
      sample: {release: v2, allowed: true, lacking: [], irreversible: [], dump: null, msg: null}
  sample:
    record: /srv/www/app/.stagehand/migrations.json
    applied: [0001_create_visits, 0002_add_note]
    unknown: [0002_add_note]
    irreversible_since: []
    needs_db_check: null
needs_db_check:
  description:
    - True when the task failed because the migrations record cannot answer (see O(migrations_dir)). Nothing was
      changed, the lock was released and no history line was written; check the database instead.
  returned: success and failure, when the arguments are valid
  type: bool
  sample: false
history:
  description: The line appended to the history with O(history) (in check mode, that would be), else null.
  returned: success and failure, when O(history) is set and the arguments are valid
  type: dict
  sample:
    action: rollback
    release: v1
    previous: v2
    user: alice
    controller: laptop
    start: "2026-11-22T10:00:00Z"
    end: "2026-11-22T10:00:01Z"
    outcome: success
    phases: {lock: 0.002, check: 0.004, switch: 0.061, health: 0.012}
    error: null
failed_phase:
  description:
    - Where a task with O(lock), O(require_live), O(migrations_dir) or O(history) failed. V(lock) is the lock held by
      another. V(check) is the target or the migrations. V(switch) is the switch or a post command. V(health) is the
      health check. Null on success.
  returned: success and failure, when the arguments are valid
  type: str
  sample: null
"""

from ansible_collections.stagehand.deploy.plugins.module_utils._module import StagehandModule, exit_with_result
from ansible_collections.stagehand.deploy.plugins.module_utils._switch import (
    RELEASE_TARGETS,
    SLOT_TARGETS,
    DEFAULT_HEALTH_TIMEOUT,
    DEFAULT_RELEASE_HEADER,
    SWITCH_MODES,
    GuardedFailure,
    SwitchError,
    SwitchFailed,
    switch_guarded,
)


class _SwitchModule(StagehandModule):
    """StagehandModule without the file attributes it adds for a returned ``path``.

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
            post_commands=dict(type='list', elements='raw', default=[]),
            health_url=dict(type='str'),
            health_release_header=dict(type='str', default=DEFAULT_RELEASE_HEADER),
            health_timeout=dict(type='float', default=DEFAULT_HEALTH_TIMEOUT),
            revert_on_failure=dict(type='bool'),
            at=dict(type='float'),
            lock=dict(type='dict', options=dict(
                owner=dict(type='str'),
                controller=dict(type='str'),
                pid=dict(type='int'),
                controller_process=dict(type='dict'),
                purpose=dict(type='str'),
                ttl=dict(type='int', default=3600),
            )),
            require_live=dict(type='bool', default=False),
            report=dict(type='bool', default=False),
            migrations_dir=dict(type='str'),
            migrations_database=dict(type='str'),
            history=dict(type='dict', options=dict(
                action=dict(type='str', choices=['deploy', 'rollback', 'cleanup'], required=True),
                user=dict(type='str', required=True),
                controller=dict(type='str', required=True),
                start=dict(type='str'),
                phases=dict(type='dict'),
                release=dict(type='str'),
                previous=dict(type='str'),
                outcome=dict(type='str', choices=['success', 'failed', 'refused', 'rolled_back']),
                error=dict(type='str'),
            )),
        ),
        mutually_exclusive=[('release', 'target')],
        required_one_of=[('release', 'target')],
        supports_check_mode=True,
    )
    params = module.params

    def run_command(argv):
        return module.run_command(argv, check_rc=False, expand_user_and_vars=False, handle_exceptions=False)

    try:
        result = switch_guarded(
            params['root'],
            lock=params['lock'],
            history=params['history'],
            migrations_dir=params['migrations_dir'],
            migrations_database=params['migrations_database'],
            require_live=params['require_live'],
            release=params['release'],
            target=params['target'],
            mode=params['mode'],
            force=params['force'],
            link=params['link'],
            migrate_name=params['migrate_name'],
            post_commands=params['post_commands'],
            health_url=params['health_url'],
            health_release_header=params['health_release_header'],
            health_timeout=params['health_timeout'],
            revert_on_failure=params['revert_on_failure'],
            at=params['at'],
            run_command=run_command,
            check_mode=module.check_mode,
        )
    except (GuardedFailure, SwitchFailed) as exc:
        failed = dict(exc.result)
        for warning in failed.pop('warnings'):
            module.warn(warning)
        diff = failed.pop('diff')
        if module._diff:
            failed['diff'] = diff
        module.fail_json(msg=exc.msg, **failed)
    except SwitchError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg='Could not switch %s in %s: %s' % (params['link'], params['root'], exc))

    exit_with_result(module, result)


if __name__ == '__main__':
    main()
