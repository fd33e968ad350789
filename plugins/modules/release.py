#!/usr/bin/python
# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: release
short_description: Create, remove or fail an immutable release directory, or populate an A/B slot
version_added: 0.1.0
description:
  - Creates C(<root>/releases/<name>) from a directory or a C(.tar.gz)/C(.tgz) file that is already on the managed host.
    The tree is built in a unique staging directory under C(<root>/.stagehand/stage/), verified against its manifest,
    flushed to disk and renamed into place with a single rename, then C(releases/) is fsynced.
    Metadata (C(.stagehand/releases/<name>.json)) and the tree manifest (C(.stagehand/manifests/<name>.json)) are
    written after the rename, so an interrupted run leaves either no release or a complete directory that the next
    run with the same source verifies and adopts (RV(recovered=true)).
  - Releases are immutable. Running again with the same name and the same content (same source digest and same
    O(shared) list) changes nothing; different content under an existing name is refused.
  - Unsafe sources are refused before anything appears in C(releases/); the staging directory is removed on any
    failure. Refused are absolute paths and C(..) components, duplicate entries, device files, fifos and sockets,
    setuid/setgid bits, tar hardlinks to paths outside the archive or to members not seen before, paths below a
    symlink, and symlinks that resolve outside the tree (resolved component by component, following symlinks inside
    the tree). Leading C(./) in tar member names is accepted. Owners and times of the source are not kept.
  - Files with the same sha256, mode, size and owner as a file of an existing complete release are hardlinked
    instead of copied, so an extra release only costs disk space for what changed. Each candidate is hashed again
    right before it is linked and copied instead when anything differs.
  - RV(manifest_digest) is the digest of the B(source) manifest (before O(shared) links are applied), the same digest
    a build-side manifest of the artifact has. The stored tree manifest describes the directory as it is on disk
    (shared paths as symlinks); its digest is kept as C(tree_digest) in the metadata.
  - With O(slot), the content goes to C(<root>/slots/a) or C(<root>/slots/b) instead (A/B mode). The live slot
    (the one C(current) points at) is never touched. The old content of the slot is renamed aside, the staged tree
    renamed into place, then the old content removed. Slot metadata is C(.stagehand/slots/<slot>.json) (with the
    label O(name) as C(release)); the slot's tree manifest is C(.stagehand/slots/<slot>.manifest.json), a name that
    cannot collide with any release manifest. Files are hardlinked from both slots' content.
  - With O(partial=true), O(src) holds only some files of the release (a delta archive written by
    M(stagehand.deploy.delta)), or is omitted when nothing had to be sent. O(manifest) then describes the whole source;
    every entry of O(src) must be an entry of O(manifest) with the same type, content (sha256 and size) and mode, and
    every other regular file is taken by sha256 from the complete releases and slots of the root, hardlinked when mode
    and owner match and copied otherwise (each candidate is hashed right before use). A file found nowhere is refused,
    listing the missing paths, before anything appears in C(releases/). The same safety rules apply to a partial
    source as to a full one.
  - O(state=absent) removes a release (renamed aside into C(.stagehand/stage/), then deleted, then its metadata and
    manifest removed). O(state=failed) marks a release failed in its metadata.
  - This module does not take the deploy lock itself; hold the lock of the deploy root around a deploy.
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
attributes:
  check_mode:
    support: full
    description: Computes the source manifest and digest and reports what would change, without writing anything.
  diff_mode:
    support: full
    description: Returns before/after summaries (state, digest, file count, bytes, shared paths), also in check mode.
  idempotent:
    support: full
    description: The same name with the same source and O(shared) list reports no change.
