import Foundation
import Synchronization
import Testing

@testable import TaskGateCore

@Suite("Gateway and task pool", .timeLimit(.minutes(2)))
struct GatewayTests {
    @Test func echoRunsAndPublishesRunningThenDone() async throws {
        let gateway = Gateway.forTests()
        let connection = RecordingConnection()
        try await gateway.events.subscribe("u", connection)
        let submission = try await gateway.submit(cmd: "echo", args: ["x": 1], uid: "u")
        #expect(submission.task.status == .queued)
        let done = try await gateway.finished(submission.task.id)
        #expect(done.status == .succeeded)
        #expect(done.result == ["x": 1])
        #expect(done.progress == 1)
        #expect(done.startedAt != nil && done.finishedAt != nil)
        try await connection.waitFor { $0.contains { $0["type"] as? String == "done" } }
        #expect(connection.types == ["hello", "progress", "done"])
        #expect(connection.seqs == [0, 1, 2])  // hello (latest seq 0), running, done
    }

    @Test func sleepReportsProgressInTenSteps() async throws {
        let gateway = Gateway.forTests()
        let id = try await gateway.submit(cmd: "sleep", args: ["ms": 50], uid: "u").task.id
        _ = try await gateway.finished(id)
        let events = try await gateway.events.events(uid: "u", after: 0).events
        // running (0), ten progress steps, done
        #expect(events.count == 12)
        #expect(events.map(\.seq) == Array(1...12))
    }

    @Test func primesCountsCorrectly() async throws {
        #expect(try await PrimesHandler.countPrimes(upTo: 1, progress: { _ in }) == 0)
        #expect(try await PrimesHandler.countPrimes(upTo: 2, progress: { _ in }) == 1)
        #expect(try await PrimesHandler.countPrimes(upTo: 100, progress: { _ in }) == 25)
        #expect(try await PrimesHandler.countPrimes(upTo: 1_000_000, progress: { _ in }) == 78_498)
        #expect(try await PrimesHandler.countPrimes(upTo: 65_537, progress: { _ in }) == 6_543)
    }

    @Test func failReportsTheMessage() async throws {
        let gateway = Gateway.forTests()
        let id = try await gateway.submit(cmd: "fail", args: ["message": "boom"], uid: nil).task.id
        let task = try await gateway.finished(id)
        #expect(task.status == .failed)
        #expect(task.error == "boom")
    }

    @Test func unknownCommandAndBadArgsAreRejectedBeforeStoring() async throws {
        let gateway = Gateway.forTests()
        await #expect(throws: GatewayError.unknownCommand("nope")) { try await gateway.submit(cmd: "nope", args: [:], uid: "u") }
        for args: [String: JSONValue] in [["ms": -1], ["ms": "x"], ["ms": 1.5], ["timeout_ms": 0], ["id": "a b"], ["id": true]] {
            await #expect(throws: GatewayError.self) { try await gateway.submit(cmd: "sleep", args: args, uid: "u") }
        }
        #expect(try await gateway.list(.init()).isEmpty)
    }

