import Foundation
import ServiceLifecycle
import Synchronization

/// The streams open on this server that live in their channel handlers, without a task: WebSockets and event
/// streams served on the event loop. Hummingbird's server returns from a shutdown once it has stopped accepting and
/// its requests have ended; without this count the process could exit while the WebSockets' `1001` close frames
/// and the event streams' last bytes are still on their way.
public final class OpenStreams: Sendable {
    private struct State {
        var count = 0
        var waiters: [UUID: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    public var count: Int { state.withLock { $0.count } }

    func opened() {
        state.withLock { $0.count += 1 }
    }

    func closed() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.count -= 1
            guard state.count == 0 else { return [] }
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns when every socket has closed, or after `timeout`.
    public func waitUntilAllClosed(timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.allClosed() }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }

    private func allClosed() async {
        let id = UUID()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.count == 0 || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }
}

/// Stops after the HTTP server (it comes before it in the service group): waits for the streams' endings (the
/// WebSockets' closing handshakes), which the server's quiesce began, for at most `timeout`.
struct StreamDrainService: Service {
    let streams: OpenStreams
    let timeout: Duration

    func run() async throws {
        try? await gracefulShutdown()
        await streams.waitUntilAllClosed(timeout: timeout)
    }
}
