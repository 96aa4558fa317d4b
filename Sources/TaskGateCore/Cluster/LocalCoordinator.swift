import Foundation
import Synchronization

/// A node that runs alone: its waiting tasks are in memory (the store has them too, for a restart), the next is
/// picked by `ReadyQueue`'s rule, and its writes need no condition (no other node can have written first).
final class LocalCoordinator: TaskCoordinator {
    private struct State {
        var ready: ReadyQueue<TaskRecord>
        /// Tasks not due yet (a `runAt`, a retry's backoff), earliest first.
        var notDue: [(due: Date, task: TaskRecord)] = []

        /// Moves the tasks due by `now` to the ready queue, in the order they fell due.
        mutating func promote(now: Date) {
            let dueCount = notDue.prefix { $0.due <= now }.count
            guard dueCount > 0 else { return }
            for entry in notDue[..<dueCount] { ready.append(entry.task) }
            notDue.removeFirst(dueCount)
        }
    }

    let store: any LocalTaskStore
    private let state: Mutex<State>

    init(store: any LocalTaskStore, fairShare: Bool) {
        self.store = store
        state = Mutex(State(ready: ReadyQueue(fairShare: fairShare)))
    }

    var nodeID: String? { nil }
    var othersShareTasks: Bool { false }
    var claimsFromMemory: Bool { true }

    nonisolated(nonsending) func activeCounts(uid: String?, runningHere: [Lane: Int]) async throws(GatewayError)
        -> (active: Int, uid: Int)
    {
        let running = runningHere.values.reduce(0, +)
        let runningForUID = uid.map { uid in runningHere.reduce(0) { $0 + ($1.key.uid == uid ? $1.value : 0) } } ?? 0
        return state.withLock { state in
            let waitingForUID = uid.map { uid in state.ready.count(uid: uid) + state.notDue.count { $0.task.uid == uid } } ?? 0
            return (state.ready.count + state.notDue.count + running, waitingForUID + runningForUID)
        }
    }

    func enqueue(_ task: TaskRecord, notBefore: Date?) {
        let due = [task.runAt, notBefore].compactMap { $0 }.max()
        state.withLock { state in
            guard let due, due > Date() else {
                state.ready.append(task)
                return
            }
            let index = state.notDue.firstIndex { $0.due > due } ?? state.notDue.endIndex
            state.notDue.insert((due, task), at: index)
        }
    }

    nonisolated(nonsending) func claim(_ rules: ClaimRules, runningHere: [Lane: Int], limit: Int) async throws
        -> [TaskRecord]
    {
        state.withLock { state in
            state.promote(now: Date())
            var held = Set(rules.excludedCommands)
            let paced = Set(rules.pacedCommands)
            var claimed: [TaskRecord] = []
            // What this claim took counts as running, so the next pick is as fair as a separate claim's. A scan of
            // the few taken so far, rather than a copy of the running table on every claim.
            func load(_ lane: Lane) -> Int {
                runningHere[lane, default: 0] + claimed.count { $0.cmd == lane.cmd && $0.uid == lane.uid }
            }
            while claimed.count < limit, var task = state.ready.popNext(running: load, held: held) {
                if !paced.isEmpty, paced.contains(task.cmd) { held.insert(task.cmd) }
                task.status = .running
                task.attempts += 1
                claimed.append(task)
            }
            return claimed
        }
    }

    nonisolated(nonsending) func nextDueDate() async throws -> Date? {
        state.withLock { $0.notDue.first?.due }
    }

    nonisolated(nonsending) func update(_ task: TaskRecord, condition: WriteCondition, notBefore: Date?) async throws {
        try await store.update(task)
    }

    nonisolated(nonsending) func withdraw(id: String) async -> TaskRecord? {
        state.withLock { state in
            if let task = state.ready.remove(id: id) { return task }
            guard let index = state.notDue.firstIndex(where: { $0.task.id == id }) else { return nil }
            return state.notDue.remove(at: index).task
        }
    }

    nonisolated(nonsending) func requestCancelElsewhere(id: String) async throws -> Bool { false }
    nonisolated(nonsending) func expiredTasks(limit: Int) async -> [TaskRecord] { [] }

    nonisolated(nonsending) func tasksToRecover() async throws -> [TaskRecord] {
        try await store.unfinishedTasks()
    }

    func drain() -> [TaskRecord] {
        state.withLock { state in
            let tasks = state.ready.elements + state.notDue.map(\.task)
            state.ready = ReadyQueue(fairShare: state.ready.fairShare)
            state.notDue.removeAll()
            return tasks
        }
    }

    var waitingCount: Int { state.withLock { $0.ready.count + $0.notDue.count } }

    var waiting: (byCommand: [String: Int], notDue: Int) {
        state.withLock { state in
            var byCommand: [String: Int] = [:]
            for task in state.ready.elements { byCommand[task.cmd, default: 0] += 1 }
            for entry in state.notDue { byCommand[entry.task.cmd, default: 0] += 1 }
            return (byCommand, state.notDue.count)
        }
    }
}

extension ReadyQueue<TaskRecord> {
    mutating func append(_ task: TaskRecord) {
        append(task, id: task.id, lane: Lane(cmd: task.cmd, uid: task.uid), priority: task.priority)
    }
}
