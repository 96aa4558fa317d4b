import Foundation
import TaskGateCore

/// A `TaskStore` that times its writes (`taskgate_store_write_seconds{op}`) and records how long each finished task
/// ran (`taskgate_task_duration_seconds`), then hands every call to the store it wraps.
struct MeteredTaskStore: TaskStore {
    let base: any TaskStore
    let metrics: GatewayMetrics

    var isDurable: Bool { base.isDurable }

    func insert(_ task: TaskRecord) async throws -> InsertOutcome {
        let start = ContinuousClock.now
        defer { metrics.storeWrite("insert", took: .now - start) }
        return try await base.insert(task)
    }

    func update(_ task: TaskRecord) async throws {
        let start = ContinuousClock.now
        try await base.update(task)
        metrics.storeWrite("update", took: .now - start)
        metrics.taskFinished(task)
    }

    func append(_ event: UserEvent, task: TaskRecord) async throws {
        let start = ContinuousClock.now
        try await base.append(event, task: task)
        metrics.storeWrite("append", took: .now - start)
        metrics.taskFinished(task)
    }

    func task(id: String) async throws -> TaskRecord? { try await base.task(id: id) }
    func list(_ query: TaskQuery) async throws -> [TaskRecord] { try await base.list(query) }
    func unfinishedTasks() async throws -> [TaskRecord] { try await base.unfinishedTasks() }
    func loadEvents(uid: String, limit: Int) async throws -> StoredEvents { try await base.loadEvents(uid: uid, limit: limit) }
    func pruneEvents(olderThan date: Date) async throws -> Int { try await base.pruneEvents(olderThan: date) }
}