    @Test func duplicateIDReturnsTheSameTaskAndRunsOnce() async throws {
        let gateway = Gateway.forTests()
        let first = try await gateway.submit(cmd: "echo", args: ["id": "job-1"], uid: "u")
        let second = try await gateway.submit(cmd: "echo", args: ["id": "job-1"], uid: "u")
        #expect(!first.duplicate)
        #expect(second.duplicate)
        #expect(second.task.id == first.task.id)
        _ = try await gateway.finished(first.task.id)
        try await within(.seconds(10), "the pool to go idle") { await gateway.pool.waitUntilIdle() }
        let doneEvents = try await gateway.events.events(uid: "u", after: 0).events.filter { $0.json.contains(#""type":"done""#) }
        #expect(doneEvents.count == 1)
        // The owner names it by the id it gave.
        #expect(try await gateway.task(id: "job-1", visibleTo: "u").id == first.task.id)
    }

    /// Client-given ids are per uid: another uid's same id is another task, and reveals nothing of the first.
    @Test func clientIDsAreScopedPerUID() async throws {
        let gateway = Gateway.forTests()
        let mine = try await gateway.submit(cmd: "echo", args: ["id": "job-1", "who": "me"], uid: "u")
        let theirs = try await gateway.submit(cmd: "echo", args: ["id": "job-1", "who": "them"], uid: "someone-else")
        #expect(!theirs.duplicate)
        #expect(mine.task.id != theirs.task.id)
        #expect(try await gateway.finished(mine.task.id).result?["who"] == "me")
        #expect(try await gateway.finished(theirs.task.id).result?["who"] == "them")
        #expect(try await gateway.task(id: "job-1", visibleTo: "someone-else").id == theirs.task.id)
        await #expect(throws: GatewayError.taskNotFound(mine.task.id)) {
            try await gateway.task(id: mine.task.id, visibleTo: "someone-else")
        }
        await #expect(throws: GatewayError.self) { try await gateway.cancel(id: mine.task.id, visibleTo: "someone-else") }
    }

    @Test func numericSwooleStyleIDIsAccepted() async throws {
        let gateway = Gateway.forTests()
        let task = try await gateway.submit(cmd: "echo", args: ["id": 42], uid: "u").task
        #expect(try await gateway.task(id: "42", visibleTo: "u").id == task.id)
    }

    @Test func argsAndResultsNestNoDeeperThanTheJSONLimit() async throws {
        let gateway = Gateway.forTests()
        func nested(_ depth: Int) -> JSONValue {
            (0..<depth).reduce(JSONValue.null) { inner, _ in .array([inner]) }
        }
        // The args object stands one level deep in a message: its values may nest to the limit less two.
        try await gateway.submit(cmd: "echo", args: ["x": nested(JSONLimits.maxDepth - 2)], uid: "u")
        await #expect(throws: GatewayError.self) {
            try await gateway.submit(cmd: "echo", args: ["x": nested(JSONLimits.maxDepth - 1)], uid: "u")
        }
    }

    @Test func queueFullIsRefusedAndNothingIsStored() async throws {
        let gateway = Gateway.forTests(workers: 1, queueLimit: 1)
        try await gateway.submit(cmd: "sleep", args: ["ms": 2000], uid: "u")
        try await gateway.submit(cmd: "sleep", args: ["ms": 2000], uid: "u")
        await #expect(throws: GatewayError.self) { try await gateway.submit(cmd: "echo", args: [:], uid: "u") }
        do {
            try await gateway.submit(cmd: "echo", args: [:], uid: "u")
        } catch {
            #expect(error.kind == .queueFull)
            #expect(error.code == 503)
        }
        #expect(try await gateway.list(.init()).count == 2)
        await gateway.shutdown(grace: .zero)
    }

    @Test func cancellingAQueuedTask() async throws {
        let gateway = Gateway.forTests(workers: 1)
        let blocker = try await gateway.submit(cmd: "sleep", args: ["ms": 5000], uid: "u").task.id
        let waiting = try await gateway.submit(cmd: "echo", args: [:], uid: "u").task.id
        let cancelled = try await gateway.cancel(id: waiting, visibleTo: "u")
        #expect(cancelled.status == .cancelled)
        #expect(try await gateway.task(id: waiting, visibleTo: nil).status == .cancelled)
        _ = try await gateway.cancel(id: blocker, visibleTo: nil)
        #expect(try await gateway.finished(blocker).status == .cancelled)
    }

    @Test func cancellingARunningTaskStopsItPromptly() async throws {
        let gateway = Gateway.forTests()
        let id = try await gateway.submit(cmd: "sleep", args: ["ms": 30000], uid: "u").task.id
        try await gateway.started(id)
        let start = ContinuousClock.now
        _ = try await gateway.cancel(id: id, visibleTo: "u")
        let task = try await gateway.finished(id)
        #expect(task.status == .cancelled)
        #expect(ContinuousClock.now - start < .seconds(2))
        await #expect(throws: GatewayError.self) { try await gateway.cancel(id: id, visibleTo: "u") }
    }

    @Test func cancellingACPUBoundTask() async throws {
        let gateway = Gateway.forTests()
        let id = try await gateway.submit(cmd: "primes", args: ["limit": 100_000_000], uid: "u").task.id
        try await gateway.started(id)
        _ = try await gateway.cancel(id: id, visibleTo: nil)
        #expect(try await gateway.finished(id, timeout: .seconds(5)).status == .cancelled)
    }

