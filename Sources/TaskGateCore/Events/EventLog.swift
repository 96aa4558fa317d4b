import DequeModule
import Foundation
import Synchronization

/// An event as it sits in a user's log: its number and its JSON, encoded once for every transport.
public struct LoggedEvent: Sendable, Equatable {
    public let seq: UInt64
    public let json: String
    /// `progress` or `done`.
    public let type: String
    public let createdAt: Date

    public init(seq: UInt64, json: String, type: String, createdAt: Date = Date()) {
        self.seq = seq
        self.json = json
        self.type = type
        self.createdAt = createdAt
    }
}

/// What a poll (or a resuming WebSocket) gets: the events after its cursor and the cursor to use next.
public struct EventBatch: Sendable, Equatable {
    public var events: [LoggedEvent]
    public var cursor: UInt64
    /// The client's cursor was outside the retained log (too old, or from before a restart): some events may be gone.
    public var reset: Bool

    public init(events: [LoggedEvent], cursor: UInt64, reset: Bool) {
        self.events = events
        self.cursor = cursor
        self.reset = reset
    }
}

/// Per-user event logs: numbers every progress and done event with a per-uid `seq`, records it in the store, keeps
/// the last `retention.count` events of each uid, and hands each event to that uid's live connections and waiting polls,
/// and to no one else.
///
/// An event is handed out only once the store has it, and in `seq` order: a connection that subscribes with a
/// cursor gets its replay before any live event, and after a restart `seq` goes on from the stored value.
public final class EventLog: Sendable {
    public struct Retention: Sendable {
        /// Events kept per uid, in memory and in the store.
        public var count: Int
        /// Events older than this are dropped.
        public var maxAge: Duration
        /// Bytes of events kept in memory per uid: large events (big args or results) cannot make a uid's log hold
        /// `count` of them in memory. A durable store keeps the rest, up to `count`, for a client resuming from further
        /// back; without one they are gone and such a resume is told `reset`.
        public var memoryBytes: Int

        public init(count: Int = 1000, maxAge: Duration = .seconds(7 * 24 * 3600), memoryBytes: Int = 4 * 1024 * 1024) {
            self.count = count
            self.maxAge = maxAge
            self.memoryBytes = memoryBytes
        }
    }

    private struct UserLog {
        /// The highest seq handed out to an event (it may still be on its way to the store).
        var assignedSeq: UInt64
        /// The highest seq delivered; every event up to it is in `events` (or pruned).
        var deliveredSeq: UInt64
        var events: Deque<LoggedEvent>
        /// The JSON bytes in `events`.
        var eventBytes = 0
        /// Stored events waiting for an earlier seq to be stored first.
        var ready: [UInt64: LoggedEvent] = [:]
        var subscribers: [String: any ClientConnection] = [:]
        /// Parked polls, each woken once when an event after its cursor is delivered.
        var waiters: [UInt64: @Sendable () -> Void] = [:]
        var lastActivity = ContinuousClock.now
        /// A cluster node fetching events other nodes stored; `catchUpAgain` asks it for one more round.
        var catchingUp = false
        var catchUpAgain = false

        var isIdle: Bool { subscribers.isEmpty && waiters.isEmpty && assignedSeq == deliveredSeq }

        /// Keeps `event` as the newest, then lets go of the oldest beyond the retained count or memory budget (the
        /// newest always stays).
        mutating func keep(_ event: LoggedEvent, _ retention: Retention) {
            events.append(event)
            eventBytes += event.json.utf8.count
            while events.count > retention.count || (eventBytes > retention.memoryBytes && events.count > 1) { dropOldest() }
        }

        mutating func dropOldest() {
            if let oldest = events.popFirst() { eventBytes -= oldest.json.utf8.count }
        }

        mutating func dropAll() {
            events.removeAll()
            eventBytes = 0
        }
    }

    private struct State {
        var users: [String: UserLog] = [:]

        /// Changes a user's log where it is stored. (Copying it out and back would copy its event deque whenever
        /// the copy is changed: O(retention) per event.)
        mutating func modifyUser<Result>(_ uid: String, _ body: (inout UserLog) -> Result) -> Result? {
            guard users[uid] != nil else { return nil }
            return body(&users[uid]!)
        }
        var nextWaiterID: UInt64 = 0
        /// A cluster node loading these uids from the store: the highest seq other nodes announced meanwhile,
        /// which the load may have read too early to see.
        var loading: [String: UInt64] = [:]
    }

