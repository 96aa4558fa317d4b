import PostgresNIO

/// The text of a statement each connection prepares once, so PostgreSQL parses and plans it once rather than on
/// every call: a query sent as text was planned each time, and planning was about a third of the time PostgreSQL
/// spent in statements per task (pg_stat_statements, one release node under `bench/cluster_bench.py`). Only the
/// statements every task runs are prepared.
protocol PreparedText {
    static var sql: String { get }
    /// The parameters' types, in order: stated rather than inferred from the first call, whose NULLs have none.
    static var types: [PostgresDataType] { get }
}

/// A prepared statement's call: its text's name and SQL, and this call's bindings; rows come back undecoded.
struct Prepared<Text: PreparedText>: PostgresPreparedStatement {
    typealias Row = PostgresRow
    static var name: String { "taskgate.\(Text.self)" }
    static var sql: String { Text.sql }
    static var bindingDataTypes: [PostgresDataType] { Text.types }

    var bindings = PostgresBindings()

    init(_ bind: (inout PostgresBindings) -> Void) {
        bind(&bindings)
    }

    func makeBindings() -> PostgresBindings { bindings }
    func decodeRow(_ row: PostgresRow) -> PostgresRow { row }
}

extension PostgresTaskStore {
    /// $1 id, $2 uid, $3 cmd, $4 priority, $5 status, $6 created_at, $7 not_before, $8 record. Inserted: one row,
    /// and every node hears of it at once.
    enum InsertTask: PreparedText {
        static let sql = """
            WITH inserted AS (
                INSERT INTO tasks (id, uid, cmd, priority, status, created_at, not_before, record)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                ON CONFLICT (id) DO NOTHING RETURNING id
            )
            SELECT id, pg_notify('\(channel)', 't') FROM inserted
            """
        static let types: [PostgresDataType] = [.text, .text, .text, .int2, .text, .timestamptz, .timestamptz, .text]
    }

    /// $1 task id, $2 write mode, $3 node, $4 uid, $5 the events' types, $6 their JSON with the seq placeholder,
    /// $7 created_at, $8 status, $9 record, $10 owner, $11 running, $12 lease seconds.
    ///
    /// One statement, so one round trip and atomic without BEGIN/COMMIT: lock the task if the condition holds,
    /// number the events (the uid's counter moves once, by their count), store them, write the task, and notify
    /// every node at commit, once, with the last seq (a node reads the ones before it back with it).
    enum AppendNumbered: PreparedText {
        static let sql = """
            WITH locked AS (
                SELECT id FROM tasks WHERE id = $1 AND taskgate_may_write(tasks, $2, $3)
                FOR UPDATE
            ), numbered AS (
                INSERT INTO users (uid, last_seq) SELECT $4, cardinality($6) FROM locked
                ON CONFLICT (uid) DO UPDATE SET last_seq = users.last_seq + cardinality($6) RETURNING last_seq
            ), stored AS (
                INSERT INTO events (uid, seq, type, json, created_at)
                SELECT $4, numbered.last_seq - cardinality($6) + event.ordinal, event.type,
                    overlay(event.json PLACING '"seq":' || (numbered.last_seq - cardinality($6) + event.ordinal)
                        FROM position('\(seqPlaceholder)' IN event.json) FOR length('\(seqPlaceholder)')),
                    $7
                FROM numbered CROSS JOIN unnest($5::text[], $6::text[]) WITH ORDINALITY AS event(type, json, ordinal)
                RETURNING seq, json
            ), written AS (
                UPDATE tasks SET status = $8, record = $9, owner = $10,
                    lease_until = CASE WHEN $11 THEN coalesce(lease_until, now() + make_interval(secs => $12)) END,
                    not_before = NULL, cancel_requested = cancel_requested AND $11
                FROM numbered WHERE tasks.id = $1
            ), told AS (
                SELECT pg_notify('\(channel)', 'e:' || $4 || ':' || last_seq) FROM numbered
            )
            SELECT seq, json FROM stored, (SELECT count(*) FROM told) AS notified ORDER BY seq
            """
        static let types: [PostgresDataType] = [
            .text, .text, .text, .text, .textArray, .textArray, .timestamptz, .text, .text, .text, .bool, .float8,
        ]
    }

