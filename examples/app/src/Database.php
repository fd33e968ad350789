<?php

declare(strict_types=1);

namespace App;

use PDO;

/** The MariaDB connection (PDO), opened on first use. */
final class Database
{
    private ?PDO $pdo = null;

    public function __construct(private readonly Config $config)
    {
    }

    public function pdo(): PDO
    {
        return $this->pdo ??= new PDO(
            $this->config->require('DB_DSN'),
            $this->config->require('DB_USER'),
            $this->config->get('DB_PASSWORD', ''),
            [
                PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
                PDO::ATTR_DEFAULT_FETCH_MODE => PDO::FETCH_ASSOC,
                PDO::ATTR_EMULATE_PREPARES => false,
                PDO::ATTR_TIMEOUT => 2,
            ],
        );
    }

    /** Throws when the database cannot be reached. */
    public function ping(): void
    {
        $this->pdo()->query('SELECT 1');
    }
}
