<?php

declare(strict_types=1);

namespace TaskGate;

/**
 * A backend's client of TaskGate's REST admin API (openapi.yaml, `/api/v1/tasks...`), plus waiting for a task by
 * long-poll (`GET /poll`).
 *
 * ```php
 * $tg = new TaskGate\Client('http://127.0.0.1:9501', getenv('TASKGATE_ADMIN_TOKEN') ?: null);
 * $task = $tg->submit('sleep', ['ms' => 2000], uid: 'alice', id: 'export-4711');   // 202, or 200 for the same id
 * $done = $tg->wait($task->id, 30);                                                 // the finished task
 * ```
 *
 * Every call is bounded by a timeout (`$timeout` seconds for a whole request, `$connectTimeout` for connecting);
 * `wait()` by its own. Errors are {@see TaskGateException} (the server said no), {@see TransportException} (no usable
 * answer) and {@see WaitTimeoutException}; all implement {@see ClientExceptionInterface}.
 *
 * One Client reuses one curl handle (and so its keep-alive connection); it is not meant to be shared between threads.
 */
class Client
{
    /** Seconds one request may take in all, unless the constructor says otherwise. */
    public const DEFAULT_TIMEOUT = 10.0;
    /** Seconds to connect, unless the constructor says otherwise. */
    public const DEFAULT_CONNECT_TIMEOUT = 5.0;
    /** The longest single `GET /poll` wait() asks for, in seconds (the server allows 0-60). */
    public const POLL_SECONDS = 25;
    /** Seconds a long-poll request may take beyond the wait it asked the server for. */
    private const POLL_SLACK = 5.0;
    /** At most this long to learn the uid's latest event seq before falling back to reading its log from the start. */
    private const CURSOR_SECONDS = 5.0;

    private readonly string $baseUrl;
    private readonly ?string $adminToken;
    private ?\CurlHandle $handle = null;

    /**
     * @param string              $baseUrl        e.g. `http://127.0.0.1:9501` (a path prefix behind a proxy is kept)
     * @param string|null         $adminToken     the server's `--admin-token`; null (or '') sends none, which a server
     *                                            without a token accepts from loopback clients only
     * @param float               $timeout        seconds one request may take in all
     * @param float               $connectTimeout seconds to connect
     * @param array<int, mixed>   $curlOptions    extra curl options for every request (CURLOPT_PROXY, CURLOPT_CAINFO, ...)
     */
    public function __construct(
        string $baseUrl,
        ?string $adminToken = null,
        private readonly float $timeout = self::DEFAULT_TIMEOUT,
        private readonly float $connectTimeout = self::DEFAULT_CONNECT_TIMEOUT,
        private readonly array $curlOptions = [],
    ) {
        if (!extension_loaded('curl')) {
            throw new \LogicException('TaskGate\Client needs the curl extension (e.g. apt-get install php-curl)');
        }
        $scheme = strtolower((string) parse_url($baseUrl, PHP_URL_SCHEME));
        $host = parse_url($baseUrl, PHP_URL_HOST);
        if (!in_array($scheme, ['http', 'https'], true) || !is_string($host) || $host === '') {
            throw new \InvalidArgumentException("base URL must be http:// or https:// with a host, got '$baseUrl'");
        }
        if (parse_url($baseUrl, PHP_URL_QUERY) !== null || parse_url($baseUrl, PHP_URL_FRAGMENT) !== null) {
            throw new \InvalidArgumentException('base URL must not have a query or fragment');
        }
        if ($adminToken !== null && preg_match('/[\x00-\x20\x7f]/', $adminToken)) {
            throw new \InvalidArgumentException('admin token must not contain spaces or control characters');
        }
        if ($timeout <= 0 || $connectTimeout <= 0) {
            throw new \InvalidArgumentException('timeouts must be positive');
        }
        $this->baseUrl = rtrim($baseUrl, '/');
        $this->adminToken = $adminToken === '' ? null : $adminToken;
    }

    /** A client from `$TASKGATE_URL` (default `http://127.0.0.1:9501`) and `$TASKGATE_ADMIN_TOKEN`. */
    public static function fromEnv(): self
    {
        $url = getenv('TASKGATE_URL');
        $token = getenv('TASKGATE_ADMIN_TOKEN');
        return new self($url !== false && $url !== '' ? $url : 'http://127.0.0.1:9501', $token !== false ? $token : null);
    }

