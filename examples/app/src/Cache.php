<?php

declare(strict_types=1);

namespace App;

use Memcached;
use RuntimeException;

/**
 * Memcached with every key under the namespace "<app>:<release>:".
 *
 * The release name is the version of the cached data: a new release starts
 * with an empty namespace, and after a rollback the old release reads only
 * keys it wrote itself, never a value in a newer release's format. Nothing is
 * flushed on deploy or rollback; unused namespaces age out of memcached's LRU.
 */
final class Cache
{
    private ?Memcached $client = null;

    public function __construct(
        private readonly string $host,
        private readonly int $port,
        private readonly string $namespace,
    ) {
    }

    public static function fromConfig(Config $config, string $release): self
    {
        return new self(
            $config->get('MEMCACHED_HOST', '127.0.0.1'),
            (int) $config->get('MEMCACHED_PORT', '11211'),
            $config->get('APP_NAME', 'app') . ':' . $release . ':',
        );
    }

    /** The full memcached key of $name. */
    public function key(string $name): string
    {
        return $this->namespace . $name;
    }

    /**
     * Store $value under $name unless something is stored there already, and
     * return what is stored (null when memcached cannot be reached).
     */
    public function remember(string $name, string $value, int $ttl = 0): ?string
    {
        $client = $this->client();
        $client->add($this->key($name), $value, $ttl);
        $stored = $client->get($this->key($name));

        return is_string($stored) ? $stored : null;
    }

    /** Throws when memcached cannot store a value. */
    public function ping(): void
    {
        $client = $this->client();
        if (!$client->set($this->key('health'), gmdate(DATE_ATOM), 60)) {
            throw new RuntimeException('memcached: ' . $client->getResultMessage());
        }
    }

    private function client(): Memcached
    {
        if ($this->client === null) {
            $this->client = new Memcached();
            // Fail fast when memcached is down: the page must not hang on it.
            $this->client->setOption(Memcached::OPT_CONNECT_TIMEOUT, 200);
            $this->client->setOption(Memcached::OPT_POLL_TIMEOUT, 200);
            $this->client->addServer($this->host, $this->port);
        }

        return $this->client;
    }
}
