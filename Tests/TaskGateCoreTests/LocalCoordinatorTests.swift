import Foundation
import Testing

@testable import TaskGateCore

/// The single node's coordinator on its own: which waiting task it hands out, when, and what it counts.
@Suite("Local coordinator", .timeLimit(.minutes(1)))
struct LocalCoordinatorTests {
    private func task(_ id: String, uid: String? = "u", cmd: String = "echo", priority: Int = 0, runAt: Date? = nil) -> TaskRecord {
        TaskRecord(id: id, cmd: cmd, uid: uid, args: .object([:]), priority: priority, runAt: runAt)
    }

    private func claimAll(_ coordinator: LocalCoordinator, runningHere: [Lane: Int] = [:]) async throws -> [String] {
        var ids: [String] = []
        while let next = try await coordinator.claimNext(ClaimRules(), runningHere: runningHere) { ids.append(next.id) }
        return ids
    }

    @Test func claimsByPriorityThenAgeAndMarksTheAttempt() async throws {
        let coordinator = LocalCoordinator(store: InMemoryTaskStore(), fairShare: false)
        coordinator.enqueue(task("low-1", priority: 5), notBefore: nil)
        coordinator.enqueue(task("high", priority: 0), notBefore: nil)
        coordinator.enqueue(task("low-2", priority: 5), notBefore: nil)
        let first = try #require(try await coordinator.claimNext(ClaimRules(), runningHere: [:]))
        #expect(first.id == "high")
        #expect(first.status == .running)
        #expect(first.attempts == 1)
        #expect(try await claimAll(coordinator) == ["low-1", "low-2"])
        #expect(coordinator.waitingCount == 0)
    }

    @Test func fairShareServesTheUIDWithFewerTasksRunningHere() async throws {
        let coordinator = LocalCoordinator(store: InMemoryTaskStore(), fairShare: true)
        for index in 1...3 { coordinator.enqueue(task("busy-\(index)", uid: "busy"), notBefore: nil) }
        coordinator.enqueue(task("quiet-1", uid: "quiet"), notBefore: nil)
        let busyRuns = [Lane(cmd: "echo", uid: "busy"): 2]
        let next = try #require(try await coordinator.claimNext(ClaimRules(), runningHere: busyRuns))
        #expect(next.id == "quiet-1")
    }

    @Test func excludedHandlersWait() async throws {
        let coordinator = LocalCoordinator(store: InMemoryTaskStore(), fairShare: true)
        coordinator.enqueue(task("slow", cmd: "limited"), notBefore: nil)
        coordinator.enqueue(task("fast", cmd: "echo"), notBefore: nil)
        let rules = ClaimRules(excludedCommands: ["limited"])
        #expect(try await coordinator.claimNext(rules, runningHere: [:])?.id == "fast")
        #expect(try await coordinator.claimNext(rules, runningHere: [:]) == nil)
        #expect(try await coordinator.claimNext(ClaimRules(), runningHere: [:])?.id == "slow")
    }

    @Test func aClaimOfSeveralTakesTurnsAmongLanesAndStartsAPacedHandlerOnce() async throws {
        let coordinator = LocalCoordinator(store: InMemoryTaskStore(), fairShare: true)
        for index in 1...3 { coordinator.enqueue(task("a\(index)", uid: "a"), notBefore: nil) }
        coordinator.enqueue(task("b1", uid: "b"), notBefore: nil)
        for index in 1...2 { coordinator.enqueue(task("p\(index)", uid: "c", cmd: "paced"), notBefore: nil) }
        let rules = ClaimRules(pacedCommands: ["paced"])
        // "a" runs one here already: b's and the paced lane's first tasks go before a's next one.
        let first = try await coordinator.claim(rules, runningHere: [Lane(cmd: "echo", uid: "a"): 1], limit: 4)
        #expect(first.map(\.id) == ["b1", "p1", "a1", "a2"])
        #expect(first.allSatisfy { $0.status == .running && $0.attempts == 1 })
        // The paced handler's second task waits for another claim, where it goes first: its lane was served
        // before a's. A limit is a limit.
        #expect(try await coordinator.claim(rules, runningHere: [:], limit: 1).map(\.id) == ["p2"])
        #expect(try await coordinator.claim(rules, runningHere: [:], limit: 5).map(\.id) == ["a3"])
        #expect(try await coordinator.claim(rules, runningHere: [:], limit: 5).isEmpty)
    }

