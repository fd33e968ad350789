# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _compose
from ansible_collections.stagehand.deploy.plugins.module_utils._compose import ComposeError, apply_filters, parse_config, run
from ansible_collections.stagehand.deploy.plugins.module_utils._manifest import load_manifest, scan_tar
from ansible_collections.stagehand.deploy.plugins.module_utils._signing import verify

GIT_ENV = {
    'GIT_CONFIG_NOSYSTEM': '1', 'GIT_CONFIG_GLOBAL': os.devnull,
    'GIT_AUTHOR_NAME': 'T', 'GIT_AUTHOR_EMAIL': 't@example.invalid', 'GIT_COMMITTER_NAME': 'T', 'GIT_COMMITTER_EMAIL': 't@example.invalid',
}

STAGEHAND_YML = """\
version: 1
exclude: ["**/*.md"]
build:
  - [sh, -c, 'mkdir -p generated && printf "built %s\\n" "$STAGEHAND_RELEASE" > generated/out.txt && chmod 0666 generated/out.txt']
shared: [storage, .env]
platform:
  php: ">=8.1"
  extensions: [ext-intl]
"""


def git(repo, *args, date='2026-01-01T12:00:00+0000'):
    env = dict(os.environ, **GIT_ENV)
    env.update({'GIT_AUTHOR_DATE': date, 'GIT_COMMITTER_DATE': date})
    return subprocess.run(['git', '-C', str(repo)] + list(args), env=env, check=True, stdout=subprocess.PIPE).stdout.decode().strip()


def write(path, text, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        os.chmod(str(path), mode)


def make_repo(path, stagehand=STAGEHAND_YML):
    path.mkdir(parents=True)
    git(path, 'init', '-q', '-b', 'main')
    write(path / 'public' / 'index.php', '<?php echo "hi";\n', 0o664)
    write(path / 'bin' / 'tool', '#!/bin/sh\necho tool\n', 0o775)
    write(path / 'README.md', 'docs\n')
    write(path / 'composer.json', json.dumps({'require': {'php': '^8.1', 'ext-pdo': '*'}}) + '\n')
    os.symlink('public/index.php', str(path / 'index-link.php'))
    if stagehand is not None:
        write(path / 'stagehand.yml', stagehand)
    git(path, 'add', '-A')
    git(path, 'commit', '-q', '-m', 'one')
    git(path, 'tag', 'v1')
    return path


def params(repo, store, **kw):
    p = {'repo': str(repo), 'ref': 'v1', 'artifact': None, 'release': 'v1', 'app': 'shop', 'store': str(store),
         'cache': None, 'validate_certs': True, 'signing_key': None, 'default_build': [], 'work_dir': None,
         'force': False, 'step': 'all', 'tree': None}
    p.update(kw)
    return p


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / 'repo')


# -- stagehand.yml --------------------------------------------------------------
@pytest.mark.parametrize('text, words', [
    ('version: 2\n', ['version 2', 'only "version: 1"']),
    ('build: []\n', ['version None']),
    ('- a\n', ['must be a mapping']),
    ('version: 1\nbuidl: []\n', ["unknown key 'buidl'", 'allowed keys are build, exclude, include, platform, shared, version']),
    ('version: 1\nbuild: composer install\n', ['build must be a list', "'composer install'"]),
    ('version: 1\nbuild: [composer install]\n', ['build[0] must be a non-empty list of strings', "'composer install'"]),
    ('version: 1\nbuild: [[]]\n', ['build[0]']),
    ('version: 1\nbuild: [[composer, 3]]\n', ['build[0]']),
    ('version: 1\ninclude: [/etc]\n', ["'/etc' is absolute"]),
    ('version: 1\nexclude: ["../x"]\n', ["'..' component"]),
    ('version: 1\ninclude: "src"\n', ['include must be a list of non-empty strings', "'src'"]),
    ('version: 1\nexclude: ["[abc"]\n', ['unclosed [']),
    ('version: 1\nshared: [../data]\n', ['shared:', "'..' component"]),
    ('version: 1\nshared: storage\n', ['shared must be a list', "'storage'"]),
    ('version: 1\nshared: [storage, storage/logs]\n', ["'storage/logs' is inside shared path 'storage'"]),
    ('version: 1\nplatform: [php]\n', ['platform must be a mapping']),
    ('version: 1\nplatform: {pyhton: 3}\n', ["unknown key 'pyhton'", 'extensions, php']),
    ('version: 1\nplatform: {php: [8]}\n', ['platform.php must be a composer version constraint', '[8]']),
    ('version: 1\nplatform: {extensions: pdo}\n', ['platform.extensions must be a list', "'pdo'"]),
    ('version: 1\nbuild: [\n', ['not valid YAML']),
])
def test_bad_config_is_refused_with_the_key_and_what_is_allowed(text, words):
    with pytest.raises(ComposeError) as exc:
        parse_config(text.encode())
    for word in words:
        assert word in exc.value.msg


