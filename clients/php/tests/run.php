<?php

declare(strict_types=1);

/*
 * Tests of the TaskGate PHP client against real servers:
 *
 *   php tests/run.php [group...]
 *
 * Without arguments every group whose servers are configured runs (the others are skipped); a group named on the
 * command line must be able to run. Groups and what they read from the environment:
 *
 *   admin        TASKGATE_URL, TASKGATE_ADMIN_TOKEN   a dev-mode server (the default --auth) with --admin-token
 *   limits       TASKGATE_LIMITED_URL, TASKGATE_ADMIN_TOKEN
 *                                                     like admin, with --task-workers 1 --max-polls-per-uid 1
 *   hs256        TASKGATE_TOKEN_URL, TASKGATE_TOKEN_SECRET, and optionally TASKGATE_TOKEN_ADMIN_TOKEN (its
 *                --admin-token) and TASKGATE_CLI_TOKEN (a token from `taskgate token <uid> --secret ...`)
 *                                                     a server with --auth token --token-secret SECRET
 *   hs512        TASKGATE_HS512_URL, TASKGATE_HS512_SECRET
 *                                                     a server with --auth token --token-algorithm HS512 --token-secret
 *   rs256-local  TASKGATE_RSA_PRIVATE_KEY, TASKGATE_RSA_PUBLIC_KEY (PEM files; tests/make-rsa-keys.php makes them)
 *                                                     no server: the signature checked with the public key
 *   rs256        TASKGATE_RS256_URL, TASKGATE_RSA_PRIVATE_KEY, TASKGATE_RSA_PUBLIC_KEY, TASKGATE_RS256_ISSUER,
 *                TASKGATE_RS256_AUDIENCE             a server with --auth token --token-key <public key>
 *                                                     --token-issuer ISSUER --token-audience AUDIENCE
 */

namespace TaskGate\Tests;

use TaskGate\Client;
use TaskGate\ClientExceptionInterface;
use TaskGate\Task;
use TaskGate\TaskGateException;
use TaskGate\TokenMinter;
use TaskGate\TransportException;
use TaskGate\WaitTimeoutException;

require __DIR__ . '/../autoload.php';
require __DIR__ . '/harness.php';

if (!extension_loaded('curl')) {
    fwrite(STDERR, "the curl extension is not loaded (apt-get install php-curl)\n");
    exit(2);
}

$t = new Runner();

// ==================================================================================================== admin API

$url = env('TASKGATE_URL');
$adminToken = env('TASKGATE_ADMIN_TOKEN');
$t->group('admin', $url === null || $adminToken === null ? 'TASKGATE_URL and TASKGATE_ADMIN_TOKEN are not set' : null);
$client = static fn (): Client => new Client((string) $url, $adminToken);

$t->add('admin', 'submit answers 202 with the new task', static function () use ($client): void {
    $uid = uid('al') . '@example.com';  // '@' must be percent-encoded in task paths
    $id = 'job-' . bin2hex(random_bytes(4));
    $task = $client()->submit('echo', ['n' => 1], $uid, $id);
    assertSame(false, $task->duplicate, 'a new task is not a duplicate (202)');
    assertSame("$uid~$id", $task->id, 'a client id is scoped to the uid');
    assertSame($uid, $task->uid, 'uid');
    assertSame('echo', $task->cmd, 'cmd');
    assertSame(['n' => 1], $task->args, 'args');
    assertTrue(in_array($task->status, ['queued', 'running', 'succeeded'], true), "status $task->status");
    assertSame($task->id, $task['id'], 'array access');
    assertSame($task->id, $client()->task($task->id)->id, 'task() finds it by its scoped id');
});

$t->add('admin', 'resubmitting the same id returns the existing task with 200', static function () use ($client): void {
    $c = $client();
    $uid = uid();
    $first = $c->submit('echo', ['v' => 'first'], $uid, 'same-id');
    $again = $c->submit('echo', ['v' => 'second'], $uid, 'same-id');
    assertSame(true, $again->duplicate, 'the resubmit is a duplicate (200)');
    assertSame($first->id, $again->id, 'same task');
    assertSame($first->createdAt, $again->createdAt, 'not created again');
    assertSame(['v' => 'first'], $again->args, 'the first args stay');
    $done = $c->wait($first->id, 10);
    assertSame(['v' => 'first'], $done->result, 'ran once, with the first args');
    $other = $c->submit('echo', [], uid(), 'same-id');
    assertSame(false, $other->duplicate, 'the same id of another uid is another task');
    assertTrue($other->id !== $first->id, 'another id');
});

$t->add('admin', 'submit without an id gets a server id; args null and [] are {}', static function () use ($client): void {
    $c = $client();
    $task = $c->submit('echo', null, uid());
    assertTrue(str_starts_with($task->id, 't-'), "server id, got $task->id");
    assertSame([], $c->submit('echo', [])->args, 'empty args');
    assertThrows(\InvalidArgumentException::class, static fn () => $c->submit('echo', [1, 2]), 'a list is not an object');
});

