#!/usr/bin/python
# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ship
short_description: Send a host only what it lacks of a compose, stage the release and switch to it, in one call
version_added: 0.1.0
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
description:
  - The whole host side of a deploy of one compose in one module run, for the deploy role's fast path (see
    C(docs/deploy.md)). It does what the role's ship, verify, stage and switch phases do, with the same module
    utilities, without a task per step.
  - On the controller (action plugin), from O(compose) and what the host holds (O(held), the result of
    M(stagehand.deploy.release_info)), the files whose content the host lacks are written to a delta archive, and the
    manifest as a delta against a manifest the host keeps (as M(stagehand.deploy.delta) does). These, the signature
    and O(allowed_signers) are copied to the remote temporary directory, over any connection.
  - On the host, under the deploy lock (held by someone else, the task fails naming the holder and changes nothing),
    the manifest is rebuilt and must have the compose id as digest, its signature is verified against
    O(allowed_signers), and php-fpm is checked against O(platform). A refusal there stages nothing.
  - Then the shared directories and C(shared/.env) are made ready, an earlier failed attempt of the release (never
    the live one) is removed, and C(releases/<release>) is assembled from the uploaded files and hardlinks to the
    releases already on the host, verified against the manifest and renamed into place, as
    M(stagehand.deploy.release) does with O(stagehand.deploy.release#module:partial=true).
  - With O(mode=slots), the inactive slot (C(slots/a) or C(slots/b), whichever C(current) does not point at) is
    patched in place to the manifest instead, as one crash-safe transaction, as M(stagehand.deploy.patch) does with
    O(stagehand.deploy.patch#module:slot=inactive). New content comes from the uploaded files or, by sha256, from
    either slot. An empty slot has nothing to patch, so it is built aside from the uploaded files and hardlinks to the
    other slot, then renamed into place, as a release is. With O(opcache), php-fpm's opcache is invalidated for that slot (as M(stagehand.deploy.opcache)
    does) before C(current) is flipped to it. A run that fails after patching the slot marks the slot failed, so
    that a rollback never flips to it.
  - With O(migrations), the release's migrations must all be in the record C(<root>/.stagehand/migrations.json) of
    what the database holds. When some are pending, or the record cannot say, the call ends with
    RV(needs_migrate=true) and the release staged but not live, so that the caller migrates and switches.
  - With O(migrations), the schema guard of every path to live applies too (see M(stagehand.deploy.migrate) O(stagehand.deploy.migrate#module:guard)).
    When the record lists migrations the release does not have, the call switches only when the record and the
    releases on the host show that none of them is irreversible. Otherwise (an older version deployed after an
    irreversible migration, or nothing here tells) it ends with RV(needs_migrate=true), and the deploy role's migrate
    phase decides on the database itself, refusing the deploy unless a restore is asked for.
  - With O(switch) and O(preview_check), the staged release is checked before anyone sees it; C(<root>/preview) is
    pointed at it (one rename) and the health request of O(switch.health_url) (its path and query) is sent to nginx's
    loopback preview server, which serves the web root below C(<root>/preview) (the M(stagehand.deploy.preview_health)
    check, after the opcache invalidation in slots mode). When it does not answer 200 with the release in
    O(switch.health_release_header) within the timeout, nothing goes live and the task fails naming the URL and what
    it answered; a release this call staged is removed (as the deploy role's undo does), one that was on the host
    before, and a slot, are marked failed, so that no rollback goes to them.
  - With O(switch), C(current) is then switched to the release, O(switch.post_commands) run and O(switch.health_url)
    checked, as M(stagehand.deploy.switch) does with O(stagehand.deploy.switch#module:revert_on_failure=true). When
    they fail, the host is switched straight back, the release is marked failed and the task fails.
  - With O(history), one line is appended to the history of the deploy root, whatever the outcome (except
    RV(needs_migrate)). The lock is released at the end of the call whatever happened.
options:
  root:
    description: Absolute path of the deploy root on the host.
    type: path
    required: true
  release:
    description: The release name (1 to 128 of C(A-Z a-z 0-9 . _ -), not starting with C(.)).
    type: str
    required: true
  mode:
    description:
      - V(releases) stages and switches C(releases/<release>).
      - V(slots) patches the inactive slot to the release (labelled O(release)) and flips C(current) to it. With
        O(end_if_live), a redeploy of what the live slot holds ends at once.
    type: str
    choices: [releases, slots]
    default: releases
  compose:
    description:
      - The compose, as M(stagehand.deploy.compose) returns it (extra keys are ignored).
    type: dict
    required: true
    suboptions:
      compose_id:
        description: The compose id, C(sha256:<hex>) of the manifest.
        type: str
        required: true
      manifest:
        description: Path of its C(manifest.json) on the controller.
        type: path
      artifact:
        description: Path of its C(.tar.gz) on the controller.
        type: path
      signature:
        description: Path of the signature of the manifest on the controller, if signed.
        type: path
  held:
    description:
      - What the host holds, the result of M(stagehand.deploy.release_info) on it (its RV(stagehand.deploy.release_info#module:releases)
        and RV(stagehand.deploy.release_info#module:composes) are used). Read by the action plugin only.
      - Omitted, the action plugin reads it itself with one shell command over the connection (the link C(current),
        the release metadata in C(.stagehand/releases/) and the list of C(.stagehand/composes/)), which costs far less
        than a module run. Whatever it reads, the module checks every file it stages against the manifest.
    type: dict
  end_if_live:
    description:
      - When O(release) is live on the host with this compose id already, end at once with RV(already_live=true) and
        C(changed=false); nothing is sent, locked, written or checked. Read by the action plugin only.
      - Not while the deploy root has a lock file (C(.stagehand/lock), or C(lock) in O(held)); the call then goes on under
        the lock, which takes over a dead holder (completing its history) or is refused by a live one, so that a rerun
        never reports success while a stale lock is left.
    type: bool
    default: true
  manifests:
    description:
      - Directories on the controller with the manifests of earlier composes (C(<dir>/<hex>/manifest.json) or
        C(<dir>/<hex>.json)); what the host holds is known from them. Read by the action plugin only.
    type: list
    elements: path
    default: []
  upload:
    description:
      - Where the action plugin put the uploaded files on the host. Set by the action plugin; do not set it.
    type: dict
    suboptions:
      archive:
        description: The delta archive, if any file had to be sent.
        type: path
      manifest:
        description: Where the manifest is rebuilt (and where a whole uploaded manifest is).
        type: path
        required: true
      manifest_delta:
        description: The manifest delta, if one was sent.
        type: path
      bytes:
        description:
          - The size of the files sent (those the host lacks). Staging is refused before anything is written when the
            filesystem of O(root) has less free space than that plus 1 MiB; the message names both amounts.
        type: int
  shared:
    description: Paths (relative to the release) linked to C(<root>/shared/<path>), as for M(stagehand.deploy.release).
    type: list
    elements: str
    default: []
  shared_dirs:
    description: Directories made under C(<root>/shared/), owned by O(app_user) and O(app_group), mode C(0775).
    type: list
    elements: str
    default: []
  owner:
    description: Owner of the release files and of C(<root>/shared) (name or uid).
    type: str
  group:
    description: Group of the release files and of C(<root>/shared) (name or gid).
    type: str
  app_user:
    description: Owner of the O(shared_dirs) (the user php-fpm runs as). Default O(owner).
    type: str
  app_group:
    description: Group of the O(shared_dirs) and of C(shared/.env). Default O(group).
    type: str
  env_file:
    description:
      - Write C(<root>/shared/.env) with this content (atomically, only when it differs), owned by O(owner) and
        O(env_file.group).
    type: dict
    suboptions:
      content:
        description: The text of the file.
        type: str
        required: true
      group:
        description: Its group. Default O(app_group).
        type: str
      mode:
        description: Its mode, octal.
        type: str
        default: '0640'
  platform:
    description:
      - Refuse, staging nothing, when php-fpm does not meet these requirements (as M(stagehand.deploy.platform)).
    type: dict
    suboptions:
      php:
        description: PHP version constraints (composer syntax).
        type: list
        elements: str
        default: []
      extensions:
        description: PHP extensions that must be loaded.
        type: list
        elements: str
        default: []
      binary:
        description: The php-fpm binary asked.
        type: str
        default: php-fpm
  opcache:
    description:
      - With O(mode=slots), invalidate php-fpm's opcache for the patched slot through the pool's FastCGI socket
        before the flip (every script cached below the slot, and the files the patch changed), as
        M(stagehand.deploy.opcache) does. When that fails, nothing goes live and the task fails. Ignored with
        O(mode=releases), where every release has paths of its own.
    type: dict
    suboptions:
      socket:
        description: The absolute path of the php-fpm pool's socket.
        type: str
        required: true
      timeout:
        description: Seconds to wait for the answer.
        type: float
        default: 30.0
  allowed_signers:
    description:
      - An allowed signers file on the controller (C(ssh-keygen) format). When set, the manifest must carry a valid
        signature by O(identity), or nothing is staged. The action plugin copies it to the host.
    type: path
  identity:
    description: The signer identity the signature must be from (C(ssh-keygen -Y verify -I)).
    type: str
    default: deploy
  migrations:
    description:
      - Stop before switching, with RV(needs_migrate=true), when the release has migrations that the record
        C(<root>/.stagehand/migrations.json) does not list as applied, or when that record is missing, unreadable or
        about another database, or when the record lists migrations the release does not have and the schema guard
        refuses or cannot decide from the host (see the description).
    type: dict
    suboptions:
      dir:
        description: The migrations directory, relative to the release.
        type: str
        required: true
      database:
        description: The database the record must be about.
        type: str
      allow_irreversible:
        description:
          - "Used by the preview in check mode only (the module never applies migrations). Without it, a deploy whose
            pending migrations include an irreversible one (no C(.down.sql), or the line C(-- stagehand: irreversible))
            is previewed as refused in its migrate phase, as the M(stagehand.deploy.migrate) module would refuse it."
        type: bool
        default: false
  switch:
    description:
      - Switch to the release once it is staged (and no migration is pending). Omit it to stage only.
    type: dict
    suboptions:
      post_commands:
        description: Commands (each an argv list) run after the switch, for example a php-fpm reload.
        type: list
        elements: raw
        default: []
      health_url:
        description: URL requested after the post commands until it answers 200 with the release in O(switch.health_release_header).
        type: str
      health_release_header:
        description: Response header that must name the release.
        type: str
        default: X-Release
      health_timeout:
        description: Seconds to wait for the health check.
        type: float
        default: 10.0
  preview_check:
    description:
      - Check the staged release through nginx's preview server before the switch (needs O(switch.health_url); without
        it there is no health check and no preview check). Omitted, or O(preview_check.port=0), no preview check.
    type: dict
    suboptions:
      port:
        description: The port of the loopback-only preview server (the nginx role's C(nginx_preview_port)); V(0) for no check.
        type: int
        required: true
      timeout:
        description: Seconds the staged release has to answer healthy. Default O(switch.health_timeout).
        type: float
  lock:
    description:
      - Take the deploy lock for the call, as O(stagehand.deploy.switch#module:lock) does; the action plugin fills in
        the owner, controller and pid. Omit it when the caller holds the lock.
      - The module's own process is recorded in the lock with the release and action C(deploy), so that when it is
        killed the next run takes the lock over at once (see M(stagehand.deploy.lock)) and completes the history with a
        line of outcome C(interrupted); a holder proven dead on the controller is taken over by the action plugin,
        which runs the module once more with O(lock.stale_token).
    type: dict
    suboptions:
      owner:
        description: User running the deploy on the controller.
        type: str
      controller:
        description: Host name of the controller.
        type: str
      pid:
        description: Process id of C(ansible-playbook) on the controller.
        type: int
      controller_process:
        description: Identity of that process (pid, start, boot, pidns), filled by the action plugin; see M(stagehand.deploy.lock).
        type: dict
      stale_token:
        description: Token of a holder proven dead on the controller, taken over even before it expires (set by the action plugin).
        type: str
      stale_reason:
        description: How the holder of O(lock.stale_token) was proven dead.
        type: str
      purpose:
        description: What the lock is held for.
        type: str
      ttl:
        description: Seconds after which the lock counts as stale.
        type: int
        default: 3600
  history:
    description:
      - Append one history line, as O(stagehand.deploy.switch#module:history) does; the action plugin fills in user,
        controller and start.
    type: dict
    suboptions:
      action:
        description: The action recorded.
        type: str
        choices: [deploy]
        default: deploy
      user:
        description: Who runs it.
        type: str
      controller:
        description: Host name of the controller.
        type: str
      start:
        description: When the run started (ISO 8601 UTC).
        type: str
      phases:
        description: Seconds per phase measured by the caller, recorded with those timed here.
        type: dict
  naming:
    description:
      - Check mode only, when O(compose) has no compose yet. What names the release by the collection's one naming rule
        (C(repo) and C(version), or C(artifact), and C(release) as C(-e release) gives it). The module ignores it.
    type: dict
  report:
    description:
      - Print one line on the controller saying what was sent and what went live (in check mode, what the deploy
        would do). The module ignores it.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
    details:
      - The action plugin writes the delta on the controller, copies it to the host and runs the module.
  action_group:
    description: Action is part of action_group(s), for convenient setting of module_defaults.
    support: none
    membership: []
    details:
      - Not part of any action group.
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - The preview of the deploy; the module is not run. The action plugin reads what the host holds (one read-only
        shell command) and works out, without writing anything on the controller or the host, what the deploy would
        send (files and bytes the host lacks), stage, migrate (from the host's migrations record) and switch, or that
        the lock is held or the compose is live already. RV(preview) holds it, O(report) prints it as one line, and
        C(changed) says whether the deploy would change anything.
      - A O(compose) without C(compose_id) (the store has none yet) is previewed as "compose it first"; the release
        is then named from O(naming).
  diff_mode:
    support: partial
    details:
      - In check mode, the live link before and after the deploy.
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: partial
    details:
      - A release already staged with the same content is left as it is, and switching to what is live changes
        nothing; with O(history) every run appends a line and reports a change.
  platform:
    support: full
    platforms: posix
seealso:
  - module: stagehand.deploy.release
  - module: stagehand.deploy.switch
  - module: stagehand.deploy.delta
"""

EXAMPLES = r"""
- name: Ship v1.4.0, stage it and switch to it in one call
  stagehand.deploy.ship:
    root: /srv/shop
    release: v1.4.0
    compose: "{{ composed }}"   # the result of stagehand.deploy.compose
    manifests: ["~/.cache/stagehand/artifacts/shop/composes"]
    shared: [.env, storage]
    shared_dirs: [storage]
    owner: deploy
    group: deploy
    app_user: www-data
    app_group: www-data
    migrations:
      dir: migrations
      database: shop
    switch:
      post_commands: [[systemctl, reload, php8.2-fpm]]
      health_url: http://127.0.0.1/health
    lock:
      purpose: deploy v1.4.0
    history:
      action: deploy
    report: true
  register: shipped
"""

RETURN = r"""
needs_phases:
  description: Always false (kept for playbooks written for earlier versions, where slots mode used the phases).
  returned: always
  type: bool
  sample: false
mode:
  description: The mode, V(releases) or V(slots).
  returned: unless O(end_if_live) ended the call
  type: str
  sample: slots
slot:
  description: With O(mode=slots), the slot patched (V(a) or V(b)); null otherwise or when refused before.
  returned: unless O(end_if_live) ended the call
  type: str
  sample: b
opcache:
  description: With O(mode=slots) and O(opcache), what the invalidation found and did (as M(stagehand.deploy.opcache) returns it).
  returned: unless O(end_if_live) ended the call
  type: dict
  sample: {enabled: true, cached: [/srv/shop/slots/b/public/index.php], invalidated: [/srv/shop/slots/b/public/index.php], still_cached: []}
already_live:
  description: True when the release was live with this compose id already (O(end_if_live)); nothing else was done.
  returned: when O(end_if_live=true) and the release is live with the compose
  type: bool
  sample: true
release:
  description: The release.
  returned: always
  type: str
  sample: v1.4.0
compose_id:
  description: The compose id (in check mode, null when the store has no compose yet).
  returned: always
  type: str
  sample: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
preview:
  description:
    - Check mode only. What the deploy would do on the host, worked out by the action plugin without changing anything.
    - "C(line) says it in one sentence, for example C(web1: would send 1 file(s) of 412 (2.1 kB), stage releases/v3
      (hardlinks for every unchanged file), apply the migration(s) 0003_add_index (after a dump) and switch current
      from v2 to v3)."
  returned: in check mode
  type: dict
  contains:
    line:
      description: The preview in one sentence.
      type: str
    already_live:
      description: The release is live with this compose already; the deploy would change nothing.
      type: bool
    send:
      description: C(files), C(total_files), C(bytes) and the first C(paths) the host lacks; null when nothing is composed yet.
      type: dict
    stage:
      description: Where the release would be staged (C(releases/<name>), or C(slot <a|b>)); null when nothing would change.
      type: str
    migrations:
      description: The migrations the host's record says the database lacks; null when the record cannot say (C(migrations_note)).
      type: list
      elements: str
    migrations_note:
      description: Why the record cannot say, or null.
      type: str
    irreversible:
      description: Those of C(migrations) that cannot be undone (no C(.down.sql), or marked irreversible in the up file).
      type: list
      elements: str
    refused:
      description:
        - Why the deploy would be refused after reading the host (irreversible migrations without
          O(migrations.allow_irreversible)); null otherwise. Nothing would change then.
      type: str
    switch:
      description: C(from) (what is live, or null) and C(to) (the release); null when nothing would change or the deploy would be refused.
      type: dict
    lock:
      description: The lock file's content when the deploy lock is held; the deploy would then be refused (or take it over).
      type: dict
    changes:
      description: Whether the deploy would change anything.
      type: bool
sent:
  description: What was sent to the host (set by the action plugin).
  returned: unless in check mode
  type: dict
  contains:
    files:
      description: Files in the delta archive.
      type: int
    bytes:
      description: Their size, uncompressed.
      type: int
    archive_bytes:
      description: The size of the delta archive.
      type: int
    manifest:
      description: How the manifest went, V(kept) (the host had it), V(delta) or V(whole).
      type: str
    manifest_bytes:
      description: Bytes of manifest (or manifest delta) sent.
      type: int
    total_files:
      description: Regular files of the release (sent or not).
      type: int
    manifest_delta_entries:
      description: Entries set or removed by the manifest delta, or null without one.
      type: int
    base:
      description: The compose id the manifest delta is against, or null.
      type: str
    seconds:
      description: Seconds spent on the controller writing and copying it (recorded as the V(ship) phase).
      type: float
  sample: {files: 1, total_files: 10001, bytes: 1893, archive_bytes: 1120, manifest: delta, manifest_bytes: 612,
           manifest_delta_entries: 2, base: 'sha256:5e1f...', seconds: 0.31}
staged:
  description:
    - The result of staging the release (as M(stagehand.deploy.release) returns it; with O(mode=slots), as
      M(stagehand.deploy.patch) returns it for the slot), or null when refused before.
    - With O(mode=slots) it also has C(filled_empty), true when the slot was empty and so was built aside and renamed
      into place (its C(changed_files) then lists every file, all of them new to the slot) rather than patched.
  returned: always
  type: dict
  sample: {path: /srv/shop/releases/v1.4.0, status: complete, linked: 9999, copied: 1, changed: true}
needs_migrate:
  description: True when the release has migrations to apply (or the record cannot say); nothing was switched.
  returned: always
  type: bool
  sample: false
pending_migrations:
  description: The migration ids of the release the record does not list as applied.
  returned: always
  type: list
  elements: str
  sample: [20261122_add_orders_index]
switched:
  description: True when C(current) now points at the release and did not before.
  returned: always
  type: bool
  sample: true
previous:
  description: The release live before the call (with O(mode=slots), the release label of the live slot).
  returned: always
  type: str
  sample: v1.3.2
current:
  description: The release live after the call.
  returned: always
  type: str
  sample: v1.4.0
preview_check:
  description:
    - The preview check of the staged release before the switch (C(url), C(link), C(changed), and C(health) as
      M(stagehand.deploy.switch) returns it), or null when none ran.
  returned: always
  type: dict
  sample: {url: 'http://127.0.0.1:8180/health', link: '/srv/shop/preview -> releases/v1.4.0', changed: true,
           health: {ok: true, attempts: 1, elapsed: 0.01, status: 200, release: v1.4.0}}
health:
  description: The health check result, as M(stagehand.deploy.switch) returns it; null without one.
  returned: always
  type: dict
  sample: {ok: true, attempts: 1, elapsed: 0.02, status: 200, release: v1.4.0}
history:
  description: The history line appended, or null.
  returned: always
  type: dict
  sample: {action: deploy, release: v1.4.0, previous: v1.3.2, outcome: success}
phases:
  description:
    - Seconds per phase on the host (V(lock), V(stage) with the checks, V(migrate)); the history line adds V(switch)
      and V(health), and the V(ship) phase of the action plugin.
  returned: always
  type: dict
  sample: {lock: 0.001, stage: 0.41, migrate: 0.002}
failed_phase:
  description: The phase that failed (V(lock), V(verify), V(stage), V(preview), V(switch)); null on success.
  returned: always
  type: str
  sample: null
manifest:
  description: The path of the rebuilt manifest on the host.
  returned: always
  type: str
  sample: /root/.ansible/tmp/ansible-tmp-1/manifest.json
signature:
  description: The verified signature (fingerprint, identity), or null without O(allowed_signers).
  returned: always
  type: dict
  sample: {fingerprint: 'SHA256:3Zr...', identity: deploy}
platform:
  description: The platform check (version, missing), or null without requirements.
  returned: always
  type: dict
  sample: {version: 8.2.26, missing: []}
"""

from ansible_collections.stagehand.deploy.plugins.module_utils._module import StagehandModule
from ansible_collections.stagehand.deploy.plugins.module_utils._ship import ShipError, run


def main() -> None:
    module = StagehandModule(
        argument_spec=dict(
            root=dict(type='path', required=True),
            release=dict(type='str', required=True),
            mode=dict(type='str', choices=['releases', 'slots'], default='releases'),
            compose=dict(type='dict', required=True, options=dict(
                compose_id=dict(type='str', required=True),
                manifest=dict(type='path'),
                artifact=dict(type='path'),
                signature=dict(type='path'),
            )),
            held=dict(type='dict'),
            end_if_live=dict(type='bool', default=True),
            manifests=dict(type='list', elements='path', default=[]),
            upload=dict(type='dict', options=dict(
                archive=dict(type='path'),
                manifest=dict(type='path', required=True),
                manifest_delta=dict(type='path'),
                bytes=dict(type='int'),
            )),
            shared=dict(type='list', elements='str', default=[]),
            shared_dirs=dict(type='list', elements='str', default=[]),
            owner=dict(type='str'),
            group=dict(type='str'),
            app_user=dict(type='str'),
            app_group=dict(type='str'),
            env_file=dict(type='dict', no_log=False, options=dict(
                content=dict(type='str', required=True, no_log=True),
                group=dict(type='str'),
                mode=dict(type='str', default='0640'),
            )),
            platform=dict(type='dict', options=dict(
                php=dict(type='list', elements='str', default=[]),
                extensions=dict(type='list', elements='str', default=[]),
                binary=dict(type='str', default='php-fpm'),
            )),
            opcache=dict(type='dict', options=dict(
                socket=dict(type='str', required=True),
                timeout=dict(type='float', default=30.0),
            )),
            allowed_signers=dict(type='path'),
            identity=dict(type='str', default='deploy'),
            migrations=dict(type='dict', options=dict(
                dir=dict(type='str', required=True),
                database=dict(type='str'),
                allow_irreversible=dict(type='bool', default=False),
            )),
            switch=dict(type='dict', options=dict(
                post_commands=dict(type='list', elements='raw', default=[]),
                health_url=dict(type='str'),
                health_release_header=dict(type='str', default='X-Release'),
                health_timeout=dict(type='float', default=10.0),
            )),
            preview_check=dict(type='dict', options=dict(
                port=dict(type='int', required=True),
                timeout=dict(type='float'),
            )),
            lock=dict(type='dict', options=dict(
                owner=dict(type='str'),
                controller=dict(type='str'),
                pid=dict(type='int'),
                controller_process=dict(type='dict'),
                stale_token=dict(type='str', no_log=False),
                stale_reason=dict(type='str'),
                purpose=dict(type='str'),
                ttl=dict(type='int', default=3600),
            )),
            history=dict(type='dict', options=dict(
                action=dict(type='str', choices=['deploy'], default='deploy'),
                user=dict(type='str'),
                controller=dict(type='str'),
                start=dict(type='str'),
                phases=dict(type='dict'),
            )),
            report=dict(type='bool', default=False),
            naming=dict(type='dict'),
        ),
        # check mode is the action plugin's preview; the module itself never runs then
        supports_check_mode=True,
    )
    if module.check_mode:
        module.fail_json(msg='in check mode the action plugin of stagehand.deploy.ship previews the deploy without running the '
                             'module; run it through that action (the task stagehand.deploy.ship); nothing was done')
    params = dict(module.params)
    if params['upload'] is None:
        module.fail_json(msg='upload is set by the action plugin of stagehand.deploy.ship; run the module through it')
    params['compose_id'] = params['compose']['compose_id']

    def run_command(argv):
        return module.run_command(argv, check_rc=False, expand_user_and_vars=False, handle_exceptions=False)

    try:
        result = run(params, run_command=run_command)
    except ShipError as exc:
        failed = dict(exc.result)
        for warning in failed.pop('warnings', []):
            module.warn(warning)
        module.fail_json(msg=exc.msg, **failed)
    for warning in result.pop('warnings'):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
