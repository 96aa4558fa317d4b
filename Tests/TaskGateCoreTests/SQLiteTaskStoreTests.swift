import Foundation
import GRDB
import Logging
import Testing

@testable import TaskGateCore

@Suite("SQLite store", .timeLimit(.minutes(2)))
struct SQLiteTaskStoreTests {
    @Test func migratesAnEmptyFileInWALMode() async throws {
        let path = temporaryDatabasePath()
        _ = try SQLiteTaskStore(path: path)
        let database = try DatabaseQueue(path: path)
        let (tables, mode, migrations) = try await database.read { db in
            (
                try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"),
                try String.fetchOne(db, sql: "PRAGMA journal_mode"),
                try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")
            )
        }
        #expect(tables.contains("tasks") && tables.contains("events") && tables.contains("users"))
        #expect(mode == "wal")
        #expect(migrations == ["1: tasks, events, users", "2: schedule ticks", "3: a task's state in columns"])
        // Opening again runs nothing new and keeps the data.
        _ = try SQLiteTaskStore(path: path)
    }

    /// A database written before migration 3 kept each task's state only in its record: the migration copies it into
    /// the state columns, so every task reads back exactly as it was.
    @Test func migrationThreeKeepsTheStateOfEarlierRecords() async throws {
        let path = temporaryDatabasePath()
        var finished = TaskRecord(
            id: "done", cmd: "echo", uid: "u", args: ["n": 1], createdAt: Date(timeIntervalSince1970: 1_764_000_000.5))
        finished.status = .succeeded
        finished.progress = 1
        finished.attempts = 2
        finished.result = ["rows": [1, "two", nil], "text": "é"]
        finished.startedAt = Date(timeIntervalSince1970: 1_764_000_001.123)
        finished.finishedAt = Date(timeIntervalSince1970: 1_764_000_002.999)
        finished.node = "node-a"
        var failed = TaskRecord(id: "failed", cmd: "fail", uid: nil, args: [:], createdAt: Date(timeIntervalSince1970: 1_764_000_003))
        failed.status = .failed
        failed.error = "it \"broke\""
        failed.result = "a plain string"
        let queued = TaskRecord(id: "queued", cmd: "sleep", uid: "u", args: ["ms": 5], createdAt: Date(timeIntervalSince1970: 1_764_000_004))
        let earlier = [finished, failed, queued]
        let database = try DatabaseQueue(path: path)
        try SQLiteTaskStore.migrator.migrate(database, upTo: "2: schedule ticks")
        try await database.write { db in
            for task in earlier {
                try db.execute(
                    sql: "INSERT INTO tasks (id, uid, status, created_at, record) VALUES (?, ?, ?, ?, ?)",
                    arguments: [task.id, task.uid, task.status.rawValue, task.createdAt.timeIntervalSince1970, WireJSON.encode(task)])
            }
        }
        try database.close()
        let store = try SQLiteTaskStore(path: path)
        for task in earlier {
            let stored = try #require(try await store.task(id: task.id))
            #expect(WireJSON.encode(stored) == WireJSON.encode(task))
        }
        #expect(try await store.unfinishedTasks().map(\.id) == ["queued"])
    }

    @Test func everyStateTransitionIsRecorded() async throws {
        let store = try SQLiteTaskStore(path: temporaryDatabasePath())
        var task = TaskRecord(id: "t1", cmd: "sleep", uid: "u", args: ["ms": 5])
        #expect(try await store.insert(task) == .inserted)
        for status in [TaskStatus.running, .succeeded] {
            task.status = status
            task.attempts += status == .running ? 1 : 0
            task.progress = status == .succeeded ? 1 : 0.5
            task.result = status == .succeeded ? ["ok": true] : nil
            try await store.update(task)
            let stored = try #require(try await store.task(id: "t1"))
            #expect(stored.status == status)
            #expect(stored.progress == task.progress)
            #expect(stored.result == task.result)
            #expect(stored.attempts == 1)
        }
        for status in [TaskStatus.failed, .cancelled, .timedOut] {
            var other = TaskRecord(id: "t-\(status.rawValue)", cmd: "echo", uid: nil, args: [:])
            _ = try await store.insert(other)
            other.status = status
            other.error = "because"
            try await store.update(other)
            #expect(try await store.task(id: other.id)?.status == status)
            #expect(try await store.task(id: other.id)?.error == "because")
        }
    }