$t->add('admin', 'task() reads the status', static function () use ($client): void {
    $c = $client();
    $task = $c->submit('sleep', ['ms' => 200], uid());
    $seen = $c->task($task->id);
    assertTrue($seen instanceof Task, 'a Task');
    assertSame($task->id, $seen->id, 'same id');
    assertTrue(in_array($seen->status, ['queued', 'running', 'succeeded'], true), "status $seen->status");
    $final = waitUntil(static function () use ($c, $task) {
        $now = $c->task($task->id);
        return $now->isFinished() ? $now : null;
    }, 10, 'the sleep to finish');
    assertSame('succeeded', $final->status, 'final status');
    assertSame(1.0, $final->progress, 'progress');
    assertTrue($final->finishedAt !== null && $final->startedAt !== null, 'timestamps');
});

$t->add('admin', 'a task without a uid: found by its client id too, wait() reads its status', static function () use ($client): void {
    $c = $client();
    $id = 'nouid-' . bin2hex(random_bytes(4));
    $task = $c->submit('sleep', ['ms' => 300], null, $id);
    assertSame("~$id", $task->id, 'scoped without a uid');
    assertSame(null, $task->uid, 'no uid');
    assertSame($task->id, $c->task($id)->id, 'by the client id');
    $done = $c->wait($id, 10);
    assertSame('succeeded', $done->status, 'status');
    assertSame(['slept_ms' => 300], $done->result, 'result');
});

$t->add('admin', 'tasks() lists newest first, filtered by uid, status and limit', static function () use ($client): void {
    $c = $client();
    $uid = uid('list');
    $ids = [];
    foreach ([1, 2, 3] as $n) {
        $ids[] = $c->submit('echo', ['n' => $n], $uid, "list-$n")->id;
    }
    $running = $c->submit('sleep', ['ms' => 30000], $uid, 'list-sleep');
    foreach ($ids as $id) {
        $c->wait($id, 10);
    }
    waitUntil(static fn () => $c->task($running->id)->status === 'running', 10, 'the sleep to run');

    $all = $c->tasks(uid: $uid);
    assertSame(4, count($all), 'all four tasks of the uid');
    foreach ($all as $task) {
        assertSame($uid, $task->uid, 'only that uid');
    }
    for ($i = 1; $i < count($all); $i++) {
        assertTrue(strcmp((string) $all[$i - 1]->createdAt, (string) $all[$i]->createdAt) >= 0, 'newest first');
    }
    $succeeded = $c->tasks(uid: $uid, status: 'succeeded');
    $found = array_map(static fn (Task $t) => $t->id, $succeeded);
    sort($found);
    $expected = $ids;
    sort($expected);
    assertSame($expected, $found, 'the succeeded ones');
    $nowRunning = $c->tasks(uid: $uid, status: 'running');
    assertSame([$running->id], array_map(static fn (Task $t) => $t->id, $nowRunning), 'the running one');
    assertSame(2, count($c->tasks(uid: $uid, limit: 2)), 'limit');
    assertSame([], $c->tasks(uid: uid('nobody')), 'a uid without tasks');
    assertApiError(400, 'bad_request', static fn () => $c->tasks(status: 'sleeping'));
    assertApiError(400, 'bad_request', static fn () => $c->tasks(limit: 0));
    $c->cancel($running->id);
});

$t->add('admin', 'cancel() stops a long sleep; cancelling again is 409', static function () use ($client): void {
    $c = $client();
    $task = $c->submit('sleep', ['ms' => 60000], uid());
    waitUntil(static fn () => $c->task($task->id)->status === 'running', 10, 'the sleep to run');
    $started = now();
    $cancelling = $c->cancel($task->id);
    assertSame($task->id, $cancelling->id, 'cancel returns the task');
    $final = $c->wait($task->id, 10);
    assertSame('cancelled', $final->status, 'final status');
    assertTrue(elapsed($started) < 5, 'cancelled well before the sleep would end');
    assertApiError(409, 'already_finished', static fn () => $c->cancel($task->id));
});

$t->add('admin', 'wait() returns the finished task with its result', static function () use ($client): void {
    $c = $client();
    $args = ['n' => 42, 's' => 'héllo/wörld', 'nested' => ['a' => [1, 2, 3]]];
    $done = $c->wait($c->submit('echo', $args, uid())->id, 10);
    assertSame('succeeded', $done->status, 'status');
    assertTrue($done->isSucceeded() && $done->isFinished(), 'isSucceeded, isFinished');
    assertSame(sortedKeys($args), sortedKeys($done->result), 'echo returns its args');

    $progress = [];
    $started = now();
    $slept = $c->wait($c->submit('sleep', ['ms' => 500], uid())->id, 10, static function (Task $t) use (&$progress): void {
        // Events carry only what changed; the callback still gets the whole task, the event merged in.
        assertSame('sleep', $t->cmd, 'a progress task has its cmd');
        assertSame(['ms' => 500], $t->args, 'a progress task has its args');
        assertSame('running', $t->status, 'a progress task is running');
        $progress[] = $t->progress;
    });
    assertSame(['slept_ms' => 500], $slept->result, 'sleep result');
    assertTrue(elapsed($started) < 3, 'wait() answers when the task is done, not at its timeout');
    assertTrue(count($progress) >= 1, 'progress events were passed on');
    // The done event has no args or timestamps: wait() returns the whole task as stored.
    assertSame('sleep', $slept->cmd, 'the finished task has its cmd');
    assertSame(['ms' => 500], $slept->args, 'the finished task has its args');
    assertTrue($slept->finishedAt !== null && $slept->startedAt !== null, 'the finished task has its timestamps');
    assertSame(1.0, $slept->progress, 'the finished task has its progress');
    assertTrue($slept->attempts >= 1, 'the finished task has its attempts');

    $failed = $c->wait($c->submit('fail', ['message' => 'on purpose', 'max_attempts' => 1], uid())->id, 10);
    assertSame('failed', $failed->status, 'a failed task is returned, not thrown');
    assertSame('on purpose', $failed->error, 'its error');
});

