import Foundation
import Logging
import PostgresNIO
import Synchronization
import TaskGateCore

/// The store several nodes share: tasks, users' events and the nodes themselves in PostgreSQL.
///
/// - A uid's events are numbered in the transaction that stores them (`users.last_seq`, row-locked), so `seq` is
///   one gapless sequence per uid whichever node appends, and the event commits with the task state it reports.
/// - Queued tasks are claimed with `FOR UPDATE SKIP LOCKED`: each runs on one node. A running task is leased to
///   its node; heartbeats renew the lease, and any node may reclaim a task whose lease ran out.
/// - Every change other nodes must hear of is a `NOTIFY` on one channel, sent at commit; payloads carry ids only,
///   and the data is read from the tables.
public final class PostgresTaskStore: SharedTaskStore {
    public let nodeID: String
    public let leaseTimeout: Duration
    public let notifications: AsyncStream<ClusterNotification>
    let notify: AsyncStream<ClusterNotification>.Continuation
    let url: DatabaseURL
    let client: PostgresClient
    let logger: Logger
    let startedAt = Date()
    /// Whether the last database call got an answer, and whether the schema is in place.
    let health = Mutex((reachable: false, ready: false))
    let hasLeft = Atomic<Bool>(false)

    static let channel = "taskgate"
    /// Any constant: nodes starting at once take turns at the migrations under it.
    static let migrationLock: Int64 = 0x7461_736b_6761_7465

