import Foundation

/// Who numbers a uid's events and stores each with the task state it reports: injected into the event log with
/// the backend. `LocalSequencer` numbers on this node; `SharedSequencer` leaves it to the cluster's store, so `seq`
/// is one sequence per uid whichever node appends.
protocol EventSequencer: Sendable {
    /// Other nodes number the same uids' events: a later seq can arrive before an earlier one (which is then read
    /// from the store), and what a node misses is caught up from the store.
    var numbersAcrossNodes: Bool { get }

    /// Numbers and stores one event of `uid`, only if `condition` still holds for the task in a cluster.
    /// `nextLocalSeq` hands out this node's next seq for the uid (a single node numbers with it). Returns the event
    /// and, if it was numbered but the store failed, that failure: the event is delivered to live clients anyway,
    /// so nobody waits for a result that exists.
    nonisolated(nonsending) func append(_ write: EventWrite, nextLocalSeq: () async throws -> UInt64) async throws -> SequencedEvent

    /// Numbers and stores `writes` (several events of one uid about one task) in order, in one write: they share
    /// one store failure.
    nonisolated(nonsending) func appendSeries(_ writes: [EventWrite], nextLocalSeq: () async throws -> UInt64) async throws -> SequencedSeries

    /// The last stored seq of each uid: what a node compares with what it delivered.
    func lastSeqs(uids: [String]) async throws -> [String: UInt64]
}

struct SequencedSeries {
    var events: [LoggedEvent]
    /// What failed: the store (the events were numbered and are delivered anyway). In a cluster a failed write
    /// numbers nothing and throws instead.
    var failure: (any Error)?
}

/// One event to number and store, with the task state it reports.
struct EventWrite: Sendable {
    var uid: String
    var task: TaskRecord
    var condition: WriteCondition
    var retainCount: Int
    var makeMessage: @Sendable (UInt64) -> ServerMessage
}

struct SequencedEvent {
    var event: LoggedEvent
    /// The event was numbered but the store failed to keep it.
    var storeFailure: (any Error)?
}

struct LocalSequencer: EventSequencer {
    let store: any LocalTaskStore
    var numbersAcrossNodes: Bool { false }

    /// A series of one: numbering, encoding and the store write are `appendSeries`'s.
    nonisolated(nonsending) func append(_ write: EventWrite, nextLocalSeq: () async throws -> UInt64) async throws -> SequencedEvent {
        let series = try await appendSeries([write], nextLocalSeq: nextLocalSeq)
        return SequencedEvent(event: series.events[0], storeFailure: series.failure)
    }

    nonisolated(nonsending) func appendSeries(_ writes: [EventWrite], nextLocalSeq: () async throws -> UInt64) async throws -> SequencedSeries {
        var events: [LoggedEvent] = []
        var stored: [UserEvent] = []
        for write in writes {
            let seq = try await nextLocalSeq()
            let message = write.makeMessage(seq)
            let event = LoggedEvent(seq: seq, json: WireJSON.encode(message), type: message.type)
            events.append(event)
            stored.append(UserEvent(uid: write.uid, seq: seq, json: event.json, createdAt: event.createdAt, retainCount: write.retainCount))
        }
        guard let last = writes.last else { return SequencedSeries(events: []) }
        do {
            try await store.append(stored, task: last.task)
            return SequencedSeries(events: events)
        } catch {
            return SequencedSeries(events: events, failure: error)
        }
    }

    /// Only this node numbers: what it delivered is what was stored, so nothing is ever missed.
    func lastSeqs(uids: [String]) async throws -> [String: UInt64] { [:] }
}

struct SharedSequencer: EventSequencer {
    let coordinator: any ClusterCoordinator
    var numbersAcrossNodes: Bool { true }

    /// A failed store write throws: the event has no number, so there is nothing to deliver.
    nonisolated(nonsending) func append(_ write: EventWrite, nextLocalSeq: () async throws -> UInt64) async throws -> SequencedEvent {
        let event = try await coordinator.appendNumbered(
            uid: write.uid, task: write.task, condition: write.condition, retainCount: write.retainCount,
            makeMessage: write.makeMessage)
        return SequencedEvent(event: event)
    }

    /// The store numbers a series in one statement, under the condition of its last write: all or nothing.
    /// A failed write throws: nothing was numbered, so there is nothing to deliver.
    nonisolated(nonsending) func appendSeries(_ writes: [EventWrite], nextLocalSeq: () async throws -> UInt64) async throws -> SequencedSeries {
        guard let last = writes.last else { return SequencedSeries(events: []) }
        let events = try await coordinator.appendNumbered(
            uid: last.uid, task: last.task, condition: last.condition, retainCount: last.retainCount,
            makeMessages: writes.map(\.makeMessage))
        return SequencedSeries(events: events)
    }

    func lastSeqs(uids: [String]) async throws -> [String: UInt64] {
        try await coordinator.lastSeqs(uids: uids)
    }
}

extension TaskBackend {
    var sequencer: any EventSequencer {
        switch self {
        case .local(let store): LocalSequencer(store: store)
        case .cluster(let shared): SharedSequencer(coordinator: shared)
        }
    }
}