    @Test func timeoutEndsTheTask() async throws {
        let gateway = Gateway.forTests()
        let id = try await gateway.submit(cmd: "sleep", args: ["ms": 10000, "timeout_ms": 100], uid: "u").task.id
        let task = try await gateway.finished(id, timeout: .seconds(3))
        #expect(task.status == .timedOut)
        #expect(task.error == "timed out after 100 ms")
    }

    @Test func othersCannotSeeOrCancelATask() async throws {
        let gateway = Gateway.forTests()
        let id = try await gateway.submit(cmd: "sleep", args: ["ms": 1000], uid: "alice").task.id
        await #expect(throws: GatewayError.taskNotFound(id)) { try await gateway.task(id: id, visibleTo: "bob") }
        await #expect(throws: GatewayError.taskNotFound(id)) { try await gateway.cancel(id: id, visibleTo: "bob") }
        #expect(try await gateway.task(id: id, visibleTo: "alice").id == id)
        await gateway.shutdown(grace: .zero)
    }

    @Test func shutdownInterruptsWhatIsLeft() async throws {
        let gateway = Gateway.forTests(workers: 1)
        let running = try await gateway.submit(cmd: "sleep", args: ["ms": 30000], uid: "u").task.id
        let queued = try await gateway.submit(cmd: "echo", args: [:], uid: "u").task.id
        try await gateway.started(running)
        await gateway.shutdown(grace: .milliseconds(50))
        #expect(try await gateway.task(id: running, visibleTo: nil).status == .failed)
        #expect(try await gateway.task(id: running, visibleTo: nil).error?.hasPrefix("interrupted") == true)
        #expect(try await gateway.task(id: queued, visibleTo: nil).status == .failed)
        await #expect(throws: GatewayError.self) { try await gateway.submit(cmd: "echo", args: [:], uid: "u") }
    }

    @Test func atMostWorkersTasksRunAtOnce() async throws {
        let gateway = Gateway.forTests(workers: 2)
        let connection = RecordingConnection()
        try await gateway.events.subscribe("u", connection)
        for _ in 0..<5 { try await gateway.submit(cmd: "sleep", args: ["ms": 300], uid: "u") }
        // Two tasks have started once two of them have sent their first event (`running`, progress 0).
        try await connection.waitFor("two tasks running") { messages in
            Set(messages.compactMap { ($0["task"] as? [String: Any])?["id"] as? String }).count >= 2
        }
        #expect(await gateway.pool.runningCount == 2)
        #expect(await gateway.pool.queuedCount == 3)
        try await within(.seconds(10), "the pool to go idle") { await gateway.pool.waitUntilIdle() }
        #expect(try await gateway.list(.init(status: .succeeded)).count == 5)
    }

    /// A worker takes the next task once its handler has returned, while the end of the one before is still being
    /// written (a durable store's commit): with one worker, a second task runs while the first's `done` is held.
    @Test func aWorkerIsFreeWhileItsTasksEndIsWritten() async throws {
        let gate = EndGate()
        let gateway = Gateway.forTests(workers: 1, store: ObservedStore(beforeWrite: { await gate.holdIfFinished($0) }))
        try await gateway.submit(cmd: "echo", args: ["n": 1], uid: "u")
        try await gateway.submit(cmd: "echo", args: ["n": 2], uid: "u")
        try await waitUntil("both tasks' ends waiting to be written", on: gate.held) { gate.heldCount == 2 }
        #expect(await gateway.pool.stats.running == 0)
        gate.release()
        try await within(.seconds(10), "the pool to go idle") { await gateway.pool.waitUntilIdle() }
        #expect(try await gateway.list(.init(status: .succeeded)).count == 2)
    }

    @Test func reloadMakesANewGeneration() async throws {
        let gateway = Gateway.forTests()
        #expect(gateway.registry.current.generation == 1)
        let table = try await gateway.reload().table
        #expect(table.generation == 2)
        #expect(table.names == ["echo", "fail", "primes", "sleep"])
    }
}