    public let retention: Retention
    public let maxBatch: Int
    private let store: any TaskStore
    /// Numbers and stores events: this node, or (a cluster) the shared store, whose other nodes' events arrive
    /// through `notified`.
    private let sequencer: any EventSequencer
    private let state = Mutex(State())

    public init(retention: Retention = .init(), maxBatch: Int = 500, backend: TaskBackend) {
        precondition(retention.count > 0 && maxBatch > 0)
        self.retention = retention
        self.maxBatch = maxBatch
        self.store = backend.store
        self.sequencer = backend.sequencer
    }

    public convenience init(retention: Retention = .init(), maxBatch: Int = 500, store: any LocalTaskStore) {
        self.init(retention: retention, maxBatch: maxBatch, backend: .local(store))
    }

    /// Numbers, stores and delivers one event about `task`; the store records the task's new state with it.
    /// `makeMessage` gets the event's seq. If the store fails, the event is still delivered to live clients (and the
    /// error thrown), so nobody waits for a result that exists.
    ///
    /// In a cluster the store numbers the event, only if `condition` still holds for the task (else it throws
    /// `WriteConditionFailed`); a failed store write delivers nothing, since the event has no number yet.
    /// Runs in its caller's turn (the pool's actor) up to the store's write: no hop to the global executor and back.
    @discardableResult
    nonisolated(nonsending) public func append(
        uid: String, task: TaskRecord, condition: WriteCondition = .runningHere,
        _ makeMessage: @escaping @Sendable (UInt64) -> ServerMessage
    ) async throws -> UInt64 {
        let write = EventWrite(uid: uid, task: task, condition: condition, retainCount: retention.count, makeMessage: makeMessage)
        let sequenced = try await sequencer.append(write) { try await self.assignSeq(uid) }
        deliver([sequenced.event], to: uid)
        if let storeFailure = sequenced.storeFailure { throw storeFailure }
        return sequenced.event.seq
    }

    /// Events of one task in order (a task answered inline: its start and its end), numbered, stored and delivered
    /// as `append` does each; in one store write, with the task state of the last, under `condition`.
    nonisolated(nonsending) public func append(
        uid: String, series: [(task: TaskRecord, message: @Sendable (UInt64) -> ServerMessage)],
        condition: WriteCondition = .runningHere
    ) async throws {
        let writes = series.map { EventWrite(uid: uid, task: $0.task, condition: condition, retainCount: retention.count, makeMessage: $0.message) }
        let sequenced = try await sequencer.appendSeries(writes) { try await self.assignSeq(uid) }
        deliver(sequenced.events, to: uid)
        if let failure = sequenced.failure { throw failure }
    }

    /// The uid's next seq on this node, its log loaded first.
    nonisolated(nonsending) private func assignSeq(_ uid: String) async throws -> UInt64 {
        while true {
            try await ensureLoaded(uid)
            let seq = state.withLock { state -> UInt64? in
                state.modifyUser(uid) { log in
                    log.assignedSeq += 1
                    return log.assignedSeq
                }
            }
            if let seq { return seq }  // else evicted meanwhile: load again
        }
    }

    /// Delivers what is now in order, together: a connection is sent the events that became deliverable in one
    /// call (an inline task's start and end go out in one write).
    private func deliver(_ events: [LoggedEvent], to uid: String) {
        let (waiters, gap) = state.withLock { state -> ([@Sendable () -> Void], Bool) in
            state.modifyUser(uid) { log -> ([@Sendable () -> Void], Bool) in
                // A cluster node hears its own events too.
                for event in events where event.seq > log.deliveredSeq { log.ready[event.seq] = event }
                var outgoing: [OutgoingMessage] = []
                while let next = log.ready.removeValue(forKey: log.deliveredSeq + 1) {
                    log.deliveredSeq = next.seq
                    log.keep(next, retention)
                    outgoing.append(OutgoingMessage(next))
                }
                let delivered = !outgoing.isEmpty
                if delivered {
                    for connection in log.subscribers.values { connection.send(outgoing) }
                }
                log.assignedSeq = max(log.assignedSeq, log.deliveredSeq)
                log.lastActivity = .now
                let waiters = delivered ? Array(log.waiters.values) : []
                if delivered { log.waiters.removeAll() }
                // In a cluster a later seq can arrive first (ours, or a notification): the earlier ones are already
                // committed, since the store numbers a uid's events one transaction at a time, so fetch them now.
                let gap = !log.ready.isEmpty && sequencer.numbersAcrossNodes
                return (waiters, gap)
            } ?? ([], false)
        }
        for wake in waiters { wake() }
        if gap { Task { await self.catchUp(uid) } }
    }

