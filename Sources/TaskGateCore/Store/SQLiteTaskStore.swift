import Foundation
import GRDB

/// The default store: one SQLite file in WAL mode, created and migrated on start. Writes go through a single
/// writer with group commit; reads run concurrently.
public final class SQLiteTaskStore: LocalTaskStore {
    private let database: DatabasePool
    private let writer: BatchedWriter
    let checkpointer: WALCheckpointer
    public let path: String

    /// Opens (creating it if needed) the database at `path` and runs any pending migrations.
    public init(path: String) throws {
        self.path = path
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            // In WAL mode NORMAL survives a process crash (kill -9); only a power loss can lose the last commits.
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            try db.execute(sql: "PRAGMA wal_autocheckpoint = \(WALCheckpointer.backstopPages)")
        }
        database = try DatabasePool(path: path, configuration: configuration)
        try Self.migrator.migrate(database)
        checkpointer = try WALCheckpointer(path: path)
        writer = BatchedWriter(database: database, checkpointer: checkpointer)
    }

    public var isDurable: Bool { true }

    public var writeProblem: String? { writer.problem }

    /// Versioned migrations: a new version appends a migration, never edits an old one.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("1: tasks, events, users") { db in
            try db.execute(
                sql: """
                    CREATE TABLE tasks (
                        id TEXT PRIMARY KEY NOT NULL,
                        uid TEXT,
                        status TEXT NOT NULL,
                        created_at REAL NOT NULL,
                        record TEXT NOT NULL
                    );
                    CREATE INDEX tasks_by_uid ON tasks(uid, created_at);
                    CREATE INDEX tasks_by_status ON tasks(status, created_at);
                    CREATE TABLE events (
                        uid TEXT NOT NULL,
                        seq INTEGER NOT NULL,
                        json TEXT NOT NULL,
                        created_at REAL NOT NULL,
                        PRIMARY KEY (uid, seq)
                    ) WITHOUT ROWID;
                    CREATE INDEX events_by_age ON events(created_at);
                    -- A user's last seq outlives the events themselves, so a seq is never handed out twice.
                    CREATE TABLE users (
                        uid TEXT PRIMARY KEY NOT NULL,
                        last_seq INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    """)
        }
        migrator.registerMigration("2: schedule ticks") { db in
            try db.execute(sql: "CREATE TABLE schedule_ticks (name TEXT PRIMARY KEY NOT NULL, last_tick REAL NOT NULL)")
        }
        migrator.registerMigration("3: a task's state in columns") { db in
            // `record` keeps the task as submitted (its args written once); what changes as it runs has columns of
            // its own, so a state change writes a few small values instead of re-encoding the whole record.
            try db.execute(
                sql: """
                    ALTER TABLE tasks ADD COLUMN progress REAL NOT NULL DEFAULT 0;
                    ALTER TABLE tasks ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE tasks ADD COLUMN result TEXT;
                    ALTER TABLE tasks ADD COLUMN error TEXT;
                    ALTER TABLE tasks ADD COLUMN started_at REAL;
                    ALTER TABLE tasks ADD COLUMN finished_at REAL;
                    ALTER TABLE tasks ADD COLUMN node TEXT;
                    UPDATE tasks SET
                        progress = coalesce(record ->> '$.progress', 0),
                        attempts = coalesce(record ->> '$.attempts', 0),
                        result = nullif(record -> '$.result', 'null'),
                        error = record ->> '$.error',
                        started_at = (julianday(record ->> '$.startedAt') - 2440587.5) * 86400.0,
                        finished_at = (julianday(record ->> '$.finishedAt') - 2440587.5) * 86400.0,
                        node = record ->> '$.node';
                    """)
        }
        return migrator
    }

    public func insert(_ task: TaskRecord) async throws -> InsertOutcome {
        let record = WireJSON.encode(task)
        let state = StateColumns(task)
        let existing = try await writer.write { db -> TaskRecord? in
            // One prepared statement for the usual case, a new id; the existing task is read only when there is one.
            try db.cachedStatement(
                sql: """
                    INSERT INTO tasks (id, uid, created_at, record, progress, attempts, result, error, started_at,
                        finished_at, node, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING
                    """
            ).execute(arguments: [task.id, task.uid, task.createdAt.timeIntervalSince1970, record] + state.values)
            guard db.changesCount == 0 else { return nil }
            let existing = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT \(Self.columns) FROM tasks WHERE id = ?"), arguments: [task.id])
            return try existing.map(Self.task(from:))
        }
        return existing.map { .existing($0) } ?? .inserted
    }

    public func update(_ task: TaskRecord) async throws {
        let state = StateColumns(task)
        try await writer.write(retriesUntilStored: true) { db in try Self.update(task.id, state, in: db) }
    }

    public func append(_ events: [UserEvent], task: TaskRecord) async throws {
        let state = StateColumns(task)
        try await writer.write(retriesUntilStored: true) { db in
            for (index, event) in events.enumerated() {
                try db.cachedStatement(sql: "INSERT INTO events (uid, seq, json, created_at) VALUES (?, ?, ?, ?)")
                    .execute(arguments: [event.uid, Int64(event.seq), event.json, event.createdAt.timeIntervalSince1970])
                // A user's last seq once per run of its events (a series is one user's), not once per event.
                if index == events.count - 1 || events[index + 1].uid != event.uid {
                    try db.cachedStatement(
                        sql: """
                            INSERT INTO users (uid, last_seq) VALUES (?, ?)
                            ON CONFLICT(uid) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)
                            """
                    ).execute(arguments: [event.uid, Int64(event.seq)])
                }
                // Trim to the retained count now and then rather than on every event.
                if event.seq % 64 == 0, event.seq > UInt64(event.retainCount) {
                    try db.cachedStatement(sql: "DELETE FROM events WHERE uid = ? AND seq <= ?")
                        .execute(arguments: [event.uid, Int64(event.seq) - Int64(event.retainCount)])
                }
            }
            try Self.update(task.id, state, in: db)
        }
    }

    /// What changes as a task runs, a column each (migration 3), in the order of `columns` after `record`: a state
    /// change writes these, never the record.
    private struct StateColumns: Sendable {
        let values: StatementArguments

        init(_ task: TaskRecord) {
            // The result is the text the handler's value was written to once; a progress change writes a handful of numbers.
            values = [
                task.progress.isFinite ? task.progress : 0, task.attempts, task.result?.text, task.error,
                task.startedAt?.timeIntervalSince1970, task.finishedAt?.timeIntervalSince1970, task.node, task.status.rawValue,
            ]
        }
    }

    private static func update(_ id: String, _ state: StateColumns, in db: Database) throws {
        try db.cachedStatement(
            sql: """
                UPDATE tasks SET progress = ?, attempts = ?, result = ?, error = ?, started_at = ?, finished_at = ?, node = ?,
                    status = ? WHERE id = ?
                """
        ).execute(arguments: state.values + [id])
    }

    /// What a read selects: the record as submitted, then its state columns.
    private static let columns = "record, progress, attempts, result, error, started_at, finished_at, node, status"

    private static func task(from row: Row) throws -> TaskRecord {
        var task = try decode(row["record"])
        task.progress = row["progress"]
        task.attempts = row["attempts"]
        let result: String? = row["result"]
        // Checked, not trusted: migration 3 filled this column from old records with SQLite's own JSON functions.
        task.result = try result.map { try JSONText(validating: $0) }
        if task.result?.isNull == true { task.result = nil }
        task.error = row["error"]
        task.startedAt = (row["started_at"] as Double?).map(Date.init(timeIntervalSince1970:))
        task.finishedAt = (row["finished_at"] as Double?).map(Date.init(timeIntervalSince1970:))
        task.node = row["node"]
        guard let status = TaskStatus(rawValue: row["status"]) else {
            throw DatabaseError(message: "unknown task status in the database: \(String(describing: row["status"] as String?))")
        }
        task.status = status
        return task
    }

    public func task(id: String) async throws -> TaskRecord? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.columns) FROM tasks WHERE id = ?", arguments: [id]).map(Self.task(from:))
        }
    }

    public func list(_ query: TaskQuery) async throws -> [TaskRecord] {
        var conditions: [String] = []
        var arguments: StatementArguments = []
        if let uid = query.uid {
            conditions.append("uid = ?")
            arguments += [uid]
        }
        if let status = query.status {
            conditions.append("status = ?")
            arguments += [status.rawValue]
        }
        let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        arguments += [query.limit]
        let sql = "SELECT \(Self.columns) FROM tasks \(filter) ORDER BY created_at DESC, rowid DESC LIMIT ?"
        return try await database.read { [arguments] db in
            try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.task(from:))
        }
    }

    public func unfinishedTasks() async throws -> [TaskRecord] {
        try await database.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT \(Self.columns) FROM tasks WHERE status IN ('scheduled', 'queued', 'running') ORDER BY created_at, rowid"
            ).map(Self.task(from:))
        }
    }

    public func loadEvents(uid: String, limit: Int) async throws -> StoredEvents {
        try await database.read { db in
            let lastSeq = try Int64.fetchOne(db, sql: "SELECT last_seq FROM users WHERE uid = ?", arguments: [uid]) ?? 0
            let rows = try Row.fetchAll(
                db, sql: "SELECT seq, json, created_at FROM events WHERE uid = ? ORDER BY seq DESC LIMIT ?",
                arguments: [uid, limit])
            // Keep only the unbroken run that ends at the last seq: the log relies on consecutive numbers.
            var events: [LoggedEvent] = []
            var expected = lastSeq
            for row in rows {
                let seq: Int64 = row["seq"]
                guard seq == expected else { break }
                let json: String = row["json"]
                events.append(
                    LoggedEvent(seq: UInt64(seq), json: json, type: Self.eventType(json), createdAt: Date(timeIntervalSince1970: row["created_at"])))
                expected -= 1
            }
            return StoredEvents(lastSeq: UInt64(lastSeq), events: events.reversed())
        }
    }

    public func events(uid: String, after seq: UInt64, limit: Int) async throws -> [LoggedEvent] {
        try await database.read { db in
            try Row.fetchAll(
                db, sql: "SELECT seq, json, created_at FROM events WHERE uid = ? AND seq > ? ORDER BY seq LIMIT ?",
                arguments: [uid, Int64(seq), limit]
            ).map { row in
                let json: String = row["json"]
                return LoggedEvent(
                    seq: UInt64(row["seq"] as Int64), json: json, type: Self.eventType(json),
                    createdAt: Date(timeIntervalSince1970: row["created_at"]))
            }
        }
    }

    public func pruneEvents(olderThan date: Date) async throws -> Int {
        try await writer.write { db in
            try db.execute(sql: "DELETE FROM events WHERE created_at < ?", arguments: [date.timeIntervalSince1970])
            return db.changesCount
        }
    }

    public func pruneFinishedTasks(createdBefore: Date?, keepingNewest: Int?, batchSize: Int) async throws -> Int {
        let finished = "status IN ('succeeded', 'failed', 'cancelled', 'timed_out')"
        var pruned = 0
        // One batch per write: other writes interleave with a long prune.
        func prune(_ sql: String, _ arguments: StatementArguments) async throws {
            while true {
                let deleted = try await writer.write { db -> Int in
                    try db.execute(sql: sql, arguments: arguments)
                    return db.changesCount
                }
                pruned += deleted
                if deleted < batchSize { return }
            }
        }
        if let createdBefore {
            try await prune(
                "DELETE FROM tasks WHERE rowid IN (SELECT rowid FROM tasks WHERE \(finished) AND created_at < ? LIMIT ?)",
                [createdBefore.timeIntervalSince1970, batchSize])
        }
        if let keepingNewest {
            try await prune(
                """
                DELETE FROM tasks WHERE rowid IN (
                    SELECT rowid FROM tasks WHERE \(finished) ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?)
                """, [batchSize, keepingNewest])
        }
        return pruned
    }

    public func scheduleTicks() async throws -> [String: Date] {
        try await database.read { db in
            var ticks: [String: Date] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT name, last_tick FROM schedule_ticks") {
                ticks[row["name"]] = Date(timeIntervalSince1970: row["last_tick"])
            }
            return ticks
        }
    }

    public func recordScheduleTick(name: String, at tick: Date) async throws {
        try await writer.write { db in
            try db.execute(
                sql: """
                    INSERT INTO schedule_ticks (name, last_tick) VALUES (?, ?)
                    ON CONFLICT(name) DO UPDATE SET last_tick = max(last_tick, excluded.last_tick)
                    """,
                arguments: [name, tick.timeIntervalSince1970])
        }
    }

    /// Only read when a user's log is loaded, so the type is not worth a column.
    private static func eventType(_ json: String) -> String {
        struct Typed: Decodable { var type: String }
        return (try? JSONDecoder().decode(Typed.self, from: Data(json.utf8)))?.type ?? "progress"
    }

    private static func decode(_ record: String) throws -> TaskRecord {
        try WireJSON.decoder.decode(TaskRecord.self, from: Data(record.utf8))
    }
}
