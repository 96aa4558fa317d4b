import Foundation

/// Who holds the tasks that wait for a worker, hands out the next one, and has the last word on a task's state:
/// the pool's one strategy, made once from the injected `TaskBackend`. `LocalCoordinator` keeps a single node's
/// waiting tasks in memory; `SharedCoordinator` leaves them in the cluster's store, which numbers, claims and leases.
///
/// The pool calls it only from its own actor. Its requirements are `nonisolated(nonsending)`: the local one never
/// suspends, so a task starts with no hop off the pool's executor.
protocol TaskCoordinator: Sendable {
    /// This node's id in a cluster; `nil` on a single node.
    var nodeID: String? { get }
    /// Whether other nodes share these tasks: then a refused write means another node has the task, and a write
    /// that fails (the database away) is retried, since nothing accepted may be lost. A single node logs it.
    var othersShareTasks: Bool { get }
    /// Whether a claim is answered from memory, without suspending: then whoever queues a task starts it on the
    /// spot. Otherwise the claim runs in a task of its own, so that a submitter never waits on the database.
    var claimsFromMemory: Bool { get }

    /// What counts against the queue and per-uid limits: `active` against the queue limit plus the workers, `uid`
    /// the uid's queued and running tasks. `runningHere`: what this node runs, by lane.
    nonisolated(nonsending) func activeCounts(uid: String?, runningHere: [Lane: Int]) async throws(GatewayError)
        -> (active: Int, uid: Int)
    /// A stored task that waits for a worker, not before `notBefore` (a retry's backoff) nor its `runAt`.
    func enqueue(_ task: TaskRecord, notBefore: Date?)
    /// Up to `limit` due tasks by `rules` and what runs here (fair share), now running here with one more attempt.
    nonisolated(nonsending) func claim(_ rules: ClaimRules, runningHere: [Lane: Int], limit: Int) async throws
        -> [TaskRecord]
    /// When the earliest waiting task that is not due yet becomes due.
    nonisolated(nonsending) func nextDueDate() async throws -> Date?
    /// Writes a state clients are not told about, if `condition` still holds.
    nonisolated(nonsending) func update(_ task: TaskRecord, condition: WriteCondition, notBefore: Date?) async throws
    /// A waiting task that a cancel may end (with the write condition `.queued`), or `nil` if none waits.
    nonisolated(nonsending) func withdraw(id: String) async -> TaskRecord?
    /// Asks another node to stop a task it runs; false if no other node runs it, throws if the asking failed.
    nonisolated(nonsending) func requestCancelElsewhere(id: String) async throws -> Bool
    /// Tasks whose node stopped heartbeating, for this node to reclaim.
    nonisolated(nonsending) func expiredTasks(limit: Int) async -> [TaskRecord]
    /// What a restart must pick up: on a single node every unfinished task; in a cluster none (leases tell which
    /// tasks a node left behind, and queued ones wait in the store).
    nonisolated(nonsending) func tasksToRecover() async throws -> [TaskRecord]
    /// Takes out every task waiting on this node (a shutdown).
    func drain() -> [TaskRecord]
    /// How many tasks wait on this node (none in a cluster: they wait in the store).
    var waitingCount: Int { get }
    /// This node's waiting tasks by handler, and how many of them are not due yet.
    var waiting: (byCommand: [String: Int], notDue: Int) { get }
}

extension TaskCoordinator {
    /// The next due task by `rules`, claimed alone.
    nonisolated(nonsending) func claimNext(_ rules: ClaimRules, runningHere: [Lane: Int]) async throws -> TaskRecord? {
        try await claim(rules, runningHere: runningHere, limit: 1).first
    }
}

extension TaskBackend {
    /// The coordinator that goes with this backend: the one place that turns the injected variant into a strategy.
    func makeCoordinator(fairShare: Bool) -> any TaskCoordinator {
        switch self {
        case .local(let store): LocalCoordinator(store: store, fairShare: fairShare)
        case .cluster(let shared): SharedCoordinator(shared: shared)
        }
    }
}
