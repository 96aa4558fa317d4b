<?php
// A TaskGate worker-process handler in PHP: started once and kept running, like Swoole's task
// workers, but without loading a framework per task. TaskGate writes one task per line on stdin:
//   {"id": "...", "cmd": "...", "uid": "...", "args": {...}}
// and we answer with JSON lines on stdout that carry the task id:
//   {"id": "...", "progress": 0.5}           any number of times, then
//   {"id": "...", "result": ...}  or  {"id": "...", "error": "..."}
// When stdin closes (reload, max_requests reached, shutdown) we exit.

// What used to be a controller in the ThinkPHP app: one public method per task.
final class ExportTasks
{
    private int $served = 0;

    /** Builds a CSV export of `rows` rows and returns its size and checksum. */
    public function export(array $task, callable $progress): array
    {
        $rows = (int)($task['args']['rows'] ?? 4);
        $csv = "id,uid,value\n";
        for ($i = 1; $i <= $rows; $i++) {
            $csv .= $i . ',' . $task['uid'] . ',' . ($i * 7) . "\n";
            usleep((int)($task['args']['row_ms'] ?? 5) * 1000);
            $progress($i / $rows);
        }
        $this->served++;
        return ['rows' => $rows, 'bytes' => strlen($csv), 'md5' => md5($csv), 'pid' => getmypid(), 'served' => $this->served];
    }
}

function emit(array $line): void
{
    fwrite(STDOUT, json_encode($line) . "\n");
    fflush(STDOUT);
}

$tasks = new ExportTasks();
while (($line = fgets(STDIN)) !== false) {
    $task = json_decode($line, true);
    if (!is_array($task) || !isset($task['id'])) {
        fwrite(STDERR, "worker.php: not a task: $line");
        continue;
    }
    $id = $task['id'];
    $args = $task['args'] ?? [];
    // Switches the tests use to show how failures look.
    if (!empty($args['crash'])) {
        fwrite(STDERR, "worker.php: crashing on purpose\n");
        exit(3);
    }
    if (!empty($args['garbage'])) {
        fwrite(STDOUT, "Warning: something PHP-ish went to stdout\n");
        fflush(STDOUT);
        continue;
    }
    if (!empty($args['sleep_ms'])) {
        usleep((int)$args['sleep_ms'] * 1000);
    }
    if (!empty($args['fail'])) {
        emit(['id' => $id, 'error' => 'export failed: ' . $args['fail']]);
        continue;
    }
    try {
        $result = $tasks->export($task, fn(float $p) => emit(['id' => $id, 'progress' => $p]));
        emit(['id' => $id, 'result' => $result]);
    } catch (Throwable $e) {
        emit(['id' => $id, 'error' => get_class($e) . ': ' . $e->getMessage()]);
    }
}
