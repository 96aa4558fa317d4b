import Foundation

/// A store that several nodes share (PostgreSQL): its records, and the coordination of the nodes.
public typealias SharedTaskStore = TaskStore & ClusterCoordinator

/// The cluster's one source of order: it numbers each uid's events (so `seq` is one sequence per uid whichever node
/// appends), hands every queued task to exactly one node, leases running tasks to the node that runs them, and tells
/// each node what the others did.
///
/// Injected as `TaskBackend.cluster`; the pool and the event log follow its rules only then, and a single node never
/// needs it.
public protocol ClusterCoordinator: Sendable {
    var nodeID: String { get }
    /// How long a running task stays leased without a heartbeat from its node before another node reclaims it.
    var leaseTimeout: Duration { get }
    /// False while the database cannot be reached: the node reports unhealthy and refuses new submits.
    var isReachable: Bool { get }

    /// Runs what the store needs for its lifetime (connections, migrations, the notification listener) until
    /// cancelled; notifications arrive through `notifications`.
    func run() async throws
    var notifications: AsyncStream<ClusterNotification> { get }

    /// Numbers the uid's next events (one or more about one task, in order), stores them with the task's new state
    /// and tells every node, atomically, in one write, but only if `condition` still holds for the task; else
    /// throws `WriteConditionFailed` and writes nothing. Returns one event per message, in order.
    func appendNumbered(
        uid: String, task: TaskRecord, condition: WriteCondition, retainCount: Int,
        makeMessages: [@Sendable (UInt64) -> ServerMessage]
    ) async throws -> [LoggedEvent]
    /// Writes a state clients are not told about (back to the queue), if `condition` holds. A queued task is not
    /// claimed before `notBefore` (retry backoff).
    func update(_ task: TaskRecord, condition: WriteCondition, notBefore: Date?) async throws
    /// Claims up to `limit` due tasks (queued, or scheduled and due) for this node by `rules`, in one go: each
    /// becomes `running` here, one more attempt, leased. One claim for a node's free workers rather than one each.
    func claim(_ rules: ClaimRules, limit: Int) async throws -> [TaskRecord]
    /// When the earliest waiting task that is not due yet (a delay, a retry's backoff) becomes due.
    func nextDueDate() async throws -> Date?
    /// Tasks running on nodes whose lease ran out (the node died or lost the database).
    func expiredTasks(limit: Int) async throws -> [TaskRecord]
    /// Renews this node's presence and the leases of its running tasks, publishes its clients, and returns the ids
    /// of its tasks that another node asked to cancel.
    func heartbeat(runningTaskIDs: [String], clients: [ClientInfo]) async throws -> [String]
    /// Takes this node out of the live nodes at once (a graceful shutdown), rather than when its heartbeat lapses;
    /// later heartbeats no longer bring it back.
    func leave() async
    /// Asks the node running the task to cancel it.
    func requestCancel(taskID: String) async throws
    /// Queued tasks in the whole cluster by handler name.
    func queuedByCommand() async throws -> [String: Int]
    /// Queued tasks in the whole cluster, and the uid's queued and running ones.
    func activeCounts(uid: String?) async throws -> (queued: Int, uid: Int)
    /// The last seq of each uid that has one.
    func lastSeqs(uids: [String]) async throws -> [String: UInt64]
    /// Nodes whose heartbeat is within the lease, with their published clients.
    func liveNodes() async throws -> [NodeInfo]
    /// Asks nodes (`nil`: every node) to reload their handlers; their answers come back through `reloadAnswers`.
    func requestReload(requestID: String, node: String?) async throws
    func answerReload(requestID: String, answer: NodeReload) async throws
    func reloadAnswers(requestID: String) async throws -> [NodeReload]
}

extension ClusterCoordinator {
    /// One event, numbered and stored with the task's new state (`appendNumbered(…makeMessages:)`).
    public func appendNumbered(
        uid: String, task: TaskRecord, condition: WriteCondition, retainCount: Int,
        makeMessage: @escaping @Sendable (UInt64) -> ServerMessage
    ) async throws -> LoggedEvent {
        let events = try await appendNumbered(
            uid: uid, task: task, condition: condition, retainCount: retainCount, makeMessages: [makeMessage])
        guard let event = events.first else { throw WriteConditionFailed(taskID: task.id) }
        return event
    }

