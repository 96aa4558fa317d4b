import DequeModule
import Foundation
import Logging
import Synchronization

/// The one task pool that every front door (WebSocket, long-poll, REST) submits to.
///
/// At most `workers` tasks run at once; up to `queueLimit` more wait in FIFO order. Every state change is written
/// to the store (with its event, when the task has an owner) before anyone is told about it.
public actor TaskPool {
    public struct Configuration: Sendable {
        public var workers: Int
        public var queueLimit: Int
        /// Queued and running tasks one uid may have at once.
        public var tasksPerUID: Int
        public init(workers: Int = 4, queueLimit: Int = 1000, tasksPerUID: Int = 100) {
            self.workers = workers
            self.queueLimit = queueLimit
            self.tasksPerUID = tasksPerUID
        }
    }

    private struct Job: Sendable {
        var record: TaskRecord
        var handler: any TaskHandler
        var options: TaskOptions
    }

    private enum StopReason {
        case cancelled
        case shutdown
    }

    private struct Running {
        var cmd: String
        var uid: String?
        var task: Task<Void, Never>
        var stopReason: StopReason?
    }

    /// What the pool is doing, for the dashboard and `/api/v1/stats`.
    public struct Stats: Sendable, Encodable {
        public struct HandlerLoad: Sendable, Encodable {
            public var queued = 0
            public var running = 0
        }
        public var queued: Int
        public var running: Int
        public var workers: Int
        public var queueLimit: Int
        public var handlers: [String: HandlerLoad]
        /// Tasks that reached each final status since the server started.
        public var finished: [String: Int]
    }

    public let configuration: Configuration
    private let store: any TaskStore
    private let events: EventLog
    private let executor: TaskWorkerExecutor
    /// The handler table in force: a queued task runs on the table of when it starts, so tasks queued before a
    /// reload use the reloaded handlers (running ones finish on theirs).
    private let handlers: @Sendable () -> HandlerTable
    private let logger: Logger
    private var queue: Deque<Job> = []
    private var running: [String: Running] = [:]
    /// Failed attempts waiting out their backoff before they queue again.
    private var retrying: [String: (job: Job, timer: Task<Void, Never>)] = [:]
    /// Places promised to submissions that are still being written to the store.
    private var reserved = 0
    private var reservedByUID: [String: Int] = [:]
    private var accepting = true
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []
    private var finishedCounts: [TaskStatus: Int] = [:]

    public init(
        configuration: Configuration, store: any TaskStore, events: EventLog,
        handlers: @escaping @Sendable () -> HandlerTable, logger: Logger
    ) {
        self.configuration = configuration
        self.store = store
        self.events = events
        self.handlers = handlers
        self.executor = TaskWorkerExecutor(threadCount: configuration.workers)
        self.logger = logger
    }

    public var queuedCount: Int { queue.count + retrying.count }

    public var stats: Stats {
        var handlers: [String: Stats.HandlerLoad] = [:]
        for job in queue { handlers[job.record.cmd, default: .init()].queued += 1 }
        for entry in retrying.values { handlers[entry.job.record.cmd, default: .init()].queued += 1 }
        for entry in running.values { handlers[entry.cmd, default: .init()].running += 1 }
        let finished = Dictionary(
            uniqueKeysWithValues: TaskStatus.allCases.filter(\.isFinal).map { ($0.rawValue, finishedCounts[$0, default: 0]) })
        return Stats(
            queued: queuedCount, running: running.count, workers: configuration.workers, queueLimit: configuration.queueLimit,
            handlers: handlers, finished: finished)
    }
    public var runningCount: Int { running.count }

    /// Promises a place in the pool before the task is stored, so a full queue is refused before anything is written.
    public func reserve(uid: String?) throws(GatewayError) {
        guard accepting else { throw GatewayError(.unavailable, "the server is shutting down") }
        let active = running.count + queue.count + retrying.count + reserved
        guard active < configuration.workers + configuration.queueLimit else {
            throw GatewayError(.queueFull, "the task queue is full (\(configuration.queueLimit) waiting); try again later")
        }
        if let uid {
            guard activeCount(uid: uid) < configuration.tasksPerUID else {
                throw GatewayError(
                    .tooManyRequests, "uid '\(uid)' already has \(configuration.tasksPerUID) tasks queued or running; wait for some to finish")
            }
            reservedByUID[uid, default: 0] += 1
        }
        reserved += 1
    }

    public func releaseReservation(uid: String?) {
        reserved = max(0, reserved - 1)
        if let uid { releaseUIDReservation(uid) }
    }

    private func releaseUIDReservation(_ uid: String) {
        let left = (reservedByUID[uid] ?? 1) - 1
        reservedByUID[uid] = left > 0 ? left : nil
    }

    private func activeCount(uid: String) -> Int {
        reservedByUID[uid, default: 0] + queue.count { $0.record.uid == uid } + retrying.values.count { $0.job.record.uid == uid }
            + running.values.count { $0.uid == uid }
    }

    /// Takes a stored, queued task; uses up one reservation.
    public func enqueue(_ record: TaskRecord, handler: any TaskHandler, options: TaskOptions) {
        reserved = max(0, reserved - 1)
        if let uid = record.uid { releaseUIDReservation(uid) }
        queue.append(Job(record: record, handler: handler, options: options))
        startWaitingJobs()
    }

    /// After a restart: queued tasks queue again; tasks that were running when the process died run again if their
    /// handler is idempotent and they have attempts left, and are failed as `interrupted` otherwise.
    public func recover(_ tasks: [TaskRecord], handlers: HandlerTable) async -> (requeued: Int, failed: Int) {
        var requeued = 0
        var failed = 0
        for var record in tasks {
            guard let handler = handlers.handler(named: record.cmd) else {
                await end(record, as: .failed, error: "interrupted: no handler named '\(record.cmd)' after the restart")
                failed += 1
                continue
            }
            let options =
                (try? TaskOptions(args: record.args.objectValue ?? [:], handler: handler))
                ?? (try! TaskOptions(args: [:], handler: handler))  // no overrides: cannot fail
            if record.status == .running {
                guard handler.isIdempotent, record.attempts < options.maxAttempts else {
                    await end(record, as: .failed, error: "interrupted: the server stopped while the task was running")
                    failed += 1
                    continue
                }
                record.status = .queued
                record.error = "interrupted by a restart; running it again"
                await save(record)
            }
            queue.append(Job(record: record, handler: handler, options: options))
            requeued += 1
        }
        startWaitingJobs()
        return (requeued, failed)
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
        var waiting: TaskRecord?
        if let index = queue.firstIndex(where: { $0.record.id == id }) {
            waiting = queue.remove(at: index).record
        } else if let entry = retrying.removeValue(forKey: id) {
            entry.timer.cancel()
            waiting = entry.job.record
        }
        if let waiting {
            let cancelled = await end(waiting, as: .cancelled, error: "cancelled before it started")
            signalIdleIfNeeded()
            return .dequeued(cancelled)
        }
        guard var entry = running[id] else { return .notActive }
        if entry.stopReason == nil { entry.stopReason = .cancelled }
        running[id] = entry
        entry.task.cancel()
        return .stopping
    }

    /// Stops taking tasks, lets running ones finish for up to `grace`, then interrupts them. With a durable store,
    /// waiting tasks stay queued (they run after the restart); otherwise they are failed as interrupted.
    public func shutdown(grace: Duration) async {
        accepting = false
        let waiting = Array(queue) + retrying.values.map(\.job)
        for entry in retrying.values { entry.timer.cancel() }
        retrying.removeAll()
        queue.removeAll()
        if !store.isDurable {
            for job in waiting {
                await end(job.record, as: .failed, error: "interrupted: the server shut down before the task started")
            }
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

    /// Returns once nothing is running, queued or waiting to retry (used by tests and shutdown).
    public func waitUntilIdle() async {
        if running.isEmpty && queue.isEmpty && retrying.isEmpty { return }
        await withCheckedContinuation { idleWaiters.append($0) }
    }

    private func startWaitingJobs() {
        while accepting, running.count < configuration.workers, let job = queue.popFirst() {
            let id = job.record.id
            // The task starts only after it is in `running`, so its completion always finds its entry.
            let task = Task { await self.execute(job) }
            running[id] = Running(cmd: job.record.cmd, uid: job.record.uid, task: task, stopReason: nil)
        }
        signalIdleIfNeeded()
    }

    private func signalIdleIfNeeded() {
        guard running.isEmpty && queue.isEmpty && retrying.isEmpty else { return }
        let waiters = idleWaiters
        idleWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

    private func execute(_ queued: Job) async {
        var job = queued
        if let current = handlers().handler(named: job.record.cmd) {
            job.handler = current
            job.options = (try? TaskOptions(args: job.record.args.objectValue ?? [:], handler: current)) ?? job.options
        } else {
            await end(job.record, as: .failed, error: "no handler named '\(job.record.cmd)' any more (removed by a reload)")
            running[job.record.id] = nil
            startWaitingJobs()
            return
        }
        var record = job.record
        record.status = .running
        record.attempts += 1
        record.progress = 0
        record.error = nil
        record.startedAt = Date()
        await publishProgress(record)

        let tracker = ProgressTracker(record: record)
        let context = TaskContext(
            taskID: record.id, uid: record.uid, args: record.args.objectValue ?? [:], attempt: record.attempts
        ) { fraction in
            await self.publishProgress(tracker.update(fraction))
        }
        let outcome = await Self.run(job.handler, context: context, timeout: job.options.timeout, on: executor)
        record.progress = tracker.current.progress
        record.finishedAt = Date()
        let stopReason = running[record.id]?.stopReason
        switch outcome {
        case .success(let result):
            record.status = .succeeded
            record.progress = 1
            record.result = result
        case .failure(is TimeoutError):
            record.status = .timedOut
            record.error = "timed out after \(job.options.timeout.wholeMilliseconds) ms"
        case .failure(let error) where stopReason == .cancelled:
            record.status = .cancelled
            record.error = "cancelled"
            _ = error
        case .failure where stopReason == .shutdown:
            if store.isDurable && job.handler.isIdempotent && record.attempts < job.options.maxAttempts {
                record.status = .queued
                record.error = "interrupted by a shutdown; it runs again after the restart"
                record.finishedAt = nil
            } else {
                record.status = .failed
                record.error = "interrupted: the server shut down while the task was running"
            }
        case .failure(let error):
            record.status = .failed
            record.error = (error as? TaskFailure)?.message ?? "handler error: \(error)"
            if record.attempts < job.options.maxAttempts && accepting {
                scheduleRetry(Job(record: record, handler: job.handler, options: job.options))
                running[record.id] = nil
                startWaitingJobs()
                return
            }
        }
        if record.status == .queued {
            await save(record)
        } else {
            await finish(record)
        }
        running[record.id] = nil
        startWaitingJobs()
    }

    /// A failed attempt with attempts left waits out its backoff, then queues again (in the store it is `queued`).
    private func scheduleRetry(_ failed: Job) {
        var job = failed
        job.record.status = .queued
        job.record.finishedAt = nil
        let delay = TaskOptions.backoff(afterAttempt: job.record.attempts)
        let id = job.record.id
        let record = job.record
        let timer = Task {
            await self.save(record)
            try? await Task.sleep(for: delay)
            guard !Task.isCancelled else { return }
            self.retryNow(id)
        }
        retrying[id] = (job, timer)
        logger.info("task failed, retrying", metadata: ["task": .string(id), "attempt": "\(job.record.attempts)", "delay": "\(delay)"])
    }

    private func retryNow(_ id: String) {
        guard let entry = retrying.removeValue(forKey: id) else { return }
        queue.append(entry.job)
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
        await self.record(record) { seq in .progress(record, seq: seq) }
    }

    /// Ends a task that never ran to completion (cancelled while waiting, interrupted, no handler).
    @discardableResult
    private func end(_ task: TaskRecord, as status: TaskStatus, error: String) async -> TaskRecord {
        var record = task
        record.status = status
        record.error = error
        record.finishedAt = Date()
        await finish(record)
        return record
    }

    private func finish(_ record: TaskRecord) async {
        finishedCounts[record.status, default: 0] += 1
        logger.info(
            "task finished",
            metadata: ["task": .string(record.id), "cmd": .string(record.cmd), "status": .string(record.status.rawValue)]
        )
        await self.record(record) { seq in .done(record, seq: seq) }
    }

    /// Records a state change with its event (for a task with an owner) or alone.
    private func record(_ record: TaskRecord, event: @escaping @Sendable (UInt64) -> ServerMessage) async {
        do {
            if let uid = record.uid {
                try await events.append(uid: uid, task: record, event)
            } else {
                try await store.update(record)
            }
        } catch {
            logger.error("could not record task state", metadata: ["task": .string(record.id), "error": "\(error)"])
        }
    }

    /// Records a state change that clients are not told about (a task going back to the queue).
    private func save(_ record: TaskRecord) async {
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
