import Foundation
import Logging
import Synchronization

@testable import TaskGateCore

// MARK: - Waiting on events, with a deadline

/// A bounded wait ran out: says what was awaited, so a failing test fails for that reason.
struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var after: Duration?

    init(_ what: String = "a condition", after: Duration? = nil) {
        self.what = what
        self.after = after
    }

    var description: String { "timed out waiting for \(what)" + (after.map { " (after \($0))" } ?? "") }
}

/// Runs a wait that may ignore cancellation (a latch, `TaskPool.waitUntilIdle`) and throws `TimedOut` once
/// `timeout` has passed.
func within<Value: Sendable>(
    _ timeout: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> Value
) async throws -> Value {
    try await withDeadline(timeout, timeoutError: { TimedOut(what, after: timeout) }, body)
}

/// A count of changes that tasks can wait on: whoever changes something calls `bump()`, and a waiter wakes on
/// each bump after the version it saw. Waits end at a deadline (`TimedOut`) or when the waiting task is cancelled.
final class ChangeSignal: Sendable {
    private struct State {
        var version: UInt64 = 0
        var nextWaiter = 0
        var waiters: [Int: CheckedContinuation<Void, any Error>] = [:]
    }
    private let state = Mutex(State())

    var version: UInt64 { state.withLock { $0.version } }

    func bump() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            state.version += 1
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once the version is past `seen` (at once if it already is).
    func wait(past seen: UInt64, until deadline: ContinuousClock.Instant, for what: String) async throws {
        let id = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        let timer = Task {
            do { try await Task.sleep(until: deadline, clock: .continuous) } catch { return }
            self.resume(id, throwing: TimedOut(what))
        }
        defer { timer.cancel() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let now = state.withLock { state -> Bool in
                    // Checked under the lock: a cancel that ran before we registered has already set the flag.
                    guard state.version == seen, !Task.isCancelled else { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if now {
                    if Task.isCancelled { continuation.resume(throwing: CancellationError()) } else { continuation.resume() }
                }
            }
        } onCancel: {
            self.resume(id, throwing: CancellationError())
        }
    }

    private func resume(_ id: Int, throwing error: any Error) {
        state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(throwing: error)
    }
}

/// Re-checks `condition` whenever `signal` changes, until it holds; throws `TimedOut` (naming `what`) once
/// `timeout` has passed. Never spins: every round after the first waits for a change.
func waitUntil(
    _ what: String, timeout: Duration = .seconds(10), on signal: ChangeSignal, _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        let seen = signal.version
        if try await condition() { return }
        try await signal.wait(past: seen, until: deadline, for: "\(what) (after \(timeout))")
    }
}

/// For a state that nothing signals (a poll parked in the event log): re-checks `condition` between yields, and
/// throws `TimedOut` once `timeout` has passed.
func eventually(_ what: String, timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else { throw TimedOut(what, after: timeout) }
        await Task.yield()
    }
}

// MARK: - Test doubles

/// A connection that records what it is sent, decoded for assertions; `waitFor` wakes on each message.
final class RecordingConnection: ClientConnection {
    let id: String
    private let received = Mutex<[String]>([])
    /// How many messages each send carried, in order: what a transport could write at once.
    private let sends = Mutex<[Int]>([])
    private let closed = Mutex<CloseReason?>(nil)
    private let changes = ChangeSignal()

    init(id: String = UUID().uuidString) { self.id = id }

    func send(_ message: OutgoingMessage) {
        send([message])
    }

    func send(_ messages: [OutgoingMessage]) {
        received.withLock { $0.append(contentsOf: messages.map(\.json)) }
        sends.withLock { $0.append(messages.count) }
        changes.bump()
    }

    var sendSizes: [Int] { sends.withLock { $0 } }

    func close(reason: CloseReason) {
        closed.withLock { $0 = reason }
        changes.bump()
    }

    var texts: [String] { received.withLock { $0 } }
    var messages: [[String: Any]] {
        texts.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }
    var types: [String] { messages.compactMap { $0["type"] as? String } }
    var seqs: [Int] { messages.compactMap { $0["seq"] as? Int } }

    /// Waits until `condition` holds for the received messages, re-checking it as each message arrives; throws
    /// `TimedOut` once `timeout` has passed.
    func waitFor(
        timeout: Duration = .seconds(10), _ what: String = "the expected messages", _ condition: ([[String: Any]]) -> Bool
    ) async throws {
        try await waitUntil("\(what) on connection \(id)", timeout: timeout, on: changes) { condition(messages) }
    }
}

/// A store that tells when it was written to (a task inserted or changed, an event, a schedule's tick): for waits
/// on what has no event of its own, such as a task without an owner. `beforeWrite`, when given, runs before each
/// write of a task's state (and may hold it).
final class ObservedStore: LocalTaskStore {
    let base: any LocalTaskStore
    let writes = ChangeSignal()
    private let beforeWrite: (@Sendable (TaskRecord) async -> Void)?

