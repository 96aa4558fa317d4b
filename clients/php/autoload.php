<?php

declare(strict_types=1);

// For projects that do not use Composer: `require 'path/to/clients/php/autoload.php';`
// (With Composer, its own autoloader maps TaskGate\ to src/ as composer.json says.)
spl_autoload_register(static function (string $class): void {
    $prefix = 'TaskGate\\';
    if (strncmp($class, $prefix, strlen($prefix)) !== 0) {
        return;
    }
    $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
