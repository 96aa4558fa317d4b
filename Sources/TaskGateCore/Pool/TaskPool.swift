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
        /// Its handler has returned and its end is being recorded: it holds no worker any more (Swoole's task
        /// worker, too, takes the next task once it has handed back its result), but it is still this node's.
        var isFinishing = false
        var lane: Lane { Lane(cmd: cmd, uid: uid) }
    }

    /// The running tasks by id, with how many run per lane (what fair share compares) and how many hold a worker.
    struct RunningTable {
        private(set) var entries: [String: Running] = [:]
        private(set) var byLane: [Lane: Int] = [:]
        /// Entries whose handler has not returned yet: what the worker limit counts.
        private(set) var working = 0

        subscript(id: String) -> Running? {
            get { entries[id] }
            set {
                if let old = entries[id] {
                    let left = byLane[old.lane, default: 1] - 1
                    byLane[old.lane] = left > 0 ? left : nil
                    if !old.isFinishing { working -= 1 }
                }
                if let newValue {
                    byLane[newValue.lane, default: 0] += 1
                    if !newValue.isFinishing { working += 1 }
                }
                entries[id] = newValue
            }
        }
        var count: Int { entries.count }
        var isEmpty: Bool { entries.isEmpty }
        var keys: Dictionary<String, Running>.Keys { entries.keys }
        var values: Dictionary<String, Running>.Values { entries.values }
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
    /// Where waiting tasks wait and who hands them out: in memory on a single node, the shared store in a cluster.
    let coordinator: any TaskCoordinator
    /// A claim loop is under way (a cluster's claims suspend); `claimAgain` asks it for one more round.
    var claiming = false
    var claimAgain = false
    let events: EventLog
    let executor: TaskWorkerExecutor
    /// The handler table in force: a queued task runs on the table of when it starts, so tasks queued before a
    /// reload use the reloaded handlers (running ones finish on theirs).
    let handlers: @Sendable () -> HandlerTable
    let logger: Logger
    var running = RunningTable()
    var pacer = StartPacer()
    /// Wakes the pool when a handler held back by its rate may start again, or a waiting task falls due.
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
        self.coordinator = backend.makeCoordinator(fairShare: configuration.fairShare)
        self.events = events
        self.handlers = handlers
        self.executor = TaskWorkerExecutor(threadCount: configuration.workers)
        self.logger = logger
    }

    /// Tasks waiting on this node (in a cluster they wait in the store: `Gateway.poolStats` reads those).
    public var queuedCount: Int { coordinator.waitingCount }

    public var stats: Stats {
        let waiting = coordinator.waiting
        var handlers = waiting.byCommand.mapValues { Stats.HandlerLoad(queued: $0) }
        for entry in running.values where !entry.isFinishing { handlers[entry.cmd, default: .init()].running += 1 }
        let finished = Dictionary(
            uniqueKeysWithValues: TaskStatus.allCases.filter(\.isFinal).map { ($0.rawValue, finishedCounts[$0, default: 0]) })
        return Stats(
            queued: coordinator.waitingCount, scheduled: waiting.notDue, running: running.working,
            workers: configuration.workers, queueLimit: configuration.queueLimit, handlers: handlers, finished: finished)
    }
    public var runningCount: Int { running.count }
    public var runningTaskIDs: [String] { Array(running.keys) }

    /// Stores a new task with a place in the pool promised first, so a full queue is refused before anything is
    /// written. The promise is kept for `enqueue` (which the caller calls once it has answered, so its answer
    /// comes before the task's events), and given back when the write fails or the task already exists.
    /// It is not on the pool's actor: the write (a large record's encoding) must not queue behind or ahead of the
    /// pool's other work, and the reply to the submitter does not wait for a turn on the actor after it.
    public nonisolated func admit(_ record: TaskRecord) async throws(GatewayError) -> InsertOutcome {
        try await reserve(uid: record.uid)
        let outcome: InsertOutcome
        do {
            outcome = try await store.insert(record)
        } catch {
            await releaseReservation(uid: record.uid)
            logger.error("could not store task", metadata: ["task": .string(record.id), "error": "\(error)"])
            // Passing (a full disk, a database away): the client may try again; nothing was promised.
            throw GatewayError(.unavailable, "the task could not be stored; it was not submitted (try again later)")
        }
        if case .existing = outcome { await releaseReservation(uid: record.uid) }
        return outcome
    }

    /// Promises a place in the pool before the task is stored.
    func reserve(uid: String?) async throws(GatewayError) {
        guard accepting else { throw GatewayError(.unavailable, "the server is shutting down") }
        let counts = try await coordinator.activeCounts(uid: uid, runningHere: running.byLane)
        guard counts.active + reserved < configuration.workers + configuration.queueLimit else {
            throw GatewayError(.queueFull, "the task queue is full (\(configuration.queueLimit) waiting); try again later")
        }
        if let uid {
            guard counts.uid + reservedByUID[uid, default: 0] < configuration.tasksPerUID else {
                throw GatewayError(
                    .tooManyRequests, "uid '\(uid)' already has \(configuration.tasksPerUID) tasks queued or running; wait for some to finish")
            }
            reservedByUID[uid, default: 0] += 1
        }
        reserved += 1
    }

    func releaseReservation(uid: String?) {
        reserved = max(0, reserved - 1)
        if let uid { releaseUIDReservation(uid) }
    }

    func releaseUIDReservation(_ uid: String) {
        let left = (reservedByUID[uid] ?? 1) - 1
        reservedByUID[uid] = left > 0 ? left : nil
    }

    /// Takes a task `admit` stored, to wait for a worker; uses up its reservation.
    public func enqueue(_ record: TaskRecord) async {
        reserved = max(0, reserved - 1)
        if let uid = record.uid { releaseUIDReservation(uid) }
        coordinator.enqueue(record, notBefore: nil)
        if coordinator.claimsFromMemory {
            await startWaitingJobs()
        } else {
            claimWork()  // the submitter's answer and its next message do not wait on the claim's round trips
        }
    }

    /// Runs `startWaitingJobs` again at `instant` (a rate's next slot, a waiting task's due time).
    func wakeUp(at instant: ContinuousClock.Instant) {
        if let wake, wake.at <= instant, wake.at > .now { return }
        wake?.timer.cancel()
        let timer = Task {
            try? await Task.sleep(until: instant)
            guard !Task.isCancelled else { return }
            self.wake = nil
            await self.startWaitingJobs()
        }
        wake = (instant, timer)
    }

    /// After a restart: queued tasks queue again; tasks that were running when the process died run again if their
    /// handler is idempotent and they have attempts left, and are failed as `interrupted` otherwise.
    /// In a cluster there is nothing to pick up at a start: leases tell which tasks a node left behind
    /// (`reclaimExpiredTasks`), and queued ones wait in the store.
    public func recover(handlers: HandlerTable) async throws -> (requeued: Int, failed: Int) {
        var requeued = 0
        var failed = 0
        for var record in try await coordinator.tasksToRecover() {
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
            coordinator.enqueue(record, notBefore: nil)
            requeued += 1
        }
        await startWaitingJobs()
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

    /// A waiting task is cancelled here (unless, in a cluster, a node claims it first); a running one is asked to
    /// stop, here or through the coordinator on the node that runs it.
    public func cancel(id: String) async -> CancelOutcome {
        if stopRunning(id: id, because: .cancelled) { return .stopping }
        if let waiting = await coordinator.withdraw(id: id) {
            if let cancelled = await end(waiting, as: .cancelled, error: "cancelled before it started", condition: .queued) {
                signalIdleIfNeeded()
                return .dequeued(cancelled)
            }
            if stopRunning(id: id, because: .cancelled) { return .stopping }  // claimed here meanwhile
        }
        do {
            return try await coordinator.requestCancelElsewhere(id: id) ? .stopping : .notActive
        } catch {
            logger.error("could not ask for a cancel", metadata: ["task": .string(id), "error": "\(error)"])
            return .stopping
        }
    }

    /// Cancels a task running here, recording why; false if it does not run here. One whose handler has returned
    /// is left to record its end (its `done` follows).
    func stopRunning(id: String, because reason: StopReason) -> Bool {
        guard var entry = running[id] else { return false }
        guard !entry.isFinishing else { return true }
        if entry.stopReason == nil { entry.stopReason = reason }
        running[id] = entry
        entry.task.cancel()
        return true
    }

    /// Stops taking tasks, lets running ones finish for up to `grace`, then interrupts them. With a durable store,
    /// waiting tasks stay queued (they run after the restart); otherwise they are failed as interrupted.
    public func shutdown(grace: Duration) async {
        accepting = false
        let waiting = coordinator.drain()
        wake?.timer.cancel()
        if !store.isDurable {
            for task in waiting {
                await end(task, as: .failed, error: "interrupted: the server shut down before the task started")
            }
        }
        if !running.isEmpty {
            // Woken by the last running task's end, or by the grace running out, whichever comes first.
            _ = try? await withDeadline(grace, timeoutError: { CancellationError() }) { await self.waitUntilIdle() }
            for (id, var entry) in running.entries where !entry.isFinishing {
                entry.stopReason = .shutdown
                running[id] = entry
                entry.task.cancel()
            }
            await waitUntilIdle()
        }
        await executor.shutdown()
    }

    /// Returns once nothing is running or waiting here (used by tests and shutdown).
    public func waitUntilIdle() async {
        if isIdle { return }
        await withCheckedContinuation { idleWaiters.append($0) }
    }

    var isIdle: Bool { running.isEmpty && coordinator.waitingCount == 0 }

    func signalIdleIfNeeded() {
        guard isIdle else { return }
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
