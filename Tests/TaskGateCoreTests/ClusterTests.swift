import Foundation
import Logging
import Synchronization
import Testing

@testable import TaskGateCore

/// Several gateways in one process sharing one `SharedTaskStore` kept in memory: the cluster logic of the pool and
/// the event log (claiming, leases, numbering, fan-out) without a database. The PostgreSQL store itself is driven
/// end to end by Tests/e2e/test_cluster.py.
@Suite("Cluster logic on a shared in-memory store", .timeLimit(.minutes(2)))
struct ClusterTests {
    @Test func aTaskSubmittedOnOneNodeReachesTheOwnerOnAnother() async throws {
        let database = SharedMemoryDatabase()
        let (a, b) = (Gateway.node("a", database), Gateway.node("b", database))
        try await Gateway.running([a, b]) {
            let onB = RecordingConnection()
            try await b.events.subscribe("u", onB)
            let id = try await a.submit(cmd: "echo", args: ["x": 1], uid: "u").task.id
            try await onB.waitFor { $0.contains { $0["type"] as? String == "done" } }
            #expect(onB.types == ["hello", "progress", "done"])
            #expect(onB.seqs == [0, 1, 2])
            let done = try await b.finished(id)
            #expect(done.status == .succeeded && done.attempts == 1)
            #expect(["a", "b"].contains(done.node ?? ""))
        }
    }

    @Test func seqIsOneSequencePerUIDWhicheverNodeRunsTheTasks() async throws {
        let database = SharedMemoryDatabase()
        let nodes = [Gateway.node("a", database), Gateway.node("b", database), Gateway.node("c", database)]
        try await Gateway.running(nodes) {
            let watchers = [RecordingConnection(), RecordingConnection(), RecordingConnection()]
            for (node, watcher) in zip(nodes, watchers) { try await node.events.subscribe("u", watcher) }
            var ids: [String] = []
            for index in 0..<12 {
                ids.append(try await nodes[index % 3].submit(cmd: "echo", args: ["i": .number(Double(index))], uid: "u").task.id)
            }
            for id in ids { _ = try await nodes[0].finished(id) }
            for watcher in watchers {
                try await watcher.waitFor { $0.count { $0["type"] as? String == "done" } == 12 }
                // hello with seq 0, then every event once, in order, without a gap: 12 × (progress, done).
                #expect(watcher.seqs == Array(0...24))
            }
            let ran = Set(try await nodes[0].list(.init(uid: "u")).compactMap(\.node))
            #expect(ran.isSubset(of: ["a", "b", "c"]) && !ran.isEmpty)
        }
    }