@Suite("Sessions", .timeLimit(.minutes(2)))
struct SessionTests {
    func reply(_ session: Session, _ text: String) async -> ServerMessage {
        var answer: ServerMessage?
        await session.handle(Array(text.utf8)) { answer = $0 }
        return answer!
    }

    @Test func pingAndErrors() async {
        let session = Session(uid: "u", isAdmin: false, transport: .webSocket, gateway: .forTests())
        #expect(await reply(session, #"{"cmd":"ping","ref":"a"}"#).type == "pong")
        #expect(await reply(session, #"{"cmd":"ping","ref":"a"}"#).ref == "a")
        let unknown = await reply(session, #"{"cmd":"nope","ref":"b"}"#)
        #expect(unknown.code == 404 && unknown.error == "unknown_command" && unknown.ref == "b")
        #expect(await reply(session, "not json").code == 400)
        #expect(await reply(session, #"{"cmd":"status"}"#).code == 400)
        #expect(await reply(session, #"{"cmd":"status","args":{"id":"missing"}}"#).error == "not_found")
        #expect(await reply(session, #"{"cmd":"clients"}"#).code == 403)
        #expect(await reply(session, #"{"cmd":"reload"}"#).code == 403)
        #expect(await reply(session, #"{"cmd":"handlers"}"#).handlers == ["echo", "fail", "primes", "sleep"])
    }

    @Test func adminCommands() async {
        let gateway = Gateway.forTests()
        gateway.clients.add(ClientInfo(id: "c-1", uid: "u", transport: .webSocket, remote: "127.0.0.1:1", admin: true))
        let session = Session(uid: "u", isAdmin: true, transport: .webSocket, gateway: gateway)
        #expect(await reply(session, #"{"cmd":"clients"}"#).clients?.map(\.id) == ["c-1"])
        let reloaded = await reply(session, #"{"cmd":"reload"}"#)
        #expect(reloaded.type == "reloaded" && reloaded.generation == 2)
    }

    @Test func submittedReplyComesBeforeTheTasksEvents() async throws {
        let gateway = Gateway.forTests()
        let connection = RecordingConnection()
        try await gateway.events.subscribe("u", connection)
        let session = Session(uid: "u", isAdmin: false, transport: .webSocket, gateway: gateway)
        for _ in 0..<50 {
            await session.handle(Array(#"{"cmd":"echo"}"#.utf8)) { connection.send(OutgoingMessage($0)) }
        }
        try await connection.waitFor { $0.filter { $0["type"] as? String == "done" }.count == 50 }
        var submitted = Set<String>()
        for message in connection.messages {
            let id = (message["task"] as? [String: Any])?["id"] as? String
            switch message["type"] as? String {
            case "submitted": submitted.insert(id!)
            case "progress", "done": #expect(submitted.contains(id!), "event before its submitted reply")
            default: break
            }
        }
    }

    @Test func statusOfOwnTask() async throws {
        let gateway = Gateway.forTests()
        let session = Session(uid: "u", isAdmin: false, transport: .longPoll, gateway: gateway)
        let id = try await gateway.submit(cmd: "echo", args: [:], uid: "u").task.id
        let status = await reply(session, #"{"cmd":"status","args":{"id":"\#(id)"}}"#)
        #expect(status.type == "status" && status.task?.id == id)
        let other = Session(uid: "v", isAdmin: false, transport: .longPoll, gateway: gateway)
        #expect(await reply(other, #"{"cmd":"status","args":{"id":"\#(id)"}}"#).code == 404)
    }
}

@Suite("In-memory store", .timeLimit(.minutes(2)))
struct InMemoryTaskStoreTests {
    @Test func listFiltersNewestFirst() async throws {
        let store = InMemoryTaskStore()
        for index in 0..<5 {
            _ = await store.insert(TaskRecord(id: "t\(index)", cmd: "echo", uid: index.isMultiple(of: 2) ? "a" : "b", args: [:]))
        }
        #expect(await store.list(.init()).map(\.id) == ["t4", "t3", "t2", "t1", "t0"])
        #expect(await store.list(.init(uid: "a")).map(\.id) == ["t4", "t2", "t0"])
        #expect(await store.list(.init(limit: 2)).map(\.id) == ["t4", "t3"])
        var done = await store.task(id: "t1")!
        done.status = .succeeded
        await store.update(done)
        #expect(await store.list(.init(status: .succeeded)).map(\.id) == ["t1"])
    }

    @Test func insertReturnsTheExistingTask() async {
        let store = InMemoryTaskStore()
        let task = TaskRecord(id: "x", cmd: "echo", uid: "a", args: [:])
        #expect(await store.insert(task) == .inserted)
        #expect(await store.insert(TaskRecord(id: "x", cmd: "sleep", uid: "b", args: [:])) == .existing(task))
    }

    @Test func retentionDropsOldFinishedTasksOnly() async {
        let store = InMemoryTaskStore(retainFinished: 10)
        _ = await store.insert(TaskRecord(id: "still-queued", cmd: "echo", uid: nil, args: [:]))
        for index in 0..<30 {
            _ = await store.insert(TaskRecord(id: "f\(index)", cmd: "echo", uid: nil, args: [:], status: .succeeded))
        }
        #expect(await store.task(id: "still-queued") != nil)
        #expect(await store.task(id: "f0") == nil)
        #expect(await store.task(id: "f29") != nil)
        #expect(await store.list(.init(limit: 1000)).count <= 12)
    }
}

@Suite("Retries and recovery", .timeLimit(.minutes(2)))
struct RetryAndRecoveryTests {
    @Test func failedAttemptsAreRetriedWithBackoff() async throws {
        let gateway = Gateway.forTests()
        let id = try await gateway.submit(
            cmd: "fail", args: ["succeed_on_attempt": 2, "max_attempts": 3], uid: "u"
        ).task.id
        let task = try await gateway.finished(id)
        #expect(task.status == .succeeded)
        #expect(task.attempts == 2)
        #expect(task.result == ["attempt": 2])
        let doneEvents = try await gateway.events.events(uid: "u", after: 0).events.filter { $0.json.contains(#""type":"done""#) }
        #expect(doneEvents.count == 1)
    }

    @Test func exhaustedAttemptsFailWithTheLastError() async throws {
        let gateway = Gateway.forTests()
        let id = try await gateway.submit(cmd: "fail", args: ["message": "nope", "max_attempts": 2], uid: "u").task.id
        let task = try await gateway.finished(id)
        #expect(task.status == .failed)
        #expect(task.attempts == 2)
        #expect(task.error == "nope")
    }

    @Test func maxAttemptsIsValidated() async {
        let gateway = Gateway.forTests()
        for value: JSONValue in [0, 11, "x"] {
            await #expect(throws: GatewayError.self) { try await gateway.submit(cmd: "echo", args: ["max_attempts": value], uid: "u") }
        }
    }

    @Test func backoffDoubles() {
        #expect(TaskOptions.backoff(afterAttempt: 1) == .milliseconds(500))
        #expect(TaskOptions.backoff(afterAttempt: 2) == .milliseconds(1000))
        #expect(TaskOptions.backoff(afterAttempt: 3) == .milliseconds(2000))
        #expect(TaskOptions.backoff(afterAttempt: 20) == .milliseconds(30_000))
    }

    @Test func restartRunsQueuedRetriesIdempotentRunningAndFailsTheRest() async throws {
        let path = temporaryDatabasePath()
        let store = try SQLiteTaskStore(path: path)
        // What a crashed process leaves behind.
        _ = try await store.insert(TaskRecord(id: "waiting", cmd: "echo", uid: "u", args: ["x": 1]))
        _ = try await store.insert(TaskRecord(id: "midway", cmd: "sleep", uid: "u", args: ["ms": 10], status: .running, attempts: 1))
        _ = try await store.insert(
            TaskRecord(id: "spent", cmd: "sleep", uid: "u", args: ["ms": 10, "max_attempts": 1], status: .running, attempts: 1))
        _ = try await store.insert(TaskRecord(id: "orphan", cmd: "gone", uid: "u", args: [:]))
        _ = try await store.insert(TaskRecord(id: "finished", cmd: "echo", uid: "u", args: [:], status: .succeeded))

        let gateway = Gateway.forTests(store: try SQLiteTaskStore(path: path))
        try await gateway.recover()
        #expect(try await gateway.finished("waiting").status == .succeeded)
        let midway = try await gateway.finished("midway")
        #expect(midway.status == .succeeded)
        #expect(midway.attempts == 2)
        let spent = try await gateway.finished("spent")
        #expect(spent.status == .failed)
        #expect(spent.error?.hasPrefix("interrupted") == true)
        #expect(try await gateway.finished("orphan").status == .failed)
        #expect(try await store.unfinishedTasks().isEmpty)
    }

    @Test func gracefulShutdownKeepsQueuedTasksInADurableStore() async throws {
        let path = temporaryDatabasePath()
        let gateway = Gateway.forTests(workers: 1, store: try SQLiteTaskStore(path: path))
        let running = try await gateway.submit(cmd: "sleep", args: ["ms": 30000], uid: "u").task.id
        let queued = try await gateway.submit(cmd: "echo", args: [:], uid: "u").task.id
        try await gateway.started(running)
        await gateway.shutdown(grace: .milliseconds(50))
        #expect(try await gateway.task(id: queued, visibleTo: nil).status == .queued)
        #expect(try await gateway.task(id: running, visibleTo: nil).status == .queued)

        let restarted = Gateway.forTests(store: try SQLiteTaskStore(path: path))
        try await restarted.recover()
        #expect(try await restarted.finished(queued).status == .succeeded)
        _ = try await restarted.cancel(id: running, visibleTo: nil)
        #expect(try await restarted.finished(running).status == .cancelled)
    }
}

@Suite("Client directory and outbound backlog", .timeLimit(.minutes(2)))
struct ConnectionLimitTests {
    /// Many upgrades at once for one uid: the check and the count are one step, so exactly the limit gets in.
    @Test func concurrentReservationsNeverOvershootTheLimits() async throws {
        let directory = ClientDirectory()
        let admitted = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<50 {
                group.addTask { (try? directory.reserveConnection(uid: "u", maxPerUID: 4, maxTotal: 100)) != nil }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(admitted == 4)
        #expect(throws: GatewayError.self) { try directory.reserveConnection(uid: "u", maxPerUID: 4, maxTotal: 100) }
        // Another uid is counted against the total only.
        let other = try directory.reserveConnection(uid: "v", maxPerUID: 4, maxTotal: 5)
        #expect(throws: GatewayError.self) { try directory.reserveConnection(uid: "w", maxPerUID: 4, maxTotal: 5) }
        // A reserved place taken up and given back frees it.
        directory.add(ClientInfo(id: other, uid: "v", transport: .webSocket, remote: nil, admin: false))
        directory.remove(id: other)
        _ = try directory.reserveConnection(uid: "w", maxPerUID: 4, maxTotal: 5)
    }

    @Test func backlogCountsMessagesAndBytes() {
        var backlog = OutboundBacklog(limits: .init(messages: 3, bytes: 100))
        var admitted: [Bool] = []
        for _ in 0..<3 { admitted.append(backlog.admit(bytes: 40)) }
        #expect(admitted == [true, true, false])  // 120 bytes
        backlog.written(bytes: 40)
        backlog.written(bytes: 40)
        admitted = (0..<3).map { _ in backlog.admit(bytes: 10) }
        #expect(admitted == [true, true, false])  // four messages
        backlog.clear()
        #expect(backlog.messages == 0 && backlog.bytes == 0)
    }
}

/// A handler that answers inline: its `run` would never return, so a task that finishes took the inline path.
private struct InlineOnly: TaskHandler {
    let name = "inline"
    let summary = "answers inline; its run never returns"
    func run(_ context: TaskContext) async throws -> JSONValue {
        try await Task.sleep(for: .seconds(3600))
        return .null
    }
    func resultInline(_ context: TaskContext) throws -> JSONText? {
        if let message = context.args["fail"]?.stringValue { throw TaskFailure(message) }
        return ["inline": true, "n": context.args["n"] ?? .null]
    }
}

@Suite("Inline handlers", .timeLimit(.minutes(1)))
struct InlineHandlerTests {
    @Test func anInlineResultEndsTheTaskWithoutRunningOnTheWorkers() async throws {
        let gateway = Gateway(registry: try SwiftHandlerRegistry { [InlineOnly()] + BuiltinHandlers.all() })
        let ok = try await gateway.submit(cmd: "inline", args: ["n": 7], uid: "u").task.id
        let done = try await gateway.finished(ok)
        #expect(done.status == .succeeded && done.result == ["inline": true, "n": 7] && done.attempts == 1)
        let failing = try await gateway.submit(cmd: "inline", args: ["fail": "no"], uid: "u").task.id
        let failed = try await gateway.finished(failing)
        #expect(failed.status == .failed && failed.error == "no")
        // Echo answers inline too, with its args.
        #expect(try EchoHandler().resultInline(TaskContext(taskID: "t", uid: nil, args: ["a": 1]) { _ in }) == ["a": 1])
    }
}

@Suite("Generated task ids", .timeLimit(.minutes(1)))
struct GeneratedTaskIDTests {
    @Test func sixteenBase36DigitsAndNoRepeats() {
        let ids = (0..<10_000).map { _ in Gateway.makeTaskID() }
        #expect(Set(ids).count == ids.count)
        let digits = Set("0123456789abcdefghijklmnopqrstuvwxyz")
        #expect(ids.allSatisfy { $0.hasPrefix("t-") && $0.count == 18 && $0.dropFirst(2).allSatisfy(digits.contains) })
        #expect(ids.allSatisfy(Identifier.isValidTaskID))
        // Every digit turns up in every position (10,000 ids: a missing one would be a broken draw).
        for position in 2..<18 {
            #expect(Set(ids.map { Array($0)[position] }).count == 36, "position \(position)")
        }
    }
}

@Suite("Writes per task", .timeLimit(.minutes(1)))
struct WritesPerTaskTests {
    /// An echo task on a single node: its insert, then its start and its end in one write (one commit to wait for,
    /// not two), the two events in order.
    @Test func anInlineTaskStoresItsStartWithItsEnd() async throws {
        let store = ObservedStore(try SQLiteTaskStore(path: temporaryDatabasePath()))
        let gateway = Gateway(store: store, registry: try SwiftHandlerRegistry { BuiltinHandlers.all() })
        let before = store.writes.version
        let id = try await gateway.submit(cmd: "echo", args: ["n": 1], uid: "u").task.id
        let done = try await gateway.finished(id)
        #expect(done.status == .succeeded && done.result == ["n": 1] && done.attempts == 1)
        // A reader can see the commit before the store's caller counts it.
        try await waitUntil("the echo task's writes", on: store.writes) { store.writes.version - before >= 2 }
        #expect(store.writes.version - before == 2)
        let stored = try await store.loadEvents(uid: "u", limit: 10)
        #expect(stored.events.map(\.seq) == [1, 2] && stored.events.map(\.type) == ["progress", "done"])
        #expect(stored.events.first?.json.contains(#""status":"running""#) == true)
        // A handler on the workers still stores its start first, on its own: insert, start, end.
        let failed = try await gateway.submit(cmd: "fail", args: [:], uid: "u").task.id
        _ = try await gateway.finished(failed)
        try await waitUntil("the failing task's writes", on: store.writes) { store.writes.version - before >= 5 }
        #expect(store.writes.version - before == 5)
    }
}

/// Holds every write of a finished task until `release()`; `held` changes as each one arrives.
final class EndGate: Sendable {
    let held = ChangeSignal()
    private let state = Mutex<(count: Int, released: Bool, waiting: [CheckedContinuation<Void, Never>])>((0, false, []))

    var heldCount: Int { state.withLock { $0.count } }

    func release() {
        let waiting = state.withLock { state in
            state.released = true
            defer { state.waiting = [] }
            return state.waiting
        }
        for waiter in waiting { waiter.resume() }
    }

    func holdIfFinished(_ task: TaskRecord) async {
        guard task.status.isFinal else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let goOn = state.withLock { state -> Bool in
                state.count += 1
                if state.released { return true }
                state.waiting.append(continuation)
                return false
            }
            held.bump()
            if goOn { continuation.resume() }
        }
    }
}