def test_good_config():
    config = parse_config(STAGEHAND_YML.encode())
    assert config['build'][0][0] == 'sh'
    assert config['shared'] == ['.env', 'storage']
    assert config['platform'] == {'php': '>=8.1', 'extensions': ['ext-intl']}
    assert config['exclude'] == ['**/*.md'] and config['include'] == []
    assert len(config['sha256']) == 64


# -- include / exclude --------------------------------------------------------
def make_tree(root):
    for rel in ['src/a.php', 'src/b.md', 'src/deep/c.md', 'docs/x.md', 'tests/t.php', 'README.md', 'public/index.php']:
        write(root / rel, rel)
    return root


def listing(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(str(root)):
        for name in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), str(root)))
    return sorted(out)


def test_exclude_globs(tmp_path):
    tree = make_tree(tmp_path / 't')
    apply_filters(str(tree), [], ['**/*.md', 'tests'])
    assert listing(tree) == ['docs', 'public', 'public/index.php', 'src', 'src/a.php', 'src/deep']  # empty dirs stay


def test_include_globs_keep_parents_only_for_what_matches(tmp_path):
    tree = make_tree(tmp_path / 't')
    apply_filters(str(tree), ['src/*.php', 'public'], ['public/nothing'])
    assert listing(tree) == ['public', 'public/index.php', 'src', 'src/a.php']


def test_star_does_not_cross_directories(tmp_path):
    tree = make_tree(tmp_path / 't')
    apply_filters(str(tree), [], ['*.md'])
    assert 'src/b.md' in listing(tree) and 'README.md' not in listing(tree)


