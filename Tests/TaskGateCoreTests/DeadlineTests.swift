import Synchronization
import Testing

@testable import TaskGateCore

private struct Late: Error {}

/// A gate the test opens by hand; waiting on it ignores cancellation, as a stuck driver call does.
private final class Gate: Sendable {
    private let waiters = Mutex<[CheckedContinuation<Void, Never>]>([])
    private let isOpen = Mutex(false)
    func wait() async {
        await withCheckedContinuation { continuation in
            let openAlready = isOpen.withLock { open in
                if !open { waiters.withLock { $0.append(continuation) } }
                return open
            }
            if openAlready { continuation.resume() }
        }
    }
    func open() {
        isOpen.withLock { $0 = true }
        for waiter in waiters.withLock({ list in defer { list = [] }; return list }) { waiter.resume() }
    }
}

@Suite("Deadlines that hold when the call ignores cancellation", .timeLimit(.minutes(2)))
struct DeadlineTests {
    @Test func aCallThatIgnoresCancellationStillTimesOut() async {
        let gate = Gate()
        await #expect(throws: Late.self) {
            try await withDeadline(.milliseconds(50), timeoutError: { Late() }) {
                await gate.wait()
                return 1
            }
        }
        gate.open()  // the abandoned call ends on its own; its result is dropped
    }

    @Test func aPromptCallReturnsItsValueAndItsError() async throws {
        let value = try await withDeadline(.seconds(30), timeoutError: { Late() }) { 42 }
        #expect(value == 42)
        struct Refused: Error {}
        await #expect(throws: Refused.self) {
            try await withDeadline(.seconds(30), timeoutError: { Late() }) { () async throws -> Int in throw Refused() }
        }
    }

    @Test func theCallIsCancelledWhenItsTimeIsUp() async {
        let sawCancellation = Mutex(false)
        let gate = Gate()
        await #expect(throws: Late.self) {
            try await withDeadline(.milliseconds(20), timeoutError: { Late() }) { () async throws -> Int in
                await withTaskCancellationHandler {
                    await gate.wait()
                } onCancel: {
                    sawCancellation.withLock { $0 = true }
                    gate.open()
                }
                return 0
            }
        }
        await gate.wait()
        #expect(sawCancellation.withLock { $0 })
    }
}
