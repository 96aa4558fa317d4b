import Foundation
import Synchronization
import Testing

@testable import TaskGateCore

func makeLog(capacity: Int = 1000, maxBatch: Int = 500, store: any LocalTaskStore = InMemoryTaskStore()) -> EventLog {
    EventLog(retention: .init(count: capacity), maxBatch: maxBatch, store: store)
}

let sampleTask = TaskRecord(id: "t", cmd: "echo", uid: "u", args: [:])

extension EventLog {
    @discardableResult
    func add(_ uid: String) async throws -> UInt64 {
        try await append(uid: uid, task: sampleTask) { seq in .progress(sampleTask, seq: seq) }
    }

    func subscribe(_ uid: String, _ connection: RecordingConnection, after cursor: UInt64? = nil) async throws {
        try await subscribe(uid: uid, connection: connection, after: cursor) { latest, reset in
            var hello = ServerMessage(type: "hello")
            hello.seq = latest
            hello.reset = reset
            return hello
        }
    }
}

@Suite("Per-user event log", .timeLimit(.minutes(2)))
struct EventLogTests {
    @Test func seqIsPerUidAndStrictlyIncreasing() async throws {
        let log = makeLog()
        #expect(try await log.add("a") == 1)
        #expect(try await log.add("a") == 2)
        #expect(try await log.add("b") == 1)
        #expect(try await log.add("a") == 3)
        #expect(try await log.latestSeq(uid: "a") == 3)
        #expect(try await log.latestSeq(uid: "nobody") == 0)
    }

    @Test func eventsGoOnlyToTheOwnersConnections() async throws {
        let log = makeLog()
        let alice1 = RecordingConnection(), alice2 = RecordingConnection(), bob = RecordingConnection()
        try await log.subscribe("alice", alice1)
        try await log.subscribe("alice", alice2)
        try await log.subscribe("bob", bob)
        try await log.add("alice")
        #expect(alice1.types == ["hello", "progress"])
        #expect(alice2.types == ["hello", "progress"])
        #expect(bob.types == ["hello"])
    }

    @Test func unsubscribingOneConnectionKeepsTheOther() async throws {
        let log = makeLog()
        let first = RecordingConnection(), second = RecordingConnection()
        try await log.subscribe("u", first)
        try await log.subscribe("u", second)
        log.unsubscribe(uid: "u", connectionID: first.id)
        try await log.add("u")
        #expect(first.types == ["hello"])
        #expect(second.types == ["hello", "progress"])
    }

