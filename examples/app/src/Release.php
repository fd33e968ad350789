<?php

declare(strict_types=1);

namespace App;

/**
 * The name of the release this code belongs to.
 *
 * The build writes a one-line file RELEASE into the release root. It is found
 * relative to this file (src/ is one level below the root), never through the
 * `current` symlink, so the code always names the release it was loaded from.
 */
final class Release
{
    public const UNKNOWN = 'unknown';

    /** The root directory of the release this code was loaded from. */
    public static function root(): string
    {
        return dirname(__DIR__);
    }

    /** The release of the running code. */
    public static function current(): string
    {
        return self::read(self::root());
    }

    /**
     * Read the RELEASE file of the release rooted at $root.
     *
     * Returns 'unknown' when the file is missing or does not hold a valid release
     * name (letters, digits, '.', '_', '-', at most 128, not starting with '.'),
     * so the value is always safe to put in a header or a cache key.
     */
    public static function read(string $root): string
    {
        $content = @file_get_contents($root . '/RELEASE');
        $name = $content === false ? '' : trim($content);

        return preg_match('/^(?!\.)[A-Za-z0-9._-]{1,128}$/D', $name) === 1 ? $name : self::UNKNOWN;
    }
}