options:
  root:
    description:
      - The deploy root on the managed host. Created (with C(releases/) and C(.stagehand/)) when a release is created.
    type: path
    required: true
  name:
    description:
      - The release name. 1 to 128 characters from ASCII letters, digits, C(.), C(_) and C(-), not starting with C(.).
      - Required unless O(slot) is set; with O(slot) it is an optional label stored as C(release) in the slot metadata.
    type: str
  src:
    description:
      - The source on the managed host, a directory or a gzip-compressed tarball whose name ends in C(.tar.gz) or C(.tgz).
      - Required with O(state=present) unless O(partial=true).
    type: path
  state:
    description:
      - V(present) creates the release (or populates the slot).
      - V(absent) removes the release. The live release is never removed; the rollback target only with O(force=true).
      - V(failed) marks an existing release (or, with O(slot), a slot) as failed.
    type: str
    choices: [present, absent, failed]
    default: present
  manifest:
    description:
      - Path on the managed host of a manifest JSON file, an object with C(version) (V(1)), C(entries) and
        optionally C(digest) (checked against the entries).
      - The source must match it exactly (paths, types, modes, sizes, sha256, symlink targets), else nothing is created.
      - Required with O(partial=true), where it describes the whole source and O(src) only part of it.
    type: path
  space_needed:
    description:
      - The bytes of the files to write (those of O(src) with O(partial=true); the deploy role passes what the ship phase
        sent). With O(state=present), staging is refused before anything is written when the filesystem of O(root) has
        less free space than that plus 1 MiB, naming both amounts.
      - Omitted, no free-space check is made (a full disk still fails with a message naming the path and the free space).
    type: int
  partial:
    description:
      - O(src) is a partial source (a delta) holding only the files whose content the host lacks; the other files of
        O(manifest) come from the existing complete releases and slots of O(root), by sha256.
      - A file of O(manifest) found neither in O(src) nor on the host is refused with the list of missing paths
        (RV(missing)), nothing staged.
    type: bool
    default: false
  shared:
    description:
      - Paths relative to the release that are replaced, in the staged release, by a relative symlink to
        C(<root>/shared/<path>) (whatever the source has there is dropped; missing parent directories are created).
      - Recorded in the metadata; they are not part of RV(manifest_digest) but a different list under an existing name
        is refused like different content.
    type: list
    elements: str
    default: []
  owner:
    description:
      - User name or numeric uid applied to every entry of the staged tree before it is renamed into place.
    type: str
  group:
    description:
      - Group name or numeric gid applied to every entry of the staged tree before it is renamed into place.
    type: str
  force:
    description:
      - With O(state=absent), allow removing the rollback target (the C(previous) release of the live release).
        The live release itself can never be removed.
    type: bool
    default: false
  reason:
    description:
      - With O(state=failed), the reason stored as C(failed_reason). A release already marked failed is left as it is.
    type: str
  slot:
    description:
      - A/B mode. Populate C(<root>/slots/<slot>) instead of C(releases/<name>).
      - V(inactive) picks the slot C(current) does not point at (V(a) when no slot is live).
      - Naming the live slot is refused with O(state=present).
      - With O(state=failed), V(a) or V(b) marks that slot failed (the live one too, which is what a deploy does
        after switching back from it), so that M(stagehand.deploy.switch) does not flip to it by accident. The next
        deploy into the slot makes it complete again. Not with O(state=absent).
    type: str
    choices: [a, b, inactive]
notes:
  - Paths in O(src), O(manifest) and O(root) are on the managed host; copy or download artifacts there first.
  - Symlinks in the source that point outside the release are refused; use O(shared) for persistent data.
'''

EXAMPLES = r'''
- name: Create a release from an uploaded tarball
  stagehand.deploy.release:
    root: /srv/shop
    name: "2026-11-22-1"
    src: /tmp/shop-build.tar.gz
    shared:
      - storage
      - .env
    owner: www-data
    group: www-data

- name: Create a release from a directory, checked against the manifest produced by the build
  stagehand.deploy.release:
    root: /srv/shop
    name: v1.4.0
    src: /srv/build/shop
    manifest: /srv/build/shop.manifest.json

- name: Create a release from a delta archive, taking unchanged files from the existing releases
  stagehand.deploy.release:
    root: /srv/shop
    name: v1.4.1
    src: /srv/shop/.stagehand/upload-v1.4.1.tar.gz
    manifest: /srv/shop/.stagehand/upload-v1.4.1.manifest.json
    partial: true

- name: Mark a release failed after its smoke test failed
  stagehand.deploy.release:
    root: /srv/shop
    name: v1.4.0
    state: failed
    reason: smoke test returned HTTP 500