    /// The next due task by `rules`, claimed alone.
    public func claimNext(_ rules: ClaimRules) async throws -> TaskRecord? {
        try await claim(rules, limit: 1).first
    }
}

/// Which due task a node claims next: the lowest priority number first; within it, with fair share, the uid (per
/// handler) with the fewest tasks running in the whole cluster; then the oldest. A claim of several takes turns
/// among the lanes: a lane's second task comes after every other lane's first.
public struct ClaimRules: Sendable, Equatable {
    public var fairShare: Bool
    /// Handlers this node does not start now (their rate limit is used up here).
    public var excludedCommands: [String]
    /// Handlers with a rate limit: one claim starts at most one of each, since a start uses up the handler's
    /// rate until its interval has passed.
    public var pacedCommands: [String]
    public init(fairShare: Bool = true, excludedCommands: [String] = [], pacedCommands: [String] = []) {
        self.fairShare = fairShare
        self.excludedCommands = excludedCommands
        self.pacedCommands = pacedCommands
    }
}

/// What must still hold for a task when a node writes its new state: the cluster's guard against two nodes
/// finishing one task.
public enum WriteCondition: Sendable, Equatable {
    /// Running, on this node.
    case runningHere
    /// Still waiting, queued or scheduled (a cancel before it starts).
    case queued
    /// Running on a node whose lease ran out (reclaiming it).
    case leaseExpired
}

/// The task was not in the state the write expected: another node finished, cancelled or reclaimed it.
public struct WriteConditionFailed: Error, Sendable {
    public var taskID: String
    public init(taskID: String) { self.taskID = taskID }
}

public enum ClusterNotification: Sendable, Equatable {
    /// A node stored event `seq` of `uid`.
    case event(uid: String, seq: UInt64)
    /// A task was queued (or queued again): free workers should try to claim.
    case taskQueued
    case cancel(taskID: String)
    case reload(requestID: String, node: String?)
    /// The listener reconnected: notifications may have been missed meanwhile.
    case resynchronize
}

/// A node of the cluster as `GET /api/v1/nodes` lists it.
public struct NodeInfo: Sendable, Codable, Equatable {
    public var id: String
    public var startedAt: Date
    public var heartbeatAt: Date
    public var running: Int
    public var clients: [ClientInfo]

    public init(id: String, startedAt: Date, heartbeatAt: Date, running: Int, clients: [ClientInfo]) {
        self.id = id
        self.startedAt = startedAt
        self.heartbeatAt = heartbeatAt
        self.running = running
        self.clients = clients
    }
}

extension Collection<NodeReload> {
    /// The answer that speaks for a reload where one answer is shown: the first node that reloaded.
    public var firstReloaded: NodeReload? { first { $0.error == nil } }
}

/// One node's answer to a reload.
public struct NodeReload: Sendable, Codable, Equatable {
    public var node: String
    public var generation: Int?
    public var handlers: [String]?
    public var added: [String]?
    public var changed: [String]?
    public var removed: [String]?
    public var error: String?

    public init(node: String, result: ReloadResult) {
        self.node = node
        generation = result.table.generation
        handlers = result.table.names
        added = result.added
        changed = result.changed
        removed = result.removed
    }

    public init(node: String, error: String) {
        self.node = node
        self.error = error
    }

    enum CodingKeys: String, CodingKey { case node, generation, handlers, added, changed, removed, error }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(node, forKey: .node)
        try container.encodeIfPresent(generation, forKey: .generation)
        try container.encodeIfPresent(handlers, forKey: .handlers)
        try container.encodeIfPresent(added, forKey: .added)
        try container.encodeIfPresent(changed, forKey: .changed)
        try container.encodeIfPresent(removed, forKey: .removed)
        try container.encodeIfPresent(error, forKey: .error)
    }
}
