import Synchronization
import Testing

@testable import TaskGateCore

/// The tests' own waits: they wake on the event they wait for, and fail with what they waited for at their deadline.
@Suite("Test waits", .timeLimit(.minutes(1)))
struct WaitTests {
    @Test func aWaitWakesOnEachChangeUntilItsConditionHolds() async throws {
        let signal = ChangeSignal()
        let count = Mutex(0)
        let changer = Task {
            for _ in 0..<3 {
                count.withLock { $0 += 1 }
                signal.bump()
                await Task.yield()
            }
        }
        try await waitUntil("three changes", on: signal) { count.withLock { $0 } == 3 }
        await changer.value
    }

    @Test func aWaitWithoutTheEventFailsAtItsDeadlineSayingWhatItWaitedFor() async throws {
        let start = ContinuousClock.now
        let error = await #expect(throws: TimedOut.self) {
            try await waitUntil("a change that never comes", timeout: .milliseconds(50), on: ChangeSignal()) { false }
        }
        #expect(error?.description.contains("a change that never comes") == true)
        #expect(ContinuousClock.now - start < .seconds(5))
        await #expect(throws: TimedOut.self) {
            try await RecordingConnection().waitFor(timeout: .milliseconds(50)) { !$0.isEmpty }
        }
    }

    @Test func aCancelledWaitEndsAtOnce() async throws {
        let waiter = Task { try await waitUntil("nothing", timeout: .seconds(30), on: ChangeSignal()) { false } }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
    }

    @Test func waitingForATaskFailsAtItsDeadlineWithItsStatus() async throws {
        let gateway = Gateway.forTests()
        let owned = try await gateway.submit(cmd: "sleep", args: ["ms": 30000], uid: "u").task.id
        let error = await #expect(throws: TimedOut.self) { try await gateway.finished(owned, timeout: .milliseconds(200)) }
        #expect(error?.description.contains(owned) == true)
        let ownerless = try await gateway.submit(cmd: "sleep", args: ["ms": 30000], uid: nil).task.id
        await #expect(throws: TimedOut.self) { try await gateway.finished(ownerless, timeout: .milliseconds(200)) }
        await gateway.shutdown(grace: .zero)
    }
}
