# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The crash and bad-input suites share one provisioned target (see harness.py).

Run by ``scripts/test chaos``: a sample of the kill points in CI, every one with
``STAGEHAND_CHAOS_FULL=1`` (``scripts/test chaos-full``). ``STAGEHAND_CHAOS_KEEP=1`` leaves the
container running afterwards.
"""

from __future__ import annotations

import os
import shutil
import typing as t

import pytest

from harness import HTTP_PORT, NAME, REPO, SSH_PORT, Bed  # pylint: disable=import-error

FULL = os.environ.get('STAGEHAND_CHAOS_FULL') == '1'


def pytest_configure(config):
    config.addinivalue_line('markers', 'sample: a kill point or bad input CI runs (the others run with STAGEHAND_CHAOS_FULL=1)')
    config.addinivalue_line('markers', 'crash: a case of the crash suite (test_crash.py)')
    config.addinivalue_line('markers', 'badinput: a case of the bad-input suite (test_bad_input.py)')


def pytest_collection_modifyitems(config, items):
    if FULL:
        return
    skip = pytest.mark.skip(reason='not in the CI sample: STAGEHAND_CHAOS_FULL=1 runs every kill point and bad input')
    for item in items:
        if ('crash' in item.keywords or 'badinput' in item.keywords) and 'sample' not in item.keywords:
            item.add_marker(skip)


WORK = os.path.join(REPO, '.build', 'chaos')


def _ready(target: Bed) -> t.Iterator[Bed]:
    """Start ``target``, provision it and deploy v1 then v2; remove the container at the end."""
    target.start()
    try:
        for playbook, args in (('provision.yml', ()), ('deploy.yml', ('-e', 'version=v1')), ('deploy.yml', ('-e', 'version=v2'))):
            run = target.run(playbook, *args)
            assert run.rc == 0, run.output[-4000:]
        yield target
    finally:
        if os.environ.get('STAGEHAND_CHAOS_KEEP') != '1':
            target.stop()


@pytest.fixture(scope='session')
def work() -> str:
    """The suites' work directory (.build/chaos), emptied once per session; the figures go there."""
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    return WORK


@pytest.fixture(scope='session')
def bed(work):
    """The target in releases mode (the default layout)."""
    yield from _ready(Bed(work))


@pytest.fixture(scope='session')
def slots_bed(work):
    """A second target, in A/B slots mode (deploy_mode: slots), on ports of its own (the first one's + 100)."""
    slots_work = os.path.join(work, 'slots')
    os.makedirs(slots_work)
    yield from _ready(Bed(slots_work, name=NAME + '-slots', ssh_port=SSH_PORT + 100, http_port=HTTP_PORT + 100,
                          extra_vars={'deploy_mode': 'slots'}))