$t->add('admin', 'wait() returns at once for a task that finished before it was called', static function () use ($client): void {
    $c = $client();
    $task = $c->submit('echo', ['early' => true], uid());
    waitUntil(static fn () => $c->task($task->id)->isFinished(), 10, 'the echo to finish');
    $started = now();
    $done = $c->wait($task->id, 20);
    assertSame('succeeded', $done->status, 'status');
    assertTrue(elapsed($started) < 2, 'no long-poll for a finished task');
});

$t->add('admin', 'wait() does not miss a done published while it reads the cursor', static function () use ($url, $adminToken): void {
    // The task finishes after wait() read its status and before it learns the latest seq: the done event is then
    // older than the cursor, and only the status read after the cursor can see it.
    $c = new class ((string) $url, $adminToken) extends Client {
        public bool $raced = false;

        protected function latestSeq(string $uid, float $budget): ?int
        {
            $tasks = $this->tasks(uid: $uid);
            $task = $tasks[0];
            waitUntil(fn () => $this->task($task->id)->isFinished(), 10, 'the task to finish during the race');
            $this->raced = true;
            return parent::latestSeq($uid, $budget);
        }
    };
    $task = $c->submit('sleep', ['ms' => 300], uid('race'));
    $started = now();
    $done = $c->wait($task->id, 20);
    assertSame(true, $c->raced, 'the race was staged');
    assertSame('succeeded', $done->status, 'status');
    assertTrue(elapsed($started) < 5, 'no wait until the timeout');
});

$t->add('admin', 'wait() falls back to reading the log from the start when the seq is unknown', static function () use ($url, $adminToken): void {
    $c = new class ((string) $url, $adminToken) extends Client {
        protected function latestSeq(string $uid, float $budget): ?int
        {
            return null;
        }
    };
    $uid = uid('scan');
    $c->wait($c->submit('echo', ['before' => 1], $uid)->id, 10);  // older events of the uid to read past
    $started = now();
    $done = $c->wait($c->submit('sleep', ['ms' => 300], $uid)->id, 10);
    assertSame(['slept_ms' => 300], $done->result, 'result');
    assertTrue(elapsed($started) < 5, 'no wait until the timeout');
});

$t->add('admin', 'wait() past its timeout throws WaitTimeoutException', static function () use ($client): void {
    $c = $client();
    $task = $c->submit('sleep', ['ms' => 20000], uid());
    $started = now();
    $e = assertThrows(WaitTimeoutException::class, static fn () => $c->wait($task->id, 0.8));
    $took = elapsed($started);
    assertTrue($took >= 0.7 && $took < 4, sprintf('gave up after about 0.8 s (took %.2f s)', $took));
    assertTrue(in_array($e->getTask()->status, ['queued', 'running'], true), 'the last known state is unfinished');
    assertSame($task->id, $e->getTask()->id, 'of that task');
    assertTrue($e instanceof ClientExceptionInterface, 'implements ClientExceptionInterface');
    assertTrue(!$c->task($task->id)->isFinished(), 'the task goes on');
    $c->cancel($task->id);
});

$t->add('admin', 'an unknown task id raises TaskGateException 404', static function () use ($client): void {
    $c = $client();
    $e = assertApiError(404, 'not_found', static fn () => $c->task('no-such-task-' . bin2hex(random_bytes(4))));
    assertTrue(str_contains($e->getMessage(), '404'), 'the message names the status');
    assertApiError(404, 'not_found', static fn () => $c->cancel('no-such-task'));
    assertApiError(404, 'not_found', static fn () => $c->wait('no-such-task', 1));
    assertApiError(404, 'not_found', static fn () => $c->task('a b/c?d#e'));  // encoded, not a different path
});

$t->add('admin', 'an unknown handler or bad arguments raise 404 unknown_command / 400 bad_request', static function () use ($client): void {
    $c = $client();
    assertApiError(404, 'unknown_command', static fn () => $c->submit('no-such-handler', []));
    assertApiError(400, 'bad_request', static fn () => $c->submit('sleep', ['ms' => -1]));
    assertApiError(400, 'bad_request', static fn () => $c->submit('echo', [], 'not a uid'));
});

