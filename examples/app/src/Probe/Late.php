<?php

declare(strict_types=1);

// Included by /probe after its sleep. Returns the release this file belongs
// to, read from the RELEASE file two directories above this file, so it names
// the release PHP actually took this file from at the end of the request.

return \App\Release::read(dirname(__DIR__, 2));
