<?php

/*
 * Front controller of the stagehand.deploy example app: a tiny router over
 *   /        a page naming its release, a visit counter (MariaDB) and a cached value (memcached)
 *   /health  200 + JSON when the database and memcached answer, 500 otherwise
 *   /probe   ?ms=N: proves a request runs one release from start to end
 * Every response carries the header X-Release: <release>.
 */

declare(strict_types=1);

use App\Cache;
use App\Config;
use App\Database;
use App\Release;
use App\Response;
use App\Visits;

require __DIR__ . '/../vendor/autoload.php';

const GREETING = 'Hello from the stagehand example app!';

// Read once, when the request starts.
$release = Release::current();
$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';

try {
    $response = match ($path) {
        '/' => home($release),
        '/health' => health($release),
        '/probe' => probe($release, $_GET['ms'] ?? '0'),
        default => Response::text("not found\n", 404),
    };
} catch (Throwable $e) {
    error_log("example app ($release): $e");
    $response = Response::text("internal error\n", 500);
}
$response->send($release);

/** The settings of this release, from .env in the release root (a link to shared/.env). */
function config(): Config
{
    static $config = null;

    return $config ??= Config::load(Release::root() . '/.env');
}

function home(string $release): Response
{
    $visits = (new Visits((new Database(config()))->pdo()))->record($release);
    $cache = Cache::fromConfig(config(), $release);
    // The time this release first served the page, kept in its own cache namespace.
    $firstSeen = $cache->remember('first_seen', gmdate(DATE_ATOM)) ?? 'unknown (memcached unreachable)';

    return Response::text(GREETING . "\n"
        . "release: $release\n"
        . "visits: $visits\n"
        . "first seen: $firstSeen (memcached key {$cache->key('first_seen')})\n");
}

function health(string $release): Response
{
    $checks = [
        'db' => check('db', fn () => (new Database(config()))->ping()),
        'cache' => check('cache', fn () => Cache::fromConfig(config(), $release)->ping()),
    ];
    $healthy = !in_array('error', $checks, true);

    return Response::json(['release' => $release] + $checks, $healthy ? 200 : 500);
}

/** Run one health check: 'ok', or 'error' with the reason in the error log. */
function check(string $name, callable $probe): string
{
    try {
        $probe();

        return 'ok';
    } catch (Throwable $e) {
        error_log("example app health check $name failed: {$e->getMessage()}");

        return 'error';
    }
}

/**
 * Read the release when the request starts, sleep, then include src/Probe/Late.php
 * through the document root the web server passed (as much PHP code includes its
 * files) and let it read the release again from its own location. With nginx's
 * $realpath_root the document root is the release directory, resolved once when
 * the request started, so both readings agree even when `current` is switched
 * during the sleep. A document root through the `current` symlink is resolved
 * again at the include and lands in the new release: "mixed": true.
 */
function probe(string $start, mixed $ms): Response
{
    $ms = filter_var($ms, FILTER_VALIDATE_INT, ['options' => ['min_range' => 0, 'max_range' => 2000]]);
    if ($ms === false) {
        return Response::text("ms must be an integer from 0 to 2000\n", 400);
    }
    usleep($ms * 1000);
    // Forget PHP's cache of resolved paths, as if its TTL had run out during
    // the sleep, so the path below is resolved now.
    clearstatcache(true);
    // __DIR__ would not do: PHP resolves symlinks in it when the script starts.
    $documentRoot = (string) ($_SERVER['DOCUMENT_ROOT'] ?? '') ?: __DIR__;
    $end = include $documentRoot . '/../src/Probe/Late.php';

    return Response::json(['start' => $start, 'end' => $end, 'mixed' => $start !== $end, 'ms' => $ms]);
}