# -- composing ----------------------------------------------------------------
def test_compose_from_git(tmp_path, repo):
    store = tmp_path / 'store'
    result = run(params(repo, store))
    assert result['changed'] is True and result['reused'] is False
    compose_id = result['compose_id']
    hexid = compose_id.split(':')[1]
    assert result['dir'] == str(store / 'shop' / 'composes' / hexid)
    manifest = load_manifest(result['manifest'])
    assert manifest.digest == compose_id
    assert scan_tar(result['artifact']).digest == compose_id
    entries = {e['path']: e for e in manifest.entries}
    # modes normalised like chmod u+rwX,go+rX,go-w; build output included; README excluded; .git never there
    assert entries['public/index.php']['mode'] == '0644'
    assert entries['bin/tool']['mode'] == '0755'
    assert entries['generated/out.txt']['mode'] == '0644'
    assert entries['index-link.php'] == {'path': 'index-link.php', 'type': 'symlink', 'target': 'public/index.php'}
    assert 'README.md' not in entries and not any(p.startswith('.git') for p in entries)
    assert 'stagehand.yml' in entries
    with tarfile.open(result['artifact']) as tar:
        assert tar.extractfile('RELEASE').read() == b'v1\n'
        assert tar.extractfile('generated/out.txt').read() == b'built v1\n'
        members = tar.getmembers()
        assert [m.name for m in members] == sorted(m.name for m in members)
        assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, '', '')}
        commit_time = int(git(repo, 'show', '-s', '--format=%ct', 'v1'))
        assert {m.mtime for m in members} == {commit_time}
    with open(result['artifact'], 'rb') as f:
        head = f.read(10)
    assert head[4:8] == b'\x00\x00\x00\x00'  # gzip mtime 0
    inputs = json.load(open(result['inputs_path']))
    assert inputs['commit'] == git(repo, 'rev-parse', 'v1') == result['commit']
    assert inputs['ref'] == 'v1' and inputs['release'] == 'v1'
    assert inputs['stagehand_yml_sha256'] == _compose.sha256_file(str(repo / 'stagehand.yml'))
    assert inputs['composer_lock_sha256'] is None
    assert set(inputs['tools']) == {'git', 'php', 'composer', 'python', 'ansible_core', 'stagehand_deploy'}
    assert inputs['tools']['git'].startswith('git version')
    assert inputs['time'].endswith('Z')
    assert inputs['platform']['php'] == ['^8.1', '>=8.1']
    assert inputs['platform']['extensions'] == ['intl', 'pdo']
    assert result['platform'] == {'php': ['^8.1', '>=8.1'], 'extensions': ['intl', 'pdo']}
    assert result['shared'] == ['.env', 'storage']
    ref = json.load(open(str(store / 'shop' / 'refs' / 'v1.json')))
    assert ref['compose_id'] == compose_id and ref['commit'] == inputs['commit']
    assert os.listdir(str(store / 'shop' / 'tmp')) == []


def test_same_commit_in_other_dirs_and_times_gives_same_id_and_bytes(tmp_path, repo):
    clone = tmp_path / 'elsewhere' / 'clone'
    subprocess.run(['git', 'clone', '-q', str(repo), str(clone)], check=True)
    git(clone, 'fetch', '-q', '--tags')
    # the clone's checkout has other mtimes, modes and umask effects: none of it may matter
    os.utime(str(clone / 'public' / 'index.php'), (1, 1))
    first = run(params(repo, tmp_path / 'store1', work_dir=str(tmp_path / 'w1')))
    old = os.umask(0o000)
    try:
        second = run(params(clone, tmp_path / 'other' / 'store2', work_dir=str(tmp_path / 'w2')))
    finally:
        os.umask(old)
    assert first['compose_id'] == second['compose_id']
    assert first['dir'] != second['dir']
    for key in ('artifact', 'manifest'):
        with open(first[key], 'rb') as a, open(second[key], 'rb') as b:
            assert a.read() == b.read(), key


def test_second_run_reuses_and_changes_nothing(tmp_path, repo, snapshot):
    store = tmp_path / 'store'
    first = run(params(repo, store))
    before = snapshot(str(store))
    second = run(params(repo, store))
    assert second['reused'] is True and second['changed'] is False
    assert second['compose_id'] == first['compose_id'] and second['artifact'] == first['artifact']
    assert second['build'] == []
    assert snapshot(str(store)) == before


def test_force_rebuilds_to_the_same_id_without_writing(tmp_path, repo, snapshot):
    store = tmp_path / 'store'
    first = run(params(repo, store))
    before = snapshot(str(store))
    again = run(params(repo, store, force=True))
    assert again['reused'] is False and again['changed'] is False and again['compose_id'] == first['compose_id']
    assert snapshot(str(store)) == before


def test_check_mode_writes_nothing(tmp_path, repo):
    store = tmp_path / 'store'
    result = run(params(repo, store), check_mode=True)
    assert result['changed'] is True and result['compose_id'] is None
    assert not store.exists()
    run(params(repo, store))
    again = run(params(repo, store), check_mode=True)
    assert again['changed'] is False and again['reused'] is True