$t->add('admin', 'a delayed submit is scheduled with runAt, then runs; priority round-trips', static function () use ($client): void {
    $c = $client();
    $uid = uid('sched');
    $now = $c->submit('echo', ['at' => 'once'], $uid);
    assertSame(0, $now->priority, 'the default priority');
    assertSame(null, $now->runAt, 'no runAt without a delay');
    assertSame(null, $now->schedule, 'not from a schedule');

    $started = now();
    $task = $c->submit('echo', ['text' => 'later', 'delay_ms' => 1500, 'priority' => 7], $uid);
    assertSame('scheduled', $task->status, 'a delay still ahead: scheduled');
    assertSame(7, $task->priority, 'priority');
    assertSame(null, $task->schedule, 'no schedule');
    assertTrue($task->runAt !== null && $task->createdAt !== null, 'runAt and createdAt are set');
    $due = (float) (new \DateTimeImmutable((string) $task->runAt))->format('U.u');
    $created = (float) (new \DateTimeImmutable((string) $task->createdAt))->format('U.u');
    assertTrue(abs($due - $created - 1.5) < 0.25, sprintf('runAt is createdAt + 1.5 s (%.3f s)', $due - $created));
    assertTrue(!$task->isFinished(), 'scheduled is not final');
    assertSame('scheduled', $c->task($task->id)->status, 'still scheduled before its runAt');
    $done = $c->wait($task->id, 15);
    assertSame('succeeded', $done->status, 'it ran');
    assertTrue(elapsed($started) >= 1.2, 'not before its runAt');
    assertSame(7, $done->priority, 'the priority stays');
    assertSame($task->runAt, $done->runAt, 'the runAt stays');
    assertTrue(strcmp((string) $done->startedAt, (string) $done->runAt) >= 0, 'started at or after runAt');

    // run_at with an offset; the server reports it in UTC. Cancelled before it starts.
    $at = new \DateTimeImmutable('+60 seconds', new \DateTimeZone('+01:00'));
    $later = $c->submit('echo', ['run_at' => $at->format('Y-m-d\TH:i:s.vP')], $uid);
    assertSame('scheduled', $later->status, 'run_at ahead: scheduled');
    $laterDue = new \DateTimeImmutable((string) $later->runAt);
    assertTrue(str_ends_with((string) $later->runAt, 'Z'), "runAt in UTC: $later->runAt");
    assertTrue(abs((float) $laterDue->format('U.u') - (float) $at->format('U.u')) < 0.01, 'runAt is run_at');
    $c->cancel($later->id);
    $cancelled = $c->wait($later->id, 10);
    assertSame('cancelled', $cancelled->status, 'cancelled while scheduled');
    assertSame('cancelled before it started', $cancelled->error, 'its error');

    assertApiError(400, 'bad_request', static fn () => $c->submit('echo', ['priority' => 10]));
    assertApiError(400, 'bad_request', static fn () => $c->submit('echo', ['delay_ms' => -1]));
    assertApiError(400, 'bad_request', static fn () => $c->submit('echo', ['delay_ms' => 10, 'run_at' => $at->format(DATE_RFC3339)]));
});

$t->add('admin', 'a wrong or missing admin token raises 401', static function () use ($url): void {
    $e = assertApiError(401, 'unauthorized', static fn () => (new Client((string) $url, 'wrong-token'))->tasks());
    assertSame(401, $e->getStatus(), 'status');
    assertApiError(401, 'unauthorized', static fn () => (new Client((string) $url))->submit('echo', []));
});

$t->add('admin', 'a refused connection raises TransportException', static function (): void {
    $server = stream_socket_server('tcp://127.0.0.1:0', $errno, $error);
    assertTrue($server !== false, "listen: $error");
    $address = stream_socket_get_name($server, false);
    fclose($server);  // nobody listens there now
    $e = assertThrows(TransportException::class, static fn () => (new Client("http://$address", 'x', 5, 2))->task('t-1'));
    assertSame(CURLE_COULDNT_CONNECT, $e->getCode(), 'curl error: ' . $e->getMessage());
    assertTrue(!$e instanceof TaskGateException && $e instanceof ClientExceptionInterface, 'a transport error');
});

$t->add('admin', 'a server that does not answer runs into the timeout', static function (): void {
    $server = stream_socket_server('tcp://127.0.0.1:0', $errno, $error);  // listens, never accepts or answers
    assertTrue($server !== false, "listen: $error");
    $address = stream_socket_get_name($server, false);
    $started = now();
    try {
        $e = assertThrows(TransportException::class, static fn () => (new Client("http://$address", 'x', 0.5, 0.5))->tasks());
    } finally {
        fclose($server);
    }
    assertTrue($e->isTimeout(), 'a timeout: ' . $e->getMessage());
    assertTrue(elapsed($started) < 3, 'bounded by the timeout');
});

// ==================================================================================================== limits

