import Testing

@testable import TaskGatePostgres

/// The parts of the PostgreSQL store that need no database; the store itself runs against a real PostgreSQL in
/// PostgresTaskStoreLiveTests.swift and, behind three nodes, in Tests/e2e/test_cluster.py.
@Suite("PostgreSQL store", .timeLimit(.minutes(2)))
struct PostgresStoreTests {
    @Test func notificationPayloadsParse() {
        #expect(PostgresTaskStore.parse("t") == .taskQueued)
        #expect(PostgresTaskStore.parse("e:alice:42") == .event(uid: "alice", seq: 42))
        // uids may contain ':'; the seq is what follows the last one.
        #expect(PostgresTaskStore.parse("e:org:team:7") == .event(uid: "org:team", seq: 7))
        #expect(PostgresTaskStore.parse("c:t-123") == .cancel(taskID: "t-123"))
        #expect(PostgresTaskStore.parse("r:*:node-a/123") == .reload(requestID: "node-a/123", node: nil))
        #expect(PostgresTaskStore.parse("r:node-b:node-a/123") == .reload(requestID: "node-a/123", node: "node-b"))
        for junk in ["", "x", "e:", "e:alice", "e:alice:x", "r:node-b", "z:1"] {
            #expect(PostgresTaskStore.parse(junk) == nil, "\(junk)")
        }
    }

    @Test func databaseURLsParseLikeLibpq() throws {
        let url = try DatabaseURL("postgres://task%40gate:p%3Ass@db.example:6543/tasks?sslmode=disable")
        #expect(url.username == "task@gate" && url.password == "p:ss")
        #expect(url.host == "db.example" && url.port == 6543 && url.database == "tasks" && url.sslMode == "disable")
        #expect(!url.description.contains("p:ss"))  // no password in logs
        let short = try DatabaseURL("postgresql://me@localhost")
        #expect(short.port == 5432 && short.database == nil && short.password == nil && short.sslMode == "prefer")
        for bad in ["mysql://a@b/c", "postgres://b/c", "postgres://a@/c", "postgres://a@b/c?sslmode=maybe", "not a url"] {
            #expect(throws: DatabaseURLError.self, "\(bad)") { try DatabaseURL(bad) }
        }
    }

    @Test func nodeIDsUseASmallAlphabet() {
        #expect(PostgresTaskStore.isValidNodeID("node-a.1_x"))
        for bad in ["", "a b", "a:b", "a/b", String(repeating: "n", count: 65)] {
            #expect(!PostgresTaskStore.isValidNodeID(bad), "\(bad)")
        }
    }
}