    // MARK: - Events stored by other nodes

    /// Another node (or this one) stored event `seq` of `uid`.
    public func notified(uid: String, seq: UInt64) async {
        let behind = state.withLock { state -> Bool in
            guard let log = state.users[uid] else {
                // Not loaded: it is read from the store when needed, unless a load is under way right now.
                if let seen = state.loading[uid] { state.loading[uid] = max(seen, seq) }
                return false
            }
            return seq > log.deliveredSeq && log.ready[seq] == nil
        }
        if behind { await catchUp(uid) }
    }

    /// Compares every loaded uid that someone is waiting on with the store, and fetches what was missed (after the
    /// listener reconnected, and now and then in case a notification was lost).
    public func resynchronize() async throws {
        let known = state.withLock { state in
            state.users.compactMapValues { log in log.subscribers.isEmpty && log.waiters.isEmpty ? nil : log.deliveredSeq }
        }
        guard !known.isEmpty else { return }
        let stored = try await sequencer.lastSeqs(uids: Array(known.keys))
        for (uid, seq) in stored where seq > known[uid, default: 0] {
            await catchUp(uid)
        }
    }

    /// Reads the uid's events after the last delivered one from the store and delivers them, one round at a time.
    private func catchUp(_ uid: String) async {
        guard sequencer.numbersAcrossNodes else { return }
        let start = state.withLock { state -> UInt64? in
            guard var log = state.users[uid] else { return nil }
            if log.catchingUp {
                log.catchUpAgain = true
                state.users[uid] = log
                return nil
            }
            log.catchingUp = true
            state.users[uid] = log
            return log.deliveredSeq
        }
        guard var cursor = start else { return }
        while true {
            let events = (try? await store.events(uid: uid, after: cursor, limit: maxBatch)) ?? []
            if let first = events.first, first.seq > cursor + 1 {
                // Pruned from the store before this node saw them: they are gone, so the log starts over after them.
                state.withLock { state in
                    guard var log = state.users[uid], log.deliveredSeq < first.seq - 1 else { return }
                    log.deliveredSeq = first.seq - 1
                    log.dropAll()
                    state.users[uid] = log
                }
            }
            if !events.isEmpty { deliver(events, to: uid) }
            let next = state.withLock { state -> UInt64? in
                guard var log = state.users[uid] else { return nil }
                let more = log.catchUpAgain || events.count == maxBatch
                log.catchUpAgain = false
                if !more { log.catchingUp = false }
                state.users[uid] = log
                return more ? log.deliveredSeq : nil
            }
            guard let next else { return }
            cursor = next
        }
    }

    /// Registers a live connection. `greeting` is sent first (it is told the latest seq and whether the cursor was
    /// out of range), then every retained event after `cursor` when one is given, then live events.
    public func subscribe(
        uid: String, connection: any ClientConnection, after cursor: UInt64?,
        greeting: (_ head: UInt64, _ reset: Bool) -> ServerMessage
    ) async throws {
        var subscribed = false
        while !subscribed {
            try await ensureLoaded(uid)
            var older: [LoggedEvent] = []
            if let cursor { older = try await olderEvents(uid: uid, after: cursor) }
            subscribed = state.withLock { state -> Bool in
                guard var log = state.users[uid] else { return false }
                if let cursor {
                    let (events, reset) = Self.events(in: log, after: cursor, limit: Int.max, older: older)
                    connection.send([OutgoingMessage(greeting(log.deliveredSeq, reset))] + events.map(OutgoingMessage.init))
                } else {
                    connection.send(OutgoingMessage(greeting(log.deliveredSeq, false)))
                }
                log.subscribers[connection.id] = connection
                log.lastActivity = .now
                state.users[uid] = log
                return true
            }
        }
    }

