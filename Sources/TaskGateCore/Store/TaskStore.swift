import Foundation

/// Where task records and users' events live. The pool writes every state change here before anyone is told
/// about it. Behind a protocol: in memory for tests, SQLite by default, PostgreSQL for several nodes (which also
/// coordinates them: `ClusterCoordinator`).
public protocol TaskStore: Sendable {
    /// Whether records survive a restart. A durable store keeps queued tasks queued across a shutdown.
    var isDurable: Bool { get }
    /// Why writes are failing now (a full disk, say), or `nil` while they succeed: shown by `/healthz`.
    var writeProblem: String? { get }
    /// Inserts a new task, or returns the task that already has this id.
    func insert(_ task: TaskRecord) async throws -> InsertOutcome
    func update(_ task: TaskRecord) async throws
    func task(id: String) async throws -> TaskRecord?
    /// Newest first.
    func list(_ query: TaskQuery) async throws -> [TaskRecord]
    /// Scheduled, queued and running tasks, oldest first: what a restart must pick up.
    func unfinishedTasks() async throws -> [TaskRecord]
    /// A user's last seq (never reused, even once its events are pruned) and last `limit` events, oldest first.
    func loadEvents(uid: String, limit: Int) async throws -> StoredEvents
    /// The uid's events after `seq`, oldest first, at most `limit`, as far as they are retained.
    func events(uid: String, after seq: UInt64, limit: Int) async throws -> [LoggedEvent]
    /// Drops events older than `date`; returns how many.
    func pruneEvents(olderThan date: Date) async throws -> Int
    /// The latest tick each recurring schedule ran, by name: what tells a restart which ticks it missed.
    func scheduleTicks() async throws -> [String: Date]
    /// Records that a schedule ran its tick at `tick` (an older tick than the one on record changes nothing).
    func recordScheduleTick(name: String, at tick: Date) async throws
    /// Deletes finished tasks created before `createdBefore`, and those beyond the `keepingNewest` newest finished
    /// ones, at most `batchSize` per statement; returns how many.
    func pruneFinishedTasks(createdBefore: Date?, keepingNewest: Int?, batchSize: Int) async throws -> Int
}

extension TaskStore {
    public var writeProblem: String? { nil }
}

/// The store of a node that runs alone: it records the events this node numbers.
public protocol LocalTaskStore: TaskStore {
    /// Records events of a user (in seq order) together with the task state the last one reports, in one atomic
    /// write: a task is never finished on record without its `done` event, nor the other way round. Usually one
    /// event; a task answered inline stores its start and its end together.
    func append(_ events: [UserEvent], task: TaskRecord) async throws
}

extension LocalTaskStore {
    public func append(_ event: UserEvent, task: TaskRecord) async throws {
        try await append([event], task: task)
    }
}

/// Where a gateway keeps its tasks, and who decides what in a cluster: injected once, so no part of the gateway
/// has to guess which kind of store it was given.
public enum TaskBackend: Sendable {
    /// One node: it numbers its events and queues its tasks itself.
    case local(any LocalTaskStore)
    /// One of several nodes sharing the store, which numbers events, hands out tasks and leases them.
    case cluster(any SharedTaskStore)

    public var store: any TaskStore {
        switch self {
        case .local(let store): store
        case .cluster(let store): store
        }
    }
}

public enum InsertOutcome: Sendable, Equatable {
    case inserted
    case existing(TaskRecord)
}

public struct TaskQuery: Sendable, Equatable {
    public var uid: String?
    public var status: TaskStatus?
    public var limit: Int

    public init(uid: String? = nil, status: TaskStatus? = nil, limit: Int = 100) {
        self.uid = uid
        self.status = status
        self.limit = limit
    }
}

/// An event as the store keeps it.
public struct UserEvent: Sendable, Equatable {
    public var uid: String
    public var seq: UInt64
    public var json: String
    public var createdAt: Date
    /// The store keeps at most this many events per user.
    public var retainCount: Int
}

public struct StoredEvents: Sendable, Equatable {
    public var lastSeq: UInt64
    public var events: [LoggedEvent]

    public init(lastSeq: UInt64, events: [LoggedEvent]) {
        self.lastSeq = lastSeq
        self.events = events
    }
}