    @Test func insertIsIdempotentAcrossReopen() async throws {
        let path = temporaryDatabasePath()
        let task = TaskRecord(id: "same", cmd: "echo", uid: "u", args: ["a": 1], createdAt: Date(timeIntervalSince1970: 1000))
        #expect(try await SQLiteTaskStore(path: path).insert(task) == .inserted)
        #expect(try await SQLiteTaskStore(path: path).insert(task) == .existing(task))
    }

    @Test func listFiltersNewestFirst() async throws {
        let store = try SQLiteTaskStore(path: temporaryDatabasePath())
        for index in 0..<5 {
            _ = try await store.insert(
                TaskRecord(id: "t\(index)", cmd: "echo", uid: index.isMultiple(of: 2) ? "a" : "b", args: [:],
                           createdAt: Date(timeIntervalSince1970: Double(index))))
        }
        #expect(try await store.list(.init()).map(\.id) == ["t4", "t3", "t2", "t1", "t0"])
        #expect(try await store.list(.init(uid: "a", limit: 2)).map(\.id) == ["t4", "t2"])
        #expect(try await store.list(.init(status: .queued)).count == 5)
        #expect(try await store.unfinishedTasks().map(\.id) == ["t0", "t1", "t2", "t3", "t4"])
    }

    @Test func eventsAreTrimmedToTheRetainedCount() async throws {
        let store = try SQLiteTaskStore(path: temporaryDatabasePath())
        let task = TaskRecord(id: "t", cmd: "echo", uid: "u", args: [:])
        _ = try await store.insert(task)
        for seq in UInt64(1)...200 {
            try await store.append(UserEvent(uid: "u", seq: seq, json: "{}", createdAt: Date(), retainCount: 50), task: task)
        }
        let loaded = try await store.loadEvents(uid: "u", limit: 50)
        #expect(loaded.lastSeq == 200)
        #expect(loaded.events.map(\.seq) == Array(151...200))
        let database = try DatabaseQueue(path: store.path)
        let rows = try await database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events") }
        #expect(rows! <= 50 + 64)
    }

    @Test func concurrentWritesAreGroupCommitted() async throws {
        let store = try SQLiteTaskStore(path: temporaryDatabasePath())
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<500 {
                group.addTask { _ = try await store.insert(TaskRecord(id: "c\(index)", cmd: "echo", uid: nil, args: [:])) }
            }
            try await group.waitForAll()
        }
        #expect(try await store.list(.init(limit: 1000)).count == 500)
    }

    @Test func aFailingWriteDoesNotUndoItsBatch() async throws {
        let store = try SQLiteTaskStore(path: temporaryDatabasePath())
        let task = TaskRecord(id: "t", cmd: "echo", uid: "u", args: [:])
        _ = try await store.insert(task)
        try await store.append(UserEvent(uid: "u", seq: 1, json: "{}", createdAt: Date(), retainCount: 10), task: task)
        // The same (uid, seq) twice violates the primary key; the other writes in flight still land.
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                do {
                    try await store.append(UserEvent(uid: "u", seq: 1, json: "{}", createdAt: Date(), retainCount: 10), task: task)
                    return false
                } catch { return true }
            }
            for index in 0..<20 {
                group.addTask {
                    _ = try await store.insert(TaskRecord(id: "ok\(index)", cmd: "echo", uid: nil, args: [:]))
                    return true
                }
            }
            for try await succeededAsExpected in group { #expect(succeededAsExpected) }
        }
        #expect(try await store.list(.init(limit: 100)).count == 21)
    }
}