    /// $1 node, $2 lease seconds, $3 excluded handlers, $4 fair share, $5 paced handlers, $6 at most this many.
    ///
    /// Fair share counts the uid's tasks running for the same handler in the whole cluster, then prefers the lane
    /// claimed longest ago, so claiming stays fair across nodes (a lane is `coalesce(uid, '')` and `cmd`, the keys
    /// of migration 4's indexes: `IS NOT DISTINCT FROM` could use no index, so each waiting task scanned every
    /// task of its handler). When a lane was last served is one key lookup in `lanes`, which the claim writes:
    /// the maximum of the lane's `claimed_at` was a backward index scan per waiting task, half the claim's time
    /// with 88 lanes waiting (`EXPLAIN ANALYZE`). Several at once take turns: a task's turn is what runs in its
    /// lane plus its place in the lane's queue, so a lane's second task comes after every other lane's first, as
    /// separate claims would pick them. A paced handler (a rate limit) starts at most once per claim.
    ///
    /// One statement: the ranking reads a snapshot, the outer level locks what it takes (skipping rows another
    /// node is claiming) and checks that each is still waiting; the record's JSON is patched in place, so that it
    /// never says `queued` for a claimed task.
    enum ClaimTasks: PreparedText {
        static let sql = """
            WITH claimed AS (
            UPDATE tasks SET status = 'running', owner = $1, not_before = NULL, claimed_at = clock_timestamp(),
                lease_until = now() + make_interval(secs => $2),
                record = (record::jsonb || jsonb_build_object(
                    'status', 'running', 'attempts', coalesce((record::jsonb->>'attempts')::int, 0) + 1,
                    'node', $1::text))::text
            WHERE id IN (
                SELECT chosen.id FROM tasks AS chosen
                JOIN (
                    SELECT id, cmd, priority, position, turn, served,
                        row_number() OVER (PARTITION BY cmd ORDER BY priority, turn, served NULLS FIRST, position)
                            AS turn_of_handler
                    FROM (
                        SELECT id, cmd, priority, position,
                            CASE WHEN $4 THEN (
                                SELECT count(*) FROM tasks AS busy
                                WHERE busy.status = 'running' AND coalesce(busy.uid, '') = coalesce(waiting.uid, '')
                                    AND busy.cmd = waiting.cmd
                            ) + row_number() OVER (
                                PARTITION BY coalesce(waiting.uid, ''), waiting.cmd, waiting.priority ORDER BY waiting.position
                            ) ELSE 0 END AS turn,
                            CASE WHEN $4 THEN (
                                SELECT lanes.served FROM lanes
                                WHERE lanes.uid = coalesce(waiting.uid, '') AND lanes.cmd = waiting.cmd
                            ) END AS served
                        FROM tasks AS waiting
                        WHERE status IN ('queued', 'scheduled') AND (not_before IS NULL OR not_before <= now())
                            AND NOT (cmd = ANY($3))
                    ) AS lanes
                ) AS ranked ON ranked.id = chosen.id
                WHERE chosen.status IN ('queued', 'scheduled') AND (ranked.turn_of_handler = 1 OR NOT (ranked.cmd = ANY($5)))
                ORDER BY ranked.priority, ranked.turn, ranked.served NULLS FIRST, ranked.position
                LIMIT $6 FOR UPDATE OF chosen SKIP LOCKED
            )
            RETURNING record, uid, cmd, claimed_at
            ), noted AS (
                -- Each lane claimed from is served now; in key order, so that two claims lock shared lanes alike.
                INSERT INTO lanes (uid, cmd, served)
                SELECT coalesce(uid, ''), cmd, max(claimed_at) FROM claimed WHERE $4 GROUP BY 1, 2 ORDER BY 1, 2
                ON CONFLICT (uid, cmd) DO UPDATE SET served = greatest(lanes.served, excluded.served)
            )
            SELECT record FROM claimed
            """
        static let types: [PostgresDataType] = [.text, .float8, .textArray, .bool, .textArray, .int8]
    }

    /// $1 uid: the cluster's queued tasks, and the uid's queued and running ones.
    enum ActiveCounts: PreparedText {
        static let sql = """
            SELECT count(*) FILTER (WHERE status IN ('queued', 'scheduled')), count(*) FILTER (WHERE uid = $1)
            FROM tasks WHERE status IN ('scheduled', 'queued', 'running')
            """
        static let types: [PostgresDataType] = [.text]
    }

    /// $1 uid, $2 after this seq, $3 at most this many: what a node reads when another node notified an event.
    enum EventsAfter: PreparedText {
        static let sql = """
            SELECT seq, type, json, created_at FROM events WHERE uid = $1 AND seq > $2 ORDER BY seq LIMIT $3
            """
        static let types: [PostgresDataType] = [.text, .int8, .int8]
    }
}
