# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Signing and verifying files with SSH keys (``ssh-keygen -Y sign`` / ``ssh-keygen -Y verify``).

The signature of ``FILE`` is ``FILE.sig`` (an armored SSHSIG). The namespace
is ``stagehand``, so a signature made for something else (git commits, say)
with the same key is not accepted. Verification uses an OpenSSH
``allowed_signers`` file: lines of ``<principal> <key type> <base64 key>``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import typing as t

NAMESPACE = 'stagehand'
SIG_SUFFIX = '.sig'

_FPR_RE = re.compile(r'(SHA256:[A-Za-z0-9+/=]+)')


class SignatureError(Exception):
    """Signing failed, or a file is not signed by an allowed key."""

    def __init__(self, msg: str, reason: str = 'error') -> None:
        super().__init__(msg)
        self.msg = msg
        self.reason = reason


def _ssh_keygen(args: list[str], stdin: t.BinaryIO | None = None) -> tuple[int, str, str]:
    try:
        proc = subprocess.run(['ssh-keygen'] + args, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
                              # no controlling terminal: a passphrase prompt fails instead of hanging
                              start_new_session=True)
    except FileNotFoundError:
        raise SignatureError('ssh-keygen is not installed (not found in PATH): install OpenSSH 8.2 or later (the openssh-client '
                             'package) to sign and verify manifests', 'no_ssh_keygen') from None
    except OSError as exc:
        raise SignatureError('cannot run ssh-keygen: %s' % (exc.strerror or exc), 'no_ssh_keygen') from None
    return proc.returncode, proc.stdout.decode('utf-8', 'replace').strip(), proc.stderr.decode('utf-8', 'replace').strip()


def sign(path: str, key: str, namespace: str = NAMESPACE) -> str:
    """Sign ``path`` with the private key file ``key``; write and return ``path + '.sig'`` (replaced atomically)."""
    if not os.path.isfile(path):
        raise SignatureError('cannot sign %s: no such file' % path, 'missing_file')
    if not os.path.isfile(key):
        raise SignatureError('cannot sign %s: the signing key %s does not exist (create one with ssh-keygen -t ed25519 -f %s)'
                             % (path, key, key), 'missing_key')
    sig = path + SIG_SUFFIX
    # ssh-keygen asks before overwriting FILE.sig: sign a copy in a private directory, then rename the signature into place.
    work = tempfile.mkdtemp(prefix='.stagehand-sign-', dir=os.path.dirname(os.path.abspath(path)))
    try:
        copy = os.path.join(work, 'file')
        shutil.copyfile(path, copy)
        rc, out, err = _ssh_keygen(['-Y', 'sign', '-f', key, '-n', namespace, copy])
        if rc != 0 or not os.path.isfile(copy + SIG_SUFFIX):
            raise SignatureError('signing %s with %s failed (ssh-keygen exit code %d): %s%s'
                                 % (path, key, rc, err or out or 'no output',
                                    '' if 'passphrase' not in (err + out).lower()
                                    else ' (keys with a passphrase must be loaded into ssh-agent; give the public key then)'),
                                 'sign_failed')
        os.rename(copy + SIG_SUFFIX, sig)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return sig


def key_fingerprint(key: str) -> str | None:
    """The SHA256 fingerprint of a key file (private or public), or None when ssh-keygen cannot read it."""
    rc, out, _err = _ssh_keygen(['-l', '-E', 'sha256', '-f', key])
    m = _FPR_RE.search(out)
    return m.group(1) if rc == 0 and m else None


def fingerprint(path: str, sig: str, namespace: str = NAMESPACE) -> str | None:
    """The key fingerprint of a cryptographically valid signature of ``path`` (any key), else None."""
    with open(path, 'rb') as f:
        rc, out, err = _ssh_keygen(['-Y', 'check-novalidate', '-n', namespace, '-s', sig], stdin=f)
    if rc != 0:
        return None
    m = _FPR_RE.search(out + ' ' + err)
    return m.group(1) if m else 'unknown'


def verify(path: str, sig: str | None, allowed_signers: str, identity: str, namespace: str = NAMESPACE) -> dict[str, t.Any]:
    """Check that ``sig`` (default ``path + '.sig'``) is a signature of ``path`` by a key of ``identity``.

    Returns ``{"fingerprint", "identity", "namespace", "output"}``; raises
    :class:`SignatureError` with ``reason`` one of ``missing_file``,
    ``missing_signature``, ``missing_allowed_signers``, ``no_ssh_keygen``,
    ``bad_signature``, ``wrong_namespace``, ``wrong_key``, ``tampered``.
    """
    sig = sig or path + SIG_SUFFIX
    if not os.path.isfile(path):
        raise SignatureError('cannot verify %s: no such file' % path, 'missing_file')
    if not os.path.isfile(allowed_signers):
        raise SignatureError('cannot verify %s: the allowed signers file %s does not exist' % (path, allowed_signers), 'missing_allowed_signers')
    if not os.path.isfile(sig):
        raise SignatureError('%s is not signed: the signature %s is missing, and signatures are required (allowed signers %s); '
                             'sign it with ssh-keygen -Y sign -n %s, or set a signing key for the build'
                             % (path, sig, allowed_signers, namespace), 'missing_signature')
    with open(path, 'rb') as f:
        rc, out, err = _ssh_keygen(['-Y', 'verify', '-f', allowed_signers, '-I', identity, '-n', namespace, '-s', sig], stdin=f)
    if rc == 0:
        m = _FPR_RE.search(out)
        return {'fingerprint': m.group(1) if m else None, 'identity': identity, 'namespace': namespace, 'output': out}
    text = (err + ' ' + out).strip()
    low = text.lower()
    if 'unknown option' in low or 'usage:' in low:
        raise SignatureError('this ssh-keygen cannot verify signatures (OpenSSH 8.2 or later is needed): %s' % text, 'no_ssh_keygen')
    if "couldn't parse signature" in low or 'sshsig_armor' in low or 'invalid format' in low:
        raise SignatureError('%s is not a valid SSH signature (%s): %s is refused' % (sig, text, path), 'bad_signature')
    if 'namespace does not match' in low:
        raise SignatureError('%s was signed for another purpose (namespace is not %r): %s is refused' % (sig, namespace, path), 'wrong_namespace')
    if 'incorrect signature' in low:
        raise SignatureError('%s does not match its signature %s: the file was changed after it was signed (tampered or corrupt), '
                             'so it is refused' % (path, sig), 'tampered')
    signer = fingerprint(path, sig, namespace)
    if signer is not None:
        raise SignatureError('%s is signed by key %s, which is not an allowed signer for %r in %s: %s is refused'
                             % (sig, signer, identity, allowed_signers, path), 'wrong_key')
    raise SignatureError('the signature %s of %s could not be verified against %s for %r: %s' % (sig, path, allowed_signers, identity, text),
                         'bad_signature')
