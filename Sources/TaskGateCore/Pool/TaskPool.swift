import DequeModule
import Foundation
import Logging
import Synchronization
import Tracing

/// The one task pool that every front door (WebSocket, long-poll, REST) submits to.
///
/// At most `workers` tasks run at once; up to `queueLimit` more wait (scheduled, queued or retrying). The next to
/// start is picked by `ReadyQueue`'s rule (priority, then fair share across uids, then age), within each handler's
/// start rate. Every state change is written to the store (with its event, when the task has an owner) before
/// anyone is told about it.
public actor TaskPool {
    public struct Configuration: Sendable {
        public var workers: Int
        public var queueLimit: Int
        /// Queued and running tasks one uid may have at once.
        public var tasksPerUID: Int
        /// Round-robin-like turns across uids (per handler) within a priority; off: first in, first out.
        public var fairShare: Bool
        public init(workers: Int = 4, queueLimit: Int = 1000, tasksPerUID: Int = 100, fairShare: Bool = true) {
            self.workers = workers
            self.queueLimit = queueLimit
            self.tasksPerUID = tasksPerUID
            self.fairShare = fairShare
        }
    }

    struct Job: Sendable {
        var record: TaskRecord
        var handler: any TaskHandler
        var options: TaskOptions
    }

    enum StopReason {
        case cancelled
        case shutdown
        /// Another node reclaimed the task (this node's lease ran out): its result is no longer ours to record.
        case lost
    }

    struct Running {
        var cmd: String
        var uid: String?
        var task: Task<Void, Never>
        var stopReason: StopReason?
        var lane: Lane { Lane(cmd: cmd, uid: uid) }
    }

    /// The running tasks by id, with how many run per lane (what fair share compares).
    struct RunningTable {
        private(set) var entries: [String: Running] = [:]
        private(set) var byLane: [Lane: Int] = [:]

        subscript(id: String) -> Running? {
            get { entries[id] }
            set {
                if let old = entries[id] {
                    let left = byLane[old.lane, default: 1] - 1
                    byLane[old.lane] = left > 0 ? left : nil
                }
                if let newValue { byLane[newValue.lane, default: 0] += 1 }
                entries[id] = newValue
            }
        }
        var count: Int { entries.count }
        var isEmpty: Bool { entries.isEmpty }
        var keys: Dictionary<String, Running>.Keys { entries.keys }
        var values: Dictionary<String, Running>.Values { entries.values }
    }

    /// A task waiting for a time: its `runAt` (scheduled) or the end of a retry's backoff.
    struct Delayed {
        var job: Job
        var timer: Task<Void, Never>
    }

    /// What the pool is doing, for the dashboard and `/api/v1/stats`.
    public struct Stats: Sendable, Encodable {
        public struct HandlerLoad: Sendable, Encodable {
            public var queued = 0
            public var running = 0
        }
        public var queued: Int
        /// Of `queued`, those waiting for their `runAt` (or a retry's backoff).
        public var scheduled: Int
        public var running: Int
        public var workers: Int
        public var queueLimit: Int
        public var handlers: [String: HandlerLoad]
        /// Tasks that reached each final status since the server started.
        public var finished: [String: Int]
    }

    public let configuration: Configuration
    let store: any TaskStore
    /// Set in a cluster: queued tasks wait in the shared store, not in `queue`, and free workers claim them.
    let shared: (any SharedTaskStore)?
    var claiming = false
    var claimAgain = false
    let events: EventLog
    let executor: TaskWorkerExecutor
    /// The handler table in force: a queued task runs on the table of when it starts, so tasks queued before a
    /// reload use the reloaded handlers (running ones finish on theirs).
    let handlers: @Sendable () -> HandlerTable
    let logger: Logger
    var queue: ReadyQueue<Job>
    var running = RunningTable()
    /// Tasks not due yet: scheduled ones, and failed attempts waiting out their backoff.
    var delayed: [String: Delayed] = [:]
    var pacer = StartPacer()
    /// Wakes the pool when a handler held back by its rate may start again, or (a cluster) a delayed task is due.
    var wake: (at: ContinuousClock.Instant, timer: Task<Void, Never>)?
    /// Places promised to submissions that are still being written to the store.
    var reserved = 0
    var reservedByUID: [String: Int] = [:]
    var accepting = true
    var idleWaiters: [CheckedContinuation<Void, Never>] = []
    var finishedCounts: [TaskStatus: Int] = [:]

    public init(
        configuration: Configuration, backend: TaskBackend, events: EventLog,
        handlers: @escaping @Sendable () -> HandlerTable, logger: Logger
    ) {
        self.configuration = configuration
        self.store = backend.store
        if case .cluster(let shared) = backend { self.shared = shared } else { self.shared = nil }
        self.events = events
        self.handlers = handlers
        self.executor = TaskWorkerExecutor(threadCount: configuration.workers)
        self.logger = logger
        self.queue = ReadyQueue(fairShare: configuration.fairShare)
    }

    public var queuedCount: Int { queue.count + delayed.count }

    public var stats: Stats {
        var handlers: [String: Stats.HandlerLoad] = [:]
        for job in queue.elements { handlers[job.record.cmd, default: .init()].queued += 1 }
        for entry in delayed.values { handlers[entry.job.record.cmd, default: .init()].queued += 1 }
        for entry in running.values { handlers[entry.cmd, default: .init()].running += 1 }
        let finished = Dictionary(
            uniqueKeysWithValues: TaskStatus.allCases.filter(\.isFinal).map { ($0.rawValue, finishedCounts[$0, default: 0]) })
        return Stats(
            queued: queuedCount, scheduled: delayed.count, running: running.count, workers: configuration.workers, queueLimit: configuration.queueLimit,
            handlers: handlers, finished: finished)
    }
    public var runningCount: Int { running.count }
    public var runningTaskIDs: [String] { Array(running.keys) }

    /// Promises a place in the pool before the task is stored, so a full queue is refused before anything is written.
    public func reserve(uid: String?) async throws(GatewayError) {
        guard accepting else { throw GatewayError(.unavailable, "the server is shutting down") }
        if let shared {
            try await reserveInCluster(uid: uid, shared: shared)
            return
        }
        let active = running.count + queue.count + delayed.count + reserved
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

    func releaseUIDReservation(_ uid: String) {
        let left = (reservedByUID[uid] ?? 1) - 1
        reservedByUID[uid] = left > 0 ? left : nil
    }

    func activeCount(uid: String) -> Int {
        reservedByUID[uid, default: 0] + queue.count(uid: uid)
            + delayed.values.count { $0.job.record.uid == uid } + running.values.count { $0.uid == uid }
    }

    /// Takes a stored, queued task; uses up one reservation.
    public func enqueue(_ record: TaskRecord, handler: any TaskHandler, options: TaskOptions) {
        reserved = max(0, reserved - 1)
        if let uid = record.uid { releaseUIDReservation(uid) }
        if shared != nil {
            claimWork()  // it waits in the shared store, where any node's free worker may claim it
            return
        }
        admit(Job(record: record, handler: handler, options: options))
        startWaitingJobs()
    }

    /// A job goes to the ready queue, or waits for its `runAt` first.
    func admit(_ job: Job) {
        if let runAt = job.record.runAt, runAt > Date() {
            delay(job, for: .milliseconds(Int64((runAt.timeIntervalSinceNow * 1000).rounded(.up))))
        } else {
            queue.append(job, id: job.record.id, lane: Lane(cmd: job.record.cmd, uid: job.record.uid), priority: job.record.priority)
        }
    }

    /// Holds a job until `wait` has passed, then queues it.
    func delay(_ job: Job, for wait: Duration, saving record: TaskRecord? = nil) {
        let id = job.record.id
        let timer = Task {
            if let record { await self.save(record) }
            try? await Task.sleep(for: wait)
            guard !Task.isCancelled else { return }
            self.due(id)
        }
        delayed[id] = Delayed(job: job, timer: timer)
    }

    func due(_ id: String) {
        guard let entry = delayed.removeValue(forKey: id) else { return }
        let job = entry.job
        queue.append(job, id: id, lane: Lane(cmd: job.record.cmd, uid: job.record.uid), priority: job.record.priority)
        startWaitingJobs()
    }

    /// Runs `startWaitingJobs` or `claimWork` again at `instant` (a rate's next slot, a delayed task's due time).
    func wakeUp(at instant: ContinuousClock.Instant) {
        if let wake, wake.at <= instant, wake.at > .now { return }
        wake?.timer.cancel()
        let timer = Task {
            try? await Task.sleep(until: instant)
            guard !Task.isCancelled else { return }
            self.wake = nil
            self.startWaitingJobs()
        }
        wake = (instant, timer)
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
            let options = Self.options(of: record, on: handler)
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
            admit(Job(record: record, handler: handler, options: options))
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
        if let job = queue.remove(id: id) {
            waiting = job.record
        } else if let entry = delayed.removeValue(forKey: id) {
            entry.timer.cancel()
            waiting = entry.job.record
        }
        if let waiting {
            let cancelled = await end(waiting, as: .cancelled, error: "cancelled before it started") ?? waiting
            signalIdleIfNeeded()
            return .dequeued(cancelled)
        }
        if var entry = running[id] {
            if entry.stopReason == nil { entry.stopReason = .cancelled }
            running[id] = entry
            entry.task.cancel()
            return .stopping
        }
        guard let shared else { return .notActive }
        return await cancelInCluster(id: id, shared: shared)
    }

    /// Stops taking tasks, lets running ones finish for up to `grace`, then interrupts them. With a durable store,
    /// waiting tasks stay queued (they run after the restart); otherwise they are failed as interrupted.
    public func shutdown(grace: Duration) async {
        accepting = false
        let waiting = queue.elements + delayed.values.map(\.job)
        for entry in delayed.values { entry.timer.cancel() }
        delayed.removeAll()
        queue = ReadyQueue(fairShare: configuration.fairShare)
        wake?.timer.cancel()
        if !store.isDurable {
            for job in waiting {
                await end(job.record, as: .failed, error: "interrupted: the server shut down before the task started")
            }
        }
        if !running.isEmpty {
            // Woken by the last running task's end, or by the grace running out, whichever comes first.
            _ = try? await withDeadline(grace, timeoutError: { CancellationError() }) { await self.waitUntilIdle() }
            for (id, var entry) in running.entries {
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
        if running.isEmpty && queue.isEmpty && delayed.isEmpty { return }
        await withCheckedContinuation { idleWaiters.append($0) }
    }

    func startWaitingJobs() {
        claimWork()
        let now = ContinuousClock.now
        while accepting, running.count < configuration.workers, !queue.isEmpty {
            let held = pacer.blocked(now: now)
            let load = running.byLane
            guard let job = queue.popNext(running: { load[$0, default: 0] }, held: Set(held.commands))
            else {
                if let until = held.until { wakeUp(at: until) }  // only rate-held handlers are waiting
                break
            }
            pacer.started(job.record.cmd, limit: job.handler.rateLimit, now: now)
            let id = job.record.id
            // The task starts only after it is in `running`, so its completion always finds its entry.
            let task = Task { await self.execute(job) }
            running[id] = Running(cmd: job.record.cmd, uid: job.record.uid, task: task, stopReason: nil)
        }
        signalIdleIfNeeded()
    }

    func signalIdleIfNeeded() {
        guard running.isEmpty && queue.isEmpty && delayed.isEmpty else { return }
        let waiters = idleWaiters
        idleWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

}

/// The latest progress of a running task, shared between its handler and the pool.
final class ProgressTracker: Sendable {
    let state: Mutex<TaskRecord>
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
