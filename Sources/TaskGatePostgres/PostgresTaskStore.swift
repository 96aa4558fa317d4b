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
    private let notify: AsyncStream<ClusterNotification>.Continuation
    private let url: DatabaseURL
    private let client: PostgresClient
    private let logger: Logger
    private let startedAt = Date()
    /// Whether the last database call got an answer, and whether the schema is in place.
    private let health = Mutex((reachable: false, ready: false))
    private let hasLeft = Atomic<Bool>(false)

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
            try await group.next()
            group.cancelAll()
        }
    }

    /// Connects and migrates, waiting for a database that is not up yet; a database that refuses us (wrong
    /// password, no such database) is a startup error.
    private func prepare() async throws {
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
    static let migrations: [(version: Int, statements: [String])] = [
        (
            1,
            [
                """
                CREATE TABLE tasks (
                    id text PRIMARY KEY,
                    uid text,
                    status text NOT NULL,
                    position bigserial NOT NULL,
                    created_at timestamptz NOT NULL,
                    owner text,
                    lease_until timestamptz,
                    not_before timestamptz,
                    cancel_requested boolean NOT NULL DEFAULT false,
                    record text NOT NULL
                )
                """,
                "CREATE INDEX tasks_waiting ON tasks (position) WHERE status = 'queued'",
                "CREATE INDEX tasks_running ON tasks (owner) WHERE status = 'running'",
                "CREATE INDEX tasks_by_uid ON tasks (uid, position)",
                "CREATE INDEX tasks_by_status ON tasks (status, position)",
                """
                CREATE TABLE events (
                    uid text NOT NULL,
                    seq bigint NOT NULL,
                    type text NOT NULL,
                    json text NOT NULL,
                    created_at timestamptz NOT NULL,
                    PRIMARY KEY (uid, seq)
                )
                """,
                "CREATE INDEX events_by_age ON events (created_at)",
                // A user's last seq outlives the events themselves, so a seq is never handed out twice.
                "CREATE TABLE users (uid text PRIMARY KEY, last_seq bigint NOT NULL)",
                """
                CREATE TABLE nodes (
                    id text PRIMARY KEY,
                    started_at timestamptz NOT NULL,
                    heartbeat_at timestamptz NOT NULL,
                    running integer NOT NULL DEFAULT 0,
                    clients text NOT NULL DEFAULT '[]'
                )
                """,
                """
                CREATE TABLE reload_answers (
                    request_id text NOT NULL,
                    node text NOT NULL,
                    answer text NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (request_id, node)
                )
                """,
            ]
        ),
        (
            2,
            [
                // Scheduling: the claim orders by priority and counts each uid's running tasks per handler.
                "ALTER TABLE tasks ADD COLUMN cmd text",
                "UPDATE tasks SET cmd = record::jsonb->>'cmd'",
                "ALTER TABLE tasks ADD COLUMN priority smallint NOT NULL DEFAULT 0",
                "DROP INDEX tasks_waiting",
                "CREATE INDEX tasks_waiting ON tasks (priority, position) WHERE status IN ('queued', 'scheduled')",
                "CREATE INDEX tasks_running_by_uid ON tasks (uid, cmd) WHERE status = 'running'",
                // When each lane (uid and handler) last had a task claimed: fair share's round robin.
                "ALTER TABLE tasks ADD COLUMN claimed_at timestamptz",
                "CREATE INDEX tasks_lane_claims ON tasks (uid, cmd, claimed_at)",
                "CREATE TABLE schedule_ticks (name text PRIMARY KEY, last_tick timestamptz NOT NULL)",
            ]
        ),
    ]

    private func migrate() async throws {
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
    private func listen() async {
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
                // Shutting down: the pool closes the listener's connection.
                if Task.isCancelled || hasLeft.load(ordering: .relaxed) { break }
                logger.warning("lost the notification listener; reconnecting", metadata: ["error": "\(Self.describe(error))"])
                markReachable(false)
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// While the database is unreachable, checks twice a second whether it is back.
    private func watchHealth() async {
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

    private func markReachable(_ reachable: Bool) {
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
    @discardableResult
    private func perform<Value: Sendable>(
        _ operation: String, timeout: Duration = .seconds(5), _ body: @escaping @Sendable () async throws -> Value
    ) async throws -> Value {
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

    private func records(_ query: PostgresQuery, _ operation: String) async throws -> [TaskRecord] {
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
            // Inserted: one row, and every node hears of it at once.
            let inserted = try await self.client.query(
                """
                WITH inserted AS (
                    INSERT INTO tasks (id, uid, cmd, priority, status, created_at, not_before, record)
                    VALUES (\(task.id), \(task.uid), \(task.cmd), \(Int16(task.priority)), \(task.status.rawValue),
                        \(task.createdAt), \(task.runAt), \(record))
                    ON CONFLICT (id) DO NOTHING RETURNING id
                )
                SELECT id, pg_notify(\(Self.channel), 't') FROM inserted
                """, logger: self.logger
            ).collect()
            if !inserted.isEmpty { return .inserted }
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

    // MARK: - ClusterCoordinator

    private var leaseSeconds: Double { Double(leaseTimeout.wholeMilliseconds) / 1000 }

    /// The seq a message is encoded with before the database numbers it; the statement puts the real one in its
    /// place. Keys are sorted, so the message's own `"seq"` comes before `"task"` and is the first occurrence.
    static let seqPlaceholder = "\"seq\":\(UInt64.max)"

    /// How a `WriteCondition` is named in the statements that check it (`appendNumbered`, `update`).
    private static func mode(_ condition: WriteCondition) -> String {
        switch condition {
        case .runningHere: "here"
        case .queued: "queued"
        case .leaseExpired: "expired"
        }
    }

    public func appendNumbered(
        uid: String, task: TaskRecord, condition: WriteCondition, retainCount: Int,
        makeMessage: @escaping @Sendable (UInt64) -> ServerMessage
    ) async throws -> LoggedEvent {
        let message = makeMessage(UInt64.max)
        let json = WireJSON.encode(message)
        precondition(json.contains(Self.seqPlaceholder), "every event carries its seq")
        let record = WireJSON.encode(task)
        let running = task.status == .running
        let owner: String? = running ? nodeID : nil
        let createdAt = Date()
        // One statement, so one round trip and atomic without BEGIN/COMMIT: lock the task if the condition holds,
        // number the event, store it, write the task, and notify every node at commit.
        let query: PostgresQuery = """
            WITH locked AS (
                SELECT id FROM tasks WHERE id = \(task.id) AND CASE \(Self.mode(condition))
                    WHEN 'here' THEN status = 'running' AND owner = \(nodeID)
                    WHEN 'queued' THEN status IN ('queued', 'scheduled')
                    ELSE status = 'running' AND lease_until < now() END
                FOR UPDATE
            ), numbered AS (
                INSERT INTO users (uid, last_seq) SELECT \(uid), 1 FROM locked
                ON CONFLICT (uid) DO UPDATE SET last_seq = users.last_seq + 1 RETURNING last_seq
            ), stored AS (
                INSERT INTO events (uid, seq, type, json, created_at)
                SELECT \(uid), last_seq, \(message.type),
                    overlay(\(json) PLACING '"seq":' || last_seq FROM position(\(Self.seqPlaceholder) IN \(json))
                        FOR length(\(Self.seqPlaceholder))),
                    \(createdAt)
                FROM numbered RETURNING seq, json
            ), written AS (
                UPDATE tasks SET status = \(task.status.rawValue), record = \(record), owner = \(owner),
                    lease_until = CASE WHEN \(running) THEN coalesce(lease_until, now() + make_interval(secs => \(leaseSeconds))) END,
                    not_before = NULL, cancel_requested = cancel_requested AND \(running)
                FROM numbered WHERE tasks.id = \(task.id)
            )
            SELECT seq, json FROM stored
            CROSS JOIN LATERAL (SELECT pg_notify(\(Self.channel), 'e:' || \(uid) || ':' || seq)) AS told
            """
        return try await perform("append event") {
            var event: LoggedEvent?
            for try await (seq, stored) in try await self.client.query(query, logger: self.logger).decode((Int64, String).self) {
                event = LoggedEvent(seq: UInt64(seq), json: stored, type: message.type, createdAt: createdAt)
            }
            guard let event else { throw WriteConditionFailed(taskID: task.id) }
            // Trim to the retained count now and then rather than on every event.
            if event.seq % 64 == 0, event.seq > UInt64(retainCount) {
                try await self.client.query(
                    "DELETE FROM events WHERE uid = \(uid) AND seq <= \(Int64(event.seq) - Int64(retainCount))", logger: self.logger)
            }
            return event
        }
    }

    public func update(_ task: TaskRecord, condition: WriteCondition, notBefore: Date?) async throws {
        let running = task.status == .running
        let owner: String? = running ? nodeID : nil
        try await perform("update task") {
            // The condition and the write in one statement: no other node can change the task in between.
            let written = try await self.client.query(
                """
                UPDATE tasks SET status = \(task.status.rawValue), record = \(WireJSON.encode(task)), owner = \(owner),
                    lease_until = CASE WHEN \(running) THEN coalesce(lease_until, now() + make_interval(secs => \(self.leaseSeconds))) END,
                    not_before = \(notBefore), cancel_requested = cancel_requested AND \(running)
                WHERE id = \(task.id) AND CASE \(Self.mode(condition))
                    WHEN 'here' THEN status = 'running' AND owner = \(self.nodeID)
                    WHEN 'queued' THEN status IN ('queued', 'scheduled')
                    ELSE status = 'running' AND lease_until < now() END
                RETURNING id
                """, logger: self.logger
            ).collect()
            guard !written.isEmpty else { throw WriteConditionFailed(taskID: task.id) }
            if task.status == .queued {
                try await self.client.query("SELECT pg_notify(\(Self.channel), 't')", logger: self.logger)
            }
        }
    }

    public func claimNext(_ rules: ClaimRules) async throws -> TaskRecord? {
        // Fair share counts the uid's tasks running for the same handler in the whole cluster, then prefers the lane
        // claimed longest ago, so claiming stays fair across nodes; a handler whose rate this node has used up is
        // left to the others.
        let fairShare = rules.fairShare
        let excluded = rules.excludedCommands
        // One statement: the record's JSON is patched in place, so that it never says `queued` for a claimed task.
        return try await perform("claim task") {
            let rows = try await self.client.query(
                """
                UPDATE tasks SET status = 'running', owner = \(self.nodeID), not_before = NULL, claimed_at = clock_timestamp(),
                    lease_until = now() + make_interval(secs => \(self.leaseSeconds)),
                    record = (record::jsonb || jsonb_build_object(
                        'status', 'running', 'attempts', coalesce((record::jsonb->>'attempts')::int, 0) + 1,
                        'node', \(self.nodeID)::text))::text
                WHERE id = (
                    SELECT id FROM tasks AS waiting
                    WHERE status IN ('queued', 'scheduled') AND (not_before IS NULL OR not_before <= now())
                        AND NOT (cmd = ANY(\(excluded)))
                    ORDER BY priority,
                        CASE WHEN \(fairShare) THEN (
                            SELECT count(*) FROM tasks AS busy
                            WHERE busy.status = 'running' AND busy.uid IS NOT DISTINCT FROM waiting.uid AND busy.cmd = waiting.cmd
                        ) ELSE 0 END,
                        CASE WHEN \(fairShare) THEN (
                            SELECT max(served.claimed_at) FROM tasks AS served
                            WHERE served.uid IS NOT DISTINCT FROM waiting.uid AND served.cmd = waiting.cmd
                        ) END NULLS FIRST,
                        position
                    LIMIT 1 FOR UPDATE SKIP LOCKED
                )
                RETURNING record
                """, logger: self.logger)
            for try await text in rows.decode(String.self) { return try Self.decode(text) }
            return nil
        }
    }

    public func nextDueDate() async throws -> Date? {
        try await perform("next due task") {
            for try await due in try await self.client.query(
                "SELECT min(not_before) FROM tasks WHERE status IN ('queued', 'scheduled') AND not_before > now()",
                logger: self.logger
            ).decode(Date?.self) {
                return due
            }
            return nil
        }
    }

    public func pruneFinishedTasks(createdBefore: Date?, keepingNewest: Int?, batchSize: Int) async throws -> Int {
        var pruned = 0
        // One batch per statement, so that a long prune never holds many row locks at once.
        func prune(_ query: PostgresQuery, _ operation: String) async throws {
            while true {
                let deleted = try await perform(operation) {
                    try await self.client.query(query, logger: self.logger).collect().count
                }
                pruned += deleted
                if deleted < batchSize { return }
            }
        }
        if let createdBefore {
            try await prune(
                """
                DELETE FROM tasks WHERE id IN (
                    SELECT id FROM tasks WHERE status IN ('succeeded', 'failed', 'cancelled', 'timed_out')
                        AND created_at < \(createdBefore) LIMIT \(batchSize))
                RETURNING 1
                """, "prune old tasks")
        }
        if let keepingNewest {
            try await prune(
                """
                DELETE FROM tasks WHERE id IN (
                    SELECT id FROM tasks WHERE status IN ('succeeded', 'failed', 'cancelled', 'timed_out')
                    ORDER BY position DESC LIMIT \(batchSize) OFFSET \(keepingNewest))
                RETURNING 1
                """, "prune tasks beyond the count")
        }
        return pruned
    }

    public func scheduleTicks() async throws -> [String: Date] {
        try await perform("schedule ticks") {
            var ticks: [String: Date] = [:]
            for try await (name, tick) in try await self.client.query(
                "SELECT name, last_tick FROM schedule_ticks", logger: self.logger
            ).decode((String, Date).self) {
                ticks[name] = tick
            }
            return ticks
        }
    }

    public func recordScheduleTick(name: String, at tick: Date) async throws {
        try await perform("record schedule tick") {
            try await self.client.query(
                """
                INSERT INTO schedule_ticks (name, last_tick) VALUES (\(name), \(tick))
                ON CONFLICT (name) DO UPDATE SET last_tick = greatest(schedule_ticks.last_tick, excluded.last_tick)
                """, logger: self.logger)
        }
    }

    public func expiredTasks(limit: Int) async throws -> [TaskRecord] {
        try await records(
            "SELECT record FROM tasks WHERE status = 'running' AND lease_until < now() ORDER BY position LIMIT \(limit)",
            "expired tasks")
    }

    public func heartbeat(runningTaskIDs: [String], clients: [ClientInfo]) async throws -> [String] {
        let clientsJSON = try WireJSON.encode(clients)
        let running = runningTaskIDs.count
        let hasLeft = hasLeft.load(ordering: .relaxed)
        return try await perform("heartbeat") {
            if !hasLeft {
                try await self.client.query(
                    """
                    INSERT INTO nodes (id, started_at, heartbeat_at, running, clients)
                    VALUES (\(self.nodeID), \(self.startedAt), now(), \(running), \(clientsJSON))
                    ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), running = excluded.running, clients = excluded.clients
                    """, logger: self.logger)
            }
            var cancelled: [String] = []
            if !runningTaskIDs.isEmpty {
                // Only tasks this process really runs: a restarted node with the same id lets its old leases lapse.
                let rows = try await self.client.query(
                    """
                    UPDATE tasks SET lease_until = now() + make_interval(secs => \(self.leaseSeconds))
                    WHERE owner = \(self.nodeID) AND status = 'running' AND id = ANY(\(runningTaskIDs))
                    RETURNING id, cancel_requested
                    """, logger: self.logger)
                for try await (id, cancel) in rows.decode((String, Bool).self) where cancel { cancelled.append(id) }
            }
            return cancelled
        }
    }

    public func leave() async {
        hasLeft.store(true, ordering: .relaxed)
        do {
            try await perform("leave") {
                try await self.client.query("DELETE FROM nodes WHERE id = \(self.nodeID)", logger: self.logger)
            }
        } catch {
            logger.warning("could not leave the node list; the heartbeat lapses instead", metadata: ["error": "\(error)"])
        }
    }

    public func requestCancel(taskID: String) async throws {
        try await perform("request cancel") {
            try await self.client.query(
                """
                WITH asked AS (
                    UPDATE tasks SET cancel_requested = true WHERE id = \(taskID) AND status = 'running' RETURNING id
                )
                SELECT pg_notify(\(Self.channel), 'c:' || id) FROM asked
                """, logger: self.logger)
        }
    }

    public func queuedByCommand() async throws -> [String: Int] {
        try await perform("count queued tasks") {
            var counts: [String: Int] = [:]
            let rows = try await self.client.query(
                "SELECT cmd, count(*) FROM tasks WHERE status IN ('queued', 'scheduled') GROUP BY 1", logger: self.logger)
            for try await (cmd, count) in rows.decode((String, Int64).self) { counts[cmd] = Int(count) }
            return counts
        }
    }

    public func activeCounts(uid: String?) async throws -> (queued: Int, uid: Int) {
        try await perform("count tasks") {
            let rows = try await self.client.query(
                """
                SELECT count(*) FILTER (WHERE status IN ('queued', 'scheduled')), count(*) FILTER (WHERE uid = \(uid))
                FROM tasks WHERE status IN ('scheduled', 'queued', 'running')
                """, logger: self.logger)
            for try await (queued, forUID) in rows.decode((Int64, Int64).self) { return (Int(queued), Int(forUID)) }
            return (0, 0)
        }
    }

    public func events(uid: String, after seq: UInt64, limit: Int) async throws -> [LoggedEvent] {
        try await perform("read events") {
            let rows = try await self.client.query(
                """
                SELECT seq, type, json, created_at FROM events WHERE uid = \(uid) AND seq > \(Int64(seq))
                ORDER BY seq LIMIT \(limit)
                """, logger: self.logger)
            var events: [LoggedEvent] = []
            for try await (seq, type, json, createdAt) in rows.decode((Int64, String, String, Date).self) {
                events.append(LoggedEvent(seq: UInt64(seq), json: json, type: type, createdAt: createdAt))
            }
            return events
        }
    }

    public func lastSeqs(uids: [String]) async throws -> [String: UInt64] {
        try await perform("read last seqs") {
            var seqs: [String: UInt64] = [:]
            let rows = try await self.client.query("SELECT uid, last_seq FROM users WHERE uid = ANY(\(uids))", logger: self.logger)
            for try await (uid, seq) in rows.decode((String, Int64).self) { seqs[uid] = UInt64(seq) }
            return seqs
        }
    }

    public func liveNodes() async throws -> [NodeInfo] {
        try await perform("list nodes") {
            let rows = try await self.client.query(
                """
                SELECT id, started_at, heartbeat_at, running, clients FROM nodes
                WHERE heartbeat_at > now() - make_interval(secs => \(self.leaseSeconds)) ORDER BY id
                """, logger: self.logger)
            var nodes: [NodeInfo] = []
            for try await (id, startedAt, heartbeatAt, running, clients) in rows.decode((String, Date, Date, Int32, String).self) {
                let list = (try? WireJSON.decoder.decode([ClientInfo].self, from: Data(clients.utf8))) ?? []
                nodes.append(NodeInfo(id: id, startedAt: startedAt, heartbeatAt: heartbeatAt, running: Int(running), clients: list))
            }
            return nodes
        }
    }

    public func requestReload(requestID: String, node: String?) async throws {
        try await perform("request reload") {
            try await self.client.query(
                "SELECT pg_notify(\(Self.channel), \("r:\(node ?? "*"):\(requestID)"))", logger: self.logger)
        }
    }

    public func answerReload(requestID: String, answer: NodeReload) async throws {
        let answerJSON = try WireJSON.encode(answer)
        try await perform("answer reload") {
            try await self.client.query(
                """
                INSERT INTO reload_answers (request_id, node, answer) VALUES (\(requestID), \(answer.node), \(answerJSON))
                ON CONFLICT DO NOTHING
                """, logger: self.logger)
        }
    }

    public func reloadAnswers(requestID: String) async throws -> [NodeReload] {
        try await perform("read reload answers") {
            var answers: [NodeReload] = []
            let rows = try await self.client.query(
                "SELECT answer FROM reload_answers WHERE request_id = \(requestID)", logger: self.logger)
            for try await text in rows.decode(String.self) {
                if let answer = try? WireJSON.decoder.decode(NodeReload.self, from: Data(text.utf8)) { answers.append(answer) }
            }
            return answers
        }
    }

    private static func decode(_ record: String) throws -> TaskRecord {
        try WireJSON.decoder.decode(TaskRecord.self, from: Data(record.utf8))
    }
}
