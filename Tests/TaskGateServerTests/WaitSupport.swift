import Foundation
import Hummingbird
import TaskGateCore

@testable import TaskGateServer

/// A bounded wait ran out: says what was awaited, so a failing test fails for that reason.
struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var after: Duration

    init(_ what: String, after: Duration) {
        self.what = what
        self.after = after
    }

    var description: String { "timed out waiting for \(what) (after \(after))" }
}

/// Runs a wait (a WebSocket exchange, a latch) and throws `TimedOut` once `timeout` has passed; the wait is
/// cancelled then, and holds its caller no longer even if it ignores cancellation.
func within<Value: Sendable>(
    _ timeout: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> Value
) async throws -> Value {
    try await withDeadline(timeout, timeoutError: { TimedOut(what, after: timeout) }, body)
}

/// The application as `buildApplication(arguments)` builds it, and the gateway behind it, for tests that wait on
/// the gateway's events rather than asking over HTTP again and again.
func applicationWithGateway(
    _ arguments: ServerSettings = testArguments()
) async throws -> (application: some ApplicationProtocol, gateway: Gateway) {
    let metrics = GatewayMetrics()
    let tokens = try await loadUserTokens(arguments)
    let gateway = try buildGateway(arguments, metrics: metrics, tokens: tokens)
    return (try await buildApplication(arguments, gateway: gateway, tokens: tokens, metrics: metrics), gateway)
}

extension Gateway {
    /// Waits until the task is final, reading it again after each of its owner's events (the store has a task's
    /// new state before its event goes out). A task without an owner has no events: it is awaited through the pool
    /// going idle. Throws `TimedOut` once `timeout` has passed.
    func finished(_ id: String, timeout: Duration = .seconds(10)) async throws -> TaskRecord {
        let deadline = ContinuousClock.now + timeout
        var task = try await self.task(id: id, visibleTo: nil)
        if task.status.isFinal { return task }
        guard let uid = task.uid else {
            try await within(timeout, "the pool to go idle, for task \(id) to finish") { await self.pool.waitUntilIdle() }
            task = try await self.task(id: id, visibleTo: nil)
            guard task.status.isFinal else {
                throw TimedOut("task \(id) to finish: the pool is idle and it is \(task.status.rawValue)", after: timeout)
            }
            return task
        }
        var cursor = try await events.latestSeq(uid: uid)
        while true {
            task = try await self.task(id: id, visibleTo: nil)
            if task.status.isFinal { return task }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw TimedOut("task \(id) to finish; it is \(task.status.rawValue)", after: timeout) }
            let batch = try await events.waitForEvents(uid: uid, after: cursor, timeout: left)
            cursor = batch.reset ? try await events.latestSeq(uid: uid) : batch.cursor
        }
    }
}