$limitedUrl = env('TASKGATE_LIMITED_URL');
$t->group('limits', $limitedUrl === null || $adminToken === null
    ? 'TASKGATE_LIMITED_URL and TASKGATE_ADMIN_TOKEN are not set' : null);

$t->add('limits', 'wait() gets by while the uid has its maximum of polls waiting (429)', static function () use ($limitedUrl, $adminToken): void {
    // The server runs one task at a time and allows one waiting poll per uid.
    $c = new Client((string) $limitedUrl, $adminToken);
    $blocker = $c->submit('sleep', ['ms' => 1500], uid('blocker'));
    waitUntil(static fn () => $c->task($blocker->id)->status === 'running', 10, 'the blocker to run');
    $uid = uid('busy');
    $task = $c->submit('sleep', ['ms' => 100], $uid);  // queued behind the blocker: no events for the uid yet
    assertSame('queued', $c->task($task->id)->status, 'queued');
    $address = parse_url((string) $limitedUrl, PHP_URL_HOST) . ':' . parse_url((string) $limitedUrl, PHP_URL_PORT);
    $held = stream_socket_client("tcp://$address", $errno, $error, 5);
    assertTrue($held !== false, "connect: $error");
    try {
        fwrite($held, "GET /poll?uid=$uid&timeout=30 HTTP/1.1\r\nHost: $address\r\n\r\n");  // takes the uid's only slot
        waitUntil(static function () use ($limitedUrl, $adminToken, $uid) {
            [, $list] = http('GET', "$limitedUrl/api/v1/clients", $adminToken);
            return in_array($uid, array_column($list['clients'] ?? [], 'uid'), true);
        }, 10, 'the held poll to wait');
        [$status, $reply] = http('GET', "$limitedUrl/poll?uid=$uid&timeout=0");
        assertSame([429, 'rate_limited'], [$status, $reply['error'] ?? null], 'the uid has no poll left');
        $started = now();
        $done = $c->wait($task->id, 20);
        assertSame('succeeded', $done->status, 'status');
        assertTrue(elapsed($started) < 10, 'done soon after the blocker');
    } finally {
        fclose($held);
    }
});

// ==================================================================================================== HS256

$tokenUrl = env('TASKGATE_TOKEN_URL');
$secret = env('TASKGATE_TOKEN_SECRET');
$t->group('hs256', $tokenUrl === null || $secret === null ? 'TASKGATE_TOKEN_URL and TASKGATE_TOKEN_SECRET are not set' : null);

$t->add('hs256', 'an HS256 token is accepted by a token-mode server (Bearer and ?token=)', static function () use ($tokenUrl, $secret): void {
    $uid = uid('hs');
    $token = TokenMinter::hs256((string) $secret)->mint($uid, 300);
    [$status, $reply] = http('POST', "$tokenUrl/poll", $token, ['cmd' => 'ping', 'ref' => 'p1']);
    assertSame([200, 'pong'], [$status, $reply['type'] ?? null], 'POST /poll with Authorization: Bearer');
    [$status, $reply] = http('POST', "$tokenUrl/poll?token=" . rawurlencode($token), null, ['cmd' => 'ping']);
    assertSame([200, 'pong'], [$status, $reply['type'] ?? null], 'POST /poll?token=');
    [$status, $reply] = http('GET', "$tokenUrl/poll?timeout=0&token=" . rawurlencode($token));
    assertSame(200, $status, 'GET /poll?token=');
    assertSame([], $reply['events'] ?? null, 'no events yet');
    [$status, $reply] = http('GET', "$tokenUrl/poll?timeout=0&uid=" . uid('other') . '&token=' . rawurlencode($token));
    assertSame([401, 'unauthorized'], [$status, $reply['error'] ?? null], 'the token names the uid, not ?uid=');
    [$status, $reply] = http('POST', "$tokenUrl/poll?uid=$uid", null, ['cmd' => 'ping']);
    assertSame(401, $status, 'without a token');
});

$t->add('hs256', 'a task submitted with a user token is waited for by the admin client', static function () use ($tokenUrl, $secret): void {
    $admin = env('TASKGATE_TOKEN_ADMIN_TOKEN');
    if ($admin === null) {
        skip('TASKGATE_TOKEN_ADMIN_TOKEN is not set');
    }
    $uid = uid('hs');
    $token = TokenMinter::hs256((string) $secret)->mint($uid, 300);
    [$status, $reply] = http('POST', "$tokenUrl/poll", $token, ['cmd' => 'sleep', 'args' => ['ms' => 300, 'id' => 'mine']]);
    assertSame(202, $status, 'submitted: ' . json_encode($reply));
    assertSame("$uid~mine", $reply['task']['id'] ?? null, 'scoped id');
    $c = new Client((string) $tokenUrl, $admin);
    $done = $c->wait("$uid~mine", 10);  // the admin token long-polls as that uid
    assertSame(['slept_ms' => 300], $done->result, 'result');
    $again = $c->submit('sleep', ['ms' => 1], $uid, 'mine');
    assertSame(true, $again->duplicate, 'the admin API sees the same per-uid id');
});

