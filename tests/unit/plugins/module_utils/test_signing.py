# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils import _signing
from ansible_collections.stagehand.deploy.plugins.module_utils._signing import SignatureError, sign, verify

pytestmark = pytest.mark.skipif(shutil.which('ssh-keygen') is None, reason='needs ssh-keygen')


def keygen(directory, name):
    key = os.path.join(str(directory), name)
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', key], check=True)
    return key


def allowed(directory, keys, principal='stagehand'):
    path = os.path.join(str(directory), 'allowed_signers')
    with open(path, 'w') as f:
        for key in keys:
            with open(key + '.pub') as pub:
                f.write('%s %s\n' % (principal, ' '.join(pub.read().split()[:2])))
    return path


@pytest.fixture
def keys(tmp_path):
    return keygen(tmp_path, 'good'), keygen(tmp_path, 'other')


@pytest.fixture
def signed(tmp_path, keys):
    path = tmp_path / 'manifest.json'
    path.write_text('{"version": 1, "entries": []}\n')
    sig = sign(str(path), keys[0])
    return str(path), sig


def test_sign_writes_sig_and_verify_accepts(tmp_path, keys, signed):
    path, sig = signed
    assert sig == path + '.sig'
    assert open(sig).read().startswith('-----BEGIN SSH SIGNATURE-----')
    result = verify(path, None, allowed(tmp_path, [keys[0]]), 'stagehand')
    assert result['fingerprint'].startswith('SHA256:')
    assert result['identity'] == 'stagehand'
    # no work files left beside the signed file
    expected = ['allowed_signers', 'good', 'good.pub', 'manifest.json', 'manifest.json.sig', 'other', 'other.pub']
    assert sorted(os.listdir(os.path.dirname(path))) == expected


def test_sign_again_replaces_the_signature(tmp_path, keys, signed):
    path, sig = signed
    with open(path, 'a') as f:
        f.write('more\n')
    sign(path, keys[0])
    verify(path, sig, allowed(tmp_path, [keys[0]]), 'stagehand')


def test_missing_signature(tmp_path, keys):
    path = tmp_path / 'm.json'
    path.write_text('x')
    with pytest.raises(SignatureError) as exc:
        verify(str(path), None, allowed(tmp_path, [keys[0]]), 'stagehand')
    assert exc.value.reason == 'missing_signature'
    assert 'is not signed' in exc.value.msg and str(path) + '.sig' in exc.value.msg


def test_wrong_key(tmp_path, keys, signed):
    path, sig = signed
    with pytest.raises(SignatureError) as exc:
        verify(path, sig, allowed(tmp_path, [keys[1]]), 'stagehand')
    assert exc.value.reason == 'wrong_key'
    assert 'not an allowed signer' in exc.value.msg and 'SHA256:' in exc.value.msg


def test_wrong_identity_is_a_key_not_allowed(tmp_path, keys, signed):
    path, sig = signed
    with pytest.raises(SignatureError) as exc:
        verify(path, sig, allowed(tmp_path, [keys[0]], principal='someone-else'), 'stagehand')
    assert exc.value.reason == 'wrong_key'


def test_tampered_file(tmp_path, keys, signed):
    path, sig = signed
    with open(path, 'a') as f:
        f.write(' ')
    with pytest.raises(SignatureError) as exc:
        verify(path, sig, allowed(tmp_path, [keys[0]]), 'stagehand')
    assert exc.value.reason == 'tampered'
    assert 'changed after it was signed' in exc.value.msg


def test_other_namespace(tmp_path, keys):
    path = tmp_path / 'f'
    path.write_text('x')
    sign(str(path), keys[0], namespace='git')
    with pytest.raises(SignatureError) as exc:
        verify(str(path), None, allowed(tmp_path, [keys[0]]), 'stagehand')
    assert exc.value.reason == 'wrong_namespace'


def test_garbage_signature(tmp_path, keys):
    path = tmp_path / 'f'
    path.write_text('x')
    (tmp_path / 'f.sig').write_text('not a signature\n')
    with pytest.raises(SignatureError) as exc:
        verify(str(path), None, allowed(tmp_path, [keys[0]]), 'stagehand')
    assert exc.value.reason == 'bad_signature'


def test_missing_allowed_signers(tmp_path, signed):
    path, sig = signed
    with pytest.raises(SignatureError) as exc:
        verify(path, sig, str(tmp_path / 'nope'), 'stagehand')
    assert exc.value.reason == 'missing_allowed_signers'
    assert str(tmp_path / 'nope') in exc.value.msg


def test_missing_file(tmp_path, keys):
    with pytest.raises(SignatureError) as exc:
        verify(str(tmp_path / 'gone'), None, allowed(tmp_path, [keys[0]]), 'stagehand')
    assert exc.value.reason == 'missing_file'


def test_missing_key_for_signing(tmp_path):
    path = tmp_path / 'f'
    path.write_text('x')
    with pytest.raises(SignatureError) as exc:
        sign(str(path), str(tmp_path / 'nokey'))
    assert exc.value.reason == 'missing_key'
    assert not (tmp_path / 'f.sig').exists()


def test_passphrase_key_fails_instead_of_hanging(tmp_path):
    key = str(tmp_path / 'locked')
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', 'secret', '-f', key], check=True)
    path = tmp_path / 'f'
    path.write_text('x')
    old = os.environ.pop('SSH_AUTH_SOCK', None)
    try:
        with pytest.raises(SignatureError) as exc:
            sign(str(path), key)
    finally:
        if old is not None:
            os.environ['SSH_AUTH_SOCK'] = old
    assert exc.value.reason == 'sign_failed'
    assert not (tmp_path / 'f.sig').exists()


def test_ssh_keygen_missing(tmp_path, monkeypatch, keys, signed):
    path, sig = signed
    monkeypatch.setenv('PATH', str(tmp_path / 'empty'))
    with pytest.raises(SignatureError) as exc:
        verify(path, sig, allowed(tmp_path, [keys[0]]), 'stagehand')
    assert exc.value.reason == 'no_ssh_keygen'
    assert 'ssh-keygen is not installed' in exc.value.msg
    assert _signing.NAMESPACE == 'stagehand'


def test_key_fingerprint_matches_the_signature(tmp_path, keys, signed):
    path, sig = signed
    assert _signing.key_fingerprint(keys[0]) == _signing.fingerprint(path, sig)
    assert _signing.key_fingerprint(keys[1]) != _signing.fingerprint(path, sig)
    assert _signing.key_fingerprint(str(tmp_path / 'missing')) is None