- name: Remove an old release (refused for the live release)
  stagehand.deploy.release:
    root: /srv/shop
    name: v1.2.0
    state: absent

- name: A/B mode, fill the slot that is not live
  stagehand.deploy.release:
    root: /srv/shop
    slot: inactive
    name: v1.4.0
    src: /tmp/shop-build.tar.gz
'''

RETURN = r'''
release:
  description: The release name (in slot mode the label given as O(name), or null).
  returned: always
  type: str
  sample: v1.4.0
slot:
  description: The slot that was (or would be) populated, after resolving V(inactive).
  returned: when O(slot) is set
  type: str
  sample: b
path:
  description: Absolute path of the release directory or slot.
  returned: always
  type: str
  sample: /srv/shop/releases/v1.4.0
status:
  description: Status after the run, V(complete), V(failed) or V(absent).
  returned: always
  type: str
  sample: complete
manifest_digest:
  description: Digest of the source manifest (C(sha256:<hex>)), without the O(shared) links.
  returned: when O(state=present), and with O(state=failed)
  type: str
  sample: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
files:
  description: Number of regular files in the release tree.
  returned: when O(state=present), and with O(state=failed)
  type: int
  sample: 1542
bytes:
  description: Total size in bytes of the regular files in the release tree.
  returned: when O(state=present), and with O(state=failed)
  type: int
  sample: 48213344
shared:
  description: The shared paths (sorted) linked into the release.
  returned: when O(state=present)
  type: list
  elements: str
  sample: [.env, storage]
linked:
  description: Number of files hardlinked from existing releases (or slots); 0 when nothing was created.
  returned: always
  type: int
  sample: 1530
copied:
  description: Number of files copied or extracted (from O(src) or, with O(partial=true), from other trees); 0 when nothing was created.
  returned: always
  type: int
  sample: 12
recovered:
  description: True when an existing directory without complete metadata (an interrupted run) matched the source
    and was adopted by writing its metadata.
  returned: always
  type: bool
  sample: false
problems:
  description: Differences between the source and the expected manifest or the existing directory, when refused for that.
  returned: on failure, when the refusal is about a manifest mismatch
  type: list
  elements: str
  sample: ["sha256: index.php has content 2c26..., expected 9f86..."]
missing:
  description: With O(partial=true), the paths of O(manifest) (at most 100) whose content is neither in O(src) nor on the host.
  returned: on failure, when files are missing from a partial source
  type: list
  elements: str
  sample: [app/Kernel.php]
diff:
  description: Before/after summaries of the release or slot.
  returned: when diff mode is enabled
  type: dict
  sample:
    before: "release v1.4.0: absent\n"
    after: "release v1.4.0: complete\nmanifest_digest: sha256:9f86...\nfiles: 1542\nbytes: 48213344\n"
'''


from ansible_collections.stagehand.deploy.plugins.module_utils._module import StagehandModule
from ansible_collections.stagehand.deploy.plugins.module_utils._release import ReleaseError, run


def main() -> None:
    module = StagehandModule(
        argument_spec=dict(
            root=dict(type='path', required=True),
            name=dict(type='str'),
            src=dict(type='path'),
            state=dict(type='str', default='present', choices=['present', 'absent', 'failed']),
            manifest=dict(type='path'),
            shared=dict(type='list', elements='str', default=[]),
            owner=dict(type='str'),
            group=dict(type='str'),
            force=dict(type='bool', default=False),
            reason=dict(type='str'),
            slot=dict(type='str', choices=['a', 'b', 'inactive']),
            partial=dict(type='bool', default=False),
            space_needed=dict(type='int'),
        ),
        required_if=[
            ('partial', True, ('manifest',)),
            ('state', 'absent', ('name',)),
            ('state', 'failed', ('name', 'slot'), True),
        ],
        supports_check_mode=True,
    )
    try:
        result = run(module.params, check_mode=module.check_mode)
    except ReleaseError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    diff = result.pop('diff')
    if module._diff:  # pylint: disable=protected-access
        result['diff'] = diff
    module.exit_json(**result)


if __name__ == '__main__':
    main()
