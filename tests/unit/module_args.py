# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""``patch_module_args`` on every supported ansible-core.

ansible-core 2.19 has ``ansible.module_utils.testing.patch_module_args``; it is
used unchanged. Older cores (the collection's minimum, 2.18, is tested by
``scripts/test minimum``) have no such helper: there, ``AnsibleModule`` reads
its arguments from ``ansible.module_utils.basic._ANSIBLE_ARGS``, the JSON
document ``{"ANSIBLE_MODULE_ARGS": {...}}`` a target gets on stdin.
"""

from __future__ import annotations

import contextlib
import json
import typing as t
from unittest import mock

from ansible.module_utils import basic

try:
    from ansible.module_utils.testing import patch_module_args  # ansible-core 2.19+
except ImportError:  # ansible-core < 2.19

    @contextlib.contextmanager
    def patch_module_args(args: dict[str, t.Any] | None = None) -> t.Iterator[None]:  # type: ignore[misc]
        """Expose the given module args to ``AnsibleModule`` instances created within this context."""
        if not isinstance(args, (dict, type(None))):
            raise TypeError('The `args` arg must be a dict or None.')
        buffer = json.dumps({'ANSIBLE_MODULE_ARGS': args or {}}).encode()
        with mock.patch.object(basic, '_ANSIBLE_ARGS', buffer):
            yield

__all__ = ['patch_module_args']