def commit_change(repo, stagehand=None, build_fails=False, date='2026-01-02T12:00:00+0000'):
    write(repo / 'public' / 'index.php', '<?php echo "two";\n')
    if stagehand is not None:
        write(repo / 'stagehand.yml', stagehand)
    if build_fails:
        write(repo / 'stagehand.yml', 'version: 1\nbuild:\n  - [sh, -c, "echo compiling; echo boom >&2; exit 3"]\n')
    git(repo, 'add', '-A')
    git(repo, 'commit', '-q', '-m', 'two', date=date)


@pytest.mark.parametrize('change, words', [
    ({'build_fails': True}, ['build command 1 of 1', 'exit code 3', 'boom']),
    ({'stagehand': 'version: 1\nbuild: composer install\n'}, ['build must be a list']),
    ({'stagehand': 'version: 1\nbuild:\n  - [sh, -c, "ln -s /etc/passwd leak"]\n'}, ['leak', 'escapes the tree']),
    ({'stagehand': 'version: 1\nbuild:\n  - [no-such-program-xyz]\n'}, ['cannot run no-such-program-xyz']),
])
def test_failed_build_leaves_the_last_good_compose(tmp_path, repo, snapshot, change, words):
    store = tmp_path / 'store'
    good = run(params(repo, store, ref='main', release='main1'))
    before = snapshot(str(store))
    commit_change(repo, **change)
    with pytest.raises(ComposeError) as exc:
        run(params(repo, store, ref='main', release='main2'))
    for word in words:
        assert word in exc.value.msg
    assert 'the last good compose of main (%s) is unchanged' % good['compose_id'] in exc.value.msg
    assert snapshot(str(store)) == before


def test_failed_first_build_says_there_is_no_good_compose(tmp_path):
    repo = make_repo(tmp_path / 'repo', stagehand='version: 1\nbuild: [[sh, -c, "exit 1"]]\n')
    with pytest.raises(ComposeError) as exc:
        run(params(repo, tmp_path / 'store'))
    assert 'there is no earlier good compose of v1' in exc.value.msg
    assert not os.path.exists(str(tmp_path / 'store' / 'shop' / 'composes'))
    assert not os.path.exists(str(tmp_path / 'store' / 'shop' / 'refs'))


def test_moved_ref_builds_again_and_moves_the_pointer(tmp_path, repo):
    store = tmp_path / 'store'
    first = run(params(repo, store, ref='main', release='m'))
    commit_change(repo)
    second = run(params(repo, store, ref='main', release='m'))
    assert second['reused'] is False and second['compose_id'] != first['compose_id']
    assert os.path.isdir(first['dir'])  # old composes stay
    assert json.load(open(str(store / 'shop' / 'refs' / 'main.json')))['compose_id'] == second['compose_id']


def test_unknown_ref(tmp_path, repo):
    with pytest.raises(ComposeError) as exc:
        run(params(repo, tmp_path / 'store', ref='v9'))
    assert "version 'v9' is not a tag, branch or commit" in exc.value.msg


def test_no_stagehand_yml_uses_the_default_build_with_composer_json(tmp_path):
    repo = make_repo(tmp_path / 'repo', stagehand=None)
    result = run(params(repo, tmp_path / 'store', default_build=[['sh', '-c', 'echo default > built.txt']]))
    manifest = load_manifest(result['manifest'])
    assert 'built.txt' in manifest and 'README.md' in manifest
    assert result['shared'] is None
    assert result['inputs']['stagehand_yml_sha256'] is None


def test_signing(tmp_path, repo):
    if shutil.which('ssh-keygen') is None:
        pytest.skip('needs ssh-keygen')
    key = str(tmp_path / 'key')
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key], check=True)
    allowed = tmp_path / 'allowed'
    allowed.write_text('stagehand %s\n' % ' '.join(open(key + '.pub').read().split()[:2]))
    store = tmp_path / 'store'
    unsigned = run(params(repo, store))
    assert unsigned['signature'] is None
    # reusing an unsigned compose with a key signs it (nothing rebuilt)
    signed = run(params(repo, store, signing_key=key))
    assert signed['reused'] is True and signed['changed'] is True
    assert signed['signature'] == signed['manifest'] + '.sig'
    verify(signed['manifest'], signed['signature'], str(allowed), 'stagehand')
    again = run(params(repo, store, signing_key=key))
    assert again['changed'] is False