$t->add('hs256', 'an expired token is refused with 401', static function () use ($tokenUrl, $secret): void {
    $token = TokenMinter::hs256((string) $secret)->mint(uid('hs'), 60, now: time() - 3600);
    [$status, $reply] = http('POST', "$tokenUrl/poll", $token, ['cmd' => 'ping']);
    assertSame([401, 'unauthorized'], [$status, $reply['error'] ?? null], 'expired: ' . json_encode($reply));
    [$status] = http('GET', "$tokenUrl/poll?timeout=0&token=" . rawurlencode($token));
    assertSame(401, $status, 'GET /poll too');
});

$t->add('hs256', 'a token signed with another secret is refused with 401', static function () use ($tokenUrl, $secret): void {
    $token = TokenMinter::hs256(strrev((string) $secret) . '-other')->mint(uid('hs'), 300);
    [$status, $reply] = http('POST', "$tokenUrl/poll", $token, ['cmd' => 'ping']);
    assertSame([401, 'unauthorized'], [$status, $reply['error'] ?? null], 'forged');
});

$t->add('hs256', 'the token has the form `taskgate token` mints', static function () use ($secret): void {
    $cli = env('TASKGATE_CLI_TOKEN');
    if ($cli === null) {
        skip('TASKGATE_CLI_TOKEN is not set');
    }
    [$cliHeader, $cliClaims, $cliParts] = jwtParts($cli);
    $expected = TokenMinter::base64Url(hash_hmac('sha256', "$cliParts[0].$cliParts[1]", (string) $secret, true));
    assertSame($expected, $cliParts[2], 'the CLI signs header.payload with HMAC-SHA256 of the secret, as we do');
    $ours = TokenMinter::hs256((string) $secret)->mint((string) $cliClaims['sub'], 3600);
    [$header, $claims, $parts] = jwtParts($ours);
    assertSame(sortedKeys($cliHeader), sortedKeys($header), 'same header');
    $keys = array_keys($claims);
    $cliKeys = array_keys($cliClaims);
    sort($keys);
    sort($cliKeys);
    assertSame($cliKeys, $keys, 'same claims');
    assertSame($cliClaims['sub'], $claims['sub'], 'sub is the uid');
    assertSame(3600, $claims['exp'] - $claims['iat'], 'exp = iat + ttl');
    assertSame(TokenMinter::base64Url(hash_hmac('sha256', "$parts[0].$parts[1]", (string) $secret, true)), $parts[2], 'signature');
});

$t->add('hs256', 'iss, aud, kid and extra claims go into the token; bad input is refused', static function () use ($tokenUrl, $secret): void {
    $minter = TokenMinter::hs256((string) $secret, issuer: 'https://app.example', audience: ['taskgate', 'other'], keyId: 'k1');
    $token = $minter->mint('u-1', 60, ['nbf' => time() - 5], now: 1_800_000_000);
    [$header, $claims] = jwtParts($token);
    assertSame(['alg' => 'HS256', 'typ' => 'JWT', 'kid' => 'k1'], $header, 'header');
    assertSame(['sub' => 'u-1', 'iat' => 1_800_000_000, 'exp' => 1_800_000_060, 'iss' => 'https://app.example', 'aud' => ['taskgate', 'other']], array_diff_key($claims, ['nbf' => 1]), 'claims');
    assertThrows(\InvalidArgumentException::class, static fn () => TokenMinter::hs256(str_repeat('s', 31)), 'a secret under 32 bytes');
    assertThrows(\InvalidArgumentException::class, static fn () => TokenMinter::hmac(str_repeat('s', 63), 'HS512'), 'an HS512 secret under 64 bytes');
    assertThrows(\InvalidArgumentException::class, static fn () => TokenMinter::hmac((string) $secret, 'none'), 'an unknown algorithm');
    assertThrows(\InvalidArgumentException::class, static fn () => $minter->mint('not a uid'), 'a bad uid');
    assertThrows(\InvalidArgumentException::class, static fn () => $minter->mint('u', 0), 'a ttl of 0');
    assertThrows(\InvalidArgumentException::class, static fn () => $minter->mint('u', 60, ['sub' => 'someone-else']), 'sub in $claims');
    // A token that is not valid yet (nbf) is refused; the server honours nbf.
    $later = TokenMinter::hs256((string) $secret)->mint(uid('hs'), 600, ['nbf' => time() + 300]);
    [$status] = http('POST', "$tokenUrl/poll", $later, ['cmd' => 'ping']);
    assertSame(401, $status, 'nbf in the future');
});

// ==================================================================================================== HS512

$hs512Url = env('TASKGATE_HS512_URL');
$hs512Secret = env('TASKGATE_HS512_SECRET');
$t->group('hs512', $hs512Url === null || $hs512Secret === null ? 'TASKGATE_HS512_URL and TASKGATE_HS512_SECRET are not set' : null);