    public function __destruct()
    {
        if ($this->handle !== null) {
            curl_close($this->handle);
        }
    }

    // ------------------------------------------------------------------------------------------------ tasks

    /**
     * Submits a task (`POST /api/v1/tasks`). Returns it with `duplicate` false (202), or, when a task with this `id`
     * already exists for this uid, that task as it is now with `duplicate` true (200): nothing runs twice, so a
     * submit may be retried after a timeout.
     *
     * @param string                          $cmd  the handler, e.g. `sleep`
     * @param array<string, mixed>|object|null $args the handler's arguments (a JSON object; may include the task
     *                                              options `timeout_ms`, `max_attempts`, `priority` (0-9, 0 first)
     *                                              and `delay_ms` or `run_at` (RFC 3339 with a zone; the task is
     *                                              then `scheduled`, with `runAt`, until it is due)); null or [] is `{}`
     * @param string|null                     $uid  whose task it is: its progress and done events go to that uid
     * @param string|null                     $id   your id (1-128 of `A-Z a-z 0-9 . _ : -`); the task's `id` is then
     *                                              `<uid>~<id>` (`~<id>` without a uid)
     * @throws TaskGateException 400 bad_request, 404 unknown_command, 413 too_large, 429 rate_limited, 503 queue_full, 401/403
     * @throws TransportException
     */
    public function submit(string $cmd, array|object|null $args = null, ?string $uid = null, ?string $id = null): Task
    {
        $body = ['cmd' => $cmd, 'args' => self::jsonObject($args, 'args')];
        if ($uid !== null) {
            $body['uid'] = $uid;
        }
        if ($id !== null) {
            $body['id'] = $id;
        }
        [$status, $data] = $this->request('POST', '/api/v1/tasks', body: $body);
        return self::toTask($data, $status === 200);
    }

    /**
     * One task (`GET /api/v1/tasks/{id}`): by the id the server reported (`t-...`, `<uid>~<id>`), or, for a task
     * submitted without a uid, by your id too.
     *
     * @throws TaskGateException 404 not_found, ...
     * @throws TransportException
     */
    public function task(string $id): Task
    {
        [, $data] = $this->request('GET', '/api/v1/tasks/' . self::pathSegment($id));
        return self::toTask($data);
    }

    /**
     * Requests cancellation (`POST /api/v1/tasks/{id}/cancel`). The task returned may still be `running`; its
     * final status is `cancelled` shortly after (`wait()` for it).
     *
     * @throws TaskGateException 404 not_found, 409 already_finished, ...
     * @throws TransportException
     */
    public function cancel(string $id): Task
    {
        [, $data] = $this->request('POST', '/api/v1/tasks/' . self::pathSegment($id) . '/cancel', body: '');
        return self::toTask($data);
    }

    /**
     * Tasks, newest first (`GET /api/v1/tasks`), optionally only those of one uid and/or in one status.
     *
     * @param string|null $status queued, running, succeeded, failed, cancelled or timed_out (else 400)
     * @param int|null    $limit  1-1000 (server default 100)
     * @return list<Task>
     * @throws TaskGateException 400 bad_request for a bad filter, ...
     * @throws TransportException
     */
    public function tasks(?string $uid = null, ?string $status = null, ?int $limit = null): array
    {
        [, $data] = $this->request('GET', '/api/v1/tasks', ['uid' => $uid, 'status' => $status, 'limit' => $limit]);
        if (!is_array($data) || !isset($data['tasks']) || !is_array($data['tasks'])) {
            throw new TransportException('TaskGate GET /api/v1/tasks: answer has no "tasks" list');
        }
        return array_values(array_map(static fn ($t): Task => self::toTask($t), $data['tasks']));
    }

