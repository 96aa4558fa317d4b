<?php

declare(strict_types=1);

// Makes an RSA key pair for the RS256 tests: php tests/make-rsa-keys.php DIR NAME
// writes DIR/NAME.pem (the public key, for `taskgate serve --token-key`; its kid is NAME) and
// DIR/NAME.private.pem (the private key, for TokenMinter::rs256), and prints both paths.

if ($argc !== 3) {
    fwrite(STDERR, "usage: php make-rsa-keys.php DIR NAME\n");
    exit(2);
}
[, $dir, $name] = $argv;
if (!preg_match('/^[A-Za-z0-9._-]+$/D', $name) || !is_dir($dir)) {
    fwrite(STDERR, "DIR must exist and NAME be a plain file name\n");
    exit(2);
}
$key = openssl_pkey_new(['private_key_type' => OPENSSL_KEYTYPE_RSA, 'private_key_bits' => 2048]);
if ($key === false || !openssl_pkey_export($key, $private)) {
    fwrite(STDERR, 'openssl: ' . openssl_error_string() . "\n");
    exit(1);
}
$public = openssl_pkey_get_details($key)['key'];
$publicPath = rtrim($dir, '/') . "/$name.pem";
$privatePath = rtrim($dir, '/') . "/$name.private.pem";
file_put_contents($privatePath, $private);
chmod($privatePath, 0600);
file_put_contents($publicPath, $public);
echo $publicPath, "\n", $privatePath, "\n";
