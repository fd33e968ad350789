# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
name: hook_files
short_description: Check, on the controller, that every hook file of a deploy exists
version_added: 0.1.0
description:
  - Looks at every task file named by the hook points in O(hooks) (a file or a list of files each, absolute or relative to
    O(hooks_dir)) and returns one message naming each hook point and path that is missing, not a file or unreadable, or an
    empty string when every file can be run.
  - The deploy role uses it before the lock is taken, so that a missing hook file refuses the deploy at the start instead of
    failing it when its hook point is reached (possibly after the release went live).
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
options:
  hooks:
    description: Hook point name to a task file, or to a list of task files.
    type: dict
    required: true
  hooks_dir:
    description: The directory relative paths are read below (the deploy role's C(deploy_hooks_dir)).
    type: str
    required: true
notes:
  - The lookup takes no terms.
'''

EXAMPLES = r'''
- name: Refuse to start when a hook file is missing
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems }}"
  vars:
    problems: "{{ lookup('stagehand.deploy.hook_files', hooks={'before_switch': ['warm.yml']}, hooks_dir=inventory_dir) }}"
'''

RETURN = r'''
_raw:
  description: One string, the refusal naming every hook file that cannot be run, or an empty string.
  type: list
  elements: str
'''

import typing as t

from ansible.plugins.lookup import LookupBase

from ansible_collections.stagehand.deploy.plugins.module_utils._hooks import hook_files_message


class LookupModule(LookupBase):
    """Name every hook file that cannot be run."""

    def run(self, terms: list[t.Any], variables: dict[str, t.Any] | None = None, **kwargs: t.Any) -> list[str]:
        self.set_options(var_options=variables, direct=kwargs)
        return [hook_files_message(self.get_option('hooks') or {}, self.get_option('hooks_dir'))]
