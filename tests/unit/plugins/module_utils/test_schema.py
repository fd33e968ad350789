# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The schema guard and the choice of the dump a restore uses (issue 11)."""

from __future__ import annotations

import json

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _schema

APPLIED = {'0001_a': False, '0002_b': False, '0003_c': True, '0004_d': True}


@pytest.fixture
def dumps(tmp_path):
    """dumps/ as deploys v1..v4 leave it: each dump recorded before the migrations of its run."""
    d = tmp_path / 'dumps'
    d.mkdir()
    runs = [('v1', [], ['0001_a']), ('v2', ['0001_a'], ['0002_b']), ('v3', ['0001_a', '0002_b'], ['0003_c']),
            ('v4', ['0001_a', '0002_b', '0003_c'], ['0004_d'])]
    for n, (name, before, precedes) in enumerate(runs):
        (d / ('%s.sql.gz' % name)).write_bytes(b'dump')
        _schema.record_dump(str(d / ('%s.sql.gz' % name)), 'app', name, before, precedes, '2026-12-04T10:0%d:00Z' % n)
    return d


def test_release_knowing_every_irreversible_migration_may_go_live(dumps):
    res = _schema.assess('v2', ['0001_a', '0002_b', '0003_c', '0004_d'], APPLIED, dumps_dir=str(dumps))
    assert res['allowed'] is True and res['lacking'] == [] and res['msg'] is None
    # lacking only reversible migrations: allowed, as rollbacks always were
    res = _schema.assess('v1', ['0001_a'], {'0001_a': False, '0002_b': False}, dumps_dir=str(dumps))
    assert res['allowed'] is True and res['lacking'] == ['0002_b'] and res['irreversible'] == []


def test_the_live_release_is_never_refused(dumps):
    res = _schema.assess('v2', ['0001_a', '0002_b'], APPLIED, live='v2', dumps_dir=str(dumps))
    assert res['allowed'] is True and res['live'] is True


def test_refusal_names_release_migrations_and_the_dump_before_the_oldest(dumps):
    res = _schema.assess('v2', ['0001_a', '0002_b'], APPLIED, live='v4', dumps_dir=str(dumps), database='app')
    assert res['allowed'] is False and res['restore'] is False
    assert res['irreversible'] == ['0003_c', '0004_d']
    # the oldest one it lacks is 0003_c: the dump taken right before it, not v4's (the live release's)
    assert res['dump'] == str(dumps / 'v3.sql.gz')
    assert res['msg'].startswith('v2 does not have the irreversible migrations 0003_c, 0004_d that the database holds')
    assert str(dumps / 'v3.sql.gz') in res['msg'] and 'right before 0003_c' in res['msg'] and 'Nothing was changed' in res['msg']
    # v1 also lacks the reversible 0002_b: still v3's dump (0002_b may stay applied), never v2's
    res = _schema.assess('v1', ['0001_a'], APPLIED, dumps_dir=str(dumps))
    assert res['dump'] == str(dumps / 'v3.sql.gz') and res['lacking'] == ['0002_b', '0003_c', '0004_d']
    # asked to restore: allowed through the restore of that dump
    res = _schema.assess('v2', ['0001_a', '0002_b'], APPLIED, dumps_dir=str(dumps), restore=True)
    assert res['restore'] is True and res['msg'] is None and res['dump'] == str(dumps / 'v3.sql.gz')
    assert res['pending_after_restore'] == []


def test_numeric_order_picks_the_oldest():
    assert sorted(['0010_x', '0009_y', '0100_z'], key=_schema.migration_order) == ['0009_y', '0010_x', '0100_z']


def test_missing_dump_file_is_not_named_and_refuses_a_restore(dumps):
    (dumps / 'v3.sql.gz').unlink()
    res = _schema.assess('v2', ['0001_a', '0002_b'], APPLIED, dumps_dir=str(dumps))
    assert res['allowed'] is False and res['dump'] is None and 'v3.sql.gz' not in res['msg']
    assert 'No restore is possible' in res['msg'] and 'no longer in' in res['msg']
    res = _schema.assess('v2', ['0001_a', '0002_b'], APPLIED, dumps_dir=str(dumps), restore=True)
    assert res['restore'] is False and 'cannot be restored' in res['msg']


def test_no_recorded_dump_refuses(tmp_path):
    res = _schema.assess('v2', ['0001_a'], {'0001_a': False, '0003_c': True}, dumps_dir=str(tmp_path), restore=True)
    assert res['allowed'] is False and res['restore'] is False and 'no dump was recorded' in res['msg']
    res = _schema.assess('v2', ['0001_a'], {'0001_a': False, '0003_c': True}, dumps_dir=None)
    assert 'no dump directory' in res['msg']


def test_a_dump_taken_before_migrations_the_release_needs(tmp_path):
    """v3 deployed straight from v1: one dump before 0002 and 0003; v2 needs 0002."""
    d = tmp_path / 'dumps'
    d.mkdir()
    (d / 'v3.sql.gz').write_bytes(b'dump')
    _schema.record_dump(str(d / 'v3.sql.gz'), 'app', 'v3', ['0001_a'], ['0002_b', '0003_c'], '2026-12-04T10:00:00Z')
    applied = {'0001_a': False, '0002_b': False, '0003_c': True}
    # a deploy applies 0002_b after the restore
    res = _schema.assess('v2', ['0001_a', '0002_b'], applied, dumps_dir=str(d), restore=True)
    assert res['restore'] is True and res['pending_after_restore'] == ['0002_b']
    # a rollback does not apply migrations: refused, saying to deploy instead
    res = _schema.assess('v2', ['0001_a', '0002_b'], applied, dumps_dir=str(d), restore=True, pending_ok=False)
    assert res['restore'] is False and 'deploy v2 with restore_db=true instead' in res['msg']


def test_the_newest_dump_before_a_migration_applied_again_wins(dumps):
    (dumps / 'v3b.sql.gz').write_bytes(b'dump')
    _schema.record_dump(str(dumps / 'v3b.sql.gz'), 'app', 'v3b', ['0001_a', '0002_b'], ['0003_c'], '2026-12-04T11:00:00Z')
    res = _schema.assess('v2', ['0001_a', '0002_b'], APPLIED, dumps_dir=str(dumps))
    assert res['dump'] == str(dumps / 'v3b.sql.gz')


def test_record_replaces_the_entry_of_a_replaced_file(dumps):
    _schema.record_dump(str(dumps / 'v3.sql.gz'), 'app', 'v3', ['0001_a'], ['0002_b'], '2026-12-04T12:00:00Z')
    entries = json.loads((dumps / 'index.json').read_text())['dumps']
    assert [e['file'] for e in entries] == ['v1.sql.gz', 'v2.sql.gz', 'v4.sql.gz', 'v3.sql.gz']
    assert entries[-1]['precedes'] == ['0002_b']


def test_unknown_irreversibility_is_undecided():
    res = _schema.assess('v2', ['0001_a'], {'0001_a': False, '0003_c': None})
    assert res['undecided'] == ['0003_c'] and res['allowed'] is False and 'check the database' in res['msg']


def test_unreadable_index(tmp_path):
    (tmp_path / 'index.json').write_text('{not json')
    res = _schema.assess('v2', ['0001_a'], {'0003_c': True}, dumps_dir=str(tmp_path))
    assert res['allowed'] is False and 'cannot be read' in res['msg']
