#!/usr/bin/python
# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
module: signature
short_description: Verify an SSH signature of a file against an allowed signers file
version_added: 0.1.0
description:
  - Runs C(ssh-keygen -Y verify -f <allowed_signers> -I <identity> -n <namespace> -s <signature> < <path>) on the managed
    host and fails unless the signature is good and made by a key that O(allowed_signers) allows for O(identity).
  - The failure message says which case it is, a missing signature, a key that is not allowed (with its fingerprint),
    a file changed after signing (tampered or corrupt), a signature for another namespace, an unreadable signature,
    a missing allowed signers file or a missing C(ssh-keygen).
  - Changes nothing, ever.
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
attributes:
  check_mode:
    support: full
    description: Verifies in check mode too (read-only).
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
  idempotent:
    support: full
    description: Never changes anything.
options:
  path:
    description: The signed file on the managed host (for a deploy, the manifest of the release).
    type: path
    required: true
  signature:
    description: The signature file. Default is O(path) with C(.sig) appended.
    type: path
  allowed_signers:
    description:
      - An OpenSSH allowed signers file on the managed host, lines of C(<principal> <key type> <base64 key>), see
        C(ssh-keygen(1)), section ALLOWED SIGNERS.
    type: path
    required: true
  identity:
    description: The principal the signature must belong to.
    type: str
    default: stagehand
  namespace:
    description: The signature namespace (C(ssh-keygen -n)). Signatures made for another namespace are refused.
    type: str
    default: stagehand
requirements:
  - OpenSSH 8.2 or later (C(ssh-keygen -Y)) on the managed host.
seealso:
  - module: stagehand.deploy.compose
'''

EXAMPLES = r'''
- name: Refuse a manifest that is not signed by the release key
  stagehand.deploy.signature:
    path: /srv/shop/.stagehand/upload-v2.manifest.json
    allowed_signers: /srv/shop/.stagehand/allowed_signers
'''

RETURN = r'''
fingerprint:
  description: Fingerprint of the key that made the good signature.
  returned: success
  type: str
  sample: SHA256:RJ2UZplFe0phMU7LDnxKeg1YD+jGAaAdiYAEOsdCmks
identity:
  description: The principal the signature was verified for.
  returned: success
  type: str
  sample: stagehand
namespace:
  description: The namespace the signature was verified for.
  returned: success
  type: str
  sample: stagehand
reason:
  description:
    - Why verification failed, one of V(missing_file), V(missing_signature), V(missing_allowed_signers), V(no_ssh_keygen),
      V(bad_signature), V(wrong_namespace), V(wrong_key), V(tampered).
  returned: failure
  type: str
  sample: tampered
'''


from ansible_collections.stagehand.deploy.plugins.module_utils._module import StagehandModule
from ansible_collections.stagehand.deploy.plugins.module_utils._signing import SignatureError, verify


def main() -> None:
    module = StagehandModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            signature=dict(type='path'),
            allowed_signers=dict(type='path', required=True),
            identity=dict(type='str', default='stagehand'),
            namespace=dict(type='str', default='stagehand'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = verify(p['path'], p['signature'], p['allowed_signers'], p['identity'], p['namespace'])
    except SignatureError as exc:
        module.fail_json(msg=exc.msg, reason=exc.reason)
    result.pop('output', None)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