    init(_ base: any LocalTaskStore = InMemoryTaskStore(), beforeWrite: (@Sendable (TaskRecord) async -> Void)? = nil) {
        self.base = base
        self.beforeWrite = beforeWrite
    }

    var isDurable: Bool { base.isDurable }
    var writeProblem: String? { base.writeProblem }

    func insert(_ task: TaskRecord) async throws -> InsertOutcome {
        defer { writes.bump() }
        return try await base.insert(task)
    }
    func update(_ task: TaskRecord) async throws {
        await beforeWrite?(task)
        defer { writes.bump() }
        try await base.update(task)
    }
    func append(_ events: [UserEvent], task: TaskRecord) async throws {
        await beforeWrite?(task)
        defer { writes.bump() }
        try await base.append(events, task: task)
    }
    func recordScheduleTick(name: String, at tick: Date) async throws {
        defer { writes.bump() }
        try await base.recordScheduleTick(name: name, at: tick)
    }
    func pruneEvents(olderThan date: Date) async throws -> Int {
        defer { writes.bump() }
        return try await base.pruneEvents(olderThan: date)
    }
    func pruneFinishedTasks(createdBefore: Date?, keepingNewest: Int?, batchSize: Int) async throws -> Int {
        defer { writes.bump() }
        return try await base.pruneFinishedTasks(createdBefore: createdBefore, keepingNewest: keepingNewest, batchSize: batchSize)
    }

    func task(id: String) async throws -> TaskRecord? { try await base.task(id: id) }
    func list(_ query: TaskQuery) async throws -> [TaskRecord] { try await base.list(query) }
    func unfinishedTasks() async throws -> [TaskRecord] { try await base.unfinishedTasks() }
    func loadEvents(uid: String, limit: Int) async throws -> StoredEvents { try await base.loadEvents(uid: uid, limit: limit) }
    func events(uid: String, after seq: UInt64, limit: Int) async throws -> [LoggedEvent] {
        try await base.events(uid: uid, after: seq, limit: limit)
    }
    func scheduleTicks() async throws -> [String: Date] { try await base.scheduleTicks() }
}

// MARK: - Gateway

extension Gateway {
    /// Waits until the task is final.
    func finished(_ id: String, timeout: Duration = .seconds(10)) async throws -> TaskRecord {
        try await waitForTask(id, "to finish", timeout: timeout) { $0.status.isFinal }
    }

    /// Waits until the task is running (its `running` event, or its claim in a cluster).
    @discardableResult
    func started(_ id: String, timeout: Duration = .seconds(10)) async throws -> TaskRecord {
        try await waitForTask(id, "to start running", timeout: timeout) { $0.status == .running }
    }

    /// Waits until `condition` holds for the task, reading it again after each of its owner's events: the store has
    /// a task's new state before its event goes out, so no change is missed. A task without an owner has no events;
    /// it can only be awaited to its end, through the pool going idle.
    func waitForTask(
        _ id: String, _ what: String, timeout: Duration, until condition: (TaskRecord) -> Bool
    ) async throws -> TaskRecord {
        let deadline = ContinuousClock.now + timeout
        var task = try await self.task(id: id, visibleTo: nil)
        if condition(task) { return task }
        guard let uid = task.uid else {
            try await within(timeout, "the pool to go idle, for task \(id) \(what)") { await self.pool.waitUntilIdle() }
            task = try await self.task(id: id, visibleTo: nil)
            guard condition(task) else {
                throw TimedOut("task \(id) \(what): the pool is idle and it is \(task.status.rawValue)", after: timeout)
            }
            return task
        }
        var cursor = try await events.latestSeq(uid: uid)
        while true {
            task = try await self.task(id: id, visibleTo: nil)
            if condition(task) { return task }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw TimedOut("task \(id) \(what); it is \(task.status.rawValue)", after: timeout) }
            let batch = try await events.waitForEvents(uid: uid, after: cursor, timeout: left)
            cursor = batch.reset ? try await events.latestSeq(uid: uid) : batch.cursor
        }
    }

    static func forTests(
        workers: Int = 2, queueLimit: Int = 100, store: any LocalTaskStore = InMemoryTaskStore(), fairShare: Bool = true,
        registry: any HandlerRegistry = SwiftHandlerRegistry()
    ) -> Gateway {
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        return Gateway(
            configuration: .init(pool: .init(workers: workers, queueLimit: queueLimit, fairShare: fairShare)), store: store,
            registry: registry, logger: logger)
    }
}


func temporaryDatabasePath() -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("taskgate-tests-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory.appendingPathComponent("taskgate.sqlite").path
}
