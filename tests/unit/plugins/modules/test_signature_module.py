# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import shutil
import subprocess

import pytest

from ansible_collections.stagehand.deploy.plugins.module_utils._signing import sign
from ansible_collections.stagehand.deploy.plugins.modules.signature import main

pytestmark = pytest.mark.skipif(shutil.which('ssh-keygen') is None, reason='needs ssh-keygen')


@pytest.fixture
def setup(tmp_path):
    keys = []
    for name in ('good', 'bad'):
        key = str(tmp_path / name)
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key], check=True)
        keys.append(key)
    allowed = tmp_path / 'allowed_signers'
    allowed.write_text('stagehand %s\n' % ' '.join(open(keys[0] + '.pub').read().split()[:2]))
    manifest = tmp_path / 'manifest.json'
    manifest.write_text('{"version": 1, "entries": []}\n')
    return {'keys': keys, 'allowed': str(allowed), 'manifest': str(manifest)}


def test_good_signature(run_module, setup):
    sign(setup['manifest'], setup['keys'][0])
    result = run_module(main, {'path': setup['manifest'], 'allowed_signers': setup['allowed']})
    assert not result.get('failed') and result['changed'] is False
    assert result['fingerprint'].startswith('SHA256:') and result['identity'] == 'stagehand'


@pytest.mark.parametrize('case, reason, words', [
    ('unsigned', 'missing_signature', ['is not signed']),
    ('wrong_key', 'wrong_key', ['not an allowed signer']),
    ('tampered', 'tampered', ['changed after it was signed']),
    ('no_allowed', 'missing_allowed_signers', ['allowed signers file']),
])
def test_refused_and_nothing_changed(run_module, setup, tmp_path, snapshot, case, reason, words):
    allowed = setup['allowed']
    if case == 'wrong_key':
        sign(setup['manifest'], setup['keys'][1])
    elif case == 'tampered':
        sign(setup['manifest'], setup['keys'][0])
        with open(setup['manifest'], 'a') as f:
            f.write('\n')
    elif case == 'no_allowed':
        sign(setup['manifest'], setup['keys'][0])
        allowed = str(tmp_path / 'missing')
    before = snapshot(str(tmp_path))
    result = run_module(main, {'path': setup['manifest'], 'allowed_signers': allowed}, check_mode=(case == 'tampered'))
    assert result['failed'] is True and result['reason'] == reason
    for word in words:
        assert word in result['msg']
    assert snapshot(str(tmp_path)) == before
