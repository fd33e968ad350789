# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Readers going through ``current/`` never miss while the switch flips it.

Reader processes open and read files through ``<root>/current/`` in a tight
loop and count every read that fails (ENOENT, ...) or returns content that
names neither release. The main process flips ``current`` between two
releases through the same code as the module. A control run with a naive
unlink-then-symlink flip proves that the readers do notice a gap.
"""

from __future__ import annotations

import multiprocessing
import os

from ansible_collections.stagehand.deploy.plugins.module_utils import _switch
from ansible_collections.stagehand.deploy.plugins.module_utils._state import DeployRoot
from ansible_collections.stagehand.deploy.plugins.modules.switch import main

READERS = 3
FLIPS = 1000
MODULE_FLIPS = 6
# Control: flip naively in batches until the readers saw a miss, at most this many flips.
CONTROL_BATCH = 100
CONTROL_MAX_FLIPS = 200000

CTX = multiprocessing.get_context('fork')
RELEASES = ('v1', 'v2')


def index_text(name):
    return '<?php echo "%s";\n' % name


def lib_text(name):
    return '<?php // lib %s\n' % name


def make_root(tmp_path):
    root = tmp_path / 'app'
    for name in RELEASES:
        path = root / 'releases' / name
        (path / 'lib').mkdir(parents=True)
        (path / 'index.php').write_text(index_text(name))
        (path / 'lib' / 'x.php').write_text(lib_text(name))
        DeployRoot(str(root)).write_meta(name, {
            'name': name, 'status': 'complete', 'manifest_digest': None, 'created': '2026-01-01T00:00:00Z',
            'source': 'test', 'files': 2, 'bytes': 0, 'previous': None, 'next': None, 'activated': None,
            'failed_reason': None,
        })
    return str(root)


def reader(root, started, stop, shared_misses, results):
    """Read current/index.php and current/lib/x.php until told to stop; report (reads, misses, first problem)."""
    checks = (
        (os.path.join(root, 'current', 'index.php'), {index_text(n) for n in RELEASES}),
        (os.path.join(root, 'current', 'lib', 'x.php'), {lib_text(n) for n in RELEASES}),
    )
    reads = misses = 0
    first = None
    started.release()
    while not stop.is_set():
        for _round in range(20):
            for path, valid in checks:
                reads += 1
                try:
                    with open(path) as f:
                        data = f.read()
                except OSError as exc:
                    problem = '%s: %s' % (path, exc)
                else:
                    if data in valid:
                        continue
                    problem = '%s: unexpected content %r' % (path, data)
                misses += 1
                first = first or problem
                with shared_misses.get_lock():
                    shared_misses.value += 1
    results.put((reads, misses, first))


class Readers:
    def __init__(self, root):
        self.started = CTX.Semaphore(0)
        self.stop = CTX.Event()
        self.misses = CTX.Value('l', 0)
        self.results = CTX.Queue()
        self.procs = [
            CTX.Process(target=reader, args=(root, self.started, self.stop, self.misses, self.results), daemon=True)
            for _reader in range(READERS)
        ]

    def __enter__(self):
        for proc in self.procs:
            proc.start()
        for _proc in self.procs:
            assert self.started.acquire(timeout=60), 'a reader process did not start'
        return self

    def finish(self):
        """Stop the readers; return (total reads, total misses, first problem)."""
        self.stop.set()
        collected = [self.results.get(timeout=60) for _proc in self.procs]
        for proc in self.procs:
            proc.join(timeout=60)
        reads = sum(r[0] for r in collected)
        misses = sum(r[1] for r in collected)
        problems = [r[2] for r in collected if r[2]]
        return reads, misses, problems[0] if problems else None

    def __exit__(self, *exc):
        self.stop.set()
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()


def test_no_reader_ever_misses_during_atomic_flips(tmp_path, run_module):
    root = make_root(tmp_path)
    _switch.switch(root, release='v1')
    flips = 0
    with Readers(root) as readers:
        for i in range(FLIPS):
            res = _switch.switch(root, release=RELEASES[(i + 1) % 2])
            flips += res['changed']
        for i in range(MODULE_FLIPS):
            res = run_module(main, {'root': root, 'release': RELEASES[(i + 1) % 2]})
            assert res.get('failed') is not True, res
            flips += res['changed']
        reads, misses, problem = readers.finish()
    assert flips == FLIPS + MODULE_FLIPS  # every call really flipped
    assert reads > 1000, 'the readers did only %d reads: the test proves nothing' % reads
    assert misses == 0, '%d of %d reads missed, first: %s' % (misses, reads, problem)
    assert sorted(os.listdir(root)) == ['.stagehand', 'current', 'releases']  # no temporary links left


def naive_flip(root, text):
    current = os.path.join(root, 'current')
    os.unlink(current)
    os.symlink(text, current)


def test_control_naive_flip_is_caught_loop_until_miss(tmp_path):
    """Control: the same readers catch the gap of a non-atomic flip (unlink, then symlink).

    Loop-until-miss with a bound: on a slow or 2-core machine a single gap of
    a few microseconds is easily missed, so this flips in batches until the
    readers report a miss, up to CONTROL_MAX_FLIPS flips. It proves that the
    miss counter of the test above works.
    """
    root = make_root(tmp_path)
    naive_flip_count = 0
    os.symlink('releases/v1', os.path.join(root, 'current'))
    with Readers(root) as readers:
        while readers.misses.value == 0 and naive_flip_count < CONTROL_MAX_FLIPS:
            for _flip in range(CONTROL_BATCH):
                naive_flip_count += 1
                naive_flip(root, 'releases/%s' % RELEASES[naive_flip_count % 2])
        reads, misses, problem = readers.finish()
    assert reads > 0
    assert misses > 0, 'no reader noticed %d non-atomic flips (%d reads)' % (naive_flip_count, reads)
    assert 'No such file or directory' in problem