$t->add('hs512', 'an HS512 token is accepted by a --token-algorithm HS512 server, an HS256 one is not', static function () use ($hs512Url, $hs512Secret): void {
    $token = TokenMinter::hmac((string) $hs512Secret, 'HS512')->mint(uid('hs512'), 300);
    [$header, , $parts] = jwtParts($token);
    assertSame('HS512', $header['alg'], 'alg');
    assertSame(TokenMinter::base64Url(hash_hmac('sha512', "$parts[0].$parts[1]", (string) $hs512Secret, true)), $parts[2], 'HMAC-SHA512');
    [$status, $reply] = http('POST', "$hs512Url/poll", $token, ['cmd' => 'ping']);
    assertSame([200, 'pong'], [$status, $reply['type'] ?? null], 'accepted: ' . json_encode($reply));
    [$status] = http('POST', "$hs512Url/poll", TokenMinter::hs256((string) $hs512Secret)->mint(uid('hs512'), 300), ['cmd' => 'ping']);
    assertSame(401, $status, 'the same secret with another algorithm');
});

// ==================================================================================================== RS256 (local)

$privatePath = env('TASKGATE_RSA_PRIVATE_KEY');
$publicPath = env('TASKGATE_RSA_PUBLIC_KEY');
$t->group('rs256-local', $privatePath === null || $publicPath === null
    ? 'TASKGATE_RSA_PRIVATE_KEY and TASKGATE_RSA_PUBLIC_KEY are not set'
    : (extension_loaded('openssl') ? null : 'the openssl extension is not loaded'));

/** Checks an RS256 token's signature with the public key; returns header and claims. */
$verifyRs256 = static function (string $token, string $publicPem): array {
    [$header, $claims, $parts] = jwtParts($token);
    $signature = (string) base64_decode(strtr($parts[2], '-_', '+/') . str_repeat('=', (4 - strlen($parts[2]) % 4) % 4), true);
    $ok = openssl_verify("$parts[0].$parts[1]", $signature, $publicPem, OPENSSL_ALGO_SHA256);
    assertSame(1, $ok, 'openssl_verify with the public key');
    return [$header, $claims];
};

$t->add('rs256-local', 'an RS256 token verifies with the public key', static function () use ($privatePath, $publicPath, $verifyRs256): void {
    $publicPem = (string) file_get_contents((string) $publicPath);
    $kid = TokenMinter::keyIdFor((string) $publicPath);
    $minter = TokenMinter::rs256((string) file_get_contents((string) $privatePath), keyId: $kid, issuer: 'iss-1', audience: 'aud-1');
    assertSame('RS256', $minter->algorithm(), 'algorithm');
    $token = $minter->mint('alice@example.com', 120, now: 1_800_000_000);
    [$header, $claims] = $verifyRs256($token, $publicPem);
    assertSame(['alg' => 'RS256', 'typ' => 'JWT', 'kid' => $kid], $header, 'header');
    assertSame(['sub' => 'alice@example.com', 'iat' => 1_800_000_000, 'exp' => 1_800_000_120, 'iss' => 'iss-1', 'aud' => 'aud-1'], $claims, 'claims');
    // the same key from its path, and without kid
    [$header2] = $verifyRs256(TokenMinter::rs256((string) $privatePath)->mint('bob'), $publicPem);
    assertSame(['alg' => 'RS256', 'typ' => 'JWT'], $header2, 'no kid unless asked for');
    // a tampered token does not verify
    [, , $parts] = jwtParts($token);
    $forged = TokenMinter::base64Url(json_encode(['sub' => 'mallory', 'iat' => 1_800_000_000, 'exp' => 1_800_000_120]));
    $sig = (string) base64_decode(strtr($parts[2], '-_', '+/') . str_repeat('=', (4 - strlen($parts[2]) % 4) % 4), true);
    assertSame(0, openssl_verify("$parts[0].$forged", $sig, $publicPem, OPENSSL_ALGO_SHA256), 'other claims, same signature');
});

$t->add('rs256-local', 'RS256 refuses what is not a 2048-bit RSA private key', static function () use ($publicPath): void {
    assertThrows(\InvalidArgumentException::class, static fn () => TokenMinter::rs256((string) file_get_contents((string) $publicPath)), 'a public key');
    assertThrows(\InvalidArgumentException::class, static fn () => TokenMinter::rs256('/no/such/key.pem'), 'a missing file');
    $small = openssl_pkey_new(['private_key_type' => OPENSSL_KEYTYPE_RSA, 'private_key_bits' => 1024]);
    assertTrue($small !== false, 'made a 1024-bit key');
    assertThrows(\InvalidArgumentException::class, static fn () => TokenMinter::rs256($small), 'a 1024-bit key');
    $ec = openssl_pkey_new(['private_key_type' => OPENSSL_KEYTYPE_EC, 'curve_name' => 'prime256v1']);
    if ($ec !== false) {
        assertThrows(\InvalidArgumentException::class, static fn () => TokenMinter::rs256($ec), 'an EC key');
    }
    assertSame('web-2026', TokenMinter::keyIdFor('/etc/keys/web-2026.pem'), 'keyIdFor');
});

// ==================================================================================================== RS256 (server)