    /// A connection may close inside a send this log makes under its lock (a write the peer reset tears the stream
    /// down on the spot, and its teardown unsubscribes): the lock is then this thread's own, and taking it again
    /// would trap. So an unsubscribe that finds the lock taken leaves in a task of its own; the closed stream drops
    /// what it is sent meanwhile.
    public func unsubscribe(uid: String, connectionID: String) {
        let removed: Void? = state.withLockIfAvailable { state in Self.remove(connectionID, of: uid, from: &state) }
        if removed == nil {
            Task { self.state.withLock { state in Self.remove(connectionID, of: uid, from: &state) } }
        }
    }

    private static func remove(_ connectionID: String, of uid: String, from state: inout State) {
        _ = state.users[uid]?.subscribers.removeValue(forKey: connectionID)
        state.users[uid]?.lastActivity = .now
    }

    public func latestSeq(uid: String) async throws -> UInt64 {
        try await ensureLoaded(uid)
        return state.withLock { $0.users[uid]?.deliveredSeq ?? 0 }
    }

    /// The events after `cursor`, at most `maxBatch` of them, without waiting.
    public func events(uid: String, after cursor: UInt64) async throws -> EventBatch {
        try await ensureLoaded(uid)
        return batch(uid: uid, after: cursor, older: try await olderEvents(uid: uid, after: cursor))
    }

    private func batch(uid: String, after cursor: UInt64, older: [LoggedEvent] = []) -> EventBatch {
        state.withLock { state in
            guard let log = state.users[uid] else { return EventBatch(events: [], cursor: cursor, reset: false) }
            let (events, reset) = Self.events(in: log, after: cursor, limit: maxBatch, older: older)
            return EventBatch(events: events, cursor: events.last?.seq ?? min(cursor, log.deliveredSeq), reset: reset)
        }
    }

    /// The events after `cursor` that memory holds now, without loading anything: what a woken poll answers with
    /// (its `events(uid:after:)` call loaded the log before it parked).
    public func currentEvents(uid: String, after cursor: UInt64) -> EventBatch {
        batch(uid: uid, after: cursor)
    }

    /// Parks a poll without a task: `wake` runs once, on the thread that delivers, as soon as an event after
    /// `cursor` is delivered. Returns `nil` without parking when there is one already (or the log is not loaded:
    /// call `events(uid:after:)` first), else the ticket for `stopWaiting`.
    public func waitForEvent(uid: String, after cursor: UInt64, wake: @escaping @Sendable () -> Void) -> UInt64? {
        state.withLock { state -> UInt64? in
            state.nextWaiterID += 1
            let ticket = state.nextWaiterID
            let parked = state.modifyUser(uid) { log -> Bool in
                guard log.deliveredSeq <= cursor else { return false }
                log.waiters[ticket] = wake
                return true
            }
            return parked == true ? ticket : nil
        }
    }

    /// Unparks a poll (answered by its timeout, or its client went away); `wake` is not called.
    public func stopWaiting(uid: String, ticket: UInt64) {
        state.withLock { _ = $0.users[uid]?.waiters.removeValue(forKey: ticket) }
    }

