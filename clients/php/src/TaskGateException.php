<?php

declare(strict_types=1);

namespace TaskGate;

/**
 * The server answered with an error. Error bodies look like
 * `{"type":"error","code":404,"error":"not_found","info":"no task with id 'x'"}`.
 *
 * `getStatus()` (also `getCode()`) is the HTTP status, `getErrorCode()` the slug (`not_found`, `unauthorized`,
 * `already_finished`, `queue_full`, ...), `getInfo()` the server's human-readable text.
 */
class TaskGateException extends \RuntimeException implements ClientExceptionInterface
{
    /**
     * @param int    $status    HTTP status of the answer
     * @param string $errorCode the `error` slug of the body, or `http_error` when the body was not a TaskGate error
     * @param string $info      the `info` text of the body (or the start of a body that was not JSON)
     * @param string $method    request method, for the message
     * @param string $path      request path (without the query), for the message
     */
    public function __construct(
        private readonly int $status,
        private readonly string $errorCode,
        private readonly string $info,
        private readonly string $method = '',
        private readonly string $path = '',
        private readonly string $responseBody = '',
        ?\Throwable $previous = null,
    ) {
        $where = $method !== '' ? "$method $path: " : '';
        parent::__construct("TaskGate {$where}$status $errorCode" . ($info !== '' ? ": $info" : ''), $status, $previous);
    }

    /** HTTP status code (401, 404, ...). */
    public function getStatus(): int
    {
        return $this->status;
    }

    /** The machine-readable slug of the error body, e.g. `not_found`. */
    public function getErrorCode(): string
    {
        return $this->errorCode;
    }

    /** The human-readable text of the error body. */
    public function getInfo(): string
    {
        return $this->info;
    }

    public function getMethod(): string
    {
        return $this->method;
    }

    public function getPath(): string
    {
        return $this->path;
    }

    /** The raw response body. */
    public function getResponseBody(): string
    {
        return $this->responseBody;
    }

    /**
     * Builds the exception from an error answer; a body that is not a TaskGate error still gives status and text.
     *
     * @internal
     */
    public static function fromResponse(int $status, string $body, string $method = '', string $path = ''): self
    {
        $errorCode = 'http_error';
        $info = '';
        try {
            $decoded = json_decode($body, true, 64, JSON_THROW_ON_ERROR);
        } catch (\JsonException) {
            $decoded = null;
        }
        if (is_array($decoded) && isset($decoded['error']) && is_string($decoded['error'])) {
            $errorCode = $decoded['error'];
            $info = is_string($decoded['info'] ?? null) ? $decoded['info'] : '';
        } else {
            $info = trim(substr($body, 0, 200));
        }
        return new self($status, $errorCode, $info, $method, $path, $body);
    }
}