    @Test func aTaskNotDueWaitsForItsTimeAndNamesIt() async throws {
        let coordinator = LocalCoordinator(store: InMemoryTaskStore(), fairShare: true)
        let later = Date().addingTimeInterval(3600)
        let soon = Date().addingTimeInterval(1800)
        coordinator.enqueue(task("scheduled", runAt: later), notBefore: nil)
        coordinator.enqueue(task("retrying"), notBefore: soon)
        coordinator.enqueue(task("past", runAt: Date().addingTimeInterval(-1)), notBefore: nil)
        #expect(try await claimAll(coordinator) == ["past"])
        #expect(try await coordinator.nextDueDate() == soon)
        #expect(coordinator.waiting.notDue == 2)
        #expect(coordinator.waiting.byCommand == ["echo": 2])
    }

    @Test func aTaskFallsDueOnceItsTimeHasPassed() async throws {
        let coordinator = LocalCoordinator(store: InMemoryTaskStore(), fairShare: true)
        let due = Date().addingTimeInterval(0.05)
        coordinator.enqueue(task("soon"), notBefore: due)
        #expect(try await coordinator.claimNext(ClaimRules(), runningHere: [:]) == nil)
        // The due time is what is waited for: a clock that must pass, not a synchronisation.
        try await Task.sleep(until: .now + .milliseconds(Int64(max(0, due.timeIntervalSinceNow) * 1000) + 10))
        #expect(try await coordinator.claimNext(ClaimRules(), runningHere: [:])?.id == "soon")
        #expect(try await coordinator.nextDueDate() == nil)
    }

    @Test func withdrawTakesOutReadyAndNotDueTasks() async throws {
        let coordinator = LocalCoordinator(store: InMemoryTaskStore(), fairShare: true)
        coordinator.enqueue(task("ready"), notBefore: nil)
        coordinator.enqueue(task("later"), notBefore: Date().addingTimeInterval(3600))
        #expect(await coordinator.withdraw(id: "later")?.id == "later")
        #expect(await coordinator.withdraw(id: "ready")?.id == "ready")
        #expect(await coordinator.withdraw(id: "ready") == nil)
        #expect(coordinator.waitingCount == 0)
        #expect(try await coordinator.nextDueDate() == nil)
    }

    @Test func countsWhatWaitsAndWhatRunsHere() async throws {
        let coordinator = LocalCoordinator(store: InMemoryTaskStore(), fairShare: true)
        coordinator.enqueue(task("a1", uid: "a"), notBefore: nil)
        coordinator.enqueue(task("a2", uid: "a"), notBefore: Date().addingTimeInterval(3600))
        coordinator.enqueue(task("b1", uid: "b"), notBefore: nil)
        let running = [Lane(cmd: "echo", uid: "a"): 1, Lane(cmd: "other", uid: "c"): 2]
        let forA = try await coordinator.activeCounts(uid: "a", runningHere: running)
        #expect(forA.active == 6)
        #expect(forA.uid == 3)
        #expect(try await coordinator.activeCounts(uid: "b", runningHere: running).uid == 1)
        #expect(try await coordinator.activeCounts(uid: nil, runningHere: [:]).active == 3)
    }

    @Test func drainEmptiesTheNode() async throws {
        let coordinator = LocalCoordinator(store: InMemoryTaskStore(), fairShare: true)
        coordinator.enqueue(task("ready"), notBefore: nil)
        coordinator.enqueue(task("later"), notBefore: Date().addingTimeInterval(3600))
        #expect(Set(coordinator.drain().map(\.id)) == ["ready", "later"])
        #expect(coordinator.waitingCount == 0)
        #expect(try await coordinator.claimNext(ClaimRules(), runningHere: [:]) == nil)
    }

    @Test func recoversEveryUnfinishedTaskOfItsStore() async throws {
        let store = InMemoryTaskStore()
        _ = try await store.insert(task("left-queued"))
        var done = task("finished")
        done.status = .succeeded
        _ = try await store.insert(done)
        let coordinator = LocalCoordinator(store: store, fairShare: true)
        #expect(try await coordinator.tasksToRecover().map(\.id) == ["left-queued"])
    }
}