@Suite("SQLite's log copied back beside the writer", .timeLimit(.minutes(2)))
struct WALCheckpointerTests {
    @Test func theWritersCommitsStartACheckpointOnAnotherConnection() async throws {
        let store = try SQLiteTaskStore(path: temporaryDatabasePath())
        _ = try await store.insert(TaskRecord(id: "t0", cmd: "echo", uid: "u", args: [:]))
        try await eventually("a checkpoint after the first commit") { store.checkpointer.completed >= 1 }
    }

    @Test func aPassiveCheckpointCopiesTheWholeLogWhileTheStoreIsOpen() async throws {
        let store = try SQLiteTaskStore(path: temporaryDatabasePath())
        for index in 0..<50 {
            _ = try await store.insert(TaskRecord(id: "t\(index)", cmd: "echo", uid: "u\(index % 5)", args: [:]))
        }
        // Far below the writer's own threshold, so only this connection copies the log back.
        let (inLog, copied) = try store.checkpointer.checkpoint()
        #expect(inLog > 0)
        #expect(copied == inLog)
        #expect(try await store.task(id: "t49")?.uid == "u4")
    }
}

@Suite("Retention of finished tasks", .timeLimit(.minutes(2)))
struct TaskRetentionTests {
    /// Ten finished tasks a minute apart (f0 oldest), then a queued and a scheduled one, older than all of them.
    private func fill(_ store: any TaskStore) async throws {
        let start = Date(timeIntervalSince1970: 1_796_000_000)
        for (index, status) in [TaskStatus.queued, .scheduled].enumerated() {
            _ = try await store.insert(
                TaskRecord(id: "w\(index)", cmd: "echo", uid: "u", args: [:], status: status, createdAt: start.addingTimeInterval(-60)))
        }
        for index in 0..<10 {
            var task = TaskRecord(id: "f\(index)", cmd: "echo", uid: "u", args: [:], createdAt: start.addingTimeInterval(Double(index) * 60))
            _ = try await store.insert(task)
            task.status = [.succeeded, .failed, .cancelled, .timedOut][index % 4]
            try await store.update(task)
        }
    }

    private func ids(_ store: any TaskStore) async throws -> Set<String> {
        Set(try await store.list(.init(limit: 100)).map(\.id))
    }

    @Test(arguments: ["sqlite", "memory"])
    func byAgeThenByCountNeverTheUnfinished(kind: String) async throws {
        let store: any TaskStore = kind == "sqlite" ? try SQLiteTaskStore(path: temporaryDatabasePath()) : InMemoryTaskStore()
        try await fill(store)
        // Older than f3: f0, f1, f2 go; the waiting ones are older still but stay.
        let byAge = try await store.pruneFinishedTasks(
            createdBefore: Date(timeIntervalSince1970: 1_796_000_000 + 3 * 60), keepingNewest: nil, batchSize: 2)
        #expect(byAge == 3)
        #expect(try await ids(store) == Set(["w0", "w1"] + (3..<10).map { "f\($0)" }))
        // Keep the 4 newest finished: f6-f9.
        let byCount = try await store.pruneFinishedTasks(createdBefore: nil, keepingNewest: 4, batchSize: 2)
        #expect(byCount == 3)
        #expect(try await ids(store) == ["w0", "w1", "f6", "f7", "f8", "f9"])
        #expect(try await store.pruneFinishedTasks(createdBefore: nil, keepingNewest: 4, batchSize: 2) == 0)
    }

    @Test func theGatewayReportsWhatItPruned() async throws {
        let store = InMemoryTaskStore()
        try await fill(store)
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let gateway = Gateway(
            configuration: .init(taskRetention: TaskRetention(maxAge: nil, count: 5)), store: store, logger: logger)
        #expect(await gateway.pruneFinishedTasks() == 5)
        let report = gateway.lastRetentionReport
        #expect(report.lastPruned == 5 && report.totalPruned == 5 && report.lastRun != nil && report.lastError == nil)
    }
}