    @Test func aDeadNodesTaskIsReclaimedAfterItsLeaseAndRunsAgain() async throws {
        let database = SharedMemoryDatabase()
        let survivor = Gateway.node("b", database)
        // "a" claims the task and then says nothing more, as a node killed mid-task.
        let dead = SharedMemoryStore(node: "a", database: database, lease: .milliseconds(200))
        _ = try await dead.insert(TaskRecord(id: "t1", cmd: "echo", uid: "u", args: ["x": 1]))
        let claimed = try #require(try await dead.claimNext(ClaimRules()))
        #expect(claimed.node == "a" && claimed.attempts == 1)
        try await Gateway.running([survivor]) {
            let task = try await survivor.finished("t1", timeout: .seconds(10))
            #expect(task.status == .succeeded)
            #expect(task.node == "b" && task.attempts == 2)
        }
        // The dead node's late answer is refused: it no longer owns the task.
        var late = claimed
        late.status = .failed
        await #expect(throws: WriteConditionFailed.self) {
            try await dead.update(late, condition: .runningHere, notBefore: nil)
        }
    }

    @Test func aNonIdempotentTaskOfADeadNodeEndsInterrupted() async throws {
        let database = SharedMemoryDatabase()
        let survivor = Gateway.node("b", database)
        let dead = SharedMemoryStore(node: "a", database: database, lease: .milliseconds(200))
        // No handler by that name on the survivor: it cannot run it again, so it ends the task.
        _ = try await dead.insert(TaskRecord(id: "t1", cmd: "gone", uid: "u", args: [:]))
        _ = try #require(try await dead.claimNext(ClaimRules()))
        try await Gateway.running([survivor]) {
            let task = try await survivor.finished("t1", timeout: .seconds(10))
            #expect(task.status == .failed)
            #expect(task.error?.hasPrefix("interrupted: node a stopped") == true)
        }
    }

    @Test func cancelReachesTheNodeRunningTheTask() async throws {
        let database = SharedMemoryDatabase()
        let (a, b) = (Gateway.node("a", database), Gateway.node("b", database))
        try await Gateway.running([a, b]) {
            let id = try await b.submit(cmd: "sleep", args: ["ms": 5000], uid: "u").task.id
            try await a.started(id)
            let runner = try #require(try await a.task(id: id, visibleTo: nil).node)
            let other = runner == "a" ? b : a  // asked on the node that does not run it
            let stopping = try await other.cancel(id: id, visibleTo: nil)
            #expect(stopping.status == .running)
            let task = try await other.finished(id)
            #expect(task.status == .cancelled && task.node == runner)
        }
    }

    @Test func theClientListAndReloadSpanTheCluster() async throws {
        let database = SharedMemoryDatabase()
        let (a, b) = (Gateway.node("a", database), Gateway.node("b", database))
        try await Gateway.running([a, b]) {
            a.clients.add(ClientInfo(id: "c-1", uid: "ua", transport: .webSocket, remote: nil, admin: false))
            b.clients.add(ClientInfo(id: "c-1", uid: "ub", transport: .sse, remote: nil, admin: false))
            try await waitUntil("both nodes' clients in the list", on: database.changes) { await a.allClients().count == 2 }
            #expect(await a.allClients().map { "\($0.uid)@\($0.node ?? "-")" }.sorted() == ["ua@a", "ub@b"])

            let one = try await a.reload(node: "b")
            #expect(one.map(\.node) == ["b"] && one[0].generation == 2)
            #expect(a.registry.current.generation == 1 && b.registry.current.generation == 2)
            let all = try await b.reload(node: nil)
            #expect(Set(all.map(\.node)) == ["a", "b"] && all.allSatisfy { $0.error == nil })
            await #expect(throws: GatewayError.nodeNotFound("z")) { try await a.reload(node: "z") }
        }
    }

    @Test func statsCountTheTasksWaitingInTheSharedStore() async throws {
        let database = SharedMemoryDatabase()
        let a = Gateway.node("a", database)  // two workers: two tasks run, the rest wait in the shared store
        try await Gateway.running([a]) {
            var ids: [String] = []
            for _ in 0..<5 { ids.append(try await a.submit(cmd: "sleep", args: ["ms": 10_000], uid: "u").task.id) }
            // The count is the node's cached read of the store (its housekeeping refreshes it): looked at again after
            // each write to the store (heartbeats, claims) and each refresh.
            try await waitUntil("three tasks queued in the shared store", on: database.changes) { await a.poolStats().queued == 3 }
            let stats = await a.poolStats()
            #expect(stats.running == 2)
            #expect(stats.handlers["sleep"]?.queued == 3 && stats.handlers["sleep"]?.running == 2)
            for id in ids { _ = try? await a.cancel(id: id, visibleTo: nil) }
            for id in ids { #expect(try await a.finished(id).status == .cancelled) }
        }
    }

    @Test func withoutTheDatabaseSubmitsAreRefusedAnd503() async throws {
        let database = SharedMemoryDatabase()
        let a = Gateway.node("a", database)
        try await Gateway.running([a]) {
            database.reachable = false
            let refused = await #expect(throws: GatewayError.self) { try await a.submit(cmd: "echo", args: [:], uid: "u") }
            #expect(refused?.code == 503)
            let unreadable = await #expect(throws: GatewayError.self) { try await a.list(.init()) }
            #expect(unreadable?.code == 503)
            database.reachable = true
            #expect(try await a.list(.init()).isEmpty)
            let id = try await a.submit(cmd: "echo", args: [:], uid: "u").task.id
            #expect(try await a.finished(id).status == .succeeded)
        }
    }
}

extension Gateway {
    fileprivate static func node(_ id: String, _ database: SharedMemoryDatabase, workers: Int = 2) -> Gateway {
        var logger = Logger(label: "test-\(id)")
        logger.logLevel = .warning
        return Gateway(
            configuration: .init(pool: .init(workers: workers, queueLimit: 100)),
            backend: .cluster(SharedMemoryStore(node: id, database: database, lease: .seconds(1))), logger: logger)
    }

