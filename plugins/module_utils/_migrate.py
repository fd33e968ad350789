# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Database migrations of a release, applied with the ``mysql`` client.

Migrations are files ``NNNN_name.up.sql`` (and optionally ``NNNN_name.down.sql``)
in the release's ``migrations/`` directory; the id is ``NNNN_name``. They are
applied in the order of ``NNNN`` (then id). A migration is irreversible when
it has no ``.down.sql`` or its up file has the line ``-- stagehand: irreversible``.

Applied migrations are recorded in the table ``stagehand_migrations`` of the
application's database::

    id VARCHAR(255) PRIMARY KEY, checksum CHAR(64), `release` VARCHAR(128),
    irreversible TINYINT(1), applied_at DATETIME (UTC)

Credentials never go on a command line: each run writes them to a temporary
option file (mode 0600) given to the clients with ``--defaults-extra-file``
and removes it at the end. SQL goes through standard input.

A dump (``mysqldump | gzip``) is written to a temporary file beside its
destination, fsynced and renamed into place, so a dump file is always complete.
A restore first checks the whole gzip file, then drops every table and view of
the database and loads the dump in one client session.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import os
import re
import subprocess
import tempfile
import typing as t
import zlib

from ansible_collections.stagehand.deploy.plugins.module_utils import _schema
from ansible_collections.stagehand.deploy.plugins.module_utils._atomic import fsync_dir, temp_name
from ansible_collections.stagehand.deploy.plugins.module_utils._names import InvalidName, check_release_name

STATES = ('applied', 'checked', 'restored')
TABLE = 'stagehand_migrations'
IRREVERSIBLE_MARK = '-- stagehand: irreversible'
MIGRATION_RE = re.compile(r'\A(?P<id>(?P<num>[0-9]+)_[A-Za-z0-9][A-Za-z0-9_-]*)\.(?P<kind>up|down)\.sql\Z')
MAX_ID_LENGTH = 255
MAX_DATABASE_LENGTH = 64
CHUNK = 65536
DUMP_MARK = b'-- Dump completed'
MAX_ERROR_CHARS = 2000
CONNECT_TIMEOUT = 30

CREATE_TABLE_SQL = (
    'CREATE TABLE IF NOT EXISTS %s (\n'
    '  id VARCHAR(255) NOT NULL PRIMARY KEY,\n'
    '  checksum CHAR(64) NOT NULL,\n'
    '  `release` VARCHAR(128) NULL,\n'
    '  irreversible TINYINT(1) NOT NULL DEFAULT 0,\n'
    '  applied_at DATETIME NOT NULL\n'
    ') ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n' % TABLE
)
TABLE_EXISTS_SQL = (
    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '%s';\n" % TABLE
)
SELECT_APPLIED_SQL = "SELECT id, checksum, irreversible, IFNULL(`release`, '') FROM %s ORDER BY id;\n" % TABLE
LIST_TABLES_SQL = 'SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE();\n'


