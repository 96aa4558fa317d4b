import Foundation
import Logging
import PostgresNIO
import TaskGateCore

/// The cluster's half of the store: numbering events, claiming and leasing tasks, nodes, cancels and reloads.
extension PostgresTaskStore {
    private var leaseSeconds: Double { Double(leaseTimeout.wholeMilliseconds) / 1000 }

    /// The seq a message is encoded with before the database numbers it; the statement puts the real one in its
    /// place. Keys are sorted, so the message's own `"seq"` comes before `"task"` and is the first occurrence.
    static let seqPlaceholder = "\"seq\":\(UInt64.max)"

    /// How a `WriteCondition` is named to `taskgate_may_write`, the rule `appendNumbered` and `update` check.
    private static func mode(_ condition: WriteCondition) -> String {
        switch condition {
        case .runningHere: "here"
        case .queued: "queued"
        case .leaseExpired: "expired"
        }
    }

    public func appendNumbered(
        uid: String, task: TaskRecord, condition: WriteCondition, retainCount: Int,
        makeMessages: [@Sendable (UInt64) -> ServerMessage]
    ) async throws -> [LoggedEvent] {
        guard !makeMessages.isEmpty else { return [] }
        let messages = makeMessages.map { $0(UInt64.max) }
        let jsons = messages.map { WireJSON.encode($0) }
        if let unnumbered = zip(messages, jsons).first(where: { !$0.1.contains(Self.seqPlaceholder) }) {
            throw DatabaseError(description: "event '\(unnumbered.0.type)' has no seq to number")
        }
        let record = WireJSON.encode(task)
        let running = task.status == .running
        let owner: String? = running ? nodeID : nil
        let createdAt = Date()
        let append = Prepared<AppendNumbered> {
            $0.append(task.id)
            $0.append(Self.mode(condition))
            $0.append(nodeID)
            $0.append(uid)
            $0.append(messages.map(\.type))
            $0.append(jsons)
            $0.append(createdAt)
            $0.append(task.status.rawValue)
            $0.append(record)
            $0.append(owner)
            $0.append(running)
            $0.append(leaseSeconds)
        }
        return try await perform("append event") {
            var events: [LoggedEvent] = []
            for try await row in try await self.client.execute(append, logger: self.logger) {
                let (seq, stored) = try row.decode((Int64, String).self)
                guard events.count < messages.count else { throw DatabaseError(description: "more events stored than sent") }
                events.append(LoggedEvent(seq: UInt64(seq), json: stored, type: messages[events.count].type, createdAt: createdAt))
            }
            guard let last = events.last, events.count == messages.count else { throw WriteConditionFailed(taskID: task.id) }
            // Trim to the retained count now and then rather than on every event: when a series passes a multiple of 64.
            if last.seq / 64 != (last.seq - UInt64(events.count)) / 64, last.seq > UInt64(retainCount) {
                try await self.client.query(
                    "DELETE FROM events WHERE uid = \(uid) AND seq <= \(Int64(last.seq) - Int64(retainCount))", logger: self.logger)
            }
            return events
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
                WHERE id = \(task.id) AND taskgate_may_write(tasks, \(Self.mode(condition)), \(self.nodeID))
                RETURNING id
                """, logger: self.logger
            ).collect()
            guard !written.isEmpty else { throw WriteConditionFailed(taskID: task.id) }
            if task.status == .queued {
                try await self.client.query("SELECT pg_notify(\(Self.channel), 't')", logger: self.logger)
            }
        }
    }

    public func claim(_ rules: ClaimRules, limit: Int) async throws -> [TaskRecord] {
        guard limit > 0 else { return [] }
        // A handler whose rate this node has used up is left to the others.
        let claim = Prepared<ClaimTasks> {
            $0.append(nodeID)
            $0.append(leaseSeconds)
            $0.append(rules.excludedCommands)
            $0.append(rules.fairShare)
            $0.append(rules.pacedCommands)
            $0.append(Int64(limit))
        }
        return try await perform("claim tasks") {
            var claimed: [TaskRecord] = []
            for try await row in try await self.client.execute(claim, logger: self.logger) {
                claimed.append(try Self.decode(row.decode(String.self)))
            }
            // UPDATE returns rows in no set order: by priority, then age, so a batch's order is not the plan's.
            return claimed.sorted { ($0.priority, $0.createdAt) < ($1.priority, $1.createdAt) }
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
        func prune(_ query: PostgresQuery, _ operation: String) async throws -> Int {
            var total = 0
            while true {
                let deleted = try await perform(operation) {
                    try await self.client.query(query, logger: self.logger).collect().count
                }
                total += deleted
                if deleted < batchSize { return total }
            }
        }
        if let createdBefore {
            pruned += try await prune(
                """
                DELETE FROM tasks WHERE id IN (
                    SELECT id FROM tasks WHERE status IN ('succeeded', 'failed', 'cancelled', 'timed_out')
                        AND created_at < \(createdBefore) LIMIT \(batchSize))
                RETURNING 1
                """, "prune old tasks")
        }
        if let keepingNewest {
            pruned += try await prune(
                """
                DELETE FROM tasks WHERE id IN (
                    SELECT id FROM tasks WHERE status IN ('succeeded', 'failed', 'cancelled', 'timed_out')
                    ORDER BY position DESC LIMIT \(batchSize) OFFSET \(keepingNewest))
                RETURNING 1
                """, "prune tasks beyond the count")
        }
        if pruned > 0 {
            // Lanes none of whose tasks is left; locked ones are a claim's, which is serving them now.
            _ = try await prune(
                """
                DELETE FROM lanes WHERE (uid, cmd) IN (
                    SELECT uid, cmd FROM lanes WHERE NOT EXISTS (
                        SELECT 1 FROM tasks WHERE coalesce(tasks.uid, '') = lanes.uid AND tasks.cmd = lanes.cmd)
                    LIMIT \(batchSize) FOR UPDATE SKIP LOCKED)
                RETURNING 1
                """, "forget lanes without tasks")
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
        let counts = Prepared<ActiveCounts> { $0.append(uid) }
        return try await perform("count tasks") {
            var found = (0, 0)
            for try await row in try await self.client.execute(counts, logger: self.logger) {
                let (queued, forUID) = try row.decode((Int64, Int64).self)
                found = (Int(queued), Int(forUID))
            }
            return found
        }
    }

    public func events(uid: String, after seq: UInt64, limit: Int) async throws -> [LoggedEvent] {
        let read = Prepared<EventsAfter> {
            $0.append(uid)
            $0.append(Int64(seq))
            $0.append(Int64(limit))
        }
        return try await perform("read events") {
            var events: [LoggedEvent] = []
            for try await row in try await self.client.execute(read, logger: self.logger) {
                let (seq, type, json, createdAt) = try row.decode((Int64, String, String, Date).self)
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
}