    /// Runs the nodes' background work around `body`.
    fileprivate static func running(_ nodes: [Gateway], _ body: () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for node in nodes { group.addTask { try await node.runCluster() } }
            defer { group.cancelAll() }
            try await body()
        }
    }
}

/// The tables of a shared database, in memory, with the same rules as the PostgreSQL store: conditional writes,
/// claiming, leases, seq numbered at append, notifications to every node.
final class SharedMemoryDatabase: Sendable {
    struct Row {
        var record: TaskRecord
        var position: Int
        var owner: String?
        var leaseUntil: ContinuousClock.Instant?
        var notBefore: Date?
        var cancelRequested = false
        var claimedAt: Date?
    }
    struct Tables {
        var tasks: [String: Row] = [:]
        var nextPosition = 0
        var events: [String: [LoggedEvent]] = [:]
        var nodes: [String: NodeInfo] = [:]
        var reloadAnswers: [String: [NodeReload]] = [:]
        var listeners: [AsyncStream<ClusterNotification>.Continuation] = []
        var reachable = true
        var ticks: [String: Date] = [:]
    }
    let tables = Mutex(Tables())
    /// Bumped after every write (and every read of the queue counts, which a node caches): what a test waits on.
    let changes = ChangeSignal()

    var reachable: Bool {
        get { tables.withLock { $0.reachable } }
        set { tables.withLock { $0.reachable = newValue } }
    }

    struct Unreachable: Error {}

    /// One transaction; fails while the database is "down".
    func access<Value>(_ body: (inout Tables) throws -> Value) throws -> Value {
        try tables.withLock { tables in
            guard tables.reachable else { throw Unreachable() }
            return try body(&tables)
        }
    }

    /// One transaction that changes the tables.
    func change<Value>(_ body: (inout Tables) throws -> Value) throws -> Value {
        defer { changes.bump() }
        return try access(body)
    }

    func broadcast(_ notification: ClusterNotification) {
        for listener in tables.withLock({ $0.listeners }) { listener.yield(notification) }
    }
}

final class SharedMemoryStore: SharedTaskStore {
    let nodeID: String
    let leaseTimeout: Duration
    let notifications: AsyncStream<ClusterNotification>
    private let database: SharedMemoryDatabase
    private let startedAt = Date()

    init(node: String, database: SharedMemoryDatabase, lease: Duration) {
        nodeID = node
        leaseTimeout = lease
        self.database = database
        let (stream, continuation) = AsyncStream.makeStream(of: ClusterNotification.self)
        notifications = stream
        database.tables.withLock { $0.listeners.append(continuation) }
    }

    var isDurable: Bool { true }
    var isReachable: Bool { database.reachable }

    /// Nothing to run in memory: idles until the node stops. (Not a synchronisation: the sleep ends at once when
    /// the node's task group is cancelled.)
    func run() async throws {
        while !Task.isCancelled { try? await Task.sleep(for: .seconds(1)) }
    }

    private func holds(_ condition: WriteCondition, _ row: SharedMemoryDatabase.Row?) -> Bool {
        guard let row else { return false }
        switch condition {
        case .runningHere: return row.record.status == .running && row.owner == nodeID
        case .queued: return row.record.status == .queued || row.record.status == .scheduled
        case .leaseExpired: return row.record.status == .running && (row.leaseUntil ?? .now) < .now
        }
    }

    private func write(_ task: TaskRecord, notBefore: Date?, in tables: inout SharedMemoryDatabase.Tables) {
        let running = task.status == .running
        tables.tasks[task.id]?.record = task
        tables.tasks[task.id]?.owner = running ? nodeID : nil
        if !running { tables.tasks[task.id]?.leaseUntil = nil }
        tables.tasks[task.id]?.notBefore = notBefore
    }

    func insert(_ task: TaskRecord) async throws -> InsertOutcome {
        let outcome = try database.change { tables -> InsertOutcome in
            if let existing = tables.tasks[task.id] { return .existing(existing.record) }
            tables.nextPosition += 1
            tables.tasks[task.id] = .init(record: task, position: tables.nextPosition)
            tables.tasks[task.id]?.notBefore = task.runAt
            return .inserted
        }
        if outcome == .inserted { database.broadcast(.taskQueued) }
        return outcome
    }