    /**
     * Waits until the task has finished and returns it (whatever its final status: check `$task->status` or
     * `isSucceeded()`), at most `$timeoutSeconds`; then {@see WaitTimeoutException} (the task goes on).
     *
     * A task with a uid is waited for by long-poll on that uid's events (`GET /poll`, with the admin token), so the
     * answer comes as soon as its `done` event is published. A done that happened before the call is not missed:
     * the status is read first, then the uid's latest event seq, then the status once more, and the poll starts
     * from that seq, so any later done event comes after it. A task without a uid has no events: its status is read
     * at growing intervals (0.1 s to 1 s).
     *
     * Events carry only what changed (progress: `status`, `progress`, `attempts`; done: `status`, `result`, `error`):
     * `$onProgress` gets the task as last read with the event's fields merged in, and after the done event the task is
     * read once more and returned whole, as stored (if that read fails: the task as last read with the done event's
     * fields merged in).
     *
     * @param callable(Task): void|null $onProgress called with the task (whole, as of the event) of each progress
     *                                             event seen while waiting
     * @throws WaitTimeoutException
     * @throws TaskGateException 404 not_found for an unknown id, ...
     * @throws TransportException
     */
    public function wait(string $id, float $timeoutSeconds = 30.0, ?callable $onProgress = null): Task
    {
        $deadline = self::now() + max(0.0, $timeoutSeconds);
        $task = $this->task($id);
        if ($task->isFinished()) {
            return $task;
        }
        if ($task->uid === null) {
            return $this->waitByStatus($task, $deadline, $timeoutSeconds);
        }
        $uid = $task->uid;
        $cursor = $this->latestSeq($uid, min(self::CURSOR_SECONDS, max(0.001, $deadline - self::now())));
        if ($cursor === null) {
            // Read the uid's retained events from the start instead: more to read, just as safe.
            $cursor = 0;
        } else {
            // The done event may have been published between the first read and the seq: it shows in the status.
            $task = $this->task($task->id);
            if ($task->isFinished()) {
                return $task;
            }
        }
        $backoff = 0.1;
        while (($left = $deadline - self::now()) > 0) {
            $seconds = (int) min(self::POLL_SECONDS, max(1, ceil($left)));
            $requestTimeout = min($left, $seconds + self::POLL_SLACK);
            $budgetLimited = $requestTimeout >= $left;
            try {
                [, $batch] = $this->request(
                    'GET',
                    '/poll',
                    ['uid' => $uid, 'cursor' => $cursor, 'timeout' => $seconds],
                    timeout: $requestTimeout,
                );
            } catch (TransportException $e) {
                if ($budgetLimited && $e->isTimeout()) {
                    break;  // our own deadline cut the poll short
                }
                throw $e;
            } catch (TaskGateException $e) {
                if ($e->getStatus() !== 429) {
                    throw $e;
                }
                // The uid has its maximum of polls waiting (--max-polls-per-uid): read the status, back off, retry.
                $task = $this->task($task->id);
                if ($task->isFinished()) {
                    return $task;
                }
                self::pause(min($backoff, $deadline - self::now()));
                $backoff = min(1.0, $backoff * 2);
                continue;
            }
            if (!is_array($batch) || !is_array($batch['events'] ?? null) || !isset($batch['cursor'])) {
                throw new TransportException('TaskGate GET /poll: answer is not {"events", "cursor", "reset"}');
            }
            foreach ($batch['events'] as $event) {
                $eventTask = $event['task'] ?? null;
                if (!is_array($eventTask) || ($eventTask['id'] ?? null) !== $task->id) {
                    continue;
                }
                if (($event['type'] ?? null) === 'done') {
                    return $this->finalTask($task, $eventTask);
                }
                if (($event['type'] ?? null) === 'progress') {
                    $task = self::merged($task, $eventTask);
                    if ($onProgress !== null) {
                        $onProgress($task);
                    }
                }
            }
            if (!empty($batch['reset'])) {
                // The log did not go on from the cursor (events were pruned meanwhile): the status is the truth.
                $task = $this->task($task->id);
                if ($task->isFinished()) {
                    return $task;
                }
            }
            $cursor = $batch['cursor'];
        }
        $task = $this->task($task->id);
        if ($task->isFinished()) {
            return $task;
        }
        throw new WaitTimeoutException($task, $timeoutSeconds);
    }

