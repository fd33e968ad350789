# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Stale-code checker for A/B slots. Runs ON the target, against its own loopback.

The example app names its release in the X-Release header from the RELEASE file, read at
run time from the directory the code was loaded from; the greeting on its front page is a
PHP constant, i.e. compiled code that opcache keeps. In slots mode the same paths hold
another release after a patch, so a response whose greeting is not the greeting of its own
X-Release was produced by code compiled from what the slot held before: stale opcache.

Workers request / (one connection per request) until the stop file appears or the time
limit is reached and count, per release, the responses whose greeting matches and those
whose greeting belongs to another release (``stale_code``). No grace period: the
invalidation runs before the flip, so not one such response is allowed.

    python3 codecheck.py --greetings '{"v1": "Hello ...", "v2": "Welcome ..."}' \\
        --stop-file /tmp/stop --output /tmp/codecheck.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time


def check(args: argparse.Namespace, greetings: dict[str, str], stats: dict, lock: threading.Lock, deadline: float) -> None:
    while time.monotonic() < deadline and not os.path.exists(args.stop_file):
        started = time.monotonic()
        try:
            conn = http.client.HTTPConnection('127.0.0.1', args.port, timeout=10)
            conn.request('GET', '/', headers={'Connection': 'close'})
            response = conn.getresponse()
            body = response.read().decode('utf-8', 'replace')
            release = response.getheader('X-Release') or ''
            status = response.status
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            with lock:
                stats['errors'] += 1
                stats['examples'].append('error: %s' % exc)
            continue
        first = body.splitlines()[0] if body else ''
        owner = [name for name, text in greetings.items() if first == text]
        with lock:
            stats['requests'] += 1
            if status != 200:
                stats['non_200'] += 1
                continue
            key = '%s: %s' % (release, owner[0] if owner else 'unknown greeting')
            stats['by_release_and_code'][key] = stats['by_release_and_code'].get(key, 0) + 1
            if release not in greetings:
                stats['unknown_release'] += 1
            elif first != greetings[release]:
                stats['stale_code'] += 1
                if len(stats['examples']) < 20:
                    stats['examples'].append('%.3f s: X-Release %s answered with the greeting %r' % (
                        started - stats['began'], release, first))
        if args.pause_ms:
            time.sleep(args.pause_ms / 1000.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--port', type=int, default=80)
    parser.add_argument('--greetings', required=True, help='JSON object: release name -> first line of its front page')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--duration', type=float, default=600.0)
    parser.add_argument('--pause-ms', type=int, default=20)
    parser.add_argument('--stop-file', required=True)
    parser.add_argument('--output', required=True)
    args = parser.parse_args(argv)
    greetings = json.loads(args.greetings)
    began = time.monotonic()
    stats = {'requests': 0, 'errors': 0, 'non_200': 0, 'stale_code': 0, 'unknown_release': 0,
             'by_release_and_code': {}, 'examples': [], 'began': began}
    lock = threading.Lock()
    threads = [threading.Thread(target=check, args=(args, greetings, stats, lock, began + args.duration))
               for worker in range(max(1, min(args.workers, 16)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats['seconds'] = round(time.monotonic() - began, 3)
    del stats['began']
    tmp = args.output + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(stats, f, indent=1, sort_keys=True)
    os.replace(tmp, args.output)
    json.dump(stats, sys.stdout, sort_keys=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