    func update(_ task: TaskRecord) async throws {
        try await update(task, condition: .runningHere, notBefore: nil)
    }

    func task(id: String) async throws -> TaskRecord? {
        try database.access { $0.tasks[id]?.record }
    }

    func list(_ query: TaskQuery) async throws -> [TaskRecord] {
        try database.access { tables in
            tables.tasks.values.sorted { $0.position > $1.position }.map(\.record)
                .filter { (query.uid == nil || $0.uid == query.uid) && (query.status == nil || $0.status == query.status) }
                .prefix(query.limit).map { $0 }
        }
    }

    func unfinishedTasks() async throws -> [TaskRecord] {
        try await list(.init(limit: .max)).filter { !$0.status.isFinal }.reversed()
    }

    func loadEvents(uid: String, limit: Int) async throws -> StoredEvents {
        try database.access { tables in
            let events = tables.events[uid] ?? []
            return StoredEvents(lastSeq: events.last?.seq ?? 0, events: Array(events.suffix(limit)))
        }
    }

    func pruneEvents(olderThan date: Date) async throws -> Int { 0 }

    func scheduleTicks() async throws -> [String: Date] { try database.access { $0.ticks } }

    func pruneFinishedTasks(createdBefore: Date?, keepingNewest: Int?, batchSize: Int) async throws -> Int { 0 }

    func recordScheduleTick(name: String, at tick: Date) async throws {
        try database.change { tables in tables.ticks[name] = max(tables.ticks[name] ?? tick, tick) }
    }

    func nextDueDate() async throws -> Date? {
        try database.access { tables in
            let now = Date()
            return tables.tasks.values.filter { !$0.record.status.isFinal && $0.record.status != .running }
                .compactMap(\.notBefore).filter { $0 > now }.min()
        }
    }

    func appendNumbered(
        uid: String, task: TaskRecord, condition: WriteCondition, retainCount: Int,
        makeMessages: [@Sendable (UInt64) -> ServerMessage]
    ) async throws -> [LoggedEvent] {
        let events = try database.change { tables -> [LoggedEvent] in
            guard holds(condition, tables.tasks[task.id]) else { throw WriteConditionFailed(taskID: task.id) }
            var events: [LoggedEvent] = []
            for makeMessage in makeMessages {
                let seq = (tables.events[uid]?.last?.seq ?? 0) + 1
                let message = makeMessage(seq)
                let event = LoggedEvent(seq: seq, json: WireJSON.encode(message), type: message.type)
                tables.events[uid, default: []].append(event)
                events.append(event)
            }
            write(task, notBefore: nil, in: &tables)
            return events
        }
        // One notification for the series, as the database sends: the others are read back from the last.
        if let last = events.last { database.broadcast(.event(uid: uid, seq: last.seq)) }
        return events
    }

    func update(_ task: TaskRecord, condition: WriteCondition, notBefore: Date?) async throws {
        try database.change { tables in
            guard holds(condition, tables.tasks[task.id]) else { throw WriteConditionFailed(taskID: task.id) }
            write(task, notBefore: notBefore, in: &tables)
        }
        if task.status == .queued { database.broadcast(.taskQueued) }
    }

    /// The same rule as `PostgresTaskStore.claim`: priority, then (fair share) the fewest running in the lane
    /// across every node, then the lane served longest ago, then the oldest; a paced handler once per claim.
    func claim(_ rules: ClaimRules, limit: Int) async throws -> [TaskRecord] {
        try database.change { tables in
            var claimed: [TaskRecord] = []
            var held = Set(rules.excludedCommands)
            while claimed.count < limit, let record = claimOne(held: held, fairShare: rules.fairShare, in: &tables) {
                if rules.pacedCommands.contains(record.cmd) { held.insert(record.cmd) }
                claimed.append(record)
            }
            return claimed
        }
    }

