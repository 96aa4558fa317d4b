<?php

declare(strict_types=1);

/*
 * A tiny test harness (PHPUnit is not needed): cases are closures grouped by what they need, assertions throw
 * AssertionFailed, and the output is one line per case plus a closing "N passed, N failed, N skipped".
 */

namespace TaskGate\Tests;

final class AssertionFailed extends \RuntimeException
{
}

final class Skipped extends \RuntimeException
{
}

final class Runner
{
    /** @var array<string, list<array{string, \Closure}>> */
    private array $cases = [];
    /** @var array<string, string|null> group => why it cannot run (null: it can) */
    private array $unavailable = [];

    /** @param string|null $unavailable why the group's cases cannot run here (e.g. an environment variable is unset) */
    public function group(string $group, ?string $unavailable): void
    {
        $this->unavailable[$group] = $unavailable;
        $this->cases[$group] ??= [];
    }

    public function add(string $group, string $name, \Closure $case): void
    {
        $this->cases[$group][] = [$name, $case];
    }

    /**
     * Runs every group (those that cannot run are skipped), or only the named ones (which then must be able to run).
     *
     * @param list<string> $only
     * @return int exit status: 0 when nothing failed
     */
    public function run(array $only): int
    {
        foreach ($only as $group) {
            if (!array_key_exists($group, $this->cases)) {
                fwrite(STDERR, "unknown group '$group'; groups: " . implode(', ', array_keys($this->cases)) . "\n");
                return 2;
            }
        }
        $passed = $failed = $skipped = 0;
        $number = 0;
        $total = 0;
        foreach ($this->cases as $group => $cases) {
            if ($only === [] || in_array($group, $only, true)) {
                $total += count($cases);
            }
        }
        echo "1..$total\n";
        foreach ($this->cases as $group => $cases) {
            if ($only !== [] && !in_array($group, $only, true)) {
                continue;
            }
            $why = $this->unavailable[$group] ?? null;
            foreach ($cases as [$name, $case]) {
                $number++;
                $label = "$group: $name";
                if ($why !== null) {
                    if ($only !== []) {
                        $failed++;
                        echo "not ok $number - $label\n  # cannot run: $why\n";
                    } else {
                        $skipped++;
                        echo "ok $number - $label # SKIP $why\n";
                    }
                    continue;
                }
                $started = hrtime(true);
                try {
                    $case();
                    $passed++;
                    printf("ok %d - %s (%.2f s)\n", $number, $label, (hrtime(true) - $started) / 1e9);
                } catch (Skipped $e) {
                    $skipped++;
                    echo "ok $number - $label # SKIP {$e->getMessage()}\n";
                } catch (\Throwable $e) {
                    $failed++;
                    echo "not ok $number - $label\n";
                    $detail = $e instanceof AssertionFailed
                        ? $e->getMessage()
                        : get_class($e) . ': ' . $e->getMessage() . "\n" . $e->getTraceAsString();
                    foreach (explode("\n", $detail) as $line) {
                        echo "  # $line\n";
                    }
                }
            }
        }
        echo "$passed passed, $failed failed, $skipped skipped\n";
        return $failed === 0 ? 0 : 1;
    }
}

function fail(string $message): never
{
    throw new AssertionFailed($message);
}

function skip(string $why): never
{
    throw new Skipped($why);
}

function show(mixed $value): string
{
    if ($value instanceof \TaskGate\Task) {
        $value = $value->toArray();
    }
    return is_string($value) ? var_export($value, true) : (json_encode($value, JSON_UNESCAPED_SLASHES) ?: var_export($value, true));
}

function assertSame(mixed $expected, mixed $actual, string $what = ''): void
{
    if ($expected !== $actual) {
        fail(($what !== '' ? "$what: " : '') . 'expected ' . show($expected) . ', got ' . show($actual));
    }
}

/** $value with every object's keys sorted (JSON objects have no order; the server sorts its keys). */
function sortedKeys(mixed $value): mixed
{
    if (!is_array($value)) {
        return $value;
    }
    if (!array_is_list($value)) {
        ksort($value);
    }
    return array_map(__NAMESPACE__ . '\\sortedKeys', $value);
}

function assertTrue(bool $condition, string $what): void
{
    if (!$condition) {
        fail($what);
    }
}