    /// Long-poll from a task: returns as soon as there is an event after `cursor`, or with an empty batch after
    /// `timeout`. Cancelling the calling task (the client went away) ends the wait at once.
    public func waitForEvents(uid: String, after cursor: UInt64, timeout: Duration) async throws -> EventBatch {
        let first = try await events(uid: uid, after: cursor)
        if !first.events.isEmpty || first.reset || timeout <= .zero { return first }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.park(uid: uid, after: cursor) }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
        return batch(uid: uid, after: cursor)
    }

    /// How many polls are parked for this uid (for limits and metrics).
    public func waiterCount(uid: String) -> Int {
        state.withLock { $0.users[uid]?.waiters.count ?? 0 }
    }

    private func park(uid: String, after cursor: UInt64) async {
        // One resume, whoever gets there first: the event, the cancel, or finding nothing to wait for.
        let waiting = Mutex<CheckedContinuation<Void, Never>?>(nil)
        let wake: @Sendable () -> Void = { waiting.withLock { $0.take() }?.resume() }
        let ticket = Mutex<UInt64?>(nil)
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                waiting.withLock { $0 = continuation }
                let parked = waitForEvent(uid: uid, after: cursor, wake: wake)
                ticket.withLock { $0 = parked }
                // Checked after parking: a cancel that ran before found no continuation to resume.
                if parked == nil || Task.isCancelled { wake() }
            }
        } onCancel: {
            wake()
        }
        if let parked = ticket.withLock({ $0 }) { stopWaiting(uid: uid, ticket: parked) }
    }

    /// Brings a user's log into memory (its last seq and retained events) from the store.
    nonisolated(nonsending) private func ensureLoaded(_ uid: String) async throws {
        let loaded = state.withLock { state -> Bool in
            if state.users[uid] != nil { return true }
            if sequencer.numbersAcrossNodes, state.loading[uid] == nil { state.loading[uid] = 0 }
            return false
        }
        if loaded { return }
        let stored: StoredEvents
        do {
            stored = try await store.loadEvents(uid: uid, limit: retention.count)
        } catch {
            state.withLock { _ = $0.loading.removeValue(forKey: uid) }
            throw error
        }
        let missed = state.withLock { state -> Bool in
            guard state.users[uid] == nil else { return false }  // another caller loaded it meanwhile
            var log = UserLog(assignedSeq: stored.lastSeq, deliveredSeq: stored.lastSeq, events: [])
            for event in stored.events.suffix(retention.count) { log.keep(event, retention) }
            state.users[uid] = log
            return (state.loading.removeValue(forKey: uid) ?? 0) > stored.lastSeq
        }
        if missed { await catchUp(uid) }
    }

    /// Applies the age limit, in memory and in the store, and (for a durable store, which can load them again)
    /// forgets users idle for longer than `idleAfter`. Returns how many users were forgotten.
    @discardableResult
    public func maintain(idleAfter: Duration = .seconds(600)) async throws -> Int {
        let cutoff = Date().addingTimeInterval(-Double(retention.maxAge.components.seconds))
        let idleSince = ContinuousClock.now - idleAfter
        let evictIdle = store.isDurable
        let evicted = state.withLock { state -> Int in
            var evicted = 0
            for uid in Array(state.users.keys) {
                let evict = state.modifyUser(uid) { log -> Bool in
                    while let first = log.events.first, first.createdAt < cutoff { log.dropOldest() }
                    return evictIdle && log.isIdle && log.lastActivity < idleSince
                }
                if evict == true {
                    state.users[uid] = nil
                    evicted += 1
                }
            }
            return evicted
        }
        _ = try await store.pruneEvents(olderThan: cutoff)
        return evicted
    }

    /// The events after `cursor` that memory no longer holds (its byte budget let them go) but the store still has,
    /// for a client resuming from far back; empty when memory covers the cursor or the store has nothing older.
    private func olderEvents(uid: String, after cursor: UInt64) async throws -> [LoggedEvent] {
        let oldestInMemory = state.withLock { $0.users[uid]?.events.first?.seq }
        guard store.isDurable, let oldestInMemory, cursor + 1 < oldestInMemory else { return [] }
        let stored = try await store.events(uid: uid, after: cursor, limit: min(maxBatch, Int(oldestInMemory - cursor - 1)))
        // Only an unbroken run from the cursor on is a replay; anything else is a reset, as before.
        guard stored.first?.seq == cursor + 1 else { return [] }
        return stored
    }

    /// `older`: events before the ones in memory, read from the store (see `olderEvents`).
    private static func events(in log: UserLog, after cursor: UInt64, limit: Int, older: [LoggedEvent] = []) -> ([LoggedEvent], Bool) {
        if let last = older.last, let first = log.events.first, last.seq + 1 >= first.seq {
            let (rest, _) = events(in: log, after: last.seq, limit: max(0, limit - older.count))
            return (Array((older + rest).prefix(limit)), false)
        }
        // An empty log with a cursor behind the latest seq means the events are gone (pruned by age).
        guard let first = log.events.first else { return ([], cursor != log.deliveredSeq) }
        if cursor > log.deliveredSeq || cursor + 1 < first.seq {
            return (Array(log.events.prefix(limit)), true)
        }
        // seq numbers in the log are consecutive, so the start index is arithmetic.
        let start = Int(cursor + 1 - first.seq)
        return (Array(log.events[start...].prefix(limit)), false)
    }
}
