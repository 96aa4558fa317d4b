import Testing

@testable import TaskGateCore

@Suite("Per-user event log")
struct EventLogTests {
    @Test func seqIsPerUidAndStrictlyIncreasing() {
        let log = EventLog()
        #expect(log.append(uid: "a", taskMessage) == 1)
        #expect(log.append(uid: "a", taskMessage) == 2)
        #expect(log.append(uid: "b", taskMessage) == 1)
        #expect(log.append(uid: "a", taskMessage) == 3)
        #expect(log.latestSeq(uid: "a") == 3)
        #expect(log.latestSeq(uid: "nobody") == 0)
    }

    @Test func eventsGoOnlyToTheOwnersConnections() {
        let log = EventLog()
        let alice1 = RecordingConnection(), alice2 = RecordingConnection(), bob = RecordingConnection()
        log.subscribe(uid: "alice", connection: alice1, after: nil) { _, _ in "hello" }
        log.subscribe(uid: "alice", connection: alice2, after: nil) { _, _ in "hello" }
        log.subscribe(uid: "bob", connection: bob, after: nil) { _, _ in "hello" }
        log.append(uid: "alice", taskMessage)
        #expect(alice1.seqs == [1])
        #expect(alice2.seqs == [1])
        #expect(bob.seqs == [])
    }

    @Test func unsubscribingOneConnectionKeepsTheOther() {
        let log = EventLog()
        let first = RecordingConnection(), second = RecordingConnection()
        log.subscribe(uid: "u", connection: first, after: nil) { _, _ in "hello" }
        log.subscribe(uid: "u", connection: second, after: nil) { _, _ in "hello" }
        log.unsubscribe(uid: "u", connectionID: first.id)
        log.append(uid: "u", taskMessage)
        #expect(first.seqs == [])
        #expect(second.seqs == [1])
    }

    @Test func subscribeWithCursorReplaysMissedEventsBeforeLiveOnes() {
        let log = EventLog()
        for _ in 1...5 { log.append(uid: "u", taskMessage) }
        let connection = RecordingConnection()
        log.subscribe(uid: "u", connection: connection, after: 2) { latest, reset in "{\"type\":\"hello\",\"seq\":\(latest),\"reset\":\(reset)}" }
        log.append(uid: "u", taskMessage)
        #expect(connection.types.first == "hello")
        #expect(connection.messages.first?["reset"] as? Bool == false)
        #expect(connection.seqs == [5, 3, 4, 5, 6])  // hello's seq is the latest, then the replay and the live event
    }

    @Test func logKeepsOnlyTheLastEvents() {
        let log = EventLog(capacity: 3)
        for _ in 1...10 { log.append(uid: "u", taskMessage) }
        let batch = log.events(uid: "u", after: 0)
        #expect(batch.events.map(\.seq) == [8, 9, 10])
        #expect(batch.reset)
        #expect(batch.cursor == 10)
        let recent = log.events(uid: "u", after: 7)
        #expect(recent.events.map(\.seq) == [8, 9, 10])
        #expect(!recent.reset)
    }

    @Test func cursorBeyondTheLatestIsAReset() {
        let log = EventLog()
        log.append(uid: "u", taskMessage)
        let batch = log.events(uid: "u", after: 50)
        #expect(batch.reset)
        #expect(batch.events.map(\.seq) == [1])
        #expect(log.events(uid: "fresh", after: 9).reset)
        #expect(log.events(uid: "fresh", after: 9).cursor == 0)
        #expect(!log.events(uid: "fresh", after: 0).reset)
    }

    @Test func batchesAreCapped() {
        let log = EventLog(capacity: 100, maxBatch: 10)
        for _ in 1...25 { log.append(uid: "u", taskMessage) }
        let batch = log.events(uid: "u", after: 0)
        #expect(batch.events.map(\.seq) == Array(1...10))
        #expect(batch.cursor == 10)
    }

    @Test func waitingPollIsWokenByAnEvent() async {
        let log = EventLog()
        async let batch = log.waitForEvents(uid: "u", after: 0, timeout: .seconds(10))
        while log.waiterCount(uid: "u") == 0 { await Task.yield() }
        let start = ContinuousClock.now
        log.append(uid: "u", taskMessage)
        let result = await batch
        #expect(result.events.map(\.seq) == [1])
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    @Test func waitingPollTimesOutEmpty() async {
        let log = EventLog()
        log.append(uid: "u", taskMessage)
        let result = await log.waitForEvents(uid: "u", after: 1, timeout: .milliseconds(50))
        #expect(result.events.isEmpty)
        #expect(result.cursor == 1)
        #expect(!result.reset)
        #expect(log.waiterCount(uid: "u") == 0)
    }

    @Test func cancellingAWaitingPollReleasesIt() async {
        let log = EventLog()
        let waiter = Task { await log.waitForEvents(uid: "u", after: 0, timeout: .seconds(30)) }
        while log.waiterCount(uid: "u") == 0 { await Task.yield() }
        let start = ContinuousClock.now
        waiter.cancel()
        let result = await waiter.value
        #expect(result.events.isEmpty)
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(log.waiterCount(uid: "u") == 0)
    }
}
