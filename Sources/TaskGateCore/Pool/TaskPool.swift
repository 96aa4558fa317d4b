import DequeModule
import Foundation
import Logging
import Synchronization

/// The one task pool that every front door (WebSocket, long-poll, REST) submits to.
///
/// At most `workers` tasks run at once; up to `queueLimit` more wait in FIFO order. Every state change is written
/// to the store first and then published to the owner's event log, so what a client is told is always on record.
public actor TaskPool {
    public struct Configuration: Sendable {
        public var workers: Int
        public var queueLimit: Int
        public init(workers: Int = 4, queueLimit: Int = 1000) {
            self.workers = workers
            self.queueLimit = queueLimit
        }
    }

    private struct Job: Sendable {
        var record: TaskRecord
        var handler: any TaskHandler
        var timeout: Duration
    }

    private enum StopReason {
        case cancelled
        case shutdown
    }

    private struct Running {
        var task: Task<Void, Never>
        var stopReason: StopReason?
    }

    public let configuration: Configuration
    private let store: any TaskStore
    private let events: EventLog
    private let executor: TaskWorkerExecutor
    private let logger: Logger
    private var queue: Deque<Job> = []
    private var running: [String: Running] = [:]
    /// Places promised to submissions that are still being written to the store.
    private var reserved = 0
    private var accepting = true
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []

    public init(configuration: Configuration, store: any TaskStore, events: EventLog, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.events = events
        self.executor = TaskWorkerExecutor(threadCount: configuration.workers)
        self.logger = logger
    }

    public var queuedCount: Int { queue.count }
    public var runningCount: Int { running.count }

    /// Promises a place in the pool before the task is stored, so a full queue is refused before anything is written.
    public func reserve() throws(GatewayError) {
        guard accepting else { throw GatewayError(.unavailable, "the server is shutting down") }
        guard running.count + queue.count + reserved < configuration.workers + configuration.queueLimit else {
            throw GatewayError(.queueFull, "the task queue is full (\(configuration.queueLimit) waiting); try again later")
        }
        reserved += 1
    }

    public func releaseReservation() {
        reserved = max(0, reserved - 1)
    }

    /// Takes a stored, queued task; uses up one reservation.
    public func enqueue(_ record: TaskRecord, handler: any TaskHandler, timeout: Duration) {
        reserved = max(0, reserved - 1)
        queue.append(Job(record: record, handler: handler, timeout: timeout))
        startWaitingJobs()
    }

    public enum CancelOutcome: Sendable {
        /// The task was waiting and is now cancelled.
        case dequeued(TaskRecord)
        /// The task is running; its handler has been asked to stop and its `done` event will follow.
        case stopping
        /// The pool has no such task (finished, or never here).
        case notActive
    }

    public func cancel(id: String) async -> CancelOutcome {
        if let index = queue.firstIndex(where: { $0.record.id == id }) {
            var record = queue.remove(at: index).record
            record.status = .cancelled
            record.error = "cancelled before it started"
            record.finishedAt = Date()
            await finish(record)
            return .dequeued(record)
        }
        guard var entry = running[id] else { return .notActive }
        if entry.stopReason == nil { entry.stopReason = .cancelled }
        running[id] = entry
        entry.task.cancel()
        return .stopping
    }

    /// Stops taking tasks, lets running ones finish for up to `grace`, then interrupts them and fails the queued ones.
    public func shutdown(grace: Duration) async {
        accepting = false
        let waiting = queue
        queue.removeAll()
        for job in waiting {
            var record = job.record
            record.status = .failed
            record.error = "interrupted: the server shut down before the task started"
            record.finishedAt = Date()
            await finish(record)
        }
        if !running.isEmpty {
            let deadline = ContinuousClock.now + grace
            while !running.isEmpty, ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(20))
            }
            for (id, var entry) in running {
                entry.stopReason = .shutdown
                running[id] = entry
                entry.task.cancel()
            }
            await waitUntilIdle()
        }
        await executor.shutdown()
    }

    /// Returns once nothing is running or queued (used by tests and shutdown).
    public func waitUntilIdle() async {
        if running.isEmpty && queue.isEmpty { return }
        await withCheckedContinuation { idleWaiters.append($0) }
    }

    private func startWaitingJobs() {
        while running.count < configuration.workers, let job = queue.popFirst() {
            let id = job.record.id
            // The task starts only after it is in `running`, so its completion always finds its entry.
            let task = Task { await self.execute(job) }
            running[id] = Running(task: task, stopReason: nil)
        }
        if running.isEmpty && queue.isEmpty {
            let waiters = idleWaiters
            idleWaiters.removeAll()
            for waiter in waiters { waiter.resume() }
        }
    }

    private func execute(_ job: Job) async {
        var record = job.record
        record.status = .running
        record.startedAt = Date()
        await publishProgress(record)

        let progressRecord = ProgressTracker(record: record)
        let context = TaskContext(taskID: record.id, uid: record.uid, args: record.args.objectValue ?? [:]) { fraction in
            let updated = progressRecord.update(fraction)
            await self.publishProgress(updated)
        }
        let outcome = await Self.run(job.handler, context: context, timeout: job.timeout, on: executor)
        record.progress = progressRecord.current.progress
        record.finishedAt = Date()
        switch outcome {
        case .success(let result):
            record.status = .succeeded
            record.progress = 1
            record.result = result
        case .failure(let error as TaskFailure):
            record.status = .failed
            record.error = error.message
        case .failure(is TimeoutError):
            record.status = .timedOut
            record.error = "timed out after \(job.timeout.wholeMilliseconds) ms"
        case .failure(let error):
            switch running[record.id]?.stopReason {
            case .cancelled?:
                record.status = .cancelled
                record.error = "cancelled"
            case .shutdown?:
                record.status = .failed
                record.error = "interrupted: the server shut down while the task was running"
            case nil:
                record.status = .failed
                record.error = error is CancellationError ? "cancelled" : "handler error: \(error)"
            }
        }
        await finish(record)
        running[record.id] = nil
        startWaitingJobs()
    }

    private struct TimeoutError: Error {}

    /// Runs the handler on the worker threads, racing it against its timeout.
    private nonisolated static func run(
        _ handler: any TaskHandler, context: TaskContext, timeout: Duration, on executor: TaskWorkerExecutor
    ) async -> Result<JSONValue, any Error> {
        await withTaskGroup(of: Result<JSONValue, any Error>?.self) { group in
            group.addTask(executorPreference: executor) {
                do { return .success(try await handler.run(context)) } catch { return .failure(error) }
            }
            group.addTask {
                do {
                    try await Task.sleep(for: timeout)
                    return .failure(TimeoutError())
                } catch {
                    return nil  // cancelled because the handler finished first
                }
            }
            var outcome: Result<JSONValue, any Error> = .failure(CancellationError())
            if let first = await group.next(), let result = first {
                outcome = result
            }
            group.cancelAll()
            return outcome
        }
    }

    private func publishProgress(_ record: TaskRecord) async {
        await persist(record)
        guard let uid = record.uid else { return }
        events.append(uid: uid) { seq in .progress(record, seq: seq) }
    }

    private func finish(_ record: TaskRecord) async {
        await persist(record)
        logger.info(
            "task finished",
            metadata: ["task": .string(record.id), "cmd": .string(record.cmd), "status": .string(record.status.rawValue)]
        )
        guard let uid = record.uid else { return }
        events.append(uid: uid) { seq in .done(record, seq: seq) }
    }

    private func persist(_ record: TaskRecord) async {
        do {
            try await store.update(record)
        } catch {
            logger.error("could not record task state", metadata: ["task": .string(record.id), "error": "\(error)"])
        }
    }
}

/// The latest progress of a running task, shared between its handler and the pool.
private final class ProgressTracker: Sendable {
    private let state: Mutex<TaskRecord>
    init(record: TaskRecord) { state = Mutex(record) }
    var current: TaskRecord { state.withLock { $0 } }
    func update(_ fraction: Double) -> TaskRecord {
        state.withLock { record in
            record.progress = fraction
            return record
        }
    }
}

extension Duration {
    public var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