    /**
     * The whole final task after its done event, which carries only `id`, `status`, `result` and `error`: read once
     * more (a task's final state is stored before its done event is handed out); if that read fails or is not final
     * (it should not be), the task as last known with the done event's fields merged in.
     *
     * @param array<string, mixed> $done the done event's task
     */
    private function finalTask(Task $task, array $done): Task
    {
        $merged = self::merged($task, $done);
        try {
            $final = $this->task($task->id);
        } catch (TaskGateException | TransportException) {
            return $merged;
        }
        return $final->isFinished() ? $final : $merged;
    }

    /**
     * $task with an event's fields (what the event changed) put over its own.
     *
     * @param array<string, mixed> $change
     */
    private static function merged(Task $task, array $change): Task
    {
        return self::toTask(array_replace($task->toArray(), $change));
    }

    private function waitByStatus(Task $task, float $deadline, float $timeoutSeconds): Task
    {
        $interval = 0.1;
        while (($left = $deadline - self::now()) > 0) {
            self::pause(min($interval, $left));
            $interval = min(1.0, $interval * 1.5);
            $task = $this->task($task->id);
            if ($task->isFinished()) {
                return $task;
            }
        }
        throw new WaitTimeoutException($task, $timeoutSeconds);
    }

    /**
     * The uid's latest event seq, or null when it cannot be learnt within `$budget` seconds. It is the `head` of
     * the `hello` frame that opens a Server-Sent Events stream (`GET /sse`, which without a cursor replays
     * nothing; a server older than December 2026 called it `seq`); the stream is closed as soon as that frame is in. (Long-poll has no such cheap answer: a poll from
     * cursor 0 returns the whole retained log.)
     */
    protected function latestSeq(string $uid, float $budget): ?int
    {
        $url = $this->url('/sse', ['uid' => $uid]);
        $buffer = '';
        $seq = null;
        $handle = curl_init();
        $options = $this->options('GET', $url, $budget, ['Accept: text/event-stream']);
        $options[CURLOPT_RETURNTRANSFER] = false;
        $options[CURLOPT_WRITEFUNCTION] = static function ($ch, string $chunk) use (&$buffer, &$seq): int {
            $buffer .= $chunk;
            if (!preg_match('/\r?\n\r?\n/', $buffer, $m, PREG_OFFSET_CAPTURE)) {
                return strlen($buffer) > 65536 ? 0 : strlen($chunk);
            }
            $frame = substr($buffer, 0, $m[0][1]);
            $event = '';
            $data = '';
            foreach (preg_split('/\r\n|\r|\n/', $frame) ?: [] as $line) {
                if (str_starts_with($line, 'event:')) {
                    $event = trim(substr($line, 6));
                } elseif (str_starts_with($line, 'data:')) {
                    $data .= ltrim(substr($line, 5), ' ');
                }
            }
            if ($event === 'hello') {
                $hello = json_decode($data, true);
                $head = is_array($hello) ? ($hello['head'] ?? $hello['seq'] ?? null) : null;
                if (is_int($head) && $head >= 0) {
                    $seq = $head;
                }
            }
            return 0;  // the first frame is all we wanted: end the stream
        };
        curl_setopt_array($handle, $options);
        curl_exec($handle);
        $status = curl_getinfo($handle, CURLINFO_RESPONSE_CODE);
        curl_close($handle);
        return $status === 200 ? $seq : null;
    }

    // ------------------------------------------------------------------------------------------------ HTTP

    /**
     * @param array<string, scalar|null> $query null values are left out
     * @param mixed                      $body  JSON-encoded unless a string (sent as is); null: no body
     * @return array{0: int, 1: mixed} the status and the decoded JSON body
     */
    private function request(string $method, string $path, array $query = [], mixed $body = null, ?float $timeout = null): array
    {
        $url = $this->url($path, $query);
        $headers = ['Accept: application/json'];
        $options = $this->options($method, $url, $timeout ?? $this->timeout, $headers);
        if ($body !== null) {
            $text = is_string($body) ? $body : self::encode($body);
            $options[CURLOPT_POSTFIELDS] = $text;
            if ($text !== '') {
                $options[CURLOPT_HTTPHEADER][] = 'Content-Type: application/json';
            }
        }
        $handle = $this->handle ??= curl_init();
        curl_reset($handle);  // keeps the live connection, drops the last request's options
        curl_setopt_array($handle, $options);
        $text = curl_exec($handle);
        if ($text === false || !is_string($text)) {
            $errno = curl_errno($handle);
            throw new TransportException(
                "TaskGate $method $path: " . ($errno === CURLE_OPERATION_TIMEDOUT ? 'timed out: ' : '') . curl_error($handle),
                $errno,
                $method,
                $this->url($path, []),
            );
        }
        $status = (int) curl_getinfo($handle, CURLINFO_RESPONSE_CODE);
        if ($status < 200 || $status > 299) {
            throw TaskGateException::fromResponse($status, $text, $method, $path);
        }
        try {
            $data = json_decode($text, true, 512, JSON_THROW_ON_ERROR | JSON_BIGINT_AS_STRING);
        } catch (\JsonException $e) {
            throw new TransportException(
                "TaskGate $method $path: $status answer is not JSON: " . substr($text, 0, 120),
                0,
                $method,
                $this->url($path, []),
                $e,
            );
        }
        return [$status, $data];
    }

