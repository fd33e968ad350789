# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What every module of the collection does with the result of its private logic."""

from __future__ import annotations

import typing as t

from ansible.module_utils.basic import AnsibleModule


def exit_with_result(module: AnsibleModule, result: dict[str, t.Any]) -> None:
    """Exit with ``result``: its ``warnings`` become module warnings, its ``diff`` is kept only in diff mode."""
    for warning in result.pop('warnings', ()):
        module.warn(warning)
    diff = result.pop('diff', None)
    if module._diff and diff is not None:
        result['diff'] = diff
    module.exit_json(**result)
