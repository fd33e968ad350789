# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""_lock functions directly, including the multi-process races."""

from __future__ import annotations

import datetime
import json
import multiprocessing
import os

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _lock
from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import dump_json

CONTENDERS = 8
ROUNDS = 50
PAST = datetime.datetime(2020, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)


def write_stale_lock(root: str, token: str = 'stale-token') -> dict:
    content = _lock.build_lock(token, 60, owner='bob', controller='old-ctl', host='web1', pid=99, purpose='deploy v0.9', now=PAST)
    state_dir = os.path.join(root, '.stagehand')
    os.makedirs(state_dir, exist_ok=True)
    with open(os.path.join(state_dir, 'lock'), 'wb') as f:
        f.write(dump_json(content))
    return content


def test_time_round_trip():
    moment = datetime.datetime(2026, 11, 22, 10, 0, 5, tzinfo=datetime.timezone.utc)
    assert _lock.format_time(moment) == '2026-11-22T10:00:05Z'
    assert _lock.parse_time('2026-11-22T10:00:05Z') == moment
    assert _lock.parse_time('2026-11-22T10:00:05+00:00') == moment
    assert _lock.parse_time('2026-11-22T10:00:05') is None  # naive: not a UTC time
    assert _lock.parse_time('yesterday') is None
    assert _lock.parse_time(None) is None


def test_build_lock_expiry_is_acquired_plus_ttl():
    content = _lock.build_lock('tok', 90, owner='alice', now=PAST)
    assert content['acquired'] == '2020-01-01T12:00:00Z'
    assert content['expires'] == '2020-01-01T12:01:30Z'
    assert set(content) == set(_lock.LOCK_FIELDS)
    assert _lock.is_expired(content, PAST + datetime.timedelta(seconds=90))
    assert not _lock.is_expired(content, PAST + datetime.timedelta(seconds=89))


@pytest.mark.parametrize('ttl', [0, -1, True, '60', 1.5, None])
def test_bad_ttl_rejected_before_touching_anything(tmp_path, ttl):
    root = tmp_path / 'app'
    with pytest.raises(_lock.LockArgumentError) as exc:
        _lock.acquire(str(root), ttl=ttl)
    assert 'ttl %r' % (ttl,) in exc.value.msg
    assert not root.exists()


def test_huge_ttl_rejected(tmp_path):
    with pytest.raises(_lock.LockArgumentError, match='too large'):
        _lock.acquire(str(tmp_path), ttl=10 ** 15)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('token', ['', 'a\nb', 'x' * 257])
def test_bad_token_rejected(tmp_path, token):
    with pytest.raises(_lock.LockArgumentError, match='token'):
        _lock.acquire(str(tmp_path), token=token)
    assert os.listdir(tmp_path) == []


def test_acquire_generates_distinct_tokens(tmp_path):
    first = _lock.acquire(str(tmp_path / 'a'))
    second = _lock.acquire(str(tmp_path / 'b'))
    assert first['token'] and second['token'] and first['token'] != second['token']
    assert _lock.read_lock(first['path'])['token'] == first['token']


def test_root_that_is_a_file_is_refused(tmp_path):
    root = tmp_path / 'app'
    root.write_text('x')
    with pytest.raises(_lock.LockError, match='not a directory'):
        _lock.acquire(str(root))
    assert root.read_text() == 'x'


def test_read_lock_raises_for_corrupt(tmp_path):
    path = tmp_path / 'lock'
    path.write_bytes(b'{"token": ""}')
    with pytest.raises(_lock.LockCorrupt) as exc:
        _lock.read_lock(str(path))
    assert exc.value.raw == b'{"token": ""}'
    assert _lock.read_lock(str(tmp_path / 'missing')) is None


def test_release_only_unlinks_own_lock_after_takeover(tmp_path):
    """A holder whose lock was taken over after expiry cannot remove the new holder's lock."""
    root = str(tmp_path)
    write_stale_lock(root, token='old')
    new = _lock.acquire(root, token='new')
    assert new['taken_over']['token'] == 'old'
    res = _lock.release(root, token='old')
    assert res['released'] is False and res['changed'] is False
    assert _lock.read_lock(new['path'])['token'] == 'new'


def test_corrupt_message_names_path_and_bytes(tmp_path):
    msg = _lock.corrupt_message('/srv/app/.stagehand/lock', b'\x00garbage' * 100)
    assert '/srv/app/.stagehand/lock' in msg
    assert "b'\\x00garbage" in msg
    assert '(800 bytes in total)' in msg
    assert 'root=/srv/app state=absent force=true' in msg


# -- races ---------------------------------------------------------------------
def _contender(base, index, barrier, queue):
    token = 'contender-%d' % index
    for rnd in range(ROUNDS):
        root = os.path.join(base, 'round-%d' % rnd)
        barrier.wait(timeout=120)
        try:
            res = _lock.acquire(root, token=token, owner='p%d' % index)
            taken = res['taken_over']['token'] if res['taken_over'] else None
            queue.put((rnd, index, 'won', token, taken))
        except _lock.LockHeld as exc:
            queue.put((rnd, index, 'held', exc.holder['token'], None))
        except Exception as exc:  # pylint: disable=broad-except  # reported to the parent, which fails the test
            queue.put((rnd, index, 'error', repr(exc), None))


def _race(base):
    ctx = multiprocessing.get_context('fork')
    barrier = ctx.Barrier(CONTENDERS)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(base, i, barrier, queue)) for i in range(CONTENDERS)]
    for proc in procs:
        proc.start()
    try:
        results = [queue.get(timeout=120) for dummy in range(CONTENDERS * ROUNDS)]
    finally:
        for proc in procs:
            proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0] * CONTENDERS
    by_round = {}
    for rnd, index, outcome, token, taken in results:
        by_round.setdefault(rnd, []).append((index, outcome, token, taken))
    assert sorted(by_round) == list(range(ROUNDS))
    return by_round


def _check_round(base, rnd, outcomes, expect_taken):
    assert not [o for o in outcomes if o[1] == 'error'], outcomes
    winners = [o for o in outcomes if o[1] == 'won']
    assert len(winners) == 1, 'round %d: %r' % (rnd, outcomes)
    winner_token = winners[0][2]
    assert winners[0][3] == expect_taken
    # every loser was refused naming the winner
    assert sorted(o[2] for o in outcomes if o[1] == 'held') == [winner_token] * (CONTENDERS - 1)
    state_dir = os.path.join(base, 'round-%d' % rnd, '.stagehand')
    with open(os.path.join(state_dir, 'lock')) as f:
        assert json.load(f)['token'] == winner_token
    # no temporary files left behind
    assert sorted(os.listdir(state_dir)) in (['deploy-root.json', 'lock'], ['deploy-root.json', 'lock', 'lock.guard'])


def test_concurrent_acquire_of_free_lock_has_exactly_one_winner(tmp_path):
    by_round = _race(str(tmp_path))
    for rnd, outcomes in by_round.items():
        _check_round(str(tmp_path), rnd, outcomes, None)


def test_concurrent_takeover_of_stale_lock_has_exactly_one_winner(tmp_path):
    for rnd in range(ROUNDS):
        write_stale_lock(str(tmp_path / ('round-%d' % rnd)))
    by_round = _race(str(tmp_path))
    for rnd, outcomes in by_round.items():
        _check_round(str(tmp_path), rnd, outcomes, 'stale-token')
