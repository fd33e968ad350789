# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The crash points the chaos suite arms: inert unless asked, and only by a file root alone can write."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils._crash import armed, crash_point

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='the crash file must be owned by root')


@pytest.fixture
def crash_file(tmp_path):
    directory = tmp_path / 'stagehand'
    directory.mkdir(mode=0o700)
    os.chmod(str(directory), 0o700)
    return str(directory / 'crash-at')


def _arm(path, text, mode=0o600):
    with open(path, 'w') as f:
        f.write(text)
    os.chmod(path, mode)


def test_an_unarmed_point_returns_at_once(crash_file):
    crash_point('ship:staged', crash_file)
    _arm(crash_file, 'ship:switched:kill')
    crash_point('ship:staged', crash_file)  # another point is armed
    assert armed('ship:switched', crash_file) == 'kill'


@pytest.mark.parametrize('text', ['ship:staged:explode', 'ship:staged', ''])
def test_an_unknown_request_is_ignored(crash_file, text):
    _arm(crash_file, text)
    assert armed('ship:staged', crash_file) is None


def test_a_file_others_can_write_is_not_obeyed(crash_file):
    _arm(crash_file, 'ship:staged:kill', mode=0o666)
    assert armed('ship:staged', crash_file) is None
    _arm(crash_file, 'ship:staged:kill', mode=0o600)
    os.chmod(os.path.dirname(crash_file), 0o777)
    assert armed('ship:staged', crash_file) is None


def _run_point(path):
    crash_point('switch:renamed', path)
    os._exit(3)


def test_kill_sends_sigkill_to_the_process(crash_file):
    _arm(crash_file, 'switch:renamed:kill')
    proc = multiprocessing.get_context('fork').Process(target=_run_point, args=(crash_file,))
    proc.start()
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    with open(crash_file + '.reached') as f:
        assert int(f.read()) == proc.pid


def test_pause_waits_until_disarmed_and_says_where_it_is(crash_file):
    _arm(crash_file, 'switch:renamed:pause')
    done = threading.Event()

    def step():
        crash_point('switch:renamed', crash_file)
        done.set()

    thread = threading.Thread(target=step)
    thread.start()
    deadline = time.monotonic() + 10
    while not os.path.exists(crash_file + '.reached') and time.monotonic() < deadline:
        time.sleep(0.02)
    with open(crash_file + '.reached') as f:
        assert int(f.read()) == os.getpid()
    time.sleep(0.2)
    assert not done.is_set()
    os.unlink(crash_file)
    thread.join(10)
    assert done.is_set()
