import Hummingbird
import NIOCore
import Synchronization
import TaskGateCore

/// Who may poll and what a poll reads: shared by the poll parked on the event loop (`LongPollChannelHandler`, a
/// `GET /poll` on a connection of its own) and the router's `GET /poll` (one that follows other requests on a
/// kept-alive connection), so both check, park and answer alike.
struct LongPollEndpoint: Sendable {
    let gateway: Gateway
    let admission: Admission
    let metrics: GatewayMetrics?

    static let defaultTimeout = 25
    static let maxTimeout = 60
    static let path = "/poll"
    /// The answer when the uid's events cannot be read (the store is away).
    static let eventsUnavailable = GatewayError(.unavailable, "events unavailable; try again")

    /// Checks the request and takes its place among the uid's polls; `start` parks it.
    func begin(_ candidate: Admission.Candidate, remote: String?) throws(GatewayError) -> LongPoll {
        let identity = try admission.identify(candidate)
        let timeout = try Self.timeoutSeconds(candidate.query["timeout"])
        guard gateway.events.waiterCount(uid: identity.uid) < admission.limits.pollsPerUID else {
            throw GatewayError(.tooManyRequests, "uid '\(identity.uid)' already has \(admission.limits.pollsPerUID) polls waiting")
        }
        return LongPoll(endpoint: self, identity: identity, timeout: .seconds(timeout), remote: remote)
    }

    static func timeoutSeconds(_ text: String?) throws(GatewayError) -> Int {
        guard let text else { return defaultTimeout }
        guard let seconds = Int(text), (0...maxTimeout).contains(seconds) else {
            throw .badRequest("'timeout' must be a whole number of seconds from 0 to \(maxTimeout)")
        }
        return seconds
    }

    /// Events are encoded once when they are published, so the answer is assembled from their JSON rather than
    /// decoded and encoded again. Shape: `{"cursor":M,"events":[…],"reset":false}`.
    static func render(_ batch: EventBatch) -> String {
        var text = "{\"cursor\":\(batch.cursor),\"events\":["
        text.reserveCapacity(batch.events.reduce(64) { $0 + $1.json.utf8.count + 1 })
        for (index, event) in batch.events.enumerated() {
            if index > 0 { text.append(",") }
            text.append(event.json)
        }
        text.append("],\"reset\":\(batch.reset)}")
        return text
    }
}

/// One waiting `GET /poll`. It parks without a task: the event log calls it back when an event after its cursor
/// is delivered, and a timer on the event loop ends the wait. Only the first look at the log (which may read the
/// store) runs as a short task. `answer` is called exactly once: with the batch, or `nil` when the events could not
/// be read.
final class LongPoll: Sendable {
    private struct State {
        var answer: (@Sendable (EventBatch?) -> Void)?
        var ticket: UInt64?
        var timer: Scheduled<Void>?
        var finished = false
    }

    private let endpoint: LongPollEndpoint
    let uid: String
    private let cursor: UInt64
    private let timeout: Duration
    private let pollKey: String
    private let state = Mutex(State())

    fileprivate init(endpoint: LongPollEndpoint, identity: Admission.Identity, timeout: Duration, remote: String?) {
        self.endpoint = endpoint
        uid = identity.uid
        cursor = identity.cursor ?? 0
        self.timeout = timeout
        pollKey = endpoint.gateway.clients.beginPoll(uid: identity.uid, remote: remote, admin: identity.isAdmin)
        endpoint.metrics?.longPollStarted()
    }

    private var events: EventLog { endpoint.gateway.events }

    func start(on eventLoop: any EventLoop, answer: @escaping @Sendable (EventBatch?) -> Void) {
        let proceed = state.withLock { state -> Bool in
            guard !state.finished else { return false }
            state.answer = answer
            return true
        }
        guard proceed else { return answer(EventBatch(events: [], cursor: cursor, reset: false)) }
        Task {
            let first: EventBatch
            do {
                first = try await events.events(uid: uid, after: cursor)
            } catch {
                return finish(nil)
            }
            if !first.events.isEmpty || first.reset || timeout <= .zero { return finish(first) }
            park(on: eventLoop)
        }
    }

    private func park(on eventLoop: any EventLoop) {
        let ticket = events.waitForEvent(uid: uid, after: cursor) { [self] in finishNow() }
        guard let ticket else { return finishNow() }
        let timer = eventLoop.scheduleTask(in: TimeAmount(timeout)) { [self] in finishNow() }
        let finishedMeanwhile = state.withLock { state -> Bool in
            state.ticket = ticket
            state.timer = timer
            return state.finished
        }
        if finishedMeanwhile {
            events.stopWaiting(uid: uid, ticket: ticket)
            timer.cancel()
        }
    }

    /// Answers now with what there is: an event came, the timeout ran out, the server is shutting down, or the
    /// client went away (then nobody reads it).
    func finishNow() {
        finish(events.currentEvents(uid: uid, after: cursor))
    }

    private func finish(_ batch: EventBatch?) {
        let taken = state.withLock { state -> (answer: (@Sendable (EventBatch?) -> Void)?, ticket: UInt64?, timer: Scheduled<Void>?)? in
            guard !state.finished else { return nil }
            state.finished = true
            defer { state.answer = nil; state.ticket = nil; state.timer = nil }
            return (state.answer, state.ticket, state.timer)
        }
        guard let taken else { return }
        if let ticket = taken.ticket { events.stopWaiting(uid: uid, ticket: ticket) }
        taken.timer?.cancel()
        endpoint.gateway.clients.endPoll(pollKey)
        endpoint.metrics?.longPollEnded()
        endpoint.metrics?.messageOut(.longPoll, count: batch?.events.count ?? 0)
        taken.answer?(batch)
    }
}