$rsUrl = env('TASKGATE_RS256_URL');
$issuer = env('TASKGATE_RS256_ISSUER');
$audience = env('TASKGATE_RS256_AUDIENCE');
$t->group('rs256', $rsUrl === null || $privatePath === null || $publicPath === null || $issuer === null || $audience === null
    ? 'TASKGATE_RS256_URL, TASKGATE_RSA_PRIVATE_KEY, TASKGATE_RSA_PUBLIC_KEY, TASKGATE_RS256_ISSUER and TASKGATE_RS256_AUDIENCE are not set'
    : (extension_loaded('openssl') ? null : 'the openssl extension is not loaded'));

$rsMinter = static fn (?string $kid = 'auto', ?string $iss = 'auto', ?string $aud = 'auto'): TokenMinter => TokenMinter::rs256(
    (string) $privatePath,
    keyId: $kid === 'auto' ? TokenMinter::keyIdFor((string) $publicPath) : $kid,
    issuer: $iss === 'auto' ? $issuer : $iss,
    audience: $aud === 'auto' ? $audience : $aud,
);
$ping = static function (string $token) use ($rsUrl): array {
    return http('POST', "$rsUrl/poll", $token, ['cmd' => 'ping']);
};

$t->add('rs256', 'an RS256 token is accepted by a --token-key server', static function () use ($rsUrl, $rsMinter, $ping): void {
    $uid = uid('rs');
    $token = $rsMinter()->mint($uid, 300);
    [$status, $reply] = $ping($token);
    assertSame([200, 'pong'], [$status, $reply['type'] ?? null], 'POST /poll with Bearer: ' . json_encode($reply));
    [$status, $reply] = http('GET', "$rsUrl/poll?timeout=0&token=" . rawurlencode($token));
    assertSame(200, $status, 'GET /poll?token=: ' . json_encode($reply));
    [$status, $reply] = http('POST', "$rsUrl/poll", $token, ['cmd' => 'sleep', 'args' => ['ms' => 1, 'id' => 'rs-1']]);
    assertSame(202, $status, 'submit as the uid');
    assertSame("$uid~rs-1", $reply['task']['id'] ?? null, 'the token names the uid');
});

$t->add('rs256', 'a token without kid is checked against the only key', static function () use ($rsMinter, $ping): void {
    [$status, $reply] = $ping($rsMinter(kid: null)->mint(uid('rs'), 300));
    assertSame(200, $status, 'accepted: ' . json_encode($reply));
});

$t->add('rs256', 'an expired RS256 token is refused with 401', static function () use ($rsMinter, $ping): void {
    [$status, $reply] = $ping($rsMinter()->mint(uid('rs'), 60, now: time() - 3600));
    assertSame([401, 'unauthorized'], [$status, $reply['error'] ?? null], 'expired');
});

$t->add('rs256', 'a wrong or missing issuer or audience is refused with 401', static function () use ($rsMinter, $ping, $issuer, $audience, $privatePath): void {
    foreach ([
        'wrong issuer' => $rsMinter(iss: "$issuer-not"),
        'wrong audience' => $rsMinter(aud: "$audience-not"),
        'no issuer' => $rsMinter(iss: null),
        'no audience' => $rsMinter(aud: null),
    ] as $what => $minter) {
        [$status] = $ping($minter->mint(uid('rs'), 300));
        assertSame(401, $status, $what);
    }
    [$status] = $ping(TokenMinter::rs256((string) $privatePath, issuer: $issuer, audience: [$audience, 'someone-else'])->mint(uid('rs'), 300));
    assertSame(200, $status, 'an audience list that includes ours');
});

$t->add('rs256', 'a token signed with another key, an unknown kid or as HS256 with the public key is refused', static function () use ($rsMinter, $ping, $publicPath, $issuer, $audience): void {
    $other = openssl_pkey_new(['private_key_type' => OPENSSL_KEYTYPE_RSA, 'private_key_bits' => 2048]);
    assertTrue($other !== false, 'made another key');
    $kid = TokenMinter::keyIdFor((string) $publicPath);
    [$status] = $ping(TokenMinter::rs256($other, keyId: $kid, issuer: $issuer, audience: $audience)->mint(uid('rs'), 300));
    assertSame(401, $status, 'another key under our kid');
    [$status] = $ping($rsMinter(kid: "$kid-unknown")->mint(uid('rs'), 300));
    assertSame(401, $status, 'an unknown kid');
    // "alg confusion": an HMAC keyed with the public key's PEM text must not pass as a signature
    [$status] = $ping(TokenMinter::hs256((string) file_get_contents((string) $publicPath), issuer: $issuer, audience: $audience, keyId: $kid)->mint(uid('rs'), 300));
    assertSame(401, $status, 'HS256 signed with the public key');
});

$t->add('rs256', 'the admin API is off in token mode without --admin-token (403)', static function () use ($rsUrl): void {
    assertApiError(403, 'forbidden', static fn () => (new Client((string) $rsUrl))->tasks());
});

exit($t->run(array_values(array_slice($argv, 1))));
