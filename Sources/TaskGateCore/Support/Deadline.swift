import NIOCore
import NIOPosix
import Synchronization

/// Runs `body` outside the caller's cancellation and returns its result, or throws `timeoutError()` once `timeout`
/// has passed. The deadline holds even when `body` ignores cancellation: a task group would wait for its child, so
/// a call stuck in a driver (a query on a connection the server dropped) would hold its caller, and everything
/// queued behind it, forever. On timeout `body` is cancelled and left to end on its own; its result is dropped.
public func withDeadline<Value: Sendable>(
    _ timeout: Duration,
    timeoutError: @escaping @Sendable () -> any Error,
    _ body: @escaping @Sendable () async throws -> Value
) async throws -> Value {
    try await withCheckedThrowingContinuation { continuation in
        let race = DeadlineRace(continuation)
        // A timer on an event loop rather than a sleeping task: every database call has one, and a task's sleep
        // costs a task and a dispatch timer of its own (a profile of a cluster node put it at a twentieth of its CPU).
        let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: TimeAmount(timeout)) {
            race.finish(.failure(timeoutError()))
        }
        race.start(
            Task {
                let result: Result<Value, any Error>
                do { result = .success(try await body()) } catch { result = .failure(error) }
                timer.cancel()
                race.finish(result)
            })
    }
}

/// Who finished first, the call or its timer; the loser's outcome is dropped and a late timer cancels the call.
private final class DeadlineRace<Value: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Value, any Error>?
        var work: Task<Void, Never>?
    }
    private let state: Mutex<State>

    init(_ continuation: CheckedContinuation<Value, any Error>) {
        state = Mutex(State(continuation: continuation))
    }

    func start(_ work: Task<Void, Never>) {
        // The timer may already have fired (a zero timeout): then the call is cancelled at once.
        let finished = state.withLock { state -> Bool in
            state.work = work
            return state.continuation == nil
        }
        if finished { work.cancel() }
    }

    func finish(_ result: Result<Value, any Error>) {
        let (continuation, work) = state.withLock { state in
            defer { state.continuation = nil }
            return (state.continuation, state.work)
        }
        guard let continuation else { return }
        continuation.resume(with: result)
        if case .failure = result { work?.cancel() }
    }
}
