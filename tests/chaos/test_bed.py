# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The bed the suites start from: v2 live, whole, served, the lock free."""

from __future__ import annotations


def test_the_bed_serves_a_whole_release(bed):
    live = bed.live()
    assert live['release'] == 'v2' and live['problems'] == [] and live['status'] == 'complete', live
    assert bed.http('/') == (200, 'v2')
    assert bed.lock_holder() is None
