<?php
// Tiny demo app for the foundation demo: names its release in a header and the body.
require __DIR__ . '/../lib/release.php';
header('X-Release: ' . RELEASE);
header('Content-Type: text/plain');
echo "hello from stagehand.deploy\n";
echo 'release: ' . RELEASE . "\n";
echo 'served from: ' . realpath(__DIR__ . '/..') . "\n";
