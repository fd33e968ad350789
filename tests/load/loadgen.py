# Copyright (c) 2026, Stagehand Deploy contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Load generator for the zero-downtime checks. Runs ON the target, against its own loopback.

Workers send requests to http://127.0.0.1:PORT (alternating the front page and the probe
endpoint, one connection per request) until a stop file appears or the time limit is reached;
the number of requests and the time are both bounded. A watcher polls the live pointer
(``readlink current``) every few milliseconds and records when it changes. The summary (JSON on
stdout, and in ``--output`` when given, written atomically) counts:

* ``non_2xx``: responses with a status outside 200-299,
* ``socket_errors``: connections refused or reset, timeouts, truncated responses,
* ``bad_probes``: probe answers that are not the probe's JSON,
* ``mixed``: probe responses whose request started in one release and included a file of
  another (the probe reports it),
* ``stale``: responses from a release other than the live one for requests that started more
  than ``--grace`` seconds (default 1) after the live pointer last changed,

plus ``requests``, ``ok``, ``probes``, ``switches`` (changes of the live pointer seen),
``pointer_changes``, ``responses_by_release``, ``latency_ms`` (p50, p99 and max of the front
page's 2xx responses), ``in_flight_at_switch`` and
``probes_in_flight_at_switch`` (2xx responses to requests that were running when the pointer
changed: the requests a switch could have broken; if there were none, zero errors would prove
little), ``errors_by_cause`` (e.g. ``non_2xx: / 502``), ``first_error`` and ``last_error``
(seconds since the start) and up to 30 ``examples`` of what went wrong (3 per cause), each with
its time in seconds since the start.

``--ready-file`` is created once the first 2xx response has arrived, so a caller can wait for
the load to be running before it deploys. Example (on the target):

    python3 loadgen.py --link /srv/www/app/current --duration 300 --stop-file /tmp/stop \\
        --output /tmp/summary.json --ready-file /tmp/ready

Only the standard library is used, so it runs with the target's python3 (3.8 or later).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time

MAX_EXAMPLES = 30
EXAMPLES_PER_CAUSE = 3


class Stats:
    """Counters shared by the workers (every change under ``lock``)."""

    def __init__(self, began: float) -> None:
        self.lock = threading.Lock()
        self.began = began
        self.total = 0
        self.ok = 0
        self.non_2xx = 0
        self.socket_errors = 0
        self.mixed = 0
        self.bad_probes = 0
        self.probes = 0
        # (start, end, X-Release, is a probe) of every 2xx response, for the analysis at the end
        self.samples: list[tuple[float, float, str, bool]] = []
        self.causes: dict[str, int] = {}
        self.first_error: float | None = None
        self.last_error: float | None = None
        self.examples: list[str] = []

    def note(self, kind: str, cause: str, example: str) -> None:
        """Count one failure of ``kind`` (a counter), grouped by ``cause``; keep a few examples of each cause."""
        when = time.monotonic() - self.began
        with self.lock:
            setattr(self, kind, getattr(self, kind) + 1)
            key = '%s: %s' % (kind, cause)
            seen = self.causes.get(key, 0)
            self.causes[key] = seen + 1
            if self.first_error is None:
                self.first_error = when
            self.last_error = when
            if seen < EXAMPLES_PER_CAUSE and len(self.examples) < MAX_EXAMPLES:
                self.examples.append('+%.3f s %s: %s' % (when, kind, example))


def watch_pointer(link: str, stop: threading.Event, changes: list[tuple[float, str]], release_file: str = '') -> None:
    """Record every change of what the live pointer designates: the basename of its target, or with
    ``release_file`` (A/B slots, where a slot holds different releases over time) the content of that
    file in the target."""
    last = None
    while not stop.is_set():
        try:
            target = os.path.basename(os.readlink(link))
            if release_file:
                raw = os.readlink(link)
                with open(os.path.join(os.path.dirname(link), raw, release_file), encoding='utf-8') as f:
                    target = f.read().strip()
        except OSError:
            target = None
        if target != last:
            changes.append((time.monotonic(), target or ''))
            last = target
        time.sleep(0.002)


def touch(path: str) -> None:
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write('%d\n' % os.getpid())


def worker(args: argparse.Namespace, stats: Stats, stop: threading.Event, deadline: float, ready: threading.Event) -> None:
    paths = ['/', '/probe?ms=%d' % args.probe_ms]
    i = 0
    while not stop.is_set() and time.monotonic() < deadline:
        with stats.lock:
            if stats.total >= args.max_requests:
                return
            stats.total += 1
        path = paths[i % 2]
        i += 1
        started = time.monotonic()
        conn = http.client.HTTPConnection('127.0.0.1', args.port, timeout=args.timeout)
        try:
            conn.request('GET', path, headers={'Connection': 'close'})
            resp = conn.getresponse()
            body = resp.read()
            release = resp.getheader('X-Release') or ''
        except (OSError, http.client.HTTPException) as exc:
            stats.note('socket_errors', '%s %s' % (path.partition('?')[0], exc.__class__.__name__), '%s %s: %s' % (path, exc.__class__.__name__, exc))
            # back off a little, so a server that refuses connections is not hammered
            stop.wait(max(args.pause_ms, 10) / 1000.0)
            continue
        finally:
            conn.close()
        if args.pause_ms:
            stop.wait(args.pause_ms / 1000.0)
        if not 200 <= resp.status < 300:
            stats.note('non_2xx', '%s %d' % (path.partition('?')[0], resp.status), '%s %d release=%r body=%r' % (path, resp.status, release, body[:80]))
            continue
        with stats.lock:
            stats.ok += 1
            stats.samples.append((started, time.monotonic(), release, path != paths[0]))
        if not ready.is_set():
            ready.set()
            if args.ready_file:
                touch(args.ready_file)
        if path.startswith('/probe'):
            with stats.lock:
                stats.probes += 1
            try:
                report = json.loads(body.decode('utf-8'))
            except ValueError:
                stats.note('bad_probes', 'not JSON', '%s answered 2xx with a body that is not probe JSON: %r' % (path, body[:120]))
                continue
            if not isinstance(report, dict) or 'mixed' not in report:
                stats.note('bad_probes', 'not a probe report', '%s answered 2xx with JSON that is not a probe report: %r' % (path, body[:120]))
            elif report.get('mixed'):
                stats.note('mixed', '%s -> %s' % (report.get('start'), report.get('end')), 'start=%s end=%s' % (report.get('start'), report.get('end')))


def live_during(changes: list[tuple[float, str]], start: float, end: float) -> set[str]:
    """Releases the pointer designated at any moment of [start, end]."""
    live = set()
    current = None
    for when, target in changes:
        if when <= start:
            current = target
        elif when <= end:
            live.add(target)
    if current is not None:
        live.add(current)
    return live


def stale_count(samples: list[tuple[float, float, str, bool]], changes: list[tuple[float, str]], grace: float) -> tuple[int, list[str]]:
    """Responses from a release that was not live at any moment from ``grace`` s before the request to its end.

    The watcher polls every few milliseconds, so the window is widened by 20 ms at
    the end for a change the watcher had not seen yet.
    """
    stale = 0
    examples = []
    for started, ended, release, _probe in samples:
        if not release or not changes or started - grace < changes[0][0]:
            continue
        live = live_during(changes, started - grace, ended + 0.02)
        if release not in live:
            stale += 1
            if len(examples) < 10:
                examples.append('request at +%.3f s served by %s while live was %s' % (started - changes[0][0], release, sorted(live)))
    return stale, examples


def in_flight_at_switch(samples: list[tuple[float, float, str, bool]], changes: list[tuple[float, str]]) -> tuple[int, int]:
    """How many 2xx responses, and how many of them probes, were in flight when the live pointer changed.

    These are the requests a switch (and the php-fpm reload after it) could have broken or
    mixed: if there were none, zero errors would prove little.
    """
    switched = [when for when, _target in changes[1:]]
    requests = probes = 0
    for started, ended, _release, probe in samples:
        if any(started < when < ended for when in switched):
            requests += 1
            probes += int(probe)
    return requests, probes


def latency_ms(samples: list[tuple[float, float, str, bool]]) -> dict[str, float]:
    """p50, p99 and max of the front page's response time in milliseconds (probes sleep on purpose)."""
    times = sorted((ended - started) * 1000.0 for started, ended, _release, probe in samples if not probe)
    if not times:
        return {}
    return {
        'p50': round(times[len(times) // 2], 1),
        'p99': round(times[min(len(times) - 1, len(times) * 99 // 100)], 1),
        'max': round(times[-1], 1),
    }


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and rename(2), so a reader sees all or nothing."""
    tmp = '%s.%d.tmp' % (path, os.getpid())
    with open(tmp, 'w', encoding='utf-8') as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--port', type=int, default=80, help='port of the web server on 127.0.0.1')
    parser.add_argument('--link', required=True, help='the live pointer to watch, e.g. /srv/www/app/current')
    parser.add_argument('--workers', type=int, default=8, help='concurrent clients (1-64)')
    parser.add_argument('--duration', type=float, default=120.0, help='hard time limit in seconds (at most 3600)')
    parser.add_argument('--max-requests', type=int, default=200000, help='hard limit of requests (at most 1000000)')
    parser.add_argument('--stop-file', default='', help='stop early when this file exists')
    parser.add_argument('--ready-file', default='', help='create this file once the first 2xx response arrived')
    parser.add_argument('--output', default='', help='also write the JSON summary to this file (atomically)')
    parser.add_argument('--probe-ms', type=int, default=50, help='how long each probe request sleeps (0-2000)')
    parser.add_argument('--pause-ms', type=int, default=0, help='pause of each worker after each response (0-10000)')
    parser.add_argument('--timeout', type=float, default=10.0, help='socket timeout of one request, in seconds')
    parser.add_argument('--release-file', default='',
                        help='name the live release by this file in the pointer target (e.g. RELEASE, for A/B slots) instead of the target name')
    parser.add_argument('--grace', type=float, default=1.0, help='seconds after a switch during which the old release may still answer')
    args = parser.parse_args(argv)
    limits = [
        ('--port', args.port, 1, 65535),
        ('--workers', args.workers, 1, 64),
        ('--duration', args.duration, 0.1, 3600),
        ('--max-requests', args.max_requests, 1, 1000000),
        ('--probe-ms', args.probe_ms, 0, 2000),
        ('--pause-ms', args.pause_ms, 0, 10000),
        ('--timeout', args.timeout, 0.1, 120),
        ('--grace', args.grace, 0, 60),
    ]
    for option, value, low, high in limits:
        if not low <= value <= high:
            parser.error('%s %s is out of range: use a value from %s to %s' % (option, value, low, high))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    stats = Stats(began)
    stop = threading.Event()
    ready = threading.Event()
    changes: list[tuple[float, str]] = []
    deadline = began + args.duration
    watcher = threading.Thread(target=watch_pointer, args=(args.link, stop, changes, args.release_file), daemon=True)
    watcher.start()
    threads = [threading.Thread(target=worker, args=(args, stats, stop, deadline, ready), daemon=True) for _worker in range(args.workers)]
    for thread in threads:
        thread.start()
    stopped_by = 'duration'
    while time.monotonic() < deadline:
        if not any(thread.is_alive() for thread in threads):
            stopped_by = 'max_requests'
            break
        if args.stop_file and os.path.exists(args.stop_file):
            stopped_by = 'stop_file'
            break
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(args.timeout + 1)
    watcher.join(1)
    with stats.lock:
        samples = list(stats.samples)
    stale, stale_examples = stale_count(samples, list(changes), args.grace)
    in_flight, probes_in_flight = in_flight_at_switch(samples, list(changes))
    releases: dict[str, int] = {}
    for sample in samples:
        releases[sample[2]] = releases.get(sample[2], 0) + 1
    summary = {
        'seconds': round(time.monotonic() - began, 2),
        'stopped_by': stopped_by,
        'requests': stats.total,
        'ok': stats.ok,
        'non_2xx': stats.non_2xx,
        'socket_errors': stats.socket_errors,
        'mixed': stats.mixed,
        'bad_probes': stats.bad_probes,
        'probes': stats.probes,
        'stale': stale,
        'switches': max(len(changes) - 1, 0),
        'pointer_changes': [target for _when, target in changes],
        'responses_by_release': releases,
        'latency_ms': latency_ms(samples),
        'in_flight_at_switch': in_flight,
        'probes_in_flight_at_switch': probes_in_flight,
        'errors_by_cause': stats.causes,
        'first_error': None if stats.first_error is None else round(stats.first_error, 3),
        'last_error': None if stats.last_error is None else round(stats.last_error, 3),
        'examples': stats.examples + stale_examples,
        'options': {'workers': args.workers, 'probe_ms': args.probe_ms, 'pause_ms': args.pause_ms,
                    'duration': args.duration, 'max_requests': args.max_requests, 'grace': args.grace},
    }
    text = json.dumps(summary, indent=2, sort_keys=True) + '\n'
    if args.output:
        write_atomic(args.output, text)
    sys.stdout.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
