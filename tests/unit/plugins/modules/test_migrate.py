# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""migrate against fake ``mysql`` / ``mysqldump`` clients put first on PATH.

The fakes parse the option file the way the MariaDB client does (quotes,
escapes, end-of-line comments), refuse wrong credentials, answer the module's
queries from a JSON state file and record every call (argv, option file text
and mode, stdin) in a JSON-lines log, so the tests can prove that credentials
never reach a command line and that the option file is 0600 and removed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import sys

import pytest
from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.common import warnings as ansible_warnings

from ansible_collections.stagehand.deploy.plugins.module_utils import _migrate
from ansible_collections.stagehand.deploy.plugins.modules.migrate import main

PASSWORD = 'p#a"s s\\w\'o=rd;x'  # quotes, a comment character, a backslash, spaces
USER = 'app user'

FAKE = r'''#!%(python)s
import json, os, re, stat, sys

STATE = os.environ['FAKE_MYSQL_STATE']
LOG = os.environ['FAKE_MYSQL_LOG']
prog = os.path.basename(sys.argv[0])


def load():
    with open(STATE) as f:
        return json.load(f)


def save(state):
    with open(STATE, 'w') as f:
        json.dump(state, f)


def log(entry):
    with open(LOG, 'a') as f:
        f.write(json.dumps(entry) + '\n')


def end_comment(value):
    quote = None
    escape = False
    for i, c in enumerate(value):
        if c in '"\'' and not escape:
            if quote is None:
                quote = c
            elif quote == c:
                quote = None
        if quote is None and c == '#':
            return value[:i]
        escape = quote is not None and c == '\\' and not escape
    return value


def unescape(value):
    out = []
    i = 0
    table = {'n': '\n', 't': '\t', 'r': '\r', 'b': '\b', 's': ' ', '"': '"', "'": "'", '\\': '\\'}
    while i < len(value):
        c = value[i]
        if c == '\\' and i + 1 < len(value):
            nxt = value[i + 1]
            out.append(table.get(nxt, '\\' + nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return ''.join(out)


def parse(text):
    opts = {}
    group = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in '#;':
            continue
        if line.startswith('['):
            group = line.strip('[]').strip()
            continue
        if group != 'client':
            continue
        key, _, value = line.partition('=')
        value = end_comment(value).strip()
        if len(value) >= 2 and value[0] in '"\'' and value[-1] == value[0]:
            value = value[1:-1]
        opts[key.strip()] = unescape(value)
    return opts


def fail(msg, rc=1):
    sys.stderr.write(msg + '\n')
    sys.exit(rc)


args = sys.argv[1:]
entry = {'prog': prog, 'argv': sys.argv, 'env_pwd': 'MYSQL_PWD' in os.environ}
stdin = sys.stdin.buffer.read() if prog == 'mysql' else b''
entry['stdin'] = stdin.decode('utf-8', 'replace')
if not args or not args[0].startswith('--defaults-extra-file='):
    log(entry)
    fail('the first option must be --defaults-extra-file', 7)
path = args[0].split('=', 1)[1]
entry['defaults_path'] = path
entry['defaults_mode'] = stat.S_IMODE(os.stat(path).st_mode)
with open(path) as f:
    entry['defaults'] = f.read()
log(entry)
opts = parse(entry['defaults'])
state = load()
if opts.get('user') != state['user'] or opts.get('password') != state['password']:
    fail("ERROR 1045 (28000): Access denied for user '%%s'@'localhost' (using password: YES)" %% opts.get('user'))
if prog == 'mysqldump':
    db = args[-1]
else:
    db = [a.split('=', 1)[1] for a in args if a.startswith('--database=')][0]
if db not in state['databases']:
    fail("ERROR 1049 (42000): Unknown database '%%s'" %% db)

if prog == 'mysqldump':
    if state.get('dump_fail'):
        fail('mysqldump: Got error: 1044: "Access denied for user" when using LOCK TABLES', 2)
    sys.stdout.write('-- MariaDB dump 10.19\n-- FAKE-STATE: %%s\n' %% json.dumps({'tables': state['tables'], 'migrations': state['migrations']}))
    if not state.get('dump_cut'):
        sys.stdout.write('-- Dump completed on 2026-01-01 10:00:00\n')
    sys.exit(0)

sql = entry['stdin']
if sql.startswith('SET FOREIGN_KEY_CHECKS=0;'):
    for name in re.findall(r'DROP (?:TABLE|VIEW) IF EXISTS `([^`]*)`', sql):
        state['tables'].pop(name, None)
        if name == 'stagehand_migrations':
            state['migrations'] = []
    found = re.search(r'-- FAKE-STATE: (.*)', sql)
    if found:
        dumped = json.loads(found.group(1))
        state['tables'].update(dumped['tables'])
        state['migrations'] = dumped['migrations']
    state['restores'] = state.get('restores', 0) + 1
elif 'information_schema.TABLES' in sql and "TABLE_NAME = 'stagehand_migrations'" in sql:
    print(1 if 'stagehand_migrations' in state['tables'] else 0)
elif sql.startswith('SELECT TABLE_NAME, TABLE_TYPE'):
    for name, kind in sorted(state['tables'].items()):
        print('%%s\t%%s' %% (name, kind))
elif sql.startswith('SELECT id, checksum'):
    for m in sorted(state['migrations'], key=lambda m: m['id']):
        print('\t'.join([m['id'], m['checksum'], str(m['irreversible']), m['release'] or '']))
elif sql.startswith('CREATE TABLE IF NOT EXISTS stagehand_migrations'):
    state['tables']['stagehand_migrations'] = 'BASE TABLE'
elif sql.startswith('INSERT INTO stagehand_migrations'):
    if 'stagehand_migrations' not in state['tables']:
        fail("ERROR 1146 (42S02): Table 'app.stagehand_migrations' doesn't exist")
    if state.get('insert_fail'):
        fail('ERROR 1290 (HY000): The MariaDB server is running with the --read-only option')
    v = re.search(r"VALUES \('([^']*)', '([^']*)', (NULL|'[^']*'), ([01]), UTC_TIMESTAMP\(\)\);", sql)
    state['migrations'].append({'id': v.group(1), 'checksum': v.group(2),
                                'release': None if v.group(3) == 'NULL' else v.group(3)[1:-1],
                                'irreversible': int(v.group(4))})
else:
    for number, line in enumerate(sql.splitlines(), 1):
        if 'SYNTAX ERROR' in line:
            save(state)
            fail("ERROR 1064 (42000) at line %%d: You have an error in your SQL syntax; check the manual near 'SYNTAX ERROR'" %% number)
        for name in re.findall(r'CREATE TABLE (\w+)', line):
            state['tables'][name] = 'BASE TABLE'
    state['executed'].append(sql)
save(state)
'''


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Module-side warnings are collected process-wide: start every test without any (see test_lock_module)."""
    monkeypatch.setattr(module_utils_internal, 'is_controller', False)
    monkeypatch.setattr(ansible_warnings, '_global_warnings', type(ansible_warnings._global_warnings)())  # {} on 2.19, [] before


def warning_texts(result):
    return [w if isinstance(w, str) else w['event']['msg'] for w in result.get('warnings', [])]


class FakeDB:
    def __init__(self, tmp_path, monkeypatch):
        self.dir = tmp_path / 'fakebin'
        self.dir.mkdir()
        self.state_path = str(tmp_path / 'db.json')
        self.log_path = str(tmp_path / 'calls.jsonl')
        text = FAKE % {'python': sys.executable}
        for prog in ('mysql', 'mysqldump'):
            path = self.dir / prog
            path.write_text(text)
            path.chmod(0o755)
        self.write({'user': USER, 'password': PASSWORD, 'databases': ['app'], 'tables': {}, 'migrations': [], 'executed': []})
        monkeypatch.setenv('PATH', str(self.dir) + os.pathsep + os.environ.get('PATH', ''))
        monkeypatch.setenv('FAKE_MYSQL_STATE', self.state_path)
        monkeypatch.setenv('FAKE_MYSQL_LOG', self.log_path)
        monkeypatch.delenv('MYSQL_PWD', raising=False)

    def write(self, state):
        with open(self.state_path, 'w') as f:
            json.dump(state, f)

    @property
    def state(self):
        with open(self.state_path) as f:
            return json.load(f)

    def update(self, **values):
        state = self.state
        state.update(values)
        self.write(state)

    @property
    def calls(self):
        if not os.path.exists(self.log_path):
            return []
        with open(self.log_path) as f:
            return [json.loads(line) for line in f]

    def writes(self):
        """Calls that could change the database (everything but the module's read-only queries)."""
        return [c for c in self.calls if c['prog'] == 'mysql' and not c['stdin'].startswith('SELECT')]


@pytest.fixture
def db(tmp_path, monkeypatch):
    return FakeDB(tmp_path, monkeypatch)


@pytest.fixture
def release(tmp_path):
    """releases/v2 with migrations 0001 (reversible), 0002 (reversible) and a README."""
    root = tmp_path / 'srv'
    mig = root / 'releases' / 'v2' / 'migrations'
    mig.mkdir(parents=True)
    write_migration(mig, '0001_create_visits', 'CREATE TABLE visits (id INT);\n', 'DROP TABLE visits;\n')
    write_migration(mig, '0002_add_email', 'ALTER TABLE visits ADD email VARCHAR(255);\n', 'ALTER TABLE visits DROP email;\n')
    (mig / 'README.md').write_text('not a migration\n')
    return root


def write_migration(directory, mid, up, down=None):
    (directory / (mid + '.up.sql')).write_text(up)
    if down is not None:
        (directory / (mid + '.down.sql')).write_text(down)


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def migrate(run_module, path=None, check_mode=False, **args):
    args.setdefault('database', 'app')
    args.setdefault('login_user', USER)
    args.setdefault('login_password', PASSWORD)
    if path is not None:
        args['path'] = str(path)
    return run_module(main, args, check_mode=check_mode)


def migrations_dir(root, name='v2'):
    return root / 'releases' / name / 'migrations'


# -- applying --------------------------------------------------------------------------
def test_applies_pending_in_order_and_records_them(run_module, db, release):
    res = migrate(run_module, migrations_dir(release), release='v2')
    assert res.get('failed') is not True, res
    assert res['changed'] is True
    assert res['applied'] == ['0001_create_visits', '0002_add_email'] == res['pending']
    assert res['irreversible'] == [] and res['unknown'] == [] and res['dump'] is None
    assert res['recorded'] == ['0001_create_visits', '0002_add_email']
    state = db.state
    assert state['executed'] == ['CREATE TABLE visits (id INT);\n', 'ALTER TABLE visits ADD email VARCHAR(255);\n']
    assert state['tables'] == {'stagehand_migrations': 'BASE TABLE', 'visits': 'BASE TABLE'}
    assert state['migrations'] == [
        {'id': '0001_create_visits', 'checksum': sha('CREATE TABLE visits (id INT);\n'), 'release': 'v2', 'irreversible': 0},
        {'id': '0002_add_email', 'checksum': sha('ALTER TABLE visits ADD email VARCHAR(255);\n'), 'release': 'v2', 'irreversible': 0},
    ]
    # the second run finds nothing to do and writes nothing
    calls = len(db.calls)
    again = migrate(run_module, migrations_dir(release), release='v2')
    assert again['changed'] is False and again['applied'] == [] and again['pending'] == []
    assert [c for c in db.calls[calls:] if not c['stdin'].startswith('SELECT')] == []


def test_numeric_order_not_text_order(run_module, db, tmp_path):
    mig = tmp_path / 'm'
    mig.mkdir()
    for mid in ('10_ten', '9_nine', '0100_hundred', '0009_also_nine'):
        write_migration(mig, mid, 'SELECT "%s";\n' % mid, 'SELECT 1;\n')
    res = migrate(run_module, mig)
    assert res['applied'] == ['0009_also_nine', '9_nine', '10_ten', '0100_hundred']


def test_credentials_only_in_a_private_option_file(run_module, db, release):
    res = migrate(run_module, migrations_dir(release), login_unix_socket='/run/mysqld/my sock', login_port=3307,
                  login_host='db.example.org', dump=str(release / 'd.sql.gz'))
    assert res.get('failed') is not True, res
    calls = db.calls
    assert {c['prog'] for c in calls} == {'mysql', 'mysqldump'}
    for call in calls:
        joined = '\0'.join(call['argv'])
        assert PASSWORD not in joined and 'p#a' not in joined and USER not in joined
        assert call['argv'][1].startswith('--defaults-extra-file=')
        assert call['defaults_mode'] == 0o600
        assert call['env_pwd'] is False
        assert '--database=app' in call['argv'] or call['argv'][-1] == 'app'
        # the fake parsed the password back exactly (it refuses the call otherwise)
        assert 'password="p#a\\"s s\\\\w\'o=rd;x"' in call['defaults']
        assert 'socket="/run/mysqld/my sock"' in call['defaults'] and 'port=3307' in call['defaults']
        assert 'host="db.example.org"' in call['defaults']
    # one option file for the whole run, removed at the end
    assert len({c['defaults_path'] for c in calls}) == 1
    assert not os.path.exists(calls[0]['defaults_path'])


def test_wrong_password_fails_with_the_client_message(run_module, db, release, snapshot):
    before = snapshot(str(release))
    res = migrate(run_module, migrations_dir(release), login_password='nope')
    assert res['failed'] is True and 'Access denied' in res['msg']
    assert 'nope' not in json.dumps({k: v for k, v in res.items() if k != 'invocation'})
    assert db.writes() == [] and snapshot(str(release)) == before
    assert not os.path.exists(db.calls[0]['defaults_path'])


def test_unknown_database_fails(run_module, db, release):
    res = migrate(run_module, migrations_dir(release), database='shop')
    assert res['failed'] is True and "Unknown database 'shop'" in res['msg']
    assert db.writes() == []


def test_missing_directory_means_nothing_to_do(run_module, db, tmp_path):
    res = migrate(run_module, tmp_path / 'releases' / 'v1' / 'migrations')
    assert res['changed'] is False and res['pending'] == [] and res['applied'] == []
    assert db.writes() == [] and db.state['tables'] == {}


# -- the dump --------------------------------------------------------------------------
def test_dump_is_taken_before_the_first_migration(run_module, db, release):
    db.update(tables={'visits': 'BASE TABLE', 'stagehand_migrations': 'BASE TABLE'},
              migrations=[{'id': '0001_create_visits', 'checksum': sha('CREATE TABLE visits (id INT);\n'),
                           'release': 'v1', 'irreversible': 0}])
    dump = release / '.stagehand' / 'dumps' / 'v2.sql.gz'
    res = migrate(run_module, migrations_dir(release), release='v2', dump=str(dump))
    assert res.get('failed') is not True, res
    assert res['dump'] == str(dump) and res['applied'] == ['0002_add_email']
    progs = [c['prog'] if c['prog'] == 'mysqldump' else c['stdin'].split()[0] for c in db.calls]
    assert progs.index('mysqldump') < progs.index('CREATE') < progs.index('ALTER')
    with gzip.open(str(dump), 'rt') as f:
        text = f.read()
    dumped = json.loads(text.split('-- FAKE-STATE: ')[1].splitlines()[0])
    assert [m['id'] for m in dumped['migrations']] == ['0001_create_visits']  # the state before 0002
    assert stat.S_IMODE(os.stat(str(dump)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(dump.parent)).st_mode) == 0o700
    assert sorted(os.listdir(str(dump.parent))) == ['index.json', 'v2.sql.gz']
    # recorded with the migrations it precedes, for a restore to find it (issue 11)
    index = json.loads((dump.parent / 'index.json').read_text())
    assert [(e['file'], e['release'], e['before'], e['precedes']) for e in index['dumps']] == [
        ('v2.sql.gz', 'v2', ['0001_create_visits'], ['0002_add_email'])]
    assert stat.S_IMODE(os.stat(str(dump.parent / 'index.json')).st_mode) == 0o600
    mysqldump = [c for c in db.calls if c['prog'] == 'mysqldump'][0]
    assert '--single-transaction' in mysqldump['argv'] and mysqldump['argv'][-1] == 'app'


def test_no_dump_when_nothing_is_pending(run_module, db, release):
    migrate(run_module, migrations_dir(release))
    dump = release / 'dumps' / 'v2.sql.gz'
    res = migrate(run_module, migrations_dir(release), dump=str(dump))
    assert res['changed'] is False and res['dump'] is None and not dump.parent.exists()


def test_failed_dump_applies_nothing_and_leaves_no_file(run_module, db, release):
    db.update(dump_fail=True)
    dump = release / 'dumps' / 'v2.sql.gz'
    res = migrate(run_module, migrations_dir(release), dump=str(dump))
    assert res['failed'] is True and 'mysqldump of database app failed' in res['msg'] and 'no migration was applied' in res['msg']
    assert 'Access denied' in res['msg']
    assert db.state['executed'] == [] and db.state['tables'] == {}
    assert os.listdir(str(dump.parent)) == []


def test_dump_without_its_completion_line_is_refused(run_module, db, release):
    db.update(dump_cut=True)
    dump = release / 'dumps' / 'v2.sql.gz'
    res = migrate(run_module, migrations_dir(release), dump=str(dump))
    assert res['failed'] is True and 'incomplete' in res['msg']
    assert db.state['executed'] == [] and os.listdir(str(dump.parent)) == []


# -- irreversible migrations -----------------------------------------------------------------
def add_irreversible(release):
    mig = migrations_dir(release)
    write_migration(mig, '0003_drop_legacy', '-- stagehand: irreversible\nDROP TABLE legacy;\n', 'SELECT 1;\n')
    write_migration(mig, '0004_no_down', 'UPDATE visits SET email = NULL;\n')


def test_pending_irreversible_needs_allow_irreversible(run_module, db, release, snapshot):
    add_irreversible(release)
    dump = release / '.stagehand' / 'dumps' / 'v2.sql.gz'
    before = snapshot(str(release))
    res = migrate(run_module, migrations_dir(release), dump=str(dump))
    assert res['failed'] is True
    assert '0003_drop_legacy, 0004_no_down' in res['msg'] and 'allow_irreversible=true' in res['msg']
    assert 'nothing was applied' in res['msg']
    assert res['irreversible'] == ['0003_drop_legacy', '0004_no_down']
    assert res['pending'] == ['0001_create_visits', '0002_add_email', '0003_drop_legacy', '0004_no_down']
    assert db.writes() == [] and not [c for c in db.calls if c['prog'] == 'mysqldump']
    assert snapshot(str(release)) == before

    res = migrate(run_module, migrations_dir(release), release='v3', allow_irreversible=True)
    assert res['applied'] == ['0001_create_visits', '0002_add_email', '0003_drop_legacy', '0004_no_down']
    assert [m['irreversible'] for m in db.state['migrations']] == [0, 0, 1, 1]


def test_checked_reports_unknown_and_irreversible_since(run_module, db, release):
    add_irreversible(release)
    migrate(run_module, migrations_dir(release), release='v3', allow_irreversible=True)
    old = release / 'releases' / 'v1' / 'migrations'
    old.mkdir(parents=True)
    write_migration(old, '0001_create_visits', 'CREATE TABLE visits (id INT);\n', 'DROP TABLE visits;\n')
    calls = len(db.calls)
    res = migrate(run_module, old, state='checked')
    assert res.get('failed') is not True and res['changed'] is False
    assert res['unknown'] == ['0002_add_email', '0003_drop_legacy', '0004_no_down']
    assert res['irreversible_since'] == ['0003_drop_legacy', '0004_no_down']
    assert res['pending'] == [] and res['applied'] == res['recorded'] == [
        '0001_create_visits', '0002_add_email', '0003_drop_legacy', '0004_no_down']
    assert [c for c in db.calls[calls:] if not c['stdin'].startswith('SELECT')] == []
    assert any('not in this release' in w for w in warning_texts(res))
    # a release without migrations knows none of them
    res = migrate(run_module, release / 'releases' / 'v0' / 'migrations', state='checked')
    assert res['unknown'] == res['recorded'] and res['irreversible_since'] == ['0003_drop_legacy', '0004_no_down']


def test_checked_on_a_fresh_database(run_module, db, release):
    res = migrate(run_module, migrations_dir(release), state='checked')
    assert res['pending'] == ['0001_create_visits', '0002_add_email'] and res['recorded'] == [] and res['changed'] is False
    assert db.state['tables'] == {}


# -- failures ---------------------------------------------------------------------------
def test_failure_stops_at_the_failing_migration(run_module, db, release):
    mig = migrations_dir(release)
    write_migration(mig, '0003_bad', 'SELECT 1;\nSYNTAX ERROR here;\n', 'SELECT 1;\n')
    write_migration(mig, '0004_after', 'SELECT 4;\n', 'SELECT 1;\n')
    res = migrate(run_module, mig, release='v5')
    assert res['failed'] is True
    assert res['failed_migration'] == '0003_bad' and 'at line 2' in res['error']
    assert '0003_bad' in res['msg'] and str(mig / '0003_bad.up.sql') in res['msg'] and 'ERROR 1064' in res['msg']
    assert '2 migration(s) were applied before it in this run: 0001_create_visits, 0002_add_email' in res['msg']
    assert res['applied'] == ['0001_create_visits', '0002_add_email']
    assert [m['id'] for m in db.state['migrations']] == ['0001_create_visits', '0002_add_email']
    assert not any('SELECT 4' in sql for sql in db.state['executed'])


def test_recording_failure_is_reported(run_module, db, release):
    db.update(insert_fail=True)
    res = migrate(run_module, migrations_dir(release))
    assert res['failed'] is True and 'recording it in stagehand_migrations failed' in res['msg']
    assert res['failed_migration'] == '0001_create_visits' and res['applied'] == ['0001_create_visits']
    assert 'read-only' in res['msg']


@pytest.mark.parametrize('filename', ['0003_forgot_up.sql', 'schema.sql', '3-dash.up.sql', '0003_.up.sql'])
def test_misnamed_files_are_refused(run_module, db, release, snapshot, filename):
    (migrations_dir(release) / filename).write_text('SELECT 1;\n')
    before = snapshot(str(release))
    res = migrate(run_module, migrations_dir(release))
    assert res['failed'] is True and filename in res['msg'] and 'NNNN_name.up.sql' in res['msg']
    assert db.calls == [] and snapshot(str(release)) == before


def test_down_without_up_is_refused(run_module, db, release):
    (migrations_dir(release) / '0009_orphan.down.sql').write_text('SELECT 1;\n')
    res = migrate(run_module, migrations_dir(release))
    assert res['failed'] is True and '0009_orphan.down.sql' in res['msg'] and db.calls == []


def test_modified_migration_is_reported_not_reapplied(run_module, db, release):
    migrate(run_module, migrations_dir(release))
    (migrations_dir(release) / '0001_create_visits.up.sql').write_text('CREATE TABLE visits (id BIGINT);\n')
    res = migrate(run_module, migrations_dir(release))
    assert res['changed'] is False and res['modified'] == ['0001_create_visits']
    assert any('0001_create_visits' in w and 'checksum' in w for w in warning_texts(res))


@pytest.mark.parametrize('args, words', [
    ({'database': '-x'}, ["database '-x' is invalid"]),
    ({'database': 'a/b'}, ["database 'a/b' is invalid"]),
    ({'release': '../v1'}, ["release name '../v1' is invalid"]),
    ({'login_port': 0}, ['login_port 0 is invalid']),
    ({'login_password': 'a\0b'}, ['NUL']),
])
def test_bad_arguments_change_nothing(run_module, db, release, snapshot, args, words):
    before = snapshot(str(release))
    res = migrate(run_module, migrations_dir(release), **args)
    assert res['failed'] is True
    for word in words:
        assert word in res['msg']
    assert db.calls == [] and snapshot(str(release)) == before


# -- check mode -------------------------------------------------------------------------
def test_check_mode_reports_pending_and_changes_nothing(run_module, db, release, snapshot):
    dump = release / '.stagehand' / 'dumps' / 'v2.sql.gz'
    before = snapshot(str(release))
    res = migrate(run_module, migrations_dir(release), check_mode=True, dump=str(dump))
    assert res.get('failed') is not True and res['changed'] is True
    assert res['pending'] == ['0001_create_visits', '0002_add_email'] and res['applied'] == []
    assert res['dump'] == str(dump)
    assert db.writes() == [] and not [c for c in db.calls if c['prog'] == 'mysqldump']
    assert snapshot(str(release)) == before and db.state['tables'] == {}


# -- restore ----------------------------------------------------------------------------
def test_restore_needs_force_and_replaces_the_database(run_module, db, release, snapshot):
    db.update(tables={'visits': 'BASE TABLE'}, migrations=[])
    dump = release / '.stagehand' / 'dumps' / 'v2.sql.gz'
    migrate(run_module, migrations_dir(release), dump=str(dump))  # dump of {visits}, then 0001+0002
    assert [m['id'] for m in db.state['migrations']] == ['0001_create_visits', '0002_add_email']
    db.update(tables=dict(db.state['tables'], newer='BASE TABLE', report='VIEW'))

    before = snapshot(str(release))
    calls = len(db.calls)
    res = migrate(run_module, state='restored', dump=str(dump))
    assert res['failed'] is True and 'force=true' in res['msg'] and str(dump) in res['msg']
    assert len(db.calls) == calls and snapshot(str(release)) == before

    res = migrate(run_module, state='restored', dump=str(dump), force=True, check_mode=True)
    assert res['changed'] is True and len(db.calls) == calls and 'restores' not in db.state

    res = migrate(run_module, migrations_dir(release), state='restored', dump=str(dump), force=True)
    assert res.get('failed') is not True, res
    assert res['changed'] is True and res['dump'] == str(dump)
    assert res['dropped'] == ['newer', 'report', 'stagehand_migrations', 'visits']
    state = db.state
    assert state['tables'] == {'visits': 'BASE TABLE'} and state['migrations'] == []
    assert res['pending'] == ['0001_create_visits', '0002_add_email'] and res['recorded'] == []
    restore = db.calls[-2]  # then the read of stagehand_migrations
    assert restore['stdin'].index('DROP VIEW IF EXISTS `report`') < restore['stdin'].index('DROP TABLE IF EXISTS `newer`')
    assert restore['stdin'].index('DROP TABLE') < restore['stdin'].index('-- FAKE-STATE')


def test_restore_refuses_a_cut_dump_before_touching_the_database(run_module, db, tmp_path):
    good = tmp_path / 'good.sql.gz'
    with gzip.open(str(good), 'wb') as f:
        f.write(b'-- dump\n' * 1000 + b'-- Dump completed\n')
    cut = tmp_path / 'cut.sql.gz'
    cut.write_bytes(good.read_bytes()[:-20])
    res = migrate(run_module, state='restored', dump=str(cut), force=True)
    assert res['failed'] is True and 'not a complete gzip file' in res['msg'] and db.calls == []
    res = migrate(run_module, state='restored', dump=str(tmp_path / 'missing.sql.gz'), force=True)
    assert res['failed'] is True and 'does not exist' in res['msg'] and db.calls == []


def test_required_options(run_module, db):
    res = migrate(run_module, state='checked')
    assert res['failed'] is True and 'path' in res['msg']
    res = migrate(run_module, state='restored', force=True)
    assert res['failed'] is True and 'dump' in res['msg']


# -- helpers --------------------------------------------------------------------------------
def test_option_file_text_escapes_values():
    text = _migrate.option_file_text(user='u', password='a"b\\c\nd#e')
    assert text == '[client]\nuser="u"\npassword="a\\"b\\\\c\\nd#e"\n'
    assert _migrate.option_file_text() == '[client]\n'


def test_irreversible_marker_must_be_a_whole_line(tmp_path):
    write_migration(tmp_path, '0001_a', 'SELECT 1; -- stagehand: irreversible\n', 'SELECT 1;\n')
    write_migration(tmp_path, '0002_b', '  -- stagehand: irreversible  \nSELECT 1;\n', 'SELECT 1;\n')
    found = {m.id: m.irreversible for m in _migrate.scan_migrations(str(tmp_path))}
    assert found == {'0001_a': False, '0002_b': True}


# -- the schema guard (issue 11: a deploy of an old release bypassed it, a restore picked the wrong dump) --
def history_root(tmp_path):
    """releases v1 (0001), v2 (+0002 reversible), v3 (+0003 irreversible), as the example app's tags."""
    root = tmp_path / 'srv'
    steps = [('0001_create_visits', 'CREATE TABLE visits (id INT);\n', 'DROP TABLE visits;\n'),
             ('0002_add_agent', 'ALTER TABLE visits ADD agent TEXT;\n', 'ALTER TABLE visits DROP agent;\n'),
             ('0003_purge', '-- stagehand: irreversible\nDELETE FROM visits;\n', None)]
    for count, name in enumerate(('v1', 'v2', 'v3'), 1):
        mig = root / 'releases' / name / 'migrations'
        mig.mkdir(parents=True)
        for mid, up, down in steps[:count]:
            write_migration(mig, mid, up, down)
    return root


def deploy_migrations(run_module, root, name, **args):
    """What the migrate phase of a deploy does: guarded, dumping to dumps/<release>.sql.gz."""
    dumps = root / '.stagehand' / 'dumps'
    return migrate(run_module, migrations_dir(root, name), release=name, guard=True, dump=str(dumps / ('%s.sql.gz' % name)),
                   dumps_dir=str(dumps), **args)


@pytest.fixture
def after_v3(run_module, db, tmp_path):
    root = history_root(tmp_path)
    for name in ('v1', 'v2', 'v3'):
        res = deploy_migrations(run_module, root, name, allow_irreversible=name == 'v3')
        assert res.get('failed') is not True and res['applied'], res
    return root


def test_deploy_of_an_older_release_is_refused_naming_the_dump(run_module, db, after_v3, snapshot):
    dumps = after_v3 / '.stagehand' / 'dumps'
    before, state = snapshot(str(after_v3)), db.state
    res = deploy_migrations(run_module, after_v3, 'v2')
    assert res['failed'] is True, res
    assert res['msg'].startswith('v2 does not have the irreversible migrations 0003_purge that the database holds')
    assert 'Nothing was changed' in res['msg']
    assert 'restore (restore_db=true) would restore %s, the dump taken right before 0003_purge was applied' % (dumps / 'v3.sql.gz') in res['msg']
    assert res['guard']['lacking'] == ['0003_purge'] and res['guard']['dump'] == str(dumps / 'v3.sql.gz')
    assert db.state == state and db.writes()[-1]['stdin'].startswith('INSERT') and snapshot(str(after_v3)) == before
    # v1 lacks 0002 (reversible) and 0003 (irreversible): the dump right before 0003, not the older v2.sql.gz
    res = deploy_migrations(run_module, after_v3, 'v1')
    assert res['failed'] is True and res['guard']['lacking'] == ['0002_add_agent', '0003_purge']
    assert res['guard']['irreversible'] == ['0003_purge'] and res['guard']['dump'] == str(dumps / 'v3.sql.gz')
    assert 'v2.sql.gz' not in res['msg']
    # the checked state (a rollback) says the same
    res = migrate(run_module, migrations_dir(after_v3, 'v2'), state='checked', guard=True, release='v2', dumps_dir=str(dumps))
    assert res['failed'] is True and str(dumps / 'v3.sql.gz') in res['msg'] and db.state == state


def test_deploy_with_restore_db_restores_the_dump_before_the_oldest_lacking_migration(run_module, db, after_v3):
    dumps = after_v3 / '.stagehand' / 'dumps'
    res = deploy_migrations(run_module, after_v3, 'v1', restore_db=True)
    assert res.get('failed') is not True, res
    assert res['changed'] is True and res['restored'] == str(dumps / 'v3.sql.gz') and res['applied'] == []
    assert [m['id'] for m in db.state['migrations']] == ['0001_create_visits', '0002_add_agent']
    assert db.state['restores'] == 1
    # now allowed without a restore: 0002 is reversible
    res = deploy_migrations(run_module, after_v3, 'v1')
    assert res.get('failed') is not True and res['changed'] is False and res['guard']['allowed'] is True


def test_missing_dump_is_not_named_and_a_restore_is_refused(run_module, db, after_v3):
    dumps = after_v3 / '.stagehand' / 'dumps'
    (dumps / 'v3.sql.gz').unlink()
    state = db.state
    res = deploy_migrations(run_module, after_v3, 'v2')
    assert res['failed'] is True and 'v3.sql.gz' not in res['msg'] and 'No restore is possible' in res['msg']
    res = deploy_migrations(run_module, after_v3, 'v2', restore_db=True)
    assert res['failed'] is True and 'cannot be restored' in res['msg'] and 'Nothing was changed' in res['msg']
    assert db.state == state and 'restores' not in db.state


def test_reversible_lacking_migrations_do_not_block(run_module, db, tmp_path):
    root = history_root(tmp_path)
    for name in ('v1', 'v2'):
        deploy_migrations(run_module, root, name)
    res = deploy_migrations(run_module, root, 'v1')
    assert res.get('failed') is not True and res['guard']['lacking'] == ['0002_add_agent'] and res['guard']['allowed'] is True