def test_signing_on_first_compose(tmp_path, repo):
    if shutil.which('ssh-keygen') is None:
        pytest.skip('needs ssh-keygen')
    key = str(tmp_path / 'key')
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key], check=True)
    result = run(params(repo, tmp_path / 'store', signing_key=key))
    assert result['signature'] and os.path.isfile(result['signature'])


# -- artifacts ----------------------------------------------------------------
def test_artifact_directory(tmp_path):
    src = tmp_path / 'build'
    write(src / 'public' / 'index.php', 'x', 0o600)
    write(src / 'RELEASE', 'old\n')
    write(src / 'stagehand.yml', 'version: 1\nbuild: [[sh, -c, "exit 1"]]\nshared: [storage]\n')
    store = tmp_path / 'store'
    result = run(params(None, store, ref=None, artifact=str(src), release='art-1'))
    assert result['ref'] is None and result['commit'] is None
    assert result['shared'] == ['storage']  # stagehand.yml read, its build not run (prebuilt)
    with tarfile.open(result['artifact']) as tar:
        assert tar.extractfile('RELEASE').read() == b'art-1\n'
        assert tar.getmember('public/index.php').mode == 0o644
        assert {m.mtime for m in tar.getmembers()} == {0}
    assert not (store / 'shop' / 'refs').exists()
    again = run(params(None, store, ref=None, artifact=str(src), release='art-1'))
    assert again['compose_id'] == result['compose_id'] and again['changed'] is False


def test_a_redeploy_of_the_same_artifact_reuses_its_compose_without_copying(tmp_path, monkeypatch):
    """Issue 10: an artifact's compose is computed once per artifact content (directory or .tar.gz) and reused."""
    src = tmp_path / 'build'
    write(src / 'public' / 'index.php', 'x')
    tgz = tmp_path / 'build.tar.gz'
    with tarfile.open(str(tgz), 'w:gz') as tar:
        tar.add(str(src), arcname='.')
    store = tmp_path / 'store'
    first = {path: run(params(None, store, ref=None, artifact=str(path), release='r')) for path in (src, tgz)}
    assert all(result['reused'] is False for result in first.values())
    records = sorted(os.listdir(str(store / 'shop' / 'artifacts')))
    assert len(records) == 2  # one record per artifact (the directory, the tarball), the same compose

    def no_copy(*_args, **_kwargs):
        raise AssertionError('the artifact was copied again')
    monkeypatch.setattr(_compose, 'copy_artifact', no_copy)
    for path in (src, tgz):
        again = run(params(None, store, ref=None, artifact=str(path), release='r'))
        assert again['reused'] is True and again['changed'] is False and again['compose_id'] == first[path]['compose_id']
    # the same bytes under another name are the same artifact
    shutil.copyfile(str(tgz), str(tmp_path / 'copy.tar.gz'))
    assert run(params(None, store, ref=None, artifact=str(tmp_path / 'copy.tar.gz'), release='r'))['reused'] is True


