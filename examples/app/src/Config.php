<?php

declare(strict_types=1);

namespace App;

use RuntimeException;

/**
 * Settings from the .env file in the release root (INI format).
 *
 * The file is read with INI_SCANNER_RAW: the text between the double quotes is
 * taken literally, so a password may contain '$', ';' or '!' unharmed.
 */
final class Config
{
    /** @param array<string, string> $values */
    private function __construct(private readonly array $values)
    {
    }

    public static function load(string $file): self
    {
        $values = is_readable($file) ? parse_ini_file($file, false, INI_SCANNER_RAW) : false;
        if ($values === false) {
            throw new RuntimeException("cannot read the configuration file $file");
        }

        return new self(array_filter($values, 'is_string'));
    }

    public function get(string $key, ?string $default = null): ?string
    {
        return $this->values[$key] ?? $default;
    }

    /** A setting that must be present. */
    public function require(string $key): string
    {
        return $this->values[$key] ?? throw new RuntimeException("setting $key is missing from .env");
    }
}
