# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """The name of the live symlink, shared by the switch and release_info modules."""

    DOCUMENTATION = r"""
options:
  link:
    description:
      - Name of the live symlink inside O(root).
      - A plain name; V(releases), V(slots), V(shared) and V(.stagehand) are not allowed.
    type: str
    default: current
"""
