import DequeModule
import Foundation

/// Keeps tasks in memory: fast, and gone on restart. Finished tasks beyond `retainFinished` are forgotten,
/// oldest first, so a long-running server does not grow without bound.
public actor InMemoryTaskStore: LocalTaskStore {
    private var tasks: [String: TaskRecord] = [:]
    /// Insertion order, for newest-first listing and for retention.
    private var order: Deque<String> = []
    private let retainFinished: Int
    private var ticks: [String: Date] = [:]

    public init(retainFinished: Int = 100_000) {
        self.retainFinished = retainFinished
    }

    public nonisolated var isDurable: Bool { false }

    /// Events live only in the event log's memory; the task state is what needs keeping here.
    public func append(_ events: [UserEvent], task: TaskRecord) {
        update(task)
    }

    public func unfinishedTasks() -> [TaskRecord] {
        order.compactMap { tasks[$0] }.filter { !$0.status.isFinal }
    }

    public func loadEvents(uid: String, limit: Int) -> StoredEvents {
        StoredEvents(lastSeq: 0, events: [])
    }

    public func events(uid: String, after seq: UInt64, limit: Int) -> [LoggedEvent] { [] }

    public func pruneEvents(olderThan date: Date) -> Int { 0 }

    public func pruneFinishedTasks(createdBefore: Date?, keepingNewest: Int?, batchSize: Int) -> Int {
        var keptFinished = 0
        var doomed = Set<String>()
        for id in order.reversed() {
            guard let task = tasks[id], task.status.isFinal else { continue }
            keptFinished += 1
            if let createdBefore, task.createdAt < createdBefore {
                doomed.insert(id)
            } else if let keepingNewest, keptFinished > keepingNewest {
                doomed.insert(id)
            }
        }
        guard !doomed.isEmpty else { return 0 }
        for id in doomed { tasks[id] = nil }
        order.removeAll { doomed.contains($0) }
        return doomed.count
    }

    public func scheduleTicks() -> [String: Date] { ticks }

    public func recordScheduleTick(name: String, at tick: Date) {
        ticks[name] = max(ticks[name] ?? tick, tick)
    }

    public func insert(_ task: TaskRecord) -> InsertOutcome {
        if let existing = tasks[task.id] { return .existing(existing) }
        tasks[task.id] = task
        order.append(task.id)
        trim()
        return .inserted
    }

    public func update(_ task: TaskRecord) {
        guard tasks[task.id] != nil else { return }
        tasks[task.id] = task
    }

    public func task(id: String) -> TaskRecord? {
        tasks[id]
    }

    public func list(_ query: TaskQuery) -> [TaskRecord] {
        var result: [TaskRecord] = []
        for id in order.reversed() {
            guard let task = tasks[id] else { continue }
            if let uid = query.uid, task.uid != uid { continue }
            if let status = query.status, task.status != status { continue }
            result.append(task)
            if result.count >= query.limit { break }
        }
        return result
    }

    private func trim() {
        // Trimming in batches keeps inserts amortised O(1) once the store is full.
        guard order.count > retainFinished + max(1, retainFinished / 10) else { return }
        // Only finished tasks are dropped, and only those beyond the `retainFinished` newest: a waiting or running
        // task must stay visible and does not count.
        var kept: Deque<String> = []
        var excess = order.count { tasks[$0]?.status.isFinal == true } - retainFinished
        for id in order {
            if excess > 0, let task = tasks[id], task.status.isFinal {
                tasks[id] = nil
                excess -= 1
            } else {
                kept.append(id)
            }
        }
        order = kept
    }
}