def test_a_changed_artifact_or_another_release_name_is_composed_again(tmp_path):
    src = tmp_path / 'build'
    write(src / 'public' / 'index.php', 'x')
    store = tmp_path / 'store'
    first = run(params(None, store, ref=None, artifact=str(src), release='r'))
    other_name = run(params(None, store, ref=None, artifact=str(src), release='r2'))
    assert other_name['reused'] is False and other_name['compose_id'] != first['compose_id']  # RELEASE differs
    # the same size and modification time, other content: the change time tells it apart
    stamp = os.stat(str(src / 'public' / 'index.php'))
    write(src / 'public' / 'index.php', 'y')
    os.utime(str(src / 'public' / 'index.php'), ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    changed = run(params(None, store, ref=None, artifact=str(src), release='r'))
    assert changed['reused'] is False and changed['compose_id'] != first['compose_id']
    assert load_manifest(changed['manifest']).digest == changed['compose_id']


def test_a_corrupt_compose_of_an_artifact_is_quarantined_and_composed_again(tmp_path):
    src = tmp_path / 'build'
    write(src / 'public' / 'index.php', 'x')
    store = tmp_path / 'store'
    first = run(params(None, store, ref=None, artifact=str(src), release='r'))
    with open(first['artifact'], 'r+b') as f:
        f.seek(10)
        f.write(b'\0\0\0\0')
    again = run(params(None, store, ref=None, artifact=str(src), release='r'))
    assert again['reused'] is False and again['compose_id'] == first['compose_id']
    assert any('failed its integrity check' in w for w in again['warnings'])
    assert scan_tar(again['artifact']).digest == again['compose_id']


def test_artifact_tarball_same_as_directory(tmp_path):
    src = tmp_path / 'build'
    write(src / 'a' / 'b.txt', 'b')
    tgz = tmp_path / 'build.tar.gz'
    with tarfile.open(str(tgz), 'w:gz') as tar:
        tar.add(str(src), arcname='.')
    one = run(params(None, tmp_path / 's1', ref=None, artifact=str(src), release='r'))
    two = run(params(None, tmp_path / 's2', ref=None, artifact=str(tgz), release='r'))
    assert one['compose_id'] == two['compose_id']


def unsafe_tar(path, name, **kw):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w') as tar:
        info = tarfile.TarInfo(name)
        for k, v in kw.items():
            setattr(info, k, v)
        tar.addfile(info, io.BytesIO(b'x' * info.size) if info.isreg() else None)
    with gzip.open(str(path), 'wb') as f:
        f.write(buf.getvalue())


@pytest.mark.parametrize('name, kw, word', [
    ('../evil', {'size': 1}, "'..' component"),
    ('/etc/evil', {'size': 1}, 'absolute'),
    ('link', {'type': tarfile.SYMTYPE, 'linkname': '../../etc'}, 'escapes the tree'),
    ('dev', {'type': tarfile.CHRTYPE}, 'device file'),
])
def test_unsafe_artifact_is_refused_and_nothing_published(tmp_path, snapshot, name, kw, word):
    tgz = tmp_path / 'bad.tar.gz'
    unsafe_tar(tgz, name, **kw)
    store = tmp_path / 'store'
    (store / 'shop').mkdir(parents=True)
    before = snapshot(str(store))
    with pytest.raises(ComposeError) as exc:
        run(params(None, store, ref=None, artifact=str(tgz), release='r'))
    assert word in exc.value.msg and 'nothing was published' in exc.value.msg
    assert snapshot(str(store)) == before


def test_truncated_artifact_is_refused(tmp_path, snapshot):
    src = tmp_path / 'build'
    write(src / 'big.bin', 'y' * 200000)
    tgz = tmp_path / 'b.tar.gz'
    with tarfile.open(str(tgz), 'w:gz') as tar:
        tar.add(str(src), arcname='.')
    data = tgz.read_bytes()
    tgz.write_bytes(data[:len(data) // 2])
    with pytest.raises(ComposeError) as exc:
        run(params(None, tmp_path / 'store', ref=None, artifact=str(tgz), release='r'))
    assert 'truncated or corrupt' in exc.value.msg


# -- the two-step flow used with a prepare hook ----------------------------------
def test_build_then_pack(tmp_path, repo):
    store = tmp_path / 'store'
    built = run(params(repo, store, step='build'))
    assert os.path.isfile(os.path.join(built['tree'], 'generated', 'out.txt'))
    assert not (store / 'shop' / 'composes').exists()
    write(tmp_path / 'x', '')
    with open(os.path.join(built['tree'], 'hooked.txt'), 'w') as f:
        f.write('from a hook\n')
    packed = run(params(repo, store, step='pack', tree=built['tree']))
    assert 'hooked.txt' in load_manifest(packed['manifest'])
    assert not os.path.exists(built['work'])
    plain = run(params(repo, tmp_path / 'store2'))
    assert plain['compose_id'] != packed['compose_id']


# -- composer -------------------------------------------------------------------
@pytest.mark.skipif(shutil.which('composer') is None, reason='needs composer')
def test_composer_autoloader_suffix_is_the_commit(tmp_path):
    repo = tmp_path / 'repo'
    make_repo(repo, stagehand='version: 1\nbuild:\n  - [composer, install, --no-dev, --no-interaction, --no-progress]\n')
    write(repo / 'composer.json', json.dumps({'name': 'x/y', 'repositories': [{'packagist.org': False}], 'require': {},
                                              'autoload': {'psr-4': {'App\\': 'src/'}}}))
    env = dict(os.environ, COMPOSER_HOME=str(tmp_path / 'ch'), COMPOSER_ALLOW_SUPERUSER='1')
    subprocess.run(['composer', 'update', '--no-interaction', '--no-install', '-q'], cwd=str(repo), env=env, check=True)
    git(repo, 'add', '-A')
    git(repo, 'commit', '-q', '-m', 'composer')
    git(repo, 'tag', 'v2')
    commit = git(repo, 'rev-parse', 'v2')
    one = run(params(repo, tmp_path / 's1', ref='v2', release='v2'))
    two = run(params(repo, tmp_path / 's2', ref='v2', release='v2'))
    assert one['compose_id'] == two['compose_id']
    with tarfile.open(one['artifact']) as tar:
        assert ('ComposerAutoloaderInit' + commit).encode() in tar.extractfile('vendor/autoload.php').read()
    assert one['inputs']['composer_lock_sha256'] == _compose.sha256_file(str(repo / 'composer.lock'))
    assert one['inputs']['tools']['composer'].startswith('Composer')


def test_collection_version_matches_galaxy_yml():
    here = os.path.dirname(os.path.abspath(__file__))
    galaxy = os.path.join(here, '..', '..', '..', '..', 'galaxy.yml')
    with open(galaxy) as f:
        version = next(line.split(':', 1)[1].strip() for line in f if line.startswith('version:'))
    assert _compose.COLLECTION_VERSION == version


def test_a_prepared_compose_is_not_reused_by_a_plain_run(tmp_path, repo):
    store = tmp_path / 'store'
    built = run(params(repo, store, step='build'))
    with open(os.path.join(built['tree'], 'hooked.txt'), 'w') as f:
        f.write('hook\n')
    packed = run(params(repo, store, step='pack', tree=built['tree']))
    assert packed['inputs']['prepared'] is True
    plain = run(params(repo, store))
    assert plain['reused'] is False and plain['compose_id'] != packed['compose_id']
    assert run(params(repo, store))['reused'] is True


def test_a_signature_by_another_key_is_replaced(tmp_path, repo):
    if shutil.which('ssh-keygen') is None:
        pytest.skip('needs ssh-keygen')
    keys = []
    for name in ('old', 'new'):
        key = str(tmp_path / name)
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key], check=True)
        keys.append(key)
    allowed = tmp_path / 'allowed'
    allowed.write_text('stagehand %s\n' % ' '.join(open(keys[1] + '.pub').read().split()[:2]))
    store = tmp_path / 'store'
    old = run(params(repo, store, signing_key=keys[0]))
    new = run(params(repo, store, signing_key=keys[1]))
    assert new['reused'] is True and new['changed'] is True and new['compose_id'] == old['compose_id']
    verify(new['manifest'], new['signature'], str(allowed), 'stagehand')
    assert run(params(repo, store, signing_key=keys[1]))['changed'] is False


def test_leftovers_of_interrupted_composes_are_removed(tmp_path, repo):
    store = tmp_path / 'store'
    stale = store / 'shop' / 'tmp' / '.compose-stale'
    fresh = store / 'shop' / 'tmp' / '.compose-running'
    stale.mkdir(parents=True)
    fresh.mkdir()
    os.utime(str(stale), (1, 1))
    run(params(repo, store))
    assert not stale.exists() and fresh.exists()


# what two hosts' php-fpm offer, as the platform module returns it
FIT = {'version': '8.2.7', 'modules': ['core', 'intl', 'pdo', 'pdo_mysql']}
NO_INTL = {'version': '8.2.7', 'modules': ['core', 'pdo']}
OLD_PHP = {'version': '8.0.30', 'modules': ['core', 'intl', 'pdo']}


def test_a_host_that_cannot_run_the_source_refuses_the_compose_before_the_build_runs(tmp_path, repo, snapshot):
    """Issue 14: the platform is checked before building and shipping; the build of STAGEHAND_YML writes generated/."""
    store = tmp_path / 'store'
    marker = tmp_path / 'built'
    commit_change(repo, stagehand=STAGEHAND_YML.replace('mkdir -p generated', 'touch %s && mkdir -p generated' % marker))
    os.mkdir(str(tmp_path / 'work'))
    before = snapshot(str(tmp_path))
    with pytest.raises(ComposeError) as exc:
        run(params(repo, store, ref='main', release='main1', work_dir=str(tmp_path / 'work'),
                   platform_hosts={'web1': FIT, 'web2': NO_INTL, 'web3': OLD_PHP, 'web4': {'skipped': True}}))
    assert exc.value.details['failed_phase'] == 'platform'
    assert exc.value.details['unfit_hosts'] == {
        'web2': '1 required PHP extension is missing: intl',
        'web3': 'PHP 8.0.30 does not satisfy ^8.1 and >=8.1',
    }
    msg = exc.value.msg
    assert msg.startswith("version 'main' (commit ") and ('cannot run on 2 hosts web2: 1 required PHP extension is missing: intl; '
                                                          'web3: PHP 8.0.30 does not satisfy ^8.1 and >=8.1. Found before') in msg, msg
    assert 'Found before building: nothing was built, sent or changed on any host' in msg, msg
    assert not marker.exists()  # the build did not run
    assert snapshot(str(tmp_path)) == before  # nothing in the store, no work directory left
    run(params(repo, store, ref='main', release='main1'))
    assert marker.exists()  # without the hosts' platform, the same compose builds


def test_hosts_that_can_run_the_source_let_the_compose_build(tmp_path, repo):
    store = tmp_path / 'store'
    plain = run(params(repo, store))
    checked = run(params(repo, tmp_path / 'other', platform_hosts={'web1': FIT, 'web2': FIT}))
    assert checked['compose_id'] == plain['compose_id'] and checked['reused'] is False
    # a compose reused from the store is not checked here (every host checks the release before it is staged)
    again = run(params(repo, store, platform_hosts={'web2': NO_INTL}))
    assert again['reused'] is True


def test_an_artifact_is_checked_before_it_is_composed(tmp_path, snapshot):
    src = tmp_path / 'build'
    write(src / 'public' / 'index.php', 'x')
    write(src / 'composer.json', json.dumps({'require': {'php': '>=8.3'}}))
    store = tmp_path / 'store'
    with pytest.raises(ComposeError) as exc:
        run(params(None, store, ref=None, artifact=str(src), release='art-1', platform_hosts={'web1': FIT}))
    assert exc.value.details['unfit_hosts'] == {'web1': 'PHP 8.2.7 does not satisfy >=8.3'}
    assert exc.value.msg.startswith("the artifact '%s' cannot run on host web1: PHP 8.2.7 does not satisfy >=8.3. Found" % src), exc.value.msg
    assert not (store / 'shop' / 'composes').exists()
