import TaskGateCore

extension PostgresTaskStore {
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
        (
            3,
            [
                // Whether a node may write a task's new state: the one rule `appendNumbered` and the conditional
                // `update` both check, written once.
                """
                CREATE FUNCTION taskgate_may_write(task tasks, mode text, node text) RETURNS boolean
                LANGUAGE sql STABLE AS $$
                    SELECT CASE mode
                        WHEN 'here' THEN task.status = 'running' AND task.owner = node
                        WHEN 'queued' THEN task.status IN ('queued', 'scheduled')
                        ELSE task.status = 'running' AND task.lease_until < now() END
                $$
                """,
            ]
        ),
        (
            4,
            [
                // Fair share's lanes by `coalesce(uid, '')` (no uid is empty, so '' stands for none), which an index
                // can serve; the claim compared uids with `IS NOT DISTINCT FROM`, which none can.
                "CREATE INDEX tasks_running_by_lane ON tasks ((coalesce(uid, '')), cmd) WHERE status = 'running'",
                "CREATE INDEX tasks_lane_claimed ON tasks ((coalesce(uid, '')), cmd, claimed_at)",
                "DROP INDEX tasks_running_by_uid",
                "DROP INDEX tasks_lane_claims",
            ]
        ),
        (
            5,
            [
                // When each lane was last served, kept by the claim itself so that the next claim reads it by key.
                // A lane whose tasks are all pruned is forgotten (it counts as served long ago, as before); the
                // prune finds those through tasks_lane_claimed.
                "CREATE TABLE lanes (uid text NOT NULL, cmd text NOT NULL, served timestamptz NOT NULL, PRIMARY KEY (uid, cmd))",
                """
                INSERT INTO lanes (uid, cmd, served)
                SELECT coalesce(uid, ''), cmd, max(claimed_at) FROM tasks
                WHERE claimed_at IS NOT NULL AND cmd IS NOT NULL GROUP BY 1, 2
                """,
            ]
        ),
    ]
}