    /**
     * @param list<string> $headers
     * @return array<int, mixed>
     */
    private function options(string $method, string $url, float $timeout, array $headers): array
    {
        if ($this->adminToken !== null) {
            $headers[] = 'Authorization: Bearer ' . $this->adminToken;
        }
        $headers[] = 'Expect:';  // no "100-continue" round trip for larger bodies
        $options = $this->curlOptions;
        $options[CURLOPT_URL] = $url;
        $options[CURLOPT_CUSTOMREQUEST] = $method;
        $options[CURLOPT_RETURNTRANSFER] = true;
        $options[CURLOPT_HEADER] = false;
        $options[CURLOPT_HTTPHEADER] = array_merge($options[CURLOPT_HTTPHEADER] ?? [], $headers);
        $options[CURLOPT_CONNECTTIMEOUT_MS] = max(1, (int) ceil(min($this->connectTimeout, $timeout) * 1000));
        $options[CURLOPT_TIMEOUT_MS] = max(1, (int) ceil($timeout * 1000));
        $options[CURLOPT_NOSIGNAL] = true;  // millisecond timeouts without SIGALRM
        $options[CURLOPT_FOLLOWLOCATION] = false;
        $options[CURLOPT_PROTOCOLS] = CURLPROTO_HTTP | CURLPROTO_HTTPS;
        $options[CURLOPT_USERAGENT] ??= 'taskgate-php-client/1.0';
        return $options;
    }

    /** @param array<string, scalar|null> $query */
    private function url(string $path, array $query): string
    {
        $query = array_filter($query, static fn ($v) => $v !== null);
        return $this->baseUrl . $path . ($query === [] ? '' : '?' . http_build_query($query, '', '&', PHP_QUERY_RFC3986));
    }

    /** A task id as one path segment: `alice@example.com~job-1` → `alice%40example.com~job-1`. */
    private static function pathSegment(string $id): string
    {
        if ($id === '') {
            throw new \InvalidArgumentException('task id must not be empty');
        }
        return rawurlencode($id);
    }

    /** JSON object for args: [] and null are {}, a list is refused (the server wants an object). */
    private static function jsonObject(array|object|null $value, string $what): array|object
    {
        if ($value === null || $value === []) {
            return new \stdClass();
        }
        if (is_array($value) && array_is_list($value)) {
            throw new \InvalidArgumentException("$what must be an associative array (a JSON object), not a list");
        }
        return $value;
    }

    private static function encode(mixed $value): string
    {
        try {
            return json_encode(
                $value,
                JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION,
            );
        } catch (\JsonException $e) {
            throw new \InvalidArgumentException('cannot encode the request as JSON: ' . $e->getMessage(), 0, $e);
        }
    }

    private static function toTask(mixed $data, bool $duplicate = false): Task
    {
        if (!is_array($data)) {
            throw new TransportException('TaskGate answer is not a task object');
        }
        try {
            return new Task($data, $duplicate);
        } catch (\UnexpectedValueException $e) {
            throw new TransportException($e->getMessage(), 0, '', '', $e);
        }
    }

    private static function now(): float
    {
        return hrtime(true) / 1e9;
    }

    private static function pause(float $seconds): void
    {
        if ($seconds > 0) {
            usleep((int) ($seconds * 1e6));
        }
    }
}
