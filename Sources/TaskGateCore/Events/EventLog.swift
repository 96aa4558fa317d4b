import DequeModule
import Synchronization

/// An event as it sits in a user's log: its number and its JSON, encoded once for every transport.
public struct LoggedEvent: Sendable, Equatable {
    public let seq: UInt64
    public let json: String
}

/// What a poll (or a resuming WebSocket) gets: the events after its cursor and the cursor to use next.
public struct EventBatch: Sendable, Equatable {
    public var events: [LoggedEvent]
    public var cursor: UInt64
    /// The client's cursor was outside the retained log (too old, or from before a restart): some events may be gone.
    public var reset: Bool
}

/// Per-user event logs: numbers every progress and done event with a per-uid `seq`, keeps the last `capacity`
/// events of each uid, and hands each event to that uid's live connections and waiting polls, and to no one else.
///
/// One lock covers numbering, logging and handing out, so every connection sees events in `seq` order and a
/// connection that subscribes with a cursor gets its replay before any live event.
public final class EventLog: Sendable {
    private struct UserLog {
        var lastSeq: UInt64 = 0
        var events: Deque<LoggedEvent> = []
        var subscribers: [String: any ClientConnection] = [:]
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    }

    private struct State {
        var users: [String: UserLog] = [:]
        var nextWaiterID: UInt64 = 0
    }

    public let capacity: Int
    public let maxBatch: Int
    private let state = Mutex(State())

    public init(capacity: Int = 1000, maxBatch: Int = 500) {
        precondition(capacity > 0 && maxBatch > 0)
        self.capacity = capacity
        self.maxBatch = maxBatch
    }

    /// Numbers, logs and delivers one event. `makeMessage` gets the event's seq.
    @discardableResult
    public func append(uid: String, _ makeMessage: (UInt64) -> ServerMessage) -> UInt64 {
        let (seq, waiters) = state.withLock { state -> (UInt64, [CheckedContinuation<Void, Never>]) in
            var log = state.users.removeValue(forKey: uid) ?? UserLog()
            log.lastSeq += 1
            let event = LoggedEvent(seq: log.lastSeq, json: WireJSON.encode(makeMessage(log.lastSeq)))
            log.events.append(event)
            if log.events.count > capacity { log.events.removeFirst() }
            for connection in log.subscribers.values { connection.send(event.json) }
            let waiters = Array(log.waiters.values)
            log.waiters.removeAll()
            state.users[uid] = log
            return (event.seq, waiters)
        }
        for waiter in waiters { waiter.resume() }
        return seq
    }

    /// Registers a live connection. `greeting` is sent first (it is told the latest seq and whether the cursor was
    /// out of range), then every retained event after `cursor` when one is given, then live events.
    public func subscribe(
        uid: String, connection: any ClientConnection, after cursor: UInt64?,
        greeting: (_ latestSeq: UInt64, _ reset: Bool) -> String
    ) {
        state.withLock { state in
            var log = state.users.removeValue(forKey: uid) ?? UserLog()
            if let cursor {
                let (events, reset) = Self.events(in: log, after: cursor, limit: Int.max)
                connection.send(greeting(log.lastSeq, reset))
                for event in events { connection.send(event.json) }
            } else {
                connection.send(greeting(log.lastSeq, false))
            }
            log.subscribers[connection.id] = connection
            state.users[uid] = log
        }
    }

    public func unsubscribe(uid: String, connectionID: String) {
        state.withLock { state in
            _ = state.users[uid]?.subscribers.removeValue(forKey: connectionID)
            state.users[uid].map { if Self.isIdle($0) { state.users[uid] = nil } }
        }
    }

    /// All live connections, e.g. to close them on shutdown.
    public var allSubscribers: [any ClientConnection] {
        state.withLock { state in state.users.values.flatMap { $0.subscribers.values } }
    }

    public func latestSeq(uid: String) -> UInt64 {
        state.withLock { $0.users[uid]?.lastSeq ?? 0 }
    }

    /// The events after `cursor`, at most `maxBatch` of them, without waiting.
    public func events(uid: String, after cursor: UInt64) -> EventBatch {
        state.withLock { state in
            let log = state.users[uid] ?? UserLog()
            let (events, reset) = Self.events(in: log, after: cursor, limit: maxBatch)
            return EventBatch(events: events, cursor: events.last?.seq ?? min(cursor, log.lastSeq), reset: reset)
        }
    }

    /// Long-poll: returns as soon as there is an event after `cursor`, or with an empty batch after `timeout`.
    /// Cancelling the calling task (the client went away) ends the wait at once.
    public func waitForEvents(uid: String, after cursor: UInt64, timeout: Duration) async -> EventBatch {
        let batch = events(uid: uid, after: cursor)
        if !batch.events.isEmpty || batch.reset || timeout <= .zero { return batch }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.park(uid: uid, after: cursor) }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
        return events(uid: uid, after: cursor)
    }

    /// How many polls are parked for this uid (for limits and metrics).
    public func waiterCount(uid: String) -> Int {
        state.withLock { $0.users[uid]?.waiters.count ?? 0 }
    }

    private func park(uid: String, after cursor: UInt64) async {
        let waiterID = state.withLock { state in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    // Checked under the lock: a cancel that ran before we registered has already set the flag.
                    if Task.isCancelled || (state.users[uid]?.lastSeq ?? 0) > cursor { return true }
                    state.users[uid, default: UserLog()].waiters[waiterID] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                let waiter = state.users[uid]?.waiters.removeValue(forKey: waiterID)
                state.users[uid].map { if Self.isIdle($0) { state.users[uid] = nil } }
                return waiter
            }
            waiter?.resume()
        }
    }

    private static func isIdle(_ log: UserLog) -> Bool {
        log.lastSeq == 0 && log.subscribers.isEmpty && log.waiters.isEmpty
    }

    private static func events(in log: UserLog, after cursor: UInt64, limit: Int) -> ([LoggedEvent], Bool) {
        guard let first = log.events.first else { return ([], cursor > log.lastSeq) }
        if cursor > log.lastSeq || cursor + 1 < first.seq {
            return (Array(log.events.prefix(limit)), true)
        }
        // seq numbers in the log are consecutive, so the start index is arithmetic.
        let start = Int(cursor + 1 - first.seq)
        return (Array(log.events[start...].prefix(limit)), false)
    }
}