/**
 * Runs $fn, which must throw $class; returns the exception for more checks.
 *
 * @template T of \Throwable
 * @param class-string<T> $class
 * @return T
 */
function assertThrows(string $class, \Closure $fn, string $what = ''): \Throwable
{
    try {
        $fn();
    } catch (\Throwable $e) {
        if ($e instanceof $class) {
            return $e;
        }
        fail(($what !== '' ? "$what: " : '') . "expected $class, got " . get_class($e) . ': ' . $e->getMessage());
    }
    fail(($what !== '' ? "$what: " : '') . "expected $class, nothing was thrown");
}

/** A TaskGateException with this status and error slug. */
function assertApiError(int $status, string $errorCode, \Closure $fn): \TaskGate\TaskGateException
{
    $e = assertThrows(\TaskGate\TaskGateException::class, $fn);
    assertSame($status, $e->getStatus(), 'status of ' . $e->getMessage());
    assertSame($status, $e->getCode(), 'getCode()');
    assertSame($errorCode, $e->getErrorCode(), 'error slug of ' . $e->getMessage());
    assertTrue($e->getInfo() !== '', 'the error has an info text');
    assertTrue($e instanceof \TaskGate\ClientExceptionInterface, 'implements ClientExceptionInterface');
    return $e;
}

/** Calls $fn until it returns something truthy (returned), at most $timeout seconds. */
function waitUntil(\Closure $fn, float $timeout, string $what): mixed
{
    $deadline = hrtime(true) / 1e9 + $timeout;
    while (true) {
        $value = $fn();
        if ($value) {
            return $value;
        }
        if (hrtime(true) / 1e9 > $deadline) {
            fail("timed out after {$timeout} s waiting for $what");
        }
        usleep(50_000);
    }
}

function elapsed(float $since): float
{
    return hrtime(true) / 1e9 - $since;
}

function now(): float
{
    return hrtime(true) / 1e9;
}

function uid(string $prefix = 'php'): string
{
    return $prefix . '-' . bin2hex(random_bytes(6));
}

function env(string $name): ?string
{
    $value = getenv($name);
    return $value === false || $value === '' ? null : $value;
}

/**
 * One request as a browser-side client would send it (user tokens), outside the package: [status, decoded body].
 *
 * @param array<string, mixed>|null $body
 * @return array{0: int, 1: mixed}
 */
function http(string $method, string $url, ?string $bearer = null, ?array $body = null, float $timeout = 10.0): array
{
    $headers = ['Accept: application/json', 'Expect:'];
    if ($bearer !== null) {
        $headers[] = 'Authorization: Bearer ' . $bearer;
    }
    $ch = curl_init($url);
    $options = [
        CURLOPT_CUSTOMREQUEST => $method,
        CURLOPT_RETURNTRANSFER => true,
        CURLOPT_HTTPHEADER => $headers,
        CURLOPT_CONNECTTIMEOUT_MS => 5000,
        CURLOPT_TIMEOUT_MS => (int) ($timeout * 1000),
        CURLOPT_NOSIGNAL => true,
    ];
    if ($body !== null) {
        $options[CURLOPT_POSTFIELDS] = json_encode($body, JSON_THROW_ON_ERROR);
        $options[CURLOPT_HTTPHEADER][] = 'Content-Type: application/json';
    }
    curl_setopt_array($ch, $options);
    $text = curl_exec($ch);
    if ($text === false) {
        $error = curl_error($ch);
        curl_close($ch);
        fail("$method $url: $error");
    }
    $status = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
    curl_close($ch);
    return [$status, json_decode((string) $text, true)];
}

/** The header and claims of a JWT, decoded (no check of the signature). */
function jwtParts(string $token): array
{
    $parts = explode('.', $token);
    assertSame(3, count($parts), 'a JWT has three parts');
    $decode = static fn (string $part) => json_decode(
        (string) base64_decode(strtr($part, '-_', '+/') . str_repeat('=', (4 - strlen($part) % 4) % 4), true),
        true,
        512,
        JSON_THROW_ON_ERROR,
    );
    assertTrue(!str_contains($token, '='), 'base64url without padding');
    return [$decode($parts[0]), $decode($parts[1]), $parts];
}
