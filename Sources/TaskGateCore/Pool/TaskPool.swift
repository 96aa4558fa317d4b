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

    private struct Job: Sendable {
        var record: TaskRecord
        var handler: any TaskHandler
        var options: TaskOptions
    }

    private enum StopReason {
        case cancelled
        case shutdown
        /// Another node reclaimed the task (this node's lease ran out): its result is no longer ours to record.
        case lost
    }

    private struct Running {
        var cmd: String
        var uid: String?
        var task: Task<Void, Never>
        var stopReason: StopReason?
        var lane: Lane { Lane(cmd: cmd, uid: uid) }
    }

    /// The running tasks by id, with how many run per lane (what fair share compares).
    private struct RunningTable {
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
    private struct Delayed {
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
    private let store: any TaskStore
    /// Set in a cluster: queued tasks wait in the shared store, not in `queue`, and free workers claim them.
    private let shared: (any SharedTaskStore)?
    private var claiming = false
    private var claimAgain = false
    private let events: EventLog
    private let executor: TaskWorkerExecutor
    /// The handler table in force: a queued task runs on the table of when it starts, so tasks queued before a
    /// reload use the reloaded handlers (running ones finish on theirs).
    private let handlers: @Sendable () -> HandlerTable
    private let logger: Logger
    private var queue: ReadyQueue<Job>
    private var running = RunningTable()
    /// Tasks not due yet: scheduled ones, and failed attempts waiting out their backoff.
    private var delayed: [String: Delayed] = [:]
    private var pacer = StartPacer()
    /// Wakes the pool when a handler held back by its rate may start again, or (a cluster) a delayed task is due.
    private var wake: (at: ContinuousClock.Instant, timer: Task<Void, Never>)?
    /// Places promised to submissions that are still being written to the store.
    private var reserved = 0
    private var reservedByUID: [String: Int] = [:]
    private var accepting = true
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []
    private var finishedCounts: [TaskStatus: Int] = [:]

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

    /// In a cluster the queue is the shared store's, so the limits count what is waiting there.
    private func reserveInCluster(uid: String?, shared: any SharedTaskStore) async throws(GatewayError) {
        let unreachable = GatewayError.databaseUnreachable
        guard shared.isReachable else { throw unreachable }
        let counts: (queued: Int, uid: Int)
        do {
            counts = try await shared.activeCounts(uid: uid)
        } catch {
            throw unreachable
        }
        guard counts.queued + reserved < configuration.queueLimit + configuration.workers else {
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

    public func releaseReservation(uid: String?) {
        reserved = max(0, reserved - 1)
        if let uid { releaseUIDReservation(uid) }
    }

    private func releaseUIDReservation(_ uid: String) {
        let left = (reservedByUID[uid] ?? 1) - 1
        reservedByUID[uid] = left > 0 ? left : nil
    }

    private func activeCount(uid: String) -> Int {
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
    private func admit(_ job: Job) {
        if let runAt = job.record.runAt, runAt > Date() {
            delay(job, for: .milliseconds(Int64((runAt.timeIntervalSinceNow * 1000).rounded(.up))))
        } else {
            queue.append(job, id: job.record.id, lane: Lane(cmd: job.record.cmd, uid: job.record.uid), priority: job.record.priority)
        }
    }

    /// Holds a job until `wait` has passed, then queues it.
    private func delay(_ job: Job, for wait: Duration, saving record: TaskRecord? = nil) {
        let id = job.record.id
        let timer = Task {
            if let record { await self.save(record) }
            try? await Task.sleep(for: wait)
            guard !Task.isCancelled else { return }
            self.due(id)
        }
        delayed[id] = Delayed(job: job, timer: timer)
    }

    private func due(_ id: String) {
        guard let entry = delayed.removeValue(forKey: id) else { return }
        let job = entry.job
        queue.append(job, id: id, lane: Lane(cmd: job.record.cmd, uid: job.record.uid), priority: job.record.priority)
        startWaitingJobs()
    }

    /// Runs `startWaitingJobs` or `claimWork` again at `instant` (a rate's next slot, a delayed task's due time).
    private func wakeUp(at instant: ContinuousClock.Instant) {
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

    // MARK: - Claiming from the shared store (a cluster)

    /// Claims queued tasks from the shared store while workers are free. Called when a task is queued here or
    /// elsewhere, when a task ends, and on a timer (for retries whose backoff ran out and reclaimed tasks).
    public func claimWork() {
        guard shared != nil, accepting else { return }
        if claiming {
            claimAgain = true
            return
        }
        claiming = true
        Task { await self.claimLoop() }
    }

    private func claimLoop() async {
        guard let shared else { return }
        repeat {
            claimAgain = false
            while accepting, running.count < configuration.workers {
                let now = ContinuousClock.now
                let held = pacer.blocked(now: now)
                let rules = ClaimRules(fairShare: configuration.fairShare, excludedCommands: held.commands)
                let next: TaskRecord?
                do {
                    next = try await shared.claimNext(rules)
                } catch {
                    break  // the database is away: the periodic claim tries again
                }
                guard let claimed = next else {
                    if let until = held.until { wakeUp(at: until) }
                    // Nothing due now: wake when the earliest delayed task is (any node may claim it then).
                    if let due = try? await shared.nextDueDate() {
                        wakeUp(at: .now + .milliseconds(max(0, Int64((due.timeIntervalSinceNow * 1000).rounded(.up)))))
                    }
                    break
                }
                pacer.started(claimed.cmd, limit: handlers().handler(named: claimed.cmd)?.rateLimit, now: now)
                startClaimed(claimed)
            }
        } while claimAgain && accepting && running.count < configuration.workers
        claiming = false
    }

    /// A stored task's options, as validated when it was submitted; the handler's defaults if its handler changed
    /// so much that they no longer validate.
    private static func options(of record: TaskRecord, on handler: any TaskHandler) -> TaskOptions {
        (try? TaskOptions(args: record.args.objectValue ?? [:], handler: handler))
            ?? (try! TaskOptions(args: [:], handler: handler))  // no overrides: cannot fail
    }

    private func startClaimed(_ record: TaskRecord) {
        let id = record.id
        let task: Task<Void, Never>
        if let handler = handlers().handler(named: record.cmd) {
            let options = Self.options(of: record, on: handler)
            task = Task { await self.execute(Job(record: record, handler: handler, options: options), claimed: true) }
        } else {
            task = Task {
                await self.end(record, as: .failed, error: "no handler named '\(record.cmd)' on node \(self.shared?.nodeID ?? "?")")
                self.running[id] = nil
                self.startWaitingJobs()
            }
        }
        running[id] = Running(cmd: record.cmd, uid: record.uid, task: task, stopReason: nil)
    }

    /// Tasks whose node stopped heartbeating: run again (idempotent, attempts left) or failed as interrupted, by the
    /// same rules as a restart. Any node may do it; the store lets only one win each task.
    public func reclaimExpiredTasks() async {
        guard let shared, accepting, let expired = try? await shared.expiredTasks(limit: 100), !expired.isEmpty else { return }
        let table = handlers()
        for var record in expired {
            let lostNode = record.node ?? "?"
            guard let handler = table.handler(named: record.cmd), handler.isIdempotent,
                record.attempts < Self.options(of: record, on: handler).maxAttempts
            else {
                await end(
                    record, as: .failed, error: "interrupted: node \(lostNode) stopped while the task was running",
                    condition: .leaseExpired)
                continue
            }
            record.status = .queued
            record.error = "interrupted: node \(lostNode) stopped while it ran; running it again"
            if await persist(record, condition: .leaseExpired) {
                logger.notice("reclaimed a task from a lost node", metadata: ["task": .string(record.id), "node": .string(lostNode)])
            }
        }
        claimWork()
    }

    /// Another node asked to cancel a task; it is ours only if it runs here.
    public func cancelIfRunningHere(id: String) {
        guard var entry = running[id] else { return }
        if entry.stopReason == nil { entry.stopReason = .cancelled }
        running[id] = entry
        entry.task.cancel()
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

    /// A queued task is cancelled here, unless a node claims it first; a task running on another node is asked to
    /// stop through the store.
    private func cancelInCluster(id: String, shared: any SharedTaskStore) async -> CancelOutcome {
        guard let record = try? await store.task(id: id), !record.status.isFinal else { return .notActive }
        if record.status == .queued || record.status == .scheduled {
            if let cancelled = await end(record, as: .cancelled, error: "cancelled before it started", condition: .queued) {
                return .dequeued(cancelled)
            }
            if running[id] != nil { return await cancel(id: id) }  // claimed here meanwhile
            guard let latest = try? await store.task(id: id), latest.status == .running else { return .notActive }
        }
        do {
            try await shared.requestCancel(taskID: id)
        } catch {
            logger.error("could not ask for a cancel", metadata: ["task": .string(id), "error": "\(error)"])
        }
        return .stopping
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
            let deadline = ContinuousClock.now + grace
            while !running.isEmpty, ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(20))
            }
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

    private func startWaitingJobs() {
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

    private func signalIdleIfNeeded() {
        guard running.isEmpty && queue.isEmpty && delayed.isEmpty else { return }
        let waiters = idleWaiters
        idleWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

    /// Runs one task to its end. A `claimed` task comes from the shared store already marked running here.
    private func execute(_ queued: Job, claimed: Bool = false) async {
        var job = queued
        if claimed {
            // Resolved from the table in force when it was claimed.
        } else if let current = handlers().handler(named: job.record.cmd) {
            job.handler = current
            job.options = (try? TaskOptions(args: job.record.args.objectValue ?? [:], handler: current)) ?? job.options
        } else {
            await end(job.record, as: .failed, error: "no handler named '\(job.record.cmd)' any more (removed by a reload)")
            running[job.record.id] = nil
            startWaitingJobs()
            return
        }
        var record = job.record
        if !claimed {
            record.status = .running
            record.attempts += 1
        }
        record.node = shared?.nodeID ?? record.node
        record.progress = 0
        record.error = nil
        record.startedAt = Date()

        // The trace its submission started (kept in the record, so also after a restart or on another node).
        let tracer = InstrumentationSystem.tracer
        let submitted = TaskTracing.context(fromTraceparent: record.traceparent) ?? .topLevel
        let queuedSpan = tracer.startSpan(
            "task.queued", context: submitted, ofKind: .internal, at: TaskTracing.instant(record.createdAt))
        queuedSpan.attributes["taskgate.task.id"] = record.id
        queuedSpan.end()
        let runSpan = tracer.startSpan("task.run", context: submitted, ofKind: .internal)
        defer { runSpan.end() }
        runSpan.attributes["taskgate.task.id"] = record.id
        runSpan.attributes["taskgate.task.cmd"] = record.cmd
        runSpan.attributes["taskgate.task.attempt"] = record.attempts
        if let node = record.node { runSpan.attributes["taskgate.node"] = node }
        await publishProgress(record)

        let tracker = ProgressTracker(record: record)
        let context = TaskContext(
            taskID: record.id, uid: record.uid, args: record.args.objectValue ?? [:], attempt: record.attempts,
            traceparent: TaskTracing.traceparent(of: runSpan.context)
        ) { fraction in
            await self.publishProgress(tracker.update(fraction))
        }
        let outcome = await ServiceContext.withValue(runSpan.context) {
            await Self.run(job.handler, context: context, timeout: job.options.timeout, on: executor)
        }
        record.progress = tracker.current.progress
        record.finishedAt = Date()
        let stopReason = running[record.id]?.stopReason
        if stopReason == .lost {
            logger.notice("task reclaimed by another node; this node's result is dropped", metadata: ["task": .string(record.id)])
            runSpan.setStatus(SpanStatus(code: .error, message: "reclaimed by another node"))
            running[record.id] = nil
            startWaitingJobs()
            return
        }
        switch outcome {
        case .success(let result) where !result.fitsDepthLimit(at: 1):
            // Results are held to the limit args are held to (a value one level inside a message).
            record.status = .failed
            record.error = "the handler's result nests deeper than \(JSONLimits.maxDepth - 1) levels"
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
            // A retry returns below before the status is set at the end.
            runSpan.setStatus(SpanStatus(code: .error, message: record.error ?? "failed"))
            if record.attempts < job.options.maxAttempts && accepting && shared != nil {
                // In a cluster the backoff waits in the store, where any node claims it once it is due.
                record.status = .queued
                record.finishedAt = nil
                let delay = TaskOptions.backoff(afterAttempt: record.attempts)
                await persist(record, notBefore: Date().addingTimeInterval(Double(delay.wholeMilliseconds) / 1000))
                running[record.id] = nil
                startWaitingJobs()
                return
            }
            if record.attempts < job.options.maxAttempts && accepting {
                scheduleRetry(Job(record: record, handler: job.handler, options: job.options))
                running[record.id] = nil
                startWaitingJobs()
                return
            }
        }
        if record.status != .succeeded {
            runSpan.setStatus(SpanStatus(code: .error, message: record.error ?? record.status.rawValue))
        }
        runSpan.attributes["taskgate.task.status"] = record.status.rawValue
        if record.status == .queued {
            await save(record)
        } else {
            // The `done` event, written with the task and sent to the owner's connections.
            let deliverSpan = tracer.startSpan("task.deliver", context: runSpan.context, ofKind: .internal)
            deliverSpan.attributes["taskgate.task.id"] = record.id
            await finish(record)
            deliverSpan.end()
        }
        running[record.id] = nil
        startWaitingJobs()
    }

    /// A failed attempt with attempts left waits out its backoff, then queues again (in the store it is `queued`).
    private func scheduleRetry(_ failed: Job) {
        var job = failed
        job.record.status = .queued
        job.record.finishedAt = nil
        let wait = TaskOptions.backoff(afterAttempt: job.record.attempts)
        delay(job, for: wait, saving: job.record)
        logger.info(
            "task failed, retrying", metadata: ["task": .string(job.record.id), "attempt": "\(job.record.attempts)", "delay": "\(wait)"])
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

    /// Ends a task that never ran to completion (cancelled while waiting, interrupted, no handler). Returns the
    /// ended task, or `nil` in a cluster when `condition` no longer held (another node got there first).
    @discardableResult
    private func end(
        _ task: TaskRecord, as status: TaskStatus, error: String, condition: WriteCondition = .runningHere
    ) async -> TaskRecord? {
        var record = task
        record.status = status
        record.error = error
        record.finishedAt = Date()
        return await finish(record, condition: condition) ? record : nil
    }

    @discardableResult
    private func finish(_ record: TaskRecord, condition: WriteCondition = .runningHere) async -> Bool {
        // A single node's failed write is logged and the task still ends here; a cluster's means another node has it.
        let recorded = await persist(record, condition: condition) { seq in .done(record, seq: seq) }
        guard recorded || shared == nil else { return false }
        finishedCounts[record.status, default: 0] += 1
        logger.info(
            "task finished",
            metadata: ["task": .string(record.id), "cmd": .string(record.cmd), "status": .string(record.status.rawValue)]
        )
        return true
    }

    private func publishProgress(_ record: TaskRecord) async {
        await persist(record) { seq in .progress(record, seq: seq) }
    }

    /// Records a state change that clients are not told about (a task going back to the queue).
    private func save(_ record: TaskRecord) async {
        await persist(record)
    }

    /// Records a state change with its event (for a task with an owner and an `event`) or alone. In a cluster the
    /// write is retried while the database is unreachable, so nothing accepted is lost, and refused when `condition`
    /// no longer holds: then a task running here was reclaimed by another node and is stopped. Returns whether it
    /// was recorded.
    @discardableResult
    private func persist(
        _ record: TaskRecord, condition: WriteCondition = .runningHere, notBefore: Date? = nil,
        event: (@Sendable (UInt64) -> ServerMessage)? = nil
    ) async -> Bool {
        var delay = Duration.milliseconds(100)
        var givingUpAt: ContinuousClock.Instant?
        while true {
            do {
                if let uid = record.uid, let event {
                    try await events.append(uid: uid, task: record, condition: condition, event)
                } else if let shared {
                    try await shared.update(record, condition: condition, notBefore: notBefore)
                } else {
                    try await store.update(record)
                }
                return true
            } catch is WriteConditionFailed {
                if condition == .runningHere, var entry = running[record.id], entry.stopReason != .lost {
                    entry.stopReason = .lost
                    running[record.id] = entry
                    entry.task.cancel()
                }
                return false
            } catch {
                logger.error("could not record task state", metadata: ["task": .string(record.id), "error": "\(error)"])
                guard shared != nil else { return false }
                // Shutting down: the lease runs out and another node takes the task over, so stop trying soon.
                if !accepting, givingUpAt == nil { givingUpAt = .now + .seconds(5) }
                if let givingUpAt, ContinuousClock.now > givingUpAt { return false }
                // Outside the calling task, so that a cancelled task (its handler was cancelled) still waits.
                await Task { [delay] in try? await Task.sleep(for: delay) }.value
                delay = min(delay * 2, .seconds(2))
            }
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
