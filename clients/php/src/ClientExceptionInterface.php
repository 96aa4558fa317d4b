<?php

declare(strict_types=1);

namespace TaskGate;

/**
 * Implemented by every exception this package throws on purpose: catch it to handle all of them at once.
 *
 * - {@see TaskGateException}: the server answered with an error status (401, 404, 409, 503, ...).
 * - {@see TransportException}: no usable answer at all (connection refused, timeout, not JSON).
 * - {@see WaitTimeoutException}: {@see Client::wait()} ran out of time before the task finished.
 *
 * Invalid arguments (a list where an object is needed, a short secret, ...) are \InvalidArgumentException.
 */
interface ClientExceptionInterface extends \Throwable
{
}