    private func claimOne(held: Set<String>, fairShare: Bool, in tables: inout SharedMemoryDatabase.Tables) -> TaskRecord? {
        let now = Date()
        let running = tables.tasks.values.filter { $0.record.status == .running }
        func load(_ row: SharedMemoryDatabase.Row) -> Int {
            fairShare ? running.count { $0.record.uid == row.record.uid && $0.record.cmd == row.record.cmd } : 0
        }
        let due = tables.tasks.values.filter {
            ($0.record.status == .queued || $0.record.status == .scheduled) && ($0.notBefore ?? now) <= now
                && !held.contains($0.record.cmd)
        }
        func served(_ row: SharedMemoryDatabase.Row) -> Date {
            guard fairShare else { return .distantPast }
            return tables.tasks.values.filter { $0.record.uid == row.record.uid && $0.record.cmd == row.record.cmd }
                .compactMap(\.claimedAt).max() ?? .distantPast
        }
        guard
            let row = due.min(by: {
                ($0.record.priority, load($0), served($0), $0.position) < ($1.record.priority, load($1), served($1), $1.position)
            })
        else { return nil }
        var record = row.record
        record.status = .running
        record.attempts += 1
        record.node = nodeID
        tables.tasks[record.id]?.record = record
        tables.tasks[record.id]?.owner = nodeID
        tables.tasks[record.id]?.leaseUntil = .now + leaseTimeout
        tables.tasks[record.id]?.claimedAt = Date()
        return record
    }

    func expiredTasks(limit: Int) async throws -> [TaskRecord] {
        try database.access { tables in
            tables.tasks.values.filter { $0.record.status == .running && ($0.leaseUntil ?? .now) < .now }.prefix(limit).map(\.record)
        }
    }

    func heartbeat(runningTaskIDs: [String], clients: [ClientInfo]) async throws -> [String] {
        try database.change { tables in
            tables.nodes[nodeID] = NodeInfo(
                id: nodeID, startedAt: startedAt, heartbeatAt: Date(), running: runningTaskIDs.count, clients: clients)
            var cancelled: [String] = []
            for id in runningTaskIDs where tables.tasks[id]?.owner == nodeID {
                tables.tasks[id]?.leaseUntil = .now + leaseTimeout
                if tables.tasks[id]?.cancelRequested == true { cancelled.append(id) }
            }
            return cancelled
        }
    }

    func leave() async {
        _ = try? database.change { $0.nodes[nodeID] = nil }
    }

    func requestCancel(taskID: String) async throws {
        try database.change { $0.tasks[taskID]?.cancelRequested = true }
        database.broadcast(.cancel(taskID: taskID))
    }

    func queuedByCommand() async throws -> [String: Int] {
        // A read, but what a node caches for its stats: a test waiting on those looks again after each one.
        defer { database.changes.bump() }
        return try database.access { tables in
            Dictionary(grouping: tables.tasks.values.filter { $0.record.status == .queued }, by: \.record.cmd).mapValues(\.count)
        }
    }

    func activeCounts(uid: String?) async throws -> (queued: Int, uid: Int) {
        try database.access { tables in
            let active = tables.tasks.values.filter { !$0.record.status.isFinal }
            return (active.count { $0.record.status == .queued }, active.count { $0.record.uid == uid })
        }
    }

    func events(uid: String, after seq: UInt64, limit: Int) async throws -> [LoggedEvent] {
        try database.access { Array(($0.events[uid] ?? []).filter { $0.seq > seq }.prefix(limit)) }
    }

    func lastSeqs(uids: [String]) async throws -> [String: UInt64] {
        try database.access { tables in
            Dictionary(uniqueKeysWithValues: uids.compactMap { uid in tables.events[uid]?.last.map { (uid, $0.seq) } })
        }
    }

    func liveNodes() async throws -> [NodeInfo] {
        let cutoff = Date().addingTimeInterval(-Double(leaseTimeout.wholeMilliseconds) / 1000)
        return try database.access { $0.nodes.values.filter { $0.heartbeatAt > cutoff }.sorted { $0.id < $1.id } }
    }

    func requestReload(requestID: String, node: String?) async throws {
        try database.access { _ in }
        database.broadcast(.reload(requestID: requestID, node: node))
    }

    func answerReload(requestID: String, answer: NodeReload) async throws {
        try database.change { $0.reloadAnswers[requestID, default: []].append(answer) }
    }

    func reloadAnswers(requestID: String) async throws -> [NodeReload] {
        try database.access { $0.reloadAnswers[requestID] ?? [] }
    }
}
