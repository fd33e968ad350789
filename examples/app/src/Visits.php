<?php

declare(strict_types=1);

namespace App;

use PDO;

/** The visit counter: one row per visit in table `visits` (migration 0001). */
final class Visits
{
    public function __construct(private readonly PDO $pdo)
    {
    }

    /** Record a visit served by $release and return the number of visits so far. */
    public function record(string $release): int
    {
        $this->pdo->prepare('INSERT INTO visits (release_name) VALUES (?)')->execute([$release]);

        return (int) $this->pdo->query('SELECT COUNT(*) FROM visits')->fetchColumn();
    }
}
