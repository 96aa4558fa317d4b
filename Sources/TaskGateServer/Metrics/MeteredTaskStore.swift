import Foundation
import TaskGateCore

/// A store that times its writes (`taskgate_store_write_seconds{op}`) and records how long each finished task ran
/// (`taskgate_task_duration_seconds`), then hands every call to the store it wraps. Generic over that store, so it
/// is a local store when the base is one and a cluster coordinator (timing claims and conditional writes too) when
/// the base is one: the same wrapper for either backend.
struct MeteredTaskStore<Base: TaskStore>: TaskStore {
    let base: Base
    let metrics: GatewayMetrics

    var isDurable: Bool { base.isDurable }
    var writeProblem: String? { base.writeProblem }

    func timed<Value>(_ operation: String, _ body: () async throws -> Value) async throws -> Value {
        let start = ContinuousClock.now
        let value = try await body()
        metrics.storeWrite(operation, took: .now - start)
        return value
    }

    func insert(_ task: TaskRecord) async throws -> InsertOutcome { try await timed("insert") { try await base.insert(task) } }

    func update(_ task: TaskRecord) async throws {
        try await timed("update") { try await base.update(task) }
        metrics.taskFinished(task)
    }

    func task(id: String) async throws -> TaskRecord? { try await base.task(id: id) }
    func list(_ query: TaskQuery) async throws -> [TaskRecord] { try await base.list(query) }
    func unfinishedTasks() async throws -> [TaskRecord] { try await base.unfinishedTasks() }
    func loadEvents(uid: String, limit: Int) async throws -> StoredEvents { try await base.loadEvents(uid: uid, limit: limit) }
    func events(uid: String, after seq: UInt64, limit: Int) async throws -> [LoggedEvent] {
        try await base.events(uid: uid, after: seq, limit: limit)
    }
    func pruneEvents(olderThan date: Date) async throws -> Int { try await base.pruneEvents(olderThan: date) }
    func scheduleTicks() async throws -> [String: Date] { try await base.scheduleTicks() }
    func recordScheduleTick(name: String, at tick: Date) async throws { try await base.recordScheduleTick(name: name, at: tick) }
    func pruneFinishedTasks(createdBefore: Date?, keepingNewest: Int?, batchSize: Int) async throws -> Int {
        try await base.pruneFinishedTasks(createdBefore: createdBefore, keepingNewest: keepingNewest, batchSize: batchSize)
    }
}

extension MeteredTaskStore: LocalTaskStore where Base: LocalTaskStore {
    func append(_ events: [UserEvent], task: TaskRecord) async throws {
        try await timed("append") { try await base.append(events, task: task) }
        metrics.taskFinished(task)
    }
}

extension MeteredTaskStore: ClusterCoordinator where Base: ClusterCoordinator {
    var nodeID: String { base.nodeID }
    var leaseTimeout: Duration { base.leaseTimeout }
    var isReachable: Bool { base.isReachable }
    var notifications: AsyncStream<ClusterNotification> { base.notifications }

    func run() async throws { try await base.run() }

    func appendNumbered(
        uid: String, task: TaskRecord, condition: WriteCondition, retainCount: Int,
        makeMessages: [@Sendable (UInt64) -> ServerMessage]
    ) async throws -> [LoggedEvent] {
        let events = try await timed("append") {
            try await base.appendNumbered(
                uid: uid, task: task, condition: condition, retainCount: retainCount, makeMessages: makeMessages)
        }
        metrics.taskFinished(task)
        return events
    }

    func update(_ task: TaskRecord, condition: WriteCondition, notBefore: Date?) async throws {
        try await timed("update") { try await base.update(task, condition: condition, notBefore: notBefore) }
        metrics.taskFinished(task)
    }

    func claim(_ rules: ClaimRules, limit: Int) async throws -> [TaskRecord] {
        try await timed("claim") { try await base.claim(rules, limit: limit) }
    }
    func nextDueDate() async throws -> Date? { try await base.nextDueDate() }
    func expiredTasks(limit: Int) async throws -> [TaskRecord] { try await base.expiredTasks(limit: limit) }
    func heartbeat(runningTaskIDs: [String], clients: [ClientInfo]) async throws -> [String] {
        try await base.heartbeat(runningTaskIDs: runningTaskIDs, clients: clients)
    }
    func leave() async { await base.leave() }
    func requestCancel(taskID: String) async throws { try await base.requestCancel(taskID: taskID) }
    func activeCounts(uid: String?) async throws -> (queued: Int, uid: Int) { try await base.activeCounts(uid: uid) }
    func queuedByCommand() async throws -> [String: Int] { try await base.queuedByCommand() }
    func lastSeqs(uids: [String]) async throws -> [String: UInt64] { try await base.lastSeqs(uids: uids) }
    func liveNodes() async throws -> [NodeInfo] { try await base.liveNodes() }
    func requestReload(requestID: String, node: String?) async throws { try await base.requestReload(requestID: requestID, node: node) }
    func answerReload(requestID: String, answer: NodeReload) async throws { try await base.answerReload(requestID: requestID, answer: answer) }
    func reloadAnswers(requestID: String) async throws -> [NodeReload] { try await base.reloadAnswers(requestID: requestID) }
}

extension TaskBackend {
    /// The same backend with its store's writes timed.
    func metered(by metrics: GatewayMetrics) -> TaskBackend {
        switch self {
        case .local(let store): .local(Self.meter(store, metrics))
        case .cluster(let store): .cluster(Self.meter(store, metrics))
        }
    }

    private static func meter<Store: LocalTaskStore>(_ store: Store, _ metrics: GatewayMetrics) -> any LocalTaskStore {
        MeteredTaskStore(base: store, metrics: metrics)
    }

    private static func meter<Store: SharedTaskStore>(_ store: Store, _ metrics: GatewayMetrics) -> any SharedTaskStore {
        MeteredTaskStore(base: store, metrics: metrics)
    }
}
