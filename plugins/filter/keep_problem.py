# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
---
name: keep_problem
short_description: Say why a number of releases to keep is invalid, on the controller
version_added: 0.1.0
description:
  - Applies the rule of M(stagehand.deploy.cleanup) for its O(stagehand.deploy.cleanup#module:keep) option (a whole number
    of releases, at least 1) to the input and returns the module's refusal, or an empty string when the value is valid.
  - The deploy role's cleanup uses it before the deploy lock is taken, so that a bad C(-e keep=N) changes nothing on any
    host, not even the history.
author:
  - Stagehand Deploy contributors (@stagehand-deploy)
options:
  _input:
    description: The number of releases to keep (an integer, or a string of one, as C(-e keep=N) gives it).
    type: raw
    required: true
'''

EXAMPLES = r'''
- name: Refuse a bad keep value before the lock
  ansible.builtin.assert:
    that: deploy_keep | stagehand.deploy.keep_problem == ''
    fail_msg: "{{ deploy_keep | stagehand.deploy.keep_problem }}"
'''

RETURN = r'''
_value:
  description: The refusal, naming the value and what is allowed, or an empty string.
  type: str
  sample: "keep 0 is invalid: use a whole number of releases >= 1 (default 5)"
'''

import typing as t

from ansible.module_utils.common.validation import check_type_int

from ansible_collections.stagehand.deploy.plugins.module_utils._cleanup import CleanupError, check_keep


def keep_problem(keep: t.Any) -> str:
    """The cleanup module's refusal of ``keep`` (converted as its ``type: int`` option converts it), or ``''``."""
    try:
        if not isinstance(keep, bool):
            keep = check_type_int(keep)
    except TypeError:
        pass  # left as given: check_keep names it
    try:
        check_keep(keep)
    except CleanupError as exc:
        return exc.msg
    return ''


class FilterModule:
    """The rule for the number of releases a cleanup keeps."""

    def filters(self) -> dict[str, t.Callable[[t.Any], str]]:
        return {'keep_problem': keep_problem}
