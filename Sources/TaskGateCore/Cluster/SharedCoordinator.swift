import Foundation

/// A node of a cluster: waiting tasks stay in the shared store, where any node's free worker claims them, and every
/// write holds only if its condition still does (so two nodes never both finish one task).
struct SharedCoordinator: TaskCoordinator {
    let shared: any SharedTaskStore

    var nodeID: String? { shared.nodeID }
    var othersShareTasks: Bool { true }
    var claimsFromMemory: Bool { false }

    /// The cluster's queued tasks (its running ones are bounded by the nodes' workers), and the uid's queued and
    /// running ones on every node.
    nonisolated(nonsending) func activeCounts(uid: String?, runningHere: [Lane: Int]) async throws(GatewayError)
        -> (active: Int, uid: Int)
    {
        guard shared.isReachable else { throw .databaseUnreachable }
        do {
            let counts = try await shared.activeCounts(uid: uid)
            return (counts.queued, counts.uid)
        } catch {
            throw .databaseUnreachable
        }
    }

    /// Already waiting in the store, which tells every node (`ClusterNotification.taskQueued`).
    func enqueue(_ task: TaskRecord, notBefore: Date?) {}

    nonisolated(nonsending) func claim(_ rules: ClaimRules, runningHere: [Lane: Int], limit: Int) async throws
        -> [TaskRecord]
    {
        try await shared.claim(rules, limit: limit)  // fair share by what runs on every node, which the store counts
    }

    nonisolated(nonsending) func nextDueDate() async throws -> Date? {
        try await shared.nextDueDate()
    }

    nonisolated(nonsending) func update(_ task: TaskRecord, condition: WriteCondition, notBefore: Date?) async throws {
        try await shared.update(task, condition: condition, notBefore: notBefore)
    }

    /// The task as stored, if it still waits; a node may claim it before the cancel's conditional write.
    nonisolated(nonsending) func withdraw(id: String) async -> TaskRecord? {
        guard let task = try? await shared.task(id: id), task.status == .queued || task.status == .scheduled else { return nil }
        return task
    }

    nonisolated(nonsending) func requestCancelElsewhere(id: String) async throws -> Bool {
        guard let task = try? await shared.task(id: id), task.status == .running else { return false }
        try await shared.requestCancel(taskID: id)
        return true
    }

    nonisolated(nonsending) func expiredTasks(limit: Int) async -> [TaskRecord] {
        (try? await shared.expiredTasks(limit: limit)) ?? []
    }

    nonisolated(nonsending) func tasksToRecover() async throws -> [TaskRecord] { [] }

    func drain() -> [TaskRecord] { [] }

    var waitingCount: Int { 0 }
    var waiting: (byCommand: [String: Int], notDue: Int) { ([:], 0) }
}
