<?php

declare(strict_types=1);

namespace TaskGate;

/**
 * One task as the server reports it (openapi.yaml, `Task`). Read it as properties (`$task->status`) or as an array
 * (`$task['status']`); `toArray()` gives the decoded JSON as the server sent it.
 *
 * `id` is the server's id: `t-...` when none was given, else `<uid>~<your id>` (`~<your id>` without a uid).
 *
 * @implements \ArrayAccess<string, mixed>
 */
final class Task implements \ArrayAccess, \JsonSerializable
{
    /** The statuses a task does not leave. */
    public const FINAL_STATUSES = ['succeeded', 'failed', 'cancelled', 'timed_out'];

    public readonly string $id;
    public readonly string $cmd;
    public readonly ?string $uid;
    /** @var array<string, mixed> */
    public readonly array $args;
    /**
     * scheduled, queued, running, succeeded, failed, cancelled or timed_out. `scheduled` (not final): waiting for
     * its `runAt`; it goes straight to `running` when a worker takes it at or after that time.
     */
    public readonly string $status;
    public readonly float $progress;
    /** The handler's result (any JSON value, decoded to arrays); null until the task succeeds. */
    public readonly mixed $result;
    public readonly ?string $error;
    public readonly int $attempts;
    public readonly ?string $createdAt;
    public readonly ?string $startedAt;
    public readonly ?string $finishedAt;
    public readonly ?string $node;
    /** 0-9, 0 runs first: `args.priority`, else the handler's default (0 when the server does not say). */
    public readonly int $priority;
    /** When a delayed or scheduled task is due (RFC 3339, UTC); null otherwise. */
    public readonly ?string $runAt;
    /** The name of the recurring schedule that created the task; null otherwise. */
    public readonly ?string $schedule;

    /**
     * @param array<string, mixed> $data     the task's JSON object, decoded
     * @param bool                 $duplicate the answer to a submit said the id existed already (200, not 202)
     */
    public function __construct(private readonly array $data, public readonly bool $duplicate = false)
    {
        if (!isset($data['id'], $data['status']) || !is_string($data['id']) || !is_string($data['status'])) {
            throw new \UnexpectedValueException('not a TaskGate task: ' . substr(json_encode($data) ?: '', 0, 200));
        }
        $this->id = $data['id'];
        $this->cmd = (string) ($data['cmd'] ?? '');
        $this->uid = isset($data['uid']) ? (string) $data['uid'] : null;
        $this->args = is_array($data['args'] ?? null) ? $data['args'] : [];
        $this->status = $data['status'];
        $this->progress = (float) ($data['progress'] ?? 0);
        $this->result = $data['result'] ?? null;
        $this->error = isset($data['error']) ? (string) $data['error'] : null;
        $this->attempts = (int) ($data['attempts'] ?? 0);
        $this->createdAt = isset($data['createdAt']) ? (string) $data['createdAt'] : null;
        $this->startedAt = isset($data['startedAt']) ? (string) $data['startedAt'] : null;
        $this->finishedAt = isset($data['finishedAt']) ? (string) $data['finishedAt'] : null;
        $this->node = isset($data['node']) ? (string) $data['node'] : null;
        $this->priority = (int) ($data['priority'] ?? 0);
        $this->runAt = isset($data['runAt']) ? (string) $data['runAt'] : null;
        $this->schedule = isset($data['schedule']) ? (string) $data['schedule'] : null;
    }

    /** The task has reached a final status (succeeded, failed, cancelled or timed_out). */
    public function isFinished(): bool
    {
        return in_array($this->status, self::FINAL_STATUSES, true);
    }

    public function isSucceeded(): bool
    {
        return $this->status === 'succeeded';
    }

    /** @return array<string, mixed> the task's JSON object as the server sent it */
    public function toArray(): array
    {
        return $this->data;
    }

    /** @return array<string, mixed> */
    public function jsonSerialize(): array
    {
        return $this->data;
    }

    public function offsetExists(mixed $offset): bool
    {
        return array_key_exists($offset, $this->data);
    }

    public function offsetGet(mixed $offset): mixed
    {
        return $this->data[$offset] ?? null;
    }

    public function offsetSet(mixed $offset, mixed $value): void
    {
        throw new \LogicException('a Task is read-only');
    }

    public function offsetUnset(mixed $offset): void
    {
        throw new \LogicException('a Task is read-only');
    }
}
