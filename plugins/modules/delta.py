#!/usr/bin/python
# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: delta
short_description: Ship only what changed - write a delta archive and a manifest delta, or rebuild the manifest on the host
version_added: 0.1.0
description:
  - Two halves of shipping a compose to a host that already holds earlier releases, so that a 1-file change sends
    about that file. See C(docs/delta.md).
  - O(operation=create) runs on the controller (C(delegate_to=localhost)). From the compose's C(manifest.json)
    (O(manifest)), the full artifact (O(artifact)) and what the host holds (O(have), the compose ids of its complete
    releases and slots, as returned by M(stagehand.deploy.release_info)), it writes into O(dest)
    C(delta.tar.gz), holding one regular file for every sha256 of the new release tree that the host lacks (nothing
    else, and nothing at all when the host lacks no content), and C(manifest-delta.json), the new manifest expressed
    against the closest manifest the host keeps (entries to set, paths to remove).
  - The manifests of what the host holds are read on the controller from O(manifests) (an artifact store's
    C(composes/<hex>/manifest.json), or C(<hex>.json) and C(<hex>.delta.json) files fetched from the host); compose
    ids found nowhere are returned in RV(unknown) and their content counts as missing.
  - The delta archive is deterministic (members sorted, owner 0, mtime 0, gzip header without name or time), so the
    same inputs give the same bytes. Every file put into it is hashed and must match the manifest.
  - A manifest delta is only written when rebuilding C(manifest.json) from it gives the very same bytes (same
    sha256); otherwise RV(manifest_delta) is null and the full C(manifest.json) has to be shipped.
  - O(operation=rebuild) runs on the managed host. It makes O(path) the C(manifest.json) of O(compose_id), from
    O(delta) and the base manifest the host keeps, from a C(manifest.json) already uploaded to O(path), or, when
    neither is there, from the host's own copy (nothing had to be sent). The result must have digest O(compose_id)
    and, from a delta, the exact bytes the controller has, so a signature over C(manifest.json) still verifies.
    The compose is kept in C(<root>/.stagehand/composes/) for the next deploy, in one of two forms. Rebuilt from
    O(delta), it is kept as that manifest delta (C(<hex>.delta.json), a few hundred bytes; its base stays kept as long as it
    is needed), unless the chain of deltas behind its base is already 8 deep; otherwise as the exact bytes of
    C(manifest.json) (C(<hex>.json)). A compose already kept with the same bytes stays as it is. Its C(.sig) (when
    uploaded beside O(path)) is kept as C(<hex>.json.sig) in both cases, and copied beside O(path) when none was
    uploaded. Composes no release or slot metadata refers to, and that no kept delta needs as its base, are
    removed (RV(pruned)).
  - A compose kept as a delta whose base is gone counts as not kept (RV(stagehand.deploy.release_info#module:composes)
    leaves it out, so the next deploy ships its full C(manifest.json), which replaces it). A delta against a kept
    compose that does not rebuild is refused and nothing is written (ship the full C(manifest.json) instead).
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
attributes:
  check_mode:
    support: full
    description: Computes what would be sent (or rebuilt) and reports it without writing anything.
  diff_mode:
    support: none
    description: Nothing to compare; the module writes new files (an archive, a manifest), it does not edit any.
  idempotent:
    support: full
    description: The same inputs give the same bytes; when the files in place already have them, nothing changes.
options:
  operation:
    description:
      - V(create) writes the delta archive and the manifest delta on the controller.
      - V(rebuild) writes C(manifest.json) on the managed host.
    type: str
    choices: [create, rebuild]
    default: create
  manifest:
    description:
      - With O(operation=create), the new C(manifest.json) on the controller (the compose's manifest).
      - When omitted, the manifest is computed from O(artifact) and written to C(<dest>/manifest.json) (RV(manifest)).
    type: path
  artifact:
    description:
      - With O(operation=create), the full artifact (C(.tar.gz)) of the compose on the controller.
      - It is only read when some content has to be sent, and only up to the last file needed.
    type: path
  dest:
    description:
      - With O(operation=create), an existing directory on the controller that receives C(delta.tar.gz) and
        C(manifest-delta.json) (a file not needed this time is removed from it).
    type: path
  have:
    description:
      - With O(operation=create), what the host holds. Items with C(manifest_digest); items whose C(status) is given
        and not V(complete), or whose C(exists) is false, are ignored; C(shared) (the shared paths of that release)
        drops the content below those paths. The RV(stagehand.deploy.release_info#module:releases) and
        RV(stagehand.deploy.release_info#module:slots) lists can be passed as they are.
    type: list
    elements: dict
    default: []
  manifests:
    description:
      - With O(operation=create), directories on the controller where the manifests of O(have) are looked up as
        C(<dir>/<hex>/manifest.json) (an artifact store's C(composes/)) or C(<dir>/<hex>.json), or rebuilt from a
        C(<dir>/<hex>.delta.json) fetched from a host that keeps the compose so, when its base is found the same way.
    type: list
    elements: path
    default: []
  host_composes:
    description:
      - With O(operation=create), the compose ids whose manifest the host keeps (RV(stagehand.deploy.release_info#module:composes));
        only those can be the base of a manifest delta. When omitted, every manifest found for O(have) may be used.
    type: list
    elements: str
  shared:
    description:
      - With O(operation=create), the shared paths of the new release; content below them is never sent.
    type: list
    elements: str
    default: []
  root:
    description:
      - With O(operation=rebuild), the deploy root on the managed host.
    type: path
  compose_id:
    description:
      - With O(operation=rebuild), the compose id (C(sha256:<hex>)) the rebuilt manifest must have.
    type: str
  path:
    description:
      - With O(operation=rebuild), where C(manifest.json) is written on the managed host (mode 0600, atomically).
    type: path
  delta:
    description:
      - With O(operation=rebuild), the uploaded C(manifest-delta.json), applied to the base manifest the host keeps.
      - When omitted, O(path) is used as uploaded, or taken from the host's own copy when it does not exist or is not
        the manifest of O(compose_id) (a stale upload).
    type: path
notes:
  - Shipping uses plain file copies (M(ansible.builtin.copy)), so it works the same over SSH and the docker connection.
seealso:
  - module: stagehand.deploy.release
  - module: stagehand.deploy.release_info
'''

EXAMPLES = r'''
- name: Learn what the host holds, cheaply
  stagehand.deploy.release_info:
    root: /srv/shop
    mode: detect
    sizes: false
    history: 0
  register: held

- name: Write the delta for this host on the controller
  stagehand.deploy.delta:
    manifest: ~/.cache/stagehand/artifacts/shop/composes/9f86d0.../manifest.json
    artifact: ~/.cache/stagehand/artifacts/shop/composes/9f86d0.../artifact.tar.gz
    dest: /tmp/stagehand-ship-web1
    have: "{{ held.releases + held.slots }}"
    host_composes: "{{ held.composes }}"
    manifests:
      - ~/.cache/stagehand/artifacts/shop/composes
    shared: [storage, .env]
  delegate_to: localhost
  register: shipment

- name: Rebuild manifest.json on the host from the uploaded manifest delta
  stagehand.deploy.delta:
    operation: rebuild
    root: /srv/shop
    compose_id: "{{ shipment.compose_id }}"
    delta: /srv/shop/.stagehand/upload-v1.4.1.manifest-delta.json
    path: /srv/shop/.stagehand/upload-v1.4.1.manifest.json
'''

RETURN = r'''
compose_id:
  description: The compose id (digest of the new manifest).
  returned: always
  type: str
  sample: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
manifest:
  description: The new C(manifest.json) on the controller (O(manifest), or the one computed from O(artifact)).
  returned: with O(operation=create)
  type: str
  sample: /tmp/stagehand-ship-web1/manifest.json
archive:
  description: Path of the delta archive on the controller, null when the host lacks no content (nothing to send).
  returned: with O(operation=create)
  type: str
  sample: /tmp/stagehand-ship-web1/delta.tar.gz
archive_bytes:
  description: Size in bytes of the delta archive (0 without one, and in check mode).
  returned: with O(operation=create)
  type: int
  sample: 1187
empty:
  description: True when the host lacks no content of the new release.
  returned: with O(operation=create)
  type: bool
  sample: false
files:
  description:
    - With O(operation=create), files in the delta archive (one per missing sha256).
    - With O(operation=rebuild), regular files in the manifest.
  returned: always
  type: int
  sample: 1
bytes:
  description:
    - With O(operation=create), uncompressed bytes of the files in the delta archive.
    - With O(operation=rebuild), total size of the regular files in the manifest.
  returned: always
  type: int
  sample: 734
paths:
  description: The paths in the delta archive (at most 100).
  returned: with O(operation=create)
  type: list
  elements: str
  sample: [public/index.php]
manifest_delta:
  description: Path of the manifest delta on the controller, null when the full C(manifest.json) must be shipped.
  returned: with O(operation=create)
  type: str
  sample: /tmp/stagehand-ship-web1/manifest-delta.json
base:
  description: The compose id the manifest delta is against, or null.
  returned: with O(operation=create)
  type: str
  sample: sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
manifest_entries:
  description: Number of entries of the new manifest.
  returned: with O(operation=create)
  type: int
  sample: 10240
total_files:
  description: Number of regular files of the new manifest (sent or not).
  returned: with O(operation=create)
  type: int
  sample: 10001
manifest_delta_entries:
  description: Entries set or removed by the manifest delta, or null without one.
  returned: with O(operation=create)
  type: int
  sample: 1
manifest_bytes:
  description: Bytes of what has to be shipped for the manifest (the manifest delta, else the full C(manifest.json)).
  returned: with O(operation=create)
  type: int
  sample: 612
sent_bytes:
  description: RV(archive_bytes) plus RV(manifest_bytes), what shipping costs apart from the signature.
  returned: with O(operation=create)
  type: int
  sample: 1799
known:
  description: Compose ids of O(have) whose manifest was found in O(manifests).
  returned: with O(operation=create)
  type: list
  elements: str
  sample: [sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae]
unknown:
  description: Compose ids of O(have) whose manifest was not found (their content counts as missing).
  returned: with O(operation=create)
  type: list
  elements: str
  sample: []
held:
  description: Number of distinct sha256 the host holds, as far as the controller knows.
  returned: with O(operation=create)
  type: int
  sample: 10212
path:
  description: The C(manifest.json) written on the host.
  returned: with O(operation=rebuild)
  type: str
  sample: /srv/shop/.stagehand/upload-v1.4.1.manifest.json
signature:
  description: C(<path>.sig) when a signature is beside the manifest (uploaded or kept on the host), else null.
  returned: with O(operation=rebuild)
  type: str
  sample: null
source:
  description: Where the manifest came from, V(delta), V(upload) or V(host) (the host's own copy).
  returned: with O(operation=rebuild)
  type: str
  sample: delta
stored:
  description:
    - The file in which the host keeps the compose, C(<root>/.stagehand/composes/<hex>.delta.json) (the manifest delta
      it was rebuilt from) or C(<root>/.stagehand/composes/<hex>.json) (the full C(manifest.json)).
    - In check mode, the file it would be kept in.
  returned: with O(operation=rebuild)
  type: str
  sample: /srv/shop/.stagehand/composes/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08.json
entries:
  description: Number of entries of the manifest.
  returned: with O(operation=rebuild)
  type: int
  sample: 10240
pruned:
  description: Compose ids no longer kept (in either form) because no release or slot refers to them any more, nor does a kept delta need them.
  returned: with O(operation=rebuild)
  type: list
  elements: str
  sample: []
'''


from ansible_collections.stagehand.deploy.plugins.module_utils._module import StagehandModule
from ansible_collections.stagehand.deploy.plugins.module_utils._delta import DeltaError, create, rebuild


def main() -> None:
    module = StagehandModule(
        argument_spec=dict(
            operation=dict(type='str', default='create', choices=['create', 'rebuild']),
            manifest=dict(type='path'),
            artifact=dict(type='path'),
            dest=dict(type='path'),
            have=dict(type='list', elements='dict', default=[]),
            manifests=dict(type='list', elements='path', default=[]),
            host_composes=dict(type='list', elements='str'),
            shared=dict(type='list', elements='str', default=[]),
            root=dict(type='path'),
            compose_id=dict(type='str'),
            path=dict(type='path'),
            delta=dict(type='path'),
        ),
        required_if=[
            ('operation', 'create', ('artifact', 'dest')),
            ('operation', 'rebuild', ('root', 'compose_id', 'path')),
        ],
        supports_check_mode=True,
    )
    params = module.params
    try:
        if params['operation'] == 'create':
            result = create(params['manifest'], params['artifact'], params['dest'], have=params['have'], manifests=params['manifests'],
                            host_composes=params['host_composes'], shared=params['shared'], check_mode=module.check_mode)
        else:
            result = rebuild(params['root'], params['compose_id'], params['path'], delta_path=params['delta'], check_mode=module.check_mode)
    except DeltaError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    except OSError as exc:
        where = ' (%s)' % exc.filename if exc.filename else ''
        module.fail_json(msg='%s%s' % (exc.strerror or exc, where))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
