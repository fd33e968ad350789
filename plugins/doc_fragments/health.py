# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """The options of the health check shared by the switch and preview_health modules."""

    DOCUMENTATION = r"""
options:
  health_release_header:
    description:
      - The response header of the health answer that names the release serving the request; it must equal the
        release expected (in A/B mode, the release label of the slot).
      - V("") checks only the status code.
    type: str
    default: X-Release
  health_timeout:
    description:
      - Seconds to keep trying the health URL (every 0.5 seconds) before the check counts as failed. Must be greater
        than 0.
      - At least one request is always made.
    type: float
    default: 10
"""