class MigrateError(Exception):
    """A refused or failed operation; ``msg`` says what and why, ``details`` go into the module result."""

    def __init__(self, msg: str, **details: t.Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


def is_irreversible(sql: bytes, has_down: bool) -> bool:
    """The rule: a migration cannot be undone without a ``.down.sql`` or with the line ``-- stagehand: irreversible``."""
    return not has_down or any(line.strip() == IRREVERSIBLE_MARK for line in sql.decode('utf-8', errors='replace').splitlines())


class Migration:
    """One migration of a release: its id, files, checksum (sha256 of the up file) and reversibility."""

    def __init__(self, mid: str, number: int, up_path: str, down_path: str | None, sql: bytes) -> None:
        self.id = mid
        self.number = number
        self.up_path = up_path
        self.down_path = down_path
        self.sql = sql
        self.checksum = hashlib.sha256(sql).hexdigest()
        self.irreversible = is_irreversible(sql, down_path is not None)


# -- validation --------------------------------------------------------------------------------
def check_database(name: object) -> str:
    """Return ``name`` if it can name a MySQL/MariaDB database, else raise :class:`MigrateError`."""
    if not isinstance(name, str) or not name:
        raise MigrateError('database %r is invalid: give the name of an existing database' % (name,))
    bad = [c for c in name if c in '/\\.`' or ord(c) < 32 or ord(c) == 127]
    if len(name) > MAX_DATABASE_LENGTH or name.startswith('-') or name != name.rstrip() or bad:
        raise MigrateError(
            'database %r is invalid: use at most %d characters, not starting with "-", without trailing spaces, '
            'control characters or any of / \\ . `' % (name, MAX_DATABASE_LENGTH))
    return name


def _option_value(key: str, value: str) -> str:
    if '\0' in value:
        raise MigrateError('%s contains a NUL character, which the MySQL option file cannot hold' % key)
    escaped = (value.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')
               .replace('\r', '\\r').replace('\t', '\\t').replace('\b', '\\b'))
    return '"%s"' % escaped


def option_file_text(user: str | None = None, password: str | None = None, host: str | None = None,
                     port: int | None = None, unix_socket: str | None = None) -> str:
    """The ``[client]`` option file holding the connection settings (values quoted and escaped)."""
    lines = ['[client]']
    for key, value in (('user', user), ('password', password), ('host', host), ('socket', unix_socket)):
        if value is not None:
            lines.append('%s=%s' % (key, _option_value('login_' + key if key != 'socket' else 'login_unix_socket', value)))
    if port is not None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise MigrateError('login_port %r is invalid: use a TCP port from 1 to 65535' % (port,))
        lines.append('port=%d' % port)
    return '\n'.join(lines) + '\n'


def _sql_string(value: str | None) -> str:
    if value is None:
        return 'NULL'
    return "'%s'" % value.replace('\\', '\\\\').replace("'", "''")


def _identifier(name: str) -> str:
    return '`%s`' % name.replace('`', '``')


def _error_lines(text: str) -> str:
    """The ``ERROR ...`` lines of a client's stderr (it also echoes the failing statement), else all of it."""
    lines = [line for line in text.splitlines() if line.startswith('ERROR')]
    return '\n'.join(lines) if lines else text


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + ' ... (truncated)'


# -- the migrations directory -------------------------------------------------------------------
def scan_migrations(path: str) -> list[Migration]:
    """The migrations in ``path``, in the order they apply; ``[]`` when ``path`` does not exist."""
    if not os.path.lexists(path):
        return []
    if not os.path.isdir(path):
        raise MigrateError('path %s is not a directory: give the migrations directory of the release' % path)
    ups: dict[str, tuple[int, str]] = {}
    downs: dict[str, str] = {}
    bad = []
    for entry in sorted(os.listdir(path)):
        full = os.path.join(path, entry)
        if not entry.endswith('.sql'):
            continue
        match = MIGRATION_RE.match(entry)
        if match is None or len(match.group('id')) > MAX_ID_LENGTH or not os.path.isfile(full):
            bad.append(entry)
            continue
        if match.group('kind') == 'up':
            ups[match.group('id')] = (int(match.group('num')), full)
        else:
            downs[match.group('id')] = full
    if bad:
        raise MigrateError(
            'migration files in %s do not follow the naming NNNN_name.up.sql / NNNN_name.down.sql '
            '(NNNN digits, name of letters, digits, _ and -; regular files): %s. Rename or remove them; nothing was run'
            % (path, ', '.join(bad)), invalid_files=bad)
    orphans = sorted(set(downs) - set(ups))
    if orphans:
        raise MigrateError('down migrations without an up migration in %s: %s; nothing was run'
                           % (path, ', '.join(o + '.down.sql' for o in orphans)), invalid_files=orphans)
    migrations = []
    for mid, (number, up_path) in ups.items():
        with open(up_path, 'rb') as f:
            sql = f.read()
        migrations.append(Migration(mid, number, up_path, downs.get(mid), sql))
    migrations.sort(key=lambda m: (m.number, m.id))
    return migrations


# -- the clients ---------------------------------------------------------------------------------
class Client:
    """Runs ``mysql`` and ``mysqldump`` with the connection settings in a temporary 0600 option file.

    Use as a context manager: the option file exists only inside the ``with`` block.
    """

    def __init__(self, database: str, mysql: str, mysqldump: str | None = None, tmpdir: str | None = None,
                 user: str | None = None, password: str | None = None, host: str | None = None,
                 port: int | None = None, unix_socket: str | None = None) -> None:
        self.database = check_database(database)
        self.mysql = mysql
        self.mysqldump = mysqldump
        self.tmpdir = tmpdir
        self._text = option_file_text(user, password, host, port, unix_socket)
        self.defaults: str | None = None

    def __enter__(self) -> 'Client':
        fd, path = tempfile.mkstemp(prefix='stagehand-mysql-', suffix='.cnf', dir=self.tmpdir)
        try:
            os.fchmod(fd, 0o600)
            data = self._text.encode('utf-8')
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        self.defaults = path
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        if self.defaults is not None:
            try:
                os.unlink(self.defaults)
            except FileNotFoundError:
                pass
            self.defaults = None

    def _base(self, program: str) -> list[str]:
        if self.defaults is None:
            raise MigrateError('internal error: the client is used outside its "with" block')
        # --defaults-extra-file must come first
        return [program, '--defaults-extra-file=%s' % self.defaults, '--default-character-set=utf8mb4']

    def mysql_argv(self) -> list[str]:
        return self._base(self.mysql) + ['--connect-timeout=%d' % CONNECT_TIMEOUT, '--batch', '--skip-column-names',
                                         '--database=%s' % self.database]

    def run_sql(self, sql: bytes) -> str:
        """Run ``sql`` (bytes, through standard input) in one session; return stdout or raise :class:`MigrateError`."""
        try:
            proc = subprocess.run(self.mysql_argv(), input=sql, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        except OSError as exc:
            raise MigrateError('cannot run %s: %s' % (self.mysql, exc)) from None
        if proc.returncode != 0:
            raise MigrateError(_clip(proc.stderr.decode('utf-8', errors='replace')) or 'mysql exited with status %d' % proc.returncode,
                               rc=proc.returncode)
        return proc.stdout.decode('utf-8', errors='replace')

    def query(self, sql: str) -> list[list[str]]:
        """Rows of a query, as lists of column texts."""
        out = self.run_sql(sql.encode('utf-8'))
        return [line.split('\t') for line in out.splitlines() if line]

    def dump(self, dest: str) -> None:
        """``mysqldump | gzip`` into ``dest`` (mode 0600), atomically: temporary file, fsync, rename, fsync of the directory."""
        if not self.mysqldump:
            raise MigrateError('mysqldump (or mariadb-dump) was not found on the managed host: install the MariaDB/MySQL client')
        directory = os.path.dirname(os.path.abspath(dest))
        argv = self._base(self.mysqldump) + ['--single-transaction', '--quick', '--routines', '--triggers', '--hex-blob',
                                             '--no-tablespaces', self.database]
        tmp = temp_name(directory, os.path.basename(dest))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with tempfile.TemporaryFile(dir=self.tmpdir) as err:
                with os.fdopen(fd, 'wb') as raw:
                    os.fchmod(raw.fileno(), 0o600)
                    tail = b''
                    with gzip.GzipFile(filename='', mode='wb', fileobj=raw, compresslevel=6, mtime=0) as gz:
                        try:
                            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
                        except OSError as exc:
                            raise MigrateError('cannot run %s: %s' % (self.mysqldump, exc)) from None
                        with proc:
                            for chunk in iter(lambda: proc.stdout.read(CHUNK), b''):
                                gz.write(chunk)
                                tail = (tail + chunk)[-1024:]
                        rc = proc.returncode
                    raw.flush()
                    os.fsync(raw.fileno())
                err.seek(0)
                stderr = err.read().decode('utf-8', errors='replace')
            if rc != 0:
                raise MigrateError('mysqldump of database %s failed (status %s): %s' % (self.database, rc, _clip(stderr) or 'no message'))
            if DUMP_MARK not in tail:
                raise MigrateError('mysqldump of database %s ended without its "-- Dump completed" line: the dump is incomplete%s'
                                   % (self.database, ': ' + _clip(stderr) if stderr.strip() else ''))
            os.rename(tmp, dest)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        fsync_dir(directory)

    def restore(self, src: str) -> list[str]:
        """Drop every table and view of the database, then load the gzipped dump ``src``; return what was dropped."""
        dropped = []
        statements = [b'SET FOREIGN_KEY_CHECKS=0;\n']
        rows = self.query(LIST_TABLES_SQL)
        for row in rows:
            if len(row) >= 2 and row[1] == 'VIEW':
                statements.append(('DROP VIEW IF EXISTS %s;\n' % _identifier(row[0])).encode('utf-8'))
                dropped.append(row[0])
        for row in rows:
            if len(row) >= 2 and row[1] != 'VIEW':
                statements.append(('DROP TABLE IF EXISTS %s;\n' % _identifier(row[0])).encode('utf-8'))
                dropped.append(row[0])
        with tempfile.TemporaryFile(dir=self.tmpdir) as err:
            try:
                proc = subprocess.Popen(self.mysql_argv(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
            except OSError as exc:
                raise MigrateError('cannot run %s: %s' % (self.mysql, exc)) from None
            try:
                try:
                    for statement in statements:
                        proc.stdin.write(statement)
                    with gzip.open(src, 'rb') as dump:
                        for chunk in iter(lambda: dump.read(CHUNK), b''):
                            proc.stdin.write(chunk)
                except BrokenPipeError:
                    pass  # mysql stopped reading (an error): its status and message tell why
                except BaseException:
                    proc.kill()  # never let mysql run a dump that was cut short
                    raise
                finally:
                    try:
                        proc.stdin.close()
                    except BrokenPipeError:
                        pass
            finally:
                proc.wait()
            err.seek(0)
            stderr = err.read().decode('utf-8', errors='replace')
        if proc.returncode != 0:
            raise MigrateError(
                'restoring %s into database %s failed (status %s) after its %d tables and views were dropped: %s. '
                'The database is partly restored: fix the cause and restore again'
                % (src, self.database, proc.returncode, len(dropped), _clip(stderr) or 'no message'), dropped=dropped)
        return dropped


def check_dump_file(path: str) -> None:
    """Read the whole gzip file (CRC and length checked) without changing anything; raise :class:`MigrateError` if unusable."""
    if not os.path.isfile(path):
        raise MigrateError('dump %s does not exist or is not a regular file: give the .sql.gz file to restore' % path)
    try:
        with gzip.open(path, 'rb') as f:
            while f.read(CHUNK * 16):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        raise MigrateError('dump %s is not a complete gzip file (%s): refusing to restore it; nothing was changed' % (path, exc)) from None


# -- the database state ------------------------------------------------------------------------
def read_applied(client: Client) -> dict[str, dict[str, t.Any]]:
    """``id -> {checksum, irreversible, release}`` of the migrations recorded in the database (empty without the table)."""
    rows = client.query(TABLE_EXISTS_SQL)
    if not rows or rows[0][0].strip() in ('', '0'):
        return {}
    applied = {}
    for row in client.query(SELECT_APPLIED_SQL):
        row = row + [''] * (4 - len(row))
        applied[row[0]] = {'checksum': row[1], 'irreversible': row[2].strip() not in ('', '0', 'NULL'), 'release': row[3] or None}
    return applied


def _insert_sql(migration: Migration, release: str | None) -> bytes:
    return ('INSERT INTO %s (id, checksum, `release`, irreversible, applied_at) VALUES (%s, %s, %s, %d, UTC_TIMESTAMP());\n' % (
        TABLE, _sql_string(migration.id), _sql_string(migration.checksum), _sql_string(release),
        1 if migration.irreversible else 0)).encode('utf-8')


def _status(migrations: list[Migration], applied: dict[str, dict[str, t.Any]]) -> dict[str, t.Any]:
    ids = {m.id for m in migrations}
    pending = [m for m in migrations if m.id not in applied]
    unknown = sorted(mid for mid in applied if mid not in ids)
    return {
        'pending': [m.id for m in pending],
        'irreversible': [m.id for m in pending if m.irreversible],
        'unknown': unknown,
        'irreversible_since': [mid for mid in unknown if applied[mid]['irreversible']],
        'recorded': sorted(applied),
        'modified': [m.id for m in migrations if m.id in applied and applied[m.id]['checksum'] != m.checksum],
    }


def _result(changed: bool, status: dict[str, t.Any], applied: list[str], dump: str | None, database: str,
            guard: dict[str, t.Any] | None = None, restored: str | None = None) -> dict[str, t.Any]:
    result: dict[str, t.Any] = {'changed': changed, 'applied': applied, 'dump': dump, 'database': database, 'warnings': [],
                                'guard': guard, 'restored': restored}
    result.update(status)
    if status['modified']:
        result['warnings'].append(
            'migrations %s were changed after they were applied (their checksum differs from the one recorded); '
            'they are not applied again' % ', '.join(status['modified']))
    if status['unknown']:
        result['warnings'].append(
            'the database has migrations that are not in this release: %s (applied by another, probably newer, release)'
            % ', '.join(status['unknown']))
    return result


def run(
    client: Client,
    state: str = 'applied',
    path: str | None = None,
    release: str | None = None,
    allow_irreversible: bool = False,
    dump: str | None = None,
    force: bool = False,
    check_mode: bool = False,
    guard: bool = False,
    restore_db: bool = False,
    dumps_dir: str | None = None,
    now: datetime.datetime | None = None,
) -> dict[str, t.Any]:
    """Carry out ``state`` with ``client`` (whose ``with`` block must be entered); return the module result.

    With ``guard`` (states applied and checked), the schema guard (:func:`_schema.assess`) runs
    first: when the database holds irreversible migrations the release of ``path`` does not
    have, the run is refused before anything changes, unless ``restore_db``: then, with state
    applied, the dump taken right before the oldest of them (from the index in ``dumps_dir``)
    is restored first, and the release's pending migrations are applied after it; with state
    checked, the dump is only named (``guard.dump``) for a ``state=restored`` run.
    """
    if state not in STATES:
        raise MigrateError('state %r is invalid: use one of %s' % (state, ', '.join(STATES)))
    if release is not None:
        try:
            check_release_name(release)
        except InvalidName as exc:
            raise MigrateError(str(exc)) from None
    if state == 'restored':
        return _restore(client, path, dump, force, check_mode)
    if not path:
        raise MigrateError('path is required with state=%s: give the migrations directory of the release' % state)
    if dump is not None and os.path.isdir(dump):
        raise MigrateError('dump %s is a directory: give the path of the .sql.gz file to write' % dump)
    if guard and not dumps_dir and dump:
        dumps_dir = os.path.dirname(os.path.abspath(dump))
    migrations = scan_migrations(path)
    applied = read_applied(client)
    status = _status(migrations, applied)
    checked = None
    if guard:
        checked = _schema.assess(release or path, [m.id for m in migrations],
                                 dict((mid, row['irreversible']) for mid, row in applied.items()),
                                 dumps_dir=dumps_dir, database=client.database, restore=restore_db,
                                 pending_ok=state == 'applied')
        if not checked['allowed'] and not checked['restore']:
            raise MigrateError(checked['msg'], guard=checked, **status)
    if state == 'checked':
        return _result(False, status, sorted(applied), None, client.database, checked)

    restored = None
    if checked is not None and checked['restore']:
        restored = checked['dump']
        before = set(checked['dump_entry']['before'])
        after = [m for m in migrations if m.id not in before]
        irreversible = [m.id for m in after if m.irreversible]
        if irreversible and not allow_irreversible:
            raise MigrateError(
                'after the restore of %s, the pending migrations %s would be irreversible (no .down.sql, or the line '
                '"%s"). Set allow_irreversible=true to apply them; nothing was restored or applied'
                % (restored, ', '.join(irreversible), IRREVERSIBLE_MARK), guard=checked, **status)
        check_dump_file(restored)
        if check_mode:
            status.update(pending=[m.id for m in after], irreversible=irreversible)
            return _result(True, status, [], dump if after else None, client.database, checked, restored)
        client.restore(restored)
        applied = read_applied(client)
        status = _status(migrations, applied)

    pending = [m for m in migrations if m.id not in applied]
    if not pending:
        return _result(restored is not None, status, [], None, client.database, checked, restored)
    if status['irreversible'] and not allow_irreversible:
        raise MigrateError(
            'pending migrations %s are irreversible (no .down.sql, or the line "%s"): once applied, rolling back to an '
            'earlier release needs a database restore. Set allow_irreversible=true to apply them; nothing was applied '
            'and no dump was taken' % (', '.join(status['irreversible']), IRREVERSIBLE_MARK), **status)
    if check_mode:
        return _result(True, status, [], dump, client.database, checked, restored)

    if dump is not None:
        os.makedirs(os.path.dirname(os.path.abspath(dump)), mode=0o700, exist_ok=True)
        try:
            client.dump(dump)
            # which migrations this dump precedes: what a restore picks it by (_schema.choose_dump)
            moment = now or datetime.datetime.now(datetime.timezone.utc)
            _schema.record_dump(dump, client.database, release, applied, [m.id for m in pending],
                                moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ'))
        except MigrateError as exc:
            raise MigrateError('%s; no migration was applied' % exc.msg, applied=[], dump=None, **status) from None
        except (OSError, ValueError) as exc:
            raise MigrateError('recording the dump %s in %s failed: %s; no migration was applied'
                               % (dump, _schema.index_path(os.path.dirname(os.path.abspath(dump))), exc),
                               applied=[], dump=dump, **status) from None
    client.run_sql(CREATE_TABLE_SQL.encode('utf-8'))
    done: list[str] = []
    for migration in pending:
        try:
            client.run_sql(migration.sql)
        except MigrateError as exc:
            before = ('%d migration(s) were applied before it in this run: %s' % (len(done), ', '.join(done))) if done else \
                'no migration was applied before it in this run'
            raise MigrateError(
                'migration %s (%s) failed: %s. It is not recorded as applied, and statements before the failing one may '
                'have taken effect (MySQL does not roll back schema changes); %s%s'
                % (migration.id, migration.up_path, _error_lines(exc.msg), before,
                   '; the dump taken before is %s' % dump if dump else ''),
                applied=done, failed_migration=migration.id, error=exc.msg, dump=dump, **status) from None
        try:
            client.run_sql(_insert_sql(migration, release))
        except MigrateError as exc:
            raise MigrateError(
                'migration %s was applied, but recording it in %s failed: %s. Record it by hand before the next run, '
                'or it will be applied again' % (migration.id, TABLE, exc.msg),
                applied=done + [migration.id], failed_migration=migration.id, error=exc.msg, dump=dump, **status) from None
        done.append(migration.id)
    status['recorded'] = sorted(set(status['recorded']) | set(done))
    return _result(True, status, done, dump, client.database, checked, restored)


def _restore(client: Client, path: str | None, dump: str | None, force: bool, check_mode: bool) -> dict[str, t.Any]:
    if not dump:
        raise MigrateError('dump is required with state=restored: give the .sql.gz file to restore')
    if not force:
        raise MigrateError(
            'state=restored replaces every table of database %s with the content of %s; everything written to the '
            'database since that dump was taken is lost. Set force=true to accept that; nothing was changed'
            % (client.database, dump))
    check_dump_file(dump)
    migrations = scan_migrations(path) if path else []
    if check_mode:
        status = _status(migrations, {})
        status.update(pending=[], irreversible=[], recorded=[], modified=[], unknown=[], irreversible_since=[])
        result = _result(True, status, [], dump, client.database, restored=dump)
        result['dropped'] = []
        return result
    dropped = client.restore(dump)
    applied = read_applied(client)
    status = _status(migrations, applied) if path else _status([], {})
    if not path:
        status['recorded'] = sorted(applied)
    result = _result(True, status, sorted(applied), dump, client.database, restored=dump)
    result['dropped'] = sorted(dropped)
    return result
