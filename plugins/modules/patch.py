#!/usr/bin/python
# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: patch
short_description: Apply a set of file operations to a tree as one transaction
version_added: 0.1.0
description:
  - Applies a changeset (create, update, delete and symlink operations) to a directory tree so that either
    all of it is applied or none of it, even if the process is killed or the machine loses power.
  - "It follows the phases of the Karazeh patcher. B(Recover): a journal left by an interrupted run is rolled
    back completely before anything else. B(Stage): every operation is checked and its new content copied into
    a cache in O(workdir); nothing live is touched. B(Deploy): a journal is written and fsynced, then each
    original is kept as a hard link (or moved, for V(delete)) in O(workdir) and replaced by a C(rename) system call from
    the cache. B(Validate): the optional O(validate) command runs. B(Commit): the journal is removed, then the
    backups and the cache."
  - Any failure during deploy or validate rolls every operation back (originals restored by rename, created files
    and created empty directories removed) and the task fails saying so.
  - Operations already in their desired state are no-ops, so running the same changeset again reports no change.
  - Concurrent runs on the same tree are refused (C(flock) on the tree's root directory).
  - "B(Slot mode) (O(root), O(slot), O(manifest)): instead of a list of operations, the operations are computed from
    the difference between an A/B slot (C(<root>/slots/a) or C(slots/b)) as it is on disk and a wanted manifest,
    and applied to the slot IN PLACE as one transaction with the same journal and rollback: files and symlinks
    deleted, created and replaced, directories removed and created, modes changed. New content is found by
    sha256 in O(sources). The whole slot is verified against the manifest before the commit (a mismatch rolls
    everything back), then the slot metadata C(.stagehand/slots/<slot>.json) and the slot manifest
    C(.stagehand/slots/<slot>.manifest.json) are written, the same files M(stagehand.deploy.release) writes for
    a slot. The live slot is refused. See C(docs/slots.md)."
  - "In slot mode the metadata also keeps C(stat_digest), a fingerprint of what lstat says of every entry of the
    slot (device, inode, size, mtime, mode, owner) taken right after the verification. When the next patch finds
    the same fingerprint, it plans from the recorded manifest without reading the slot's files (RV(trusted_record)),
    Anything written to the slot since (a write changes the mtime), added, removed, chmodded or chowned changes the
    fingerprint, and then every file is hashed to plan, as without one. The verification before the commit compares
    every entry, and takes the sha256 of a file from the plan (unchanged inode) or from its staging (where each new
    file was checked against its sha256) instead of reading it a second time."
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Runs every stage check and reports what would change, writing nothing. An interrupted run's journal is
        not rolled back in check mode; the result says it would be (V(changed=true)) without evaluating the
        operations.
  diff_mode:
    support: full
    details:
      - Returns one diff per changed entry. Binary files and files larger than 64 KiB are summarized by size and
        sha256; symlinks are shown as their target.
  idempotent:
    description: When run twice in a row with the same arguments, the second run reports no change.
    support: full
    details:
      - Operations already in their desired state (content, mode, owner, symlink target) are no-ops.
  platform:
    platforms: posix
options:
  path:
    description:
      - Root of the tree to patch. It must exist and be a directory.
      - Required unless O(root) is given (slot mode); mutually exclusive with O(root).
    type: path
  operations:
    description:
      - The changeset, applied in order. It may be empty (useful to only recover an interrupted run).
      - Each path may appear once; one changeset may not touch a path and something beneath it.
      - Required with O(path); not used in slot mode.
    type: list
    elements: dict
    suboptions:
      op:
        description:
          - V(create) writes a new file; the path must be absent (or already hold exactly the wanted file).
            Missing parent directories are created (mode 0755) and removed again on rollback.
          - V(update) replaces an existing regular file.
          - V(delete) removes a file or symlink; an absent path is a no-op. Directories are refused.
          - V(symlink) makes the path a symlink to O(operations[].target), replacing a file, a symlink or nothing,
            never a directory.
        type: str
        required: true
        choices: [create, update, delete, symlink]
      path:
        description:
          - Path relative to O(path). Absolute paths and C(..) components are refused, and the path must stay
            inside the tree also through existing symlinked parent directories.
          - It may not be inside O(workdir).
        type: str
        required: true
      content:
        description:
          - The new content as a string (UTF-8), for V(create) and V(update).
          - Mutually exclusive with O(operations[].src).
        type: str
      src:
        description:
          - Absolute path of a file on the managed host holding the new content, for V(create) and V(update).
          - Mutually exclusive with O(operations[].content).
        type: path
      sha256:
        description:
          - Expected sha256 (hex, optionally prefixed by C(sha256:)) of the current file, for V(update) and
            V(delete). The operation is refused when the file differs, unless it is already in the desired state.
        type: str
      mode:
        description:
          - Octal mode of the new file, such as V(0644) (quote it in YAML), for V(create) and V(update).
          - Defaults to the current mode for V(update) and V(0644) for V(create).
        type: raw
      owner:
        description:
          - User name or uid owning the new entry (V(create), V(update), V(symlink)).
          - Defaults to the current owner for V(update), and to the user running the module otherwise.
        type: str
      group:
        description:
          - Group name or gid of the new entry (V(create), V(update), V(symlink)).
          - Defaults to the current group for V(update); for V(create) the group of a set-group-ID parent
            directory, else the group of the user running the module.
        type: str
      target:
        description:
          - What the symlink points to, for V(symlink) (required there). Stored as given, relative or absolute.
        type: str
  validate:
    description:
      - Command run after the deploy phase, in O(path), before committing. It is split like a shell would
        (C(shlex.split)) but not run through a shell; C(%s) in an argument is replaced by O(path).
      - A non-zero exit status rolls the whole changeset back; its rc, stdout and stderr are in the failure result.
      - It only runs when something changed.
    type: str
  workdir:
    description:
      - Directory for the journal, the cache and the backups. It must be on the same filesystem as the tree
        (every change is a C(rename) system call) and its parent must exist.
      - Defaults to C(<path>/.stagehand-patch), which is removed again at the end of each run when it is empty.
        A workdir given explicitly is created when missing and kept.
      - It must hold nothing but what this module puts there; operations may not target it.
    type: path
  root:
    description:
      - Slot mode. The deploy root holding C(slots/a), C(slots/b), C(current) and C(.stagehand/).
      - Requires O(manifest); mutually exclusive with O(path), O(operations), O(validate) and O(workdir).
    type: path
  slot:
    description:
      - Slot mode. The slot to patch. V(inactive) is the slot C(current) does not point at (V(a) when no slot is live).
      - The live slot is refused, with nothing changed. A slot that does not exist yet is created.
    type: str
    choices: [a, b, inactive]
    default: inactive
  manifest:
    description:
      - Slot mode. Path on the managed host of the wanted manifest (the JSON file form with C(version), C(digest) and
        C(entries), as written by M(stagehand.deploy.compose)), describing the content of the release without shared paths.
      - Unsafe manifests are refused with nothing changed (absolute paths, C(..), duplicates, symlinks resolving
        outside the slot, setuid/setgid modes, a digest that does not match the entries).
    type: path
  sources:
    description:
      - Slot mode. Where the content of new or changed files is found, by sha256 and size. Each entry is the absolute
        path of a C(.tar.gz)/C(.tgz) archive (read safely and never trusted, every file is checked against the
        manifest) or of a directory (only files of a wanted size are hashed). Paths that do not exist are skipped.
      - The slot itself is always a source (files that move, modes that change).
      - A source file on the slots' filesystem whose mode and owner already are the wanted ones is hard-linked
        into the slot instead of copied (its content is hashed again first), so unchanged files of the other slot
        take no space twice. Nothing ever changes such a shared file in place (files are replaced by C(rename),
        only directories are chmodded), so patching or rolling back one slot never alters the other.
      - When the content of a file is in none of them, nothing is changed and the task fails naming the files.
    type: list
    elements: path
    default: []
  shared:
    description:
      - Slot mode. Paths of the release that are symlinks into C(<root>/shared/) (whatever the manifest has there is
        replaced by the link), as for M(stagehand.deploy.release).
    type: list
    elements: str
    default: []
  release:
    description:
      - Slot mode. The release name recorded in the slot metadata (C(release) key); M(stagehand.deploy.switch) expects
        it in the health check's release header.
    type: str
  owner:
    description:
      - Slot mode. User name or uid owning every entry of the slot. Defaults to the user running the module.
    type: str
  group:
    description:
      - Slot mode. Group name or gid of every entry of the slot. Defaults to the group new files get.
    type: str
notes:
  - Needs a filesystem with hard links (for the backups); without them the original is moved aside instead, so the
    path is briefly absent during the swap.
  - The transaction covers the file contents, modes, owners and symlinks listed in O(operations), not services that
    read them; reload those in a handler.
"""

EXAMPLES = r"""
- name: Patch a PHP application in place, checking the config first
  stagehand.deploy.patch:
    path: /srv/app/current
    operations:
      - op: update
        path: config/app.php
        src: /tmp/app.php
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      - op: create
        path: public/robots.txt
        content: "User-agent: *\nDisallow:\n"
        mode: '0644'
      - op: delete
        path: public/install.php
      - op: symlink
        path: storage
        target: ../../shared/storage
    validate: php -l %s/config/app.php

- name: Change an nginx site and roll back if nginx rejects it
  stagehand.deploy.patch:
    path: /etc/nginx
    operations:
      - op: update
        path: sites-available/app.conf
        content: "{{ lookup('template', 'app.conf.j2') }}"
    validate: nginx -t
  notify: Reload nginx

- name: Patch the inactive A/B slot in place to a new release
  stagehand.deploy.patch:
    root: /srv/www/app
    slot: inactive
    manifest: /srv/www/app/.stagehand/upload-v3.manifest.json
    sources:
      - /srv/www/app/.stagehand/upload-v3.tar.gz
      - /srv/www/app/slots/a
      - /srv/www/app/slots/b
    shared: [.env, storage]
    release: v3
    owner: root
    group: root
  register: patched

- name: Only roll back an interrupted run, if any
  stagehand.deploy.patch:
    path: /srv/app/current
    operations: []
"""

RETURN = r"""
changed:
  description: Whether the tree changed (operations applied, an interrupted run rolled back or leftovers removed).
  returned: always
  type: bool
  sample: true
recovered:
  description: Whether a journal of an interrupted run was found and rolled back before this run (a warning says so).
  returned: always
  type: bool
  sample: false
operations:
  description:
    - One entry per operation, in order. Empty when check mode found an interrupted run to recover first.
  returned: without O(root)
  type: list
  elements: dict
  contains:
    path:
      description: The operation's path, normalized, relative to O(path).
      type: str
      returned: always
      sample: config/app.php
    op:
      description: The operation.
      type: str
      returned: always
      sample: update
    changed:
      description: Whether this operation changes the tree (false when already in the desired state).
      type: bool
      returned: always
      sample: true
    before_sha256:
      description: sha256 of the regular file before the operation; null when there was no regular file.
      type: str
      returned: always
      sample: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
    after_sha256:
      description: sha256 of the regular file after the operation; null when there is no regular file.
      type: str
      returned: always
      sample: fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9
    before_target:
      description: Target of the symlink before the operation; null when it was not a symlink.
      type: str
      returned: always
      sample: null
    after_target:
      description: Target of the symlink after the operation; null when it is not a symlink.
      type: str
      returned: always
      sample: ../../shared/storage
validate:
  description: The validate command that ran and its result.
  returned: when O(validate) is set and something changed (also in the failure result when the command failed)
  type: dict
  contains:
    cmd:
      description: The command as run (list of arguments).
      type: list
      elements: str
      sample: [nginx, -t]
    rc:
      description: Exit status.
      type: int
      sample: 0
    stdout:
      description: Standard output.
      type: str
      sample: ''
    stderr:
      description: Standard error.
      type: str
      sample: 'nginx: configuration file /etc/nginx/nginx.conf test is successful'
  sample:
    cmd: [nginx, -t]
    rc: 0
    stdout: ''
    stderr: 'nginx: configuration file /etc/nginx/nginx.conf test is successful'
slot:
  description: The slot that was patched (V(a) or V(b)).
  returned: in slot mode
  type: str
  sample: a
path:
  description: Absolute path of the slot directory.
  returned: in slot mode
  type: str
  sample: /srv/www/app/slots/a
release:
  description: The release name recorded in the slot metadata.
  returned: in slot mode
  type: str
  sample: v3
status:
  description: Status of the slot after the run (V(complete)).
  returned: in slot mode
  type: str
  sample: complete
manifest_digest:
  description: Digest of the wanted manifest (without shared paths), as recorded in the slot metadata.
  returned: in slot mode
  type: str
  sample: sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03
tree_digest:
  description: Digest of the slot tree as on disk (shared paths as symlinks).
  returned: in slot mode
  type: str
  sample: sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03
files:
  description: Number of regular files in the slot.
  returned: in slot mode
  type: int
  sample: 42
bytes:
  description: Total size of the regular files of the slot.
  returned: in slot mode
  type: int
  sample: 123456
shared:
  description: The shared paths, sorted.
  returned: in slot mode
  type: list
  elements: str
  sample: [.env, storage]
steps:
  description: Number of steps of each kind applied to the slot (in check mode, that would be applied); all zero when
    the slot already matched the manifest.
  returned: in slot mode
  type: dict
  sample: {delete: 1, rmdir: 0, mkdir: 1, create: 2, update: 3, symlink: 0, chmod: 0}
linked:
  description: Number of new or replaced files hard-linked from a source (the other slot, say) instead of copied.
  returned: in slot mode, except in check mode
  type: int
  sample: 98
copied:
  description: Number of new or replaced files copied from a source (another mode or owner, another filesystem,
    too many links, or an archive).
  returned: in slot mode, except in check mode
  type: int
  sample: 2
changed_files:
  description: Paths (relative to the slot) of the files and symlinks created, replaced or deleted, sorted; the list
    to invalidate in php-fpm's opcache (M(stagehand.deploy.opcache)).
  returned: in slot mode
  type: list
  elements: str
  sample: [public/index.php, src/Release.php]
trusted_record:
  description:
    - In slot mode, whether the patch was planned from the slot's recorded manifest without reading its files
      (the slot metadata's C(stat_digest), the lstat fingerprint taken when the slot was last verified, still
      matches the slot). When false, every file whose type, mode and size match was hashed to plan the patch.
  returned: in slot mode, unless check mode or refused before planning
  type: bool
  sample: true
restored:
  description: In a failure result after the deploy phase started, whether every operation was rolled back.
    When false, the journal was kept and the next run finishes the rollback.
  returned: on failure after the deploy phase started
  type: bool
  sample: true
rc:
  description: Exit status of the failed validate command.
  returned: when the validate command failed
  type: int
  sample: 1
stdout:
  description: Standard output of the failed validate command.
  returned: when the validate command failed
  type: str
  sample: ''
stderr:
  description: Standard error of the failed validate command.
  returned: when the validate command failed
  type: str
  sample: 'nginx: [emerg] unexpected "}" in /etc/nginx/sites-enabled/app.conf:12'
diff:
  description: One before/after pair per changed entry.
  returned: in diff mode (also in check mode)
  type: list
  elements: dict
  sample:
    - before_header: config/app.php (mode 0644)
      after_header: config/app.php (mode 0640)
      before: "<?php return ['debug' => true];\n"
      after: "<?php return ['debug' => false];\n"
"""

from ansible_collections.stagehand.deploy.plugins.module_utils._module import StagehandModule, exit_with_result
from ansible_collections.stagehand.deploy.plugins.module_utils._patch import PatchError, run_patch
from ansible_collections.stagehand.deploy.plugins.module_utils._slot_patch import patch_slot


def main() -> None:
    module = StagehandModule(
        argument_spec=dict(
            path=dict(type='path'),
            operations=dict(
                type='list',
                elements='dict',
                options=dict(
                    op=dict(type='str', required=True, choices=['create', 'update', 'delete', 'symlink']),
                    path=dict(type='str', required=True),
                    content=dict(type='str'),
                    src=dict(type='path'),
                    sha256=dict(type='str'),
                    mode=dict(type='raw'),
                    owner=dict(type='str'),
                    group=dict(type='str'),
                    target=dict(type='str'),
                ),
                mutually_exclusive=[('content', 'src')],
            ),
            validate=dict(type='str'),
            workdir=dict(type='path'),
            root=dict(type='path'),
            slot=dict(type='str', choices=['a', 'b', 'inactive'], default='inactive'),
            manifest=dict(type='path'),
            sources=dict(type='list', elements='path', default=[]),
            shared=dict(type='list', elements='str', default=[]),
            release=dict(type='str'),
            owner=dict(type='str'),
            group=dict(type='str'),
        ),
        required_one_of=[('path', 'root')],
        mutually_exclusive=[('path', 'root'), ('root', 'operations'), ('root', 'validate'), ('root', 'workdir')],
        required_by={'path': ('operations',)},
        supports_check_mode=True,
    )
    if module.params['root'] is not None and module.params['manifest'] is None:
        module.fail_json(msg='manifest is required with root (slot mode): give the path of the wanted manifest on the host')

    def runner(args: list[str], cwd: str) -> tuple[int, str, str]:
        return module.run_command(args, cwd=cwd, handle_exceptions=False)

    try:
        if module.params['root'] is not None:
            result = patch_slot(
                module.params['root'],
                module.params['slot'],
                module.params['manifest'],
                sources=module.params['sources'],
                shared=module.params['shared'],
                label=module.params['release'],
                owner=module.params['owner'],
                group=module.params['group'],
                check_mode=module.check_mode,
                diff=module._diff,
            )
        else:
            result = run_patch(
                module.params['path'],
                module.params['operations'],
                workdir=module.params['workdir'],
                validate=module.params['validate'],
                check_mode=module.check_mode,
                diff=module._diff,
                runner=runner,
            )
    except PatchError as exc:
        for warning in exc.result.pop('warnings', []):
            module.warn(warning)
        module.fail_json(msg=exc.msg, **exc.result)
    exit_with_result(module, result)


if __name__ == '__main__':
    main()
