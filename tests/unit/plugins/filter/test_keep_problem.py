# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.stagehand.deploy.plugins.filter.keep_problem import FilterModule, keep_problem


@pytest.mark.parametrize('keep', [1, 5, '3', ' 2'])
def test_a_valid_keep_has_no_problem(keep):
    assert keep_problem(keep) == ''


@pytest.mark.parametrize('keep, shown', [(0, '0'), (-1, '-1'), ('0', '0'), ('all', "'all'"), (1.5, '1.5'), ('', "''"),
                                         ([3], '[3]'), (True, 'True'), (None, 'None')])
def test_a_bad_keep_is_named_with_what_is_allowed(keep, shown):
    msg = keep_problem(keep)
    assert msg.startswith('keep %s is invalid' % shown), msg
    assert 'whole number of releases >= 1' in msg


def test_the_filter_is_registered():
    assert FilterModule().filters() == {'keep_problem': keep_problem}
