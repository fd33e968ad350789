# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""switch ``at``: the hosts of a fleet rename their live link at one moment the controller picks.

Real deploy roots (the fixtures of test_switch_fast); the waiting itself is tested with a fake
clock, the module with the real one (a moment a fraction of a second ahead).
"""

from __future__ import annotations

import datetime
import time

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _switch
from ansible_collections.stagehand.deploy.tests.unit.conftest import snapshot_tree
# root is a fixture, used by name
from ansible_collections.stagehand.deploy.tests.unit.plugins.modules.test_switch_fast import (  # noqa: F401 pylint: disable=unused-import
    history, link, rollback, root,
)


def parse(stamp):
    return datetime.datetime.strptime(stamp, '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=datetime.timezone.utc).timestamp()


class FakeClock:
    def __init__(self, now):
        self.now = now
        self.sleeps = []

    def wall(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_the_wait_ends_on_the_moment_in_steps_of_at_most_half_a_second():
    clock = FakeClock(1000.0)
    assert _switch.wait_for_moment(1001.2, wall=clock.wall, sleep=clock.sleep) == 0.0
    assert clock.now == pytest.approx(1001.2) and max(clock.sleeps) <= 0.5 and len(clock.sleeps) == 3


def test_a_moment_already_past_switches_at_once_and_says_how_late():
    clock = FakeClock(1000.25)
    assert _switch.wait_for_moment(1000.0, wall=clock.wall, sleep=clock.sleep) == 0.25
    assert clock.sleeps == []


@pytest.mark.parametrize('at, why', [
    ('soon', 'is invalid'), (True, 'is invalid'), (-1.0, 'is invalid'), (float('inf'), 'is invalid'), (float('nan'), 'is invalid'),
])
def test_a_moment_that_is_no_moment_is_refused(at, why):
    with pytest.raises(_switch.SwitchError, match=why):
        _switch.check_switch_at(at)


def test_the_module_switches_at_the_moment_and_records_it(run_module, root):
    at = time.time() + 0.4
    res = rollback(run_module, root, at=at)
    assert res.get('failed') is not True, res
    assert link(root) == 'releases/v1'
    switched = parse(res['switched_at'])
    # never before the moment; on time (a fraction of the wait late at most, on a loaded machine)
    assert switched >= at - 0.002
    assert 0.0 <= res['late'] < 0.4
    (line,) = history(root)
    assert line['switched'] == res['switched_at']
    # the line's times have milliseconds: the spread of a fleet can be read from the hosts
    assert parse(line['start']) <= switched <= parse(line['end'])


def test_without_at_the_switch_is_at_once_and_still_recorded(run_module, root):
    res = rollback(run_module, root)
    assert res.get('failed') is not True, res
    assert res['late'] is None and res['switched_at'] is not None
    assert history(root)[0]['switched'] == res['switched_at']


def test_a_moment_too_far_ahead_is_refused_before_the_lock_and_changes_nothing(run_module, root):
    before = snapshot_tree(str(root))
    res = rollback(run_module, root, at=time.time() + 3600)
    assert res['failed'] is True
    assert 'more than the 300 s a switch waits' in res['msg'] and 'at 1' in res['msg']
    assert snapshot_tree(str(root)) == before and history(root) == []


def test_nothing_to_switch_does_not_wait(run_module, root):
    started = time.monotonic()
    res = rollback(run_module, root, target=None, release='v2', require_live=False, at=time.time() + 120)
    assert res.get('failed') is not True, res
    assert time.monotonic() - started < 60  # the link already points there: no wait for the moment, two minutes ahead
    assert res['switched_at'] is None and res['late'] is None
