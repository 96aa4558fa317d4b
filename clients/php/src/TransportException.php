<?php

declare(strict_types=1);

namespace TaskGate;

/**
 * No usable answer from the server: it could not be reached, did not answer in time, or answered something that is
 * not a TaskGate response (not JSON). `getCode()` is curl's error number (0 when curl itself succeeded).
 */
class TransportException extends \RuntimeException implements ClientExceptionInterface
{
    public function __construct(
        string $message,
        int $curlErrno = 0,
        private readonly string $method = '',
        private readonly string $url = '',
        ?\Throwable $previous = null,
    ) {
        parent::__construct($message, $curlErrno, $previous);
    }

    /** The request ran into its time limit (connect or total). */
    public function isTimeout(): bool
    {
        return $this->getCode() === CURLE_OPERATION_TIMEDOUT;
    }

    public function getMethod(): string
    {
        return $this->method;
    }

    /** The URL of the request (tokens in the query are not part of it: the client sends none there). */
    public function getUrl(): string
    {
        return $this->url;
    }
}