    /// A stream whose write fails closes at once, inside the send the log makes under its lock (seen under
    /// schemathesis: an SSE client that reset its connection while its event went out trapped the server).
    @Test func aConnectionThatLeavesInsideASendDoesNotTrapAndIsGone() async throws {
        let log = makeLog()
        let leaving = LeavingConnection(log: log, uid: "u")
        let witness = RecordingConnection()
        try await log.subscribe(uid: "u", connection: leaving, after: nil) { latest, _ in
            var hello = ServerMessage(type: "hello")
            hello.seq = latest
            return hello
        }
        try await log.subscribe("u", witness)
        leaving.leavesOnNextSend()
        try await log.add("u")
        #expect(witness.types == ["hello", "progress"])
        #expect(leaving.sends == 2)  // its hello, and the event during which it left
        // Gone once its deferred unsubscribe ran: a later event reaches the witness only.
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            let before = leaving.sends
            try await log.add("u")
            if leaving.sends == before { break }
            guard ContinuousClock.now < deadline else { throw TimedOut("the connection to leave", after: .seconds(10)) }
            await Task.yield()
        }
    }

    @Test func subscribeWithCursorReplaysMissedEventsBeforeLiveOnes() async throws {
        let log = makeLog()
        for _ in 1...5 { try await log.add("u") }
        let connection = RecordingConnection()
        try await log.subscribe("u", connection, after: 2)
        try await log.add("u")
        #expect(connection.types.first == "hello")
        #expect(connection.messages.first?["reset"] as? Bool == false)
        #expect(connection.seqs == [5, 3, 4, 5, 6])  // hello's seq is the latest, then the replay and the live event
    }

    @Test func eventsPublishedTogetherReachAConnectionInOneSend() async throws {
        let log = makeLog()
        for _ in 1...3 { try await log.add("u") }
        let replayed = RecordingConnection()
        try await log.subscribe("u", replayed, after: 1)
        #expect(replayed.sendSizes == [3])  // hello and the two missed events
        let live = RecordingConnection()
        try await log.subscribe("u", live)
        let done = {
            var task = sampleTask
            task.status = .succeeded
            return task
        }()
        try await log.append(uid: "u", series: [
            (sampleTask, { @Sendable seq in .progress(sampleTask, seq: seq) }),
            (done, { @Sendable seq in .done(done, seq: seq) }),
        ])
        #expect(live.types == ["hello", "progress", "done"])
        #expect(live.sendSizes == [1, 2])
        #expect(replayed.seqs == [3, 2, 3, 4, 5])
    }

    @Test func concurrentAppendsAreDeliveredInSeqOrder() async throws {
        let log = makeLog(store: try SQLiteTaskStore(path: temporaryDatabasePath()))
        let connection = RecordingConnection()
        try await log.subscribe("u", connection)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<200 { group.addTask { try await log.add("u") } }
            try await group.waitForAll()
        }
        #expect(connection.seqs == [0] + Array(1...200))
    }

    @Test func logKeepsOnlyTheLastEvents() async throws {
        let log = makeLog(capacity: 3)
        for _ in 1...10 { try await log.add("u") }
        let batch = try await log.events(uid: "u", after: 0)
        #expect(batch.events.map(\.seq) == [8, 9, 10])
        #expect(batch.reset)
        #expect(batch.cursor == 10)
        let recent = try await log.events(uid: "u", after: 7)
        #expect(recent.events.map(\.seq) == [8, 9, 10])
        #expect(!recent.reset)
    }

    @Test func cursorBeyondTheLatestIsAReset() async throws {
        let log = makeLog()
        try await log.add("u")
        let batch = try await log.events(uid: "u", after: 50)
        #expect(batch.reset)
        #expect(batch.events.map(\.seq) == [1])
        #expect(try await log.events(uid: "fresh", after: 9).reset)
        #expect(try await log.events(uid: "fresh", after: 9).cursor == 0)
        #expect(try await !log.events(uid: "fresh", after: 0).reset)
    }

    @Test func batchesAreCapped() async throws {
        let log = makeLog(capacity: 100, maxBatch: 10)
        for _ in 1...25 { try await log.add("u") }
        let batch = try await log.events(uid: "u", after: 0)
        #expect(batch.events.map(\.seq) == Array(1...10))
        #expect(batch.cursor == 10)
    }

    @Test func waitingPollIsWokenByAnEvent() async throws {
        let log = makeLog()
        async let batch = log.waitForEvents(uid: "u", after: 0, timeout: .seconds(10))
        try await eventually("the poll to park") { log.waiterCount(uid: "u") > 0 }
        let start = ContinuousClock.now
        try await log.add("u")
        let result = try await batch
        #expect(result.events.map(\.seq) == [1])
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    @Test func waitingPollTimesOutEmpty() async throws {
        let log = makeLog()
        try await log.add("u")
        let result = try await log.waitForEvents(uid: "u", after: 1, timeout: .milliseconds(50))
        #expect(result.events.isEmpty)
        #expect(result.cursor == 1)
        #expect(!result.reset)
        #expect(log.waiterCount(uid: "u") == 0)
    }

    @Test func cancellingAWaitingPollReleasesIt() async throws {
        let log = makeLog()
        let waiter = Task { try await log.waitForEvents(uid: "u", after: 0, timeout: .seconds(30)) }
        try await eventually("the poll to park") { log.waiterCount(uid: "u") > 0 }
        let start = ContinuousClock.now
        waiter.cancel()
        let result = try await waiter.value
        #expect(result.events.isEmpty)
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(log.waiterCount(uid: "u") == 0)
    }

    @Test func seqContinuesAfterARestartAndMissedEventsReplay() async throws {
        let path = temporaryDatabasePath()
        do {
            let log = makeLog(store: try SQLiteTaskStore(path: path))
            for _ in 1...5 { try await log.add("u") }
        }
        let log = makeLog(store: try SQLiteTaskStore(path: path))
        #expect(try await log.latestSeq(uid: "u") == 5)
        #expect(try await log.add("u") == 6)
        let connection = RecordingConnection()
        try await log.subscribe("u", connection, after: 3)
        #expect(connection.seqs == [6, 4, 5, 6])
    }

    @Test func ageRetentionDropsOldEventsButNeverReusesSeq() async throws {
        let store = try SQLiteTaskStore(path: temporaryDatabasePath())
        let log = EventLog(retention: .init(count: 100, maxAge: .seconds(0)), store: store)
        try await log.add("u")
        try await log.add("u")
        // Not a synchronisation: with a max age of 0 s an event is too old once any time has passed since it was
        // made, and this is that time (the clock must move past the events' timestamps).
        try await Task.sleep(for: .milliseconds(5))
        try await log.maintain(idleAfter: .zero)
        let batch = try await log.events(uid: "u", after: 0)
        #expect(batch.events.isEmpty)
        #expect(batch.reset)
        #expect(try await log.add("u") == 3)
        let stored = try await store.loadEvents(uid: "u", limit: 100)
        #expect(stored.lastSeq == 3)
        #expect(stored.events.map(\.seq) == [3])
    }

    @Test func idleUsersAreForgottenAndReloaded() async throws {
        let log = makeLog(store: try SQLiteTaskStore(path: temporaryDatabasePath()))
        for _ in 1...3 { try await log.add("u") }
        #expect(try await log.maintain(idleAfter: .zero) == 1)
        #expect(try await log.events(uid: "u", after: 0).events.map(\.seq) == [1, 2, 3])
        #expect(try await log.add("u") == 4)
    }

    /// Large events cannot make a uid's log hold its whole retained count in memory; a durable store still replays
    /// them to a client resuming from far back, without a reset.
    @Test func memoryIsBoundedInBytesAndOlderEventsReplayFromTheStore() async throws {
        let store = try SQLiteTaskStore(path: temporaryDatabasePath())
        let eventSize = OutgoingMessage(ServerMessage.progress(sampleTask, seq: 1)).json.utf8.count
        let log = EventLog(retention: .init(count: 100, memoryBytes: eventSize * 3 + 8), maxBatch: 500, store: store)
        for _ in 1...10 { try await log.add("u") }
        let fromStart = try await log.events(uid: "u", after: 0)
        #expect(fromStart.events.map(\.seq) == Array(1...10))
        #expect(!fromStart.reset)
        let connection = RecordingConnection()
        try await log.subscribe("u", connection, after: 2)
        #expect(connection.seqs == [10] + Array(3...10))  // hello (latest 10), then the replay
        // Without a durable store the events memory let go are gone: the resume is told so.
        let memoryOnly = EventLog(retention: .init(count: 100, memoryBytes: eventSize * 3 + 8), store: InMemoryTaskStore())
        for _ in 1...10 { try await memoryOnly.add("u") }
        let batch = try await memoryOnly.events(uid: "u", after: 0)
        #expect(batch.reset)
        #expect(batch.events.map(\.seq) == [8, 9, 10])
    }
}

/// A connection that, once armed, unsubscribes from inside its next send, as a stream torn down by a failed write does.
private final class LeavingConnection: ClientConnection {
    let id = UUID().uuidString
    private let log: EventLog
    private let uid: String
    private let state = Mutex((armed: false, sends: 0))

    init(log: EventLog, uid: String) {
        self.log = log
        self.uid = uid
    }

    func leavesOnNextSend() { state.withLock { $0.armed = true } }
    var sends: Int { state.withLock { $0.sends } }

    func send(_ message: OutgoingMessage) { send([message]) }

    func send(_ messages: [OutgoingMessage]) {
        let leave = state.withLock { state -> Bool in
            state.sends += 1
            defer { state.armed = false }
            return state.armed
        }
        if leave { log.unsubscribe(uid: uid, connectionID: id) }
    }

    func close(reason: CloseReason) {}
}
