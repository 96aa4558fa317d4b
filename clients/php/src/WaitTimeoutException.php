<?php

declare(strict_types=1);

namespace TaskGate;

/**
 * {@see Client::wait()} ran out of time: the task had not finished. The task is not cancelled; `getTask()` is its
 * last known state (wait again, or cancel it).
 */
class WaitTimeoutException extends \RuntimeException implements ClientExceptionInterface
{
    public function __construct(private readonly Task $task, private readonly float $timeoutSeconds)
    {
        parent::__construct(sprintf(
            'task %s did not finish within %s s (last status: %s)',
            $task->id,
            rtrim(rtrim(sprintf('%.3f', $timeoutSeconds), '0'), '.'),
            $task->status,
        ));
    }

    /** The task as last seen (still queued or running). */
    public function getTask(): Task
    {
        return $this->task;
    }

    public function getTimeoutSeconds(): float
    {
        return $this->timeoutSeconds;
    }
}