    public init(url: DatabaseURL, nodeID: String, leaseTimeout: Duration = .seconds(10), logger: Logger) {
        self.url = url
        self.nodeID = nodeID
        self.leaseTimeout = leaseTimeout
        self.logger = logger
        var backgroundLogger = logger
        backgroundLogger.logLevel = max(logger.logLevel, .error)  // the pool's own reconnect chatter
        client = PostgresClient(configuration: url.clientConfiguration, backgroundLogger: backgroundLogger)
        (notifications, notify) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(100_000))
    }

    public var isDurable: Bool { true }
    public var isReachable: Bool { health.withLock { $0.reachable && $0.ready } }

    /// Node ids appear in payloads and logs: a small alphabet.
    public static func isValidNodeID(_ id: String) -> Bool {
        (1...64).contains(id.utf8.count)
            && id.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
            }
    }

    // MARK: - Lifetime

    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await self.client.run() }
            try await prepare()
            group.addTask { await self.listen() }
            group.addTask { await self.watchHealth() }
            group.addTask { await self.vacuumTasks() }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Connects and migrates, waiting for a database that is not up yet; a database that refuses us (wrong
    /// password, no such database) is a startup error.
    func prepare() async throws {
        var warned = false
        while true {
            try Task.checkCancellation()
            do {
                try await migrate()
                health.withLock { $0 = (true, true) }
                logger.notice("cluster store ready", metadata: ["database": "\(url)", "node": .string(nodeID)])
                return
            } catch let error as PSQLError where error.code == .server {
                let state = error.serverInfo?[.sqlState] ?? ""
                let message = error.serverInfo?[.message] ?? "\(error)"
                // 28xxx: authentication; 3D000: no such database; 42xxx: the schema cannot be created.
                if state.hasPrefix("28") || state == "3D000" || state.hasPrefix("42") {
                    throw DatabaseURLError("the database at \(url) refused this node: \(message) (SQLSTATE \(state))")
                }
                logger.warning("database not ready, retrying", metadata: ["error": .string(message)])
            } catch let error as DatabaseURLError {
                throw error
            } catch {
                if !warned {
                    logger.warning("waiting for the database", metadata: ["database": "\(url)", "error": "\(Self.describe(error))"])
                    warned = true
                }
            }
            try await Task.sleep(for: .seconds(1))
        }
    }

    /// Versioned migrations, each applied once, under an advisory lock so that nodes starting together take turns.
    func migrate() async throws {
        // A connection of its own, so that a refusal comes back as the server's error rather than a pool timeout.
        let connection = try await PostgresConnection.connect(
            configuration: try url.connectionConfiguration(), id: 0, logger: logger)
        defer { Task { try? await connection.close() } }
        // The connection is closed afterwards, so a failure needs no ROLLBACK: closing ends the transaction.
        try await connection.query("BEGIN", logger: logger)
        try await connection.query("SELECT pg_advisory_xact_lock(\(Self.migrationLock))", logger: logger)
        try await connection.query(
            "CREATE TABLE IF NOT EXISTS taskgate_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
            logger: logger)
        var applied = Set<Int>()
        for try await version in try await connection.query("SELECT version FROM taskgate_migrations", logger: logger)
            .decode(Int.self)
        {
            applied.insert(version)
        }
        for migration in Self.migrations where !applied.contains(migration.version) {
            for statement in migration.statements {
                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
            try await connection.query("INSERT INTO taskgate_migrations (version) VALUES (\(migration.version))", logger: logger)
            logger.notice("database migrated", metadata: ["version": "\(migration.version)"])
        }
        try await connection.query("COMMIT", logger: logger)
    }

    /// One connection listens for the whole node; after a reconnect the node resynchronizes, since notifications
    /// sent meanwhile are gone.
    func listen() async {
        while !Task.isCancelled {
            do {
                try await client.withConnection { connection in
                    try await connection.listen(on: Self.channel) { notifications in
                        self.notify.yield(.resynchronize)
                        for try await notification in notifications {
                            if let parsed = Self.parse(notification.payload) { self.notify.yield(parsed) }
                        }
                    }
                }
            } catch {
                // A shutdown closes the pool, and so the listener's connection, a moment before this task hears of
                // its cancellation: wait that moment out before calling it a lost connection.
                try? await Task.sleep(for: .milliseconds(200))
                if Task.isCancelled || hasLeft.load(ordering: .relaxed) { break }
                logger.warning("lost the notification listener; reconnecting", metadata: ["error": "\(Self.describe(error))"])
                markReachable(false)
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// How often a node vacuums the tasks table.
    static let vacuumPeriod = Duration.seconds(2)

    /// Every task passes through `queued` and `running`, so the indexes that the claim and the admission count read
    /// gather two dead entries per task. Autovacuum visits a database about once a minute (its naptime), by which
    /// time a busy cluster has left tens of thousands, and every count waded through them: 0.68 ms per submission
    /// at 650 tasks/s, as much as the claim (pg_stat_statements). A vacuum every few seconds keeps them few, for
    /// tens of milliseconds; with SKIP_LOCKED a node leaves it to the one already at it (or to autovacuum).
    func vacuumTasks() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: Self.vacuumPeriod)
            guard isReachable else { continue }
            do {
                try await vacuumTasksOnce()
            } catch {
                logger.debug("vacuum failed", metadata: ["error": "\(error)"])
            }
        }
    }

    func vacuumTasksOnce() async throws {
        try await perform("vacuum tasks", timeout: .seconds(60)) {
            try await self.client.query("VACUUM (SKIP_LOCKED) tasks", logger: self.logger)
        }
    }

    /// While the database is unreachable, checks twice a second whether it is back.
    func watchHealth() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(500))
            if !health.withLock({ $0.reachable }) {
                if (try? await perform("health check", { try await self.client.query("SELECT 1", logger: self.logger) })) != nil {
                    logger.notice("database reachable again")
                }
            }
        }
    }

    // MARK: - Notifications

    static func parse(_ payload: String) -> ClusterNotification? {
        if payload == "t" { return .taskQueued }
        guard payload.count > 2 else { return nil }
        let body = String(payload.dropFirst(2))
        switch payload.prefix(2) {
        case "e:":
            // uids may contain ':', seq never does.
            guard let colon = body.lastIndex(of: ":"), let seq = UInt64(body[body.index(after: colon)...]) else { return nil }
            return .event(uid: String(body[..<colon]), seq: seq)
        case "c:":
            return .cancel(taskID: body)
        case "r:":
            guard let colon = body.firstIndex(of: ":") else { return nil }
            let target = String(body[..<colon])
            return .reload(requestID: String(body[body.index(after: colon)...]), node: target == "*" ? nil : target)
        default:
            return nil
        }
    }

    // MARK: - Calls

    private struct DatabaseTimeout: Error, CustomStringConvertible {
        var operation: String
        var description: String { "the database did not answer '\(operation)' in time" }
    }

    static func describe(_ error: any Error) -> String {
        (error as? PSQLError).map { "\(DatabaseError(operation: "connection", $0))" } ?? "\(error)"
    }

    /// What a failed call says in logs: PSQLError's own description is deliberately generic, and its debug one
    /// carries the query's values; the error code and the server's message are what an operator needs.
    struct DatabaseError: Error, CustomStringConvertible {
        var description: String

        init(description: String) { self.description = description }

        init(operation: String, _ error: PSQLError) {
            let server = error.serverInfo.map { info in
                " \(info[.sqlState] ?? ""): \(info[.message] ?? "")"
            } ?? ""
            description = "\(operation): \(error.code)\(server)"
        }
    }

    func markReachable(_ reachable: Bool) {
        let changed = health.withLock { state -> Bool in
            defer { state.reachable = reachable }
            return state.reachable != reachable && state.ready
        }
        if changed, !reachable, !hasLeft.load(ordering: .relaxed) {
            logger.error("database unreachable: this node refuses submits until it is back")
        }
    }

    /// Every call goes through here: bounded in time, outside the caller's cancellation (a cancelled task's final
    /// state must still be written), and telling `isReachable` how the database answered.
    ///
    /// Nothing reaches the database before the migrations are done: postgres-nio keeps a statement's failed
    /// preparation with the connection for the connection's lifetime, so a prepared statement tried before its
    /// tables exist would fail on that connection ever after.
    @discardableResult
    func perform<Value: Sendable>(
        _ operation: String, timeout: Duration = .seconds(5), _ body: @escaping @Sendable () async throws -> Value
    ) async throws -> Value {
        guard health.withLock({ $0.ready }) else {
            throw DatabaseError(description: "\(operation): the database's schema is not in place yet")
        }
        do {
            let value = try await withDeadline(timeout, timeoutError: { DatabaseTimeout(operation: operation) }, body)
            markReachable(true)
            return value
        } catch let error as WriteConditionFailed {
            markReachable(true)
            throw error
        } catch let error as PSQLError where error.code == .server {
            markReachable(true)  // the database answered, with an SQL error
            throw DatabaseError(operation: operation, error)
        } catch let error as PSQLError {
            markReachable(false)
            throw DatabaseError(operation: operation, error)
        } catch {
            markReachable(false)
            throw error
        }
    }

    func records(_ query: PostgresQuery, _ operation: String) async throws -> [TaskRecord] {
        try await perform(operation) {
            var records: [TaskRecord] = []
            for try await text in try await self.client.query(query, logger: self.logger).decode(String.self) {
                records.append(try Self.decode(text))
            }
            return records
        }
    }

    // MARK: - TaskStore

    public func insert(_ task: TaskRecord) async throws -> InsertOutcome {
        let record = WireJSON.encode(task)
        return try await perform("insert task") {
            let insert = Prepared<InsertTask> {
                $0.append(task.id)
                $0.append(task.uid)
                $0.append(task.cmd)
                $0.append(Int16(task.priority))
                $0.append(task.status.rawValue)
                $0.append(task.createdAt)
                $0.append(task.runAt)
                $0.append(record)
            }
            var inserted = false
            for try await _ in try await self.client.execute(insert, logger: self.logger) { inserted = true }
            if inserted { return .inserted }
            for try await existing in try await self.client.query(
                "SELECT record FROM tasks WHERE id = \(task.id)", logger: self.logger
            ).decode(String.self) {
                return .existing(try Self.decode(existing))
            }
            // Deleted between the insert that found it and this read: nothing to return, so nothing was submitted.
            throw DatabaseError(description: "task \(task.id) already existed but could not be read back")
        }
    }

    public func update(_ task: TaskRecord) async throws {
        try await update(task, condition: .runningHere, notBefore: nil)
    }

    public func task(id: String) async throws -> TaskRecord? {
        try await records("SELECT record FROM tasks WHERE id = \(id)", "read task").first
    }

    public func list(_ query: TaskQuery) async throws -> [TaskRecord] {
        let statement: PostgresQuery =
            switch (query.uid, query.status) {
            case (nil, nil):
                "SELECT record FROM tasks ORDER BY position DESC LIMIT \(query.limit)"
            case (let uid?, nil):
                "SELECT record FROM tasks WHERE uid = \(uid) ORDER BY position DESC LIMIT \(query.limit)"
            case (nil, let status?):
                "SELECT record FROM tasks WHERE status = \(status.rawValue) ORDER BY position DESC LIMIT \(query.limit)"
            case (let uid?, let status?):
                "SELECT record FROM tasks WHERE uid = \(uid) AND status = \(status.rawValue) ORDER BY position DESC LIMIT \(query.limit)"
            }
        return try await records(statement, "list tasks")
    }

    public func unfinishedTasks() async throws -> [TaskRecord] {
        try await records("SELECT record FROM tasks WHERE status IN ('scheduled', 'queued', 'running') ORDER BY position", "unfinished tasks")
    }

    public func loadEvents(uid: String, limit: Int) async throws -> StoredEvents {
        try await perform("load events") {
            var lastSeq: Int64 = 0
            for try await seq in try await self.client.query("SELECT last_seq FROM users WHERE uid = \(uid)", logger: self.logger)
                .decode(Int64.self)
            {
                lastSeq = seq
            }
            let rows = try await self.client.query(
                "SELECT seq, type, json, created_at FROM events WHERE uid = \(uid) ORDER BY seq DESC LIMIT \(limit)",
                logger: self.logger)
            // Keep only the unbroken run that ends at the last seq: the log relies on consecutive numbers.
            var events: [LoggedEvent] = []
            var expected = lastSeq
            for try await (seq, type, json, createdAt) in rows.decode((Int64, String, String, Date).self) {
                guard seq == expected else { continue }
                events.append(LoggedEvent(seq: UInt64(seq), json: json, type: type, createdAt: createdAt))
                expected -= 1
            }
            return StoredEvents(lastSeq: UInt64(lastSeq), events: events.reversed())
        }
    }

    /// Also drops old reload answers and long-gone nodes: every node runs this once a minute.
    public func pruneEvents(olderThan date: Date) async throws -> Int {
        try await perform("prune events") {
            try await self.client.query("DELETE FROM events WHERE created_at < \(date)", logger: self.logger)
            try await self.client.query(
                "DELETE FROM reload_answers WHERE created_at < now() - interval '10 minutes'", logger: self.logger)
            try await self.client.query("DELETE FROM nodes WHERE heartbeat_at < now() - interval '1 day'", logger: self.logger)
            return 0  // PostgreSQL's row count is not worth a second query here
        }
    }

    static func decode(_ record: String) throws -> TaskRecord {
        try WireJSON.decoder.decode(TaskRecord.self, from: Data(record.utf8))
    }
}
