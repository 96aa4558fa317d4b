import Foundation
import Logging

/// Every state change of a task, written to the store (and, when clients are told, to the event log) before
/// anyone hears of it.
extension TaskPool {
    /// Ends a task that never ran to completion (cancelled while waiting, interrupted, no handler). Returns the
    /// ended task, or `nil` in a cluster when `condition` no longer held (another node got there first).
    @discardableResult
    func end(
        _ task: TaskRecord, as status: TaskStatus, error: String, condition: WriteCondition = .runningHere
    ) async -> TaskRecord? {
        var record = task
        record.status = status
        record.error = error
        record.finishedAt = Date()
        return await finish(record, condition: condition) ? record : nil
    }

    /// `startedAs`: the task's start, not yet published (a task answered inline): its `progress` is stored with
    /// the `done`, in one write.
    @discardableResult
    func finish(_ record: TaskRecord, condition: WriteCondition = .runningHere, startedAs start: TaskRecord? = nil) async -> Bool {
        // A single node's failed write is logged and the task still ends here; a cluster's means another node has it.
        let recorded = await persist(record, condition: condition, startedAs: start) { seq in .done(record, seq: seq) }
        guard recorded || !coordinator.othersShareTasks else { return false }
        finishedCounts[record.status, default: 0] += 1
        logger.info(
            "task finished",
            metadata: ["task": .string(record.id), "cmd": .string(record.cmd), "status": .string(record.status.rawValue)]
        )
        return true
    }

    func publishProgress(_ record: TaskRecord) async {
        await persist(record) { seq in .progress(record, seq: seq) }
    }

    /// Records a state change that clients are not told about (a task going back to the queue).
    func save(_ record: TaskRecord) async {
        await persist(record)
    }

    /// Records a state change with its event (for a task with an owner and an `event`; after the `progress` of
    /// `startedAs`, in the same write) or alone. In a cluster the write is retried while the database is
    /// unreachable, so nothing accepted is lost, and refused when `condition` no longer holds: then a task running
    /// here was reclaimed by another node and is stopped. Returns whether it was recorded.
    @discardableResult
    func persist(
        _ record: TaskRecord, condition: WriteCondition = .runningHere, notBefore: Date? = nil,
        startedAs start: TaskRecord? = nil, event: (@Sendable (UInt64) -> ServerMessage)? = nil
    ) async -> Bool {
        var delay = Duration.milliseconds(100)
        var givingUpAt: ContinuousClock.Instant?
        while true {
            do {
                if let uid = record.uid, let event, let start {
                    let started: @Sendable (UInt64) -> ServerMessage = { seq in .progress(start, seq: seq) }
                    try await events.append(uid: uid, series: [(start, started), (record, event)], condition: condition)
                } else if let uid = record.uid, let event {
                    try await events.append(uid: uid, task: record, condition: condition, event)
                } else {
                    try await coordinator.update(record, condition: condition, notBefore: notBefore)
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
                guard coordinator.othersShareTasks else { return false }
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
