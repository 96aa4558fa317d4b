import Foundation
import Logging
import PostgresNIO
import Synchronization
import TaskGateCore
import Testing

@testable import TaskGatePostgres

/// `PostgresTaskStore` against a real PostgreSQL: `TASKGATE_TEST_DATABASE_URL` names a database on a server the
/// tests may use (scripts/test.sh starts a throwaway one with Tests/e2e/pg.py). Every test makes a database of its
/// own on that server, so tests run in parallel without sharing tasks: a claim takes any due task in its database.
@Suite(
    "PostgreSQL store against a real database", .enabled(if: LiveDatabase.url != nil, "TASKGATE_TEST_DATABASE_URL is not set"),
    .timeLimit(.minutes(2)))
struct PostgresTaskStoreLiveTests {
    @Test func aDuplicateIDReturnsTheTaskAlreadyStored() async throws {
        try await LiveDatabase.withNodes(["a", "b"]) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            let mark = b.heard.count
            #expect(try await a.store.insert(TaskRecord(id: "t1", cmd: "echo", uid: "u", args: ["n": 1])) == .inserted)
            // Every node hears of a new task, so that free workers try to claim it.
            try await b.heard.waitFor(.taskQueued, since: mark)

            let outcome = try await b.store.insert(TaskRecord(id: "t1", cmd: "sleep", uid: "v", args: ["n": 2]))
            guard case .existing(let existing) = outcome else {
                Issue.record("a second insert of t1 returned \(outcome)")
                return
            }
            #expect(existing.id == "t1" && existing.cmd == "echo" && existing.uid == "u" && existing.args == ["n": 1])
            #expect(existing.status == .queued)
            // The first record stays as it was; the second wrote nothing.
            #expect(try await b.store.task(id: "t1")?.cmd == "echo")
            #expect(try await a.store.list(.init()).map(\.id) == ["t1"])
            #expect(try await a.store.task(id: "missing") == nil)
        }
    }

    @Test func appendNumberedIsOneSequencePerUIDWhicheverNodeAppends() async throws {
        try await LiveDatabase.withNodes(["a", "b"]) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            let onA = try await a.insertAndClaim(TaskRecord(id: "ta", cmd: "echo", uid: "u", args: [:]))
            let onB = try await b.insertAndClaim(TaskRecord(id: "tb", cmd: "echo", uid: "u", args: [:]))

            let first = try await a.append(onA.with(progress: 0.5), uid: "u")
            let second = try await b.append(onB.with(progress: 0.5), uid: "u")
            let done = onA.with(progress: 1).with(status: .succeeded, result: ["ok": true])
            let third = try await a.append(done, uid: "u", message: { .done(done, seq: $0) })
            #expect([first, second, third].map(\.seq) == [1, 2, 3])
            // The JSON stored and sent carries the seq the database gave, not the placeholder it was encoded with.
            #expect([first, second, third].map(\.json).map(seqInJSON) == [1, 2, 3])
            #expect([first, second, third].map(\.type) == ["progress", "progress", "done"])

            for node in [a, b] {
                let events = try await node.store.events(uid: "u", after: 0, limit: 10)
                #expect(events.map(\.seq) == [1, 2, 3], "read on \(node.store.nodeID)")
                #expect(events.map(\.json) == [first, second, third].map(\.json))
                #expect(events.map(\.type) == ["progress", "progress", "done"])
                // Both nodes hear of every event, whichever node stored it.
                for seq in 1...3 { try await node.heard.waitFor(.event(uid: "u", seq: UInt64(seq))) }
            }
            #expect(try await b.store.events(uid: "u", after: 1, limit: 1).map(\.seq) == [2])
            #expect(try await b.store.events(uid: "u", after: 3, limit: 10).isEmpty)
            #expect(try await a.store.events(uid: "nobody", after: 0, limit: 10).isEmpty)
            let loaded = try await b.store.loadEvents(uid: "u", limit: 2)
            #expect(loaded.lastSeq == 3 && loaded.events.map(\.seq) == [2, 3])
            #expect(try await a.store.lastSeqs(uids: ["u", "nobody"]) == ["u": 3])
            #expect(try await a.store.loadEvents(uid: "nobody", limit: 10) == StoredEvents(lastSeq: 0, events: []))

            // The task's new state was written with its event.
            let finished = try #require(try await b.store.task(id: "ta"))
            #expect(finished.status == .succeeded && finished.result == ["ok": true] && finished.progress == 1)
            #expect(try await b.store.unfinishedTasks().map(\.id) == ["tb"])
        }
    }

    /// A task answered inline: its start and its end, numbered, stored and told in one statement.
    @Test func aSeriesIsNumberedTogetherOrNotAtAll() async throws {
        try await LiveDatabase.withNodes(["a", "b"]) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            let claimed = try await a.insertAndClaim(TaskRecord(id: "t", cmd: "echo", uid: "u", args: [:]))
            _ = try await a.append(claimed.with(progress: 0.5), uid: "u")  // seq 1
            let done = claimed.with(progress: 1).with(status: .succeeded, result: ["ok": true])
            let mark = b.heard.count
            let series = try await a.store.appendNumbered(
                uid: "u", task: done, condition: .runningHere, retainCount: 1000,
                makeMessages: [{ .progress(claimed, seq: $0) }, { .done(done, seq: $0) }])
            #expect(series.map(\.seq) == [2, 3])
            #expect(series.map(\.json).map(seqInJSON) == [2, 3])
            #expect(series.map(\.type) == ["progress", "done"])
            #expect(try await b.store.events(uid: "u", after: 1, limit: 10).map(\.json) == series.map(\.json))
            #expect(try #require(try await b.store.task(id: "t")).status == .succeeded)
            // One notification, with the last seq: a node reads the one before it back with it.
            try await b.heard.waitFor(.event(uid: "u", seq: 3), since: mark)
            #expect(!b.heard.contains(.event(uid: "u", seq: 2), since: mark))

            // The task is no longer running here: nothing is numbered, stored or written.
            await #expect(throws: WriteConditionFailed.self) {
                try await a.store.appendNumbered(
                    uid: "u", task: done, condition: .runningHere, retainCount: 1000,
                    makeMessages: [{ .progress(claimed, seq: $0) }, { .done(done, seq: $0) }])
            }
            #expect(try await a.store.lastSeqs(uids: ["u"]) == ["u": 3])
            #expect(try await b.store.events(uid: "u", after: 3, limit: 10).isEmpty)
        }
    }

    @Test func concurrentAppendsFromTwoNodesLeaveNoGapAndNoDuplicate() async throws {
        try await LiveDatabase.withNodes(["a", "b"]) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            let onA = try await a.insertAndClaim(TaskRecord(id: "ta", cmd: "echo", uid: "u", args: [:]))
            let onB = try await b.insertAndClaim(TaskRecord(id: "tb", cmd: "echo", uid: "u", args: [:]))
            let perNode = 15
            let seqs = try await withThrowingTaskGroup(of: UInt64.self) { group in
                for (node, task) in [(a, onA), (b, onB)] {
                    for step in 0..<perNode {
                        group.addTask { try await node.append(task.with(progress: Double(step) / Double(perNode)), uid: "u").seq }
                    }
                }
                return try await group.reduce(into: [UInt64]()) { $0.append($1) }
            }
            #expect(seqs.sorted() == Array(1...UInt64(2 * perNode)))
            let stored = try await a.store.events(uid: "u", after: 0, limit: 100)
            #expect(stored.map(\.seq) == Array(1...UInt64(2 * perNode)))
            #expect(stored.compactMap { seqInJSON($0.json) } == Array(1...2 * perNode))
        }
    }

    @Test func retentionTrimsEventsButASeqIsNeverHandedOutTwice() async throws {
        try await LiveDatabase.withNodes(["a", "b"]) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            let onA = try await a.insertAndClaim(TaskRecord(id: "ta", cmd: "echo", uid: "u", args: [:]))
            let onB = try await b.insertAndClaim(TaskRecord(id: "tb", cmd: "echo", uid: "u", args: [:]))
            // The store trims to the retained count every 64th event.
            for index in 1...64 {
                let (node, task) = index.isMultiple(of: 2) ? (b, onB) : (a, onA)
                _ = try await node.append(task.with(progress: Double(index) / 100), uid: "u", retainCount: 10)
            }
            #expect(try await b.store.events(uid: "u", after: 0, limit: 100).map(\.seq) == Array(55...64))
            let loaded = try await a.store.loadEvents(uid: "u", limit: 100)
            #expect(loaded.lastSeq == 64 && loaded.events.map(\.seq) == Array(55...64))

            // Pruning every event keeps the user's last seq: the next event is 65, not 1.
            _ = try await a.store.pruneEvents(olderThan: Date().addingTimeInterval(60))
            #expect(try await b.store.events(uid: "u", after: 0, limit: 100).isEmpty)
            #expect(try await b.store.loadEvents(uid: "u", limit: 100) == StoredEvents(lastSeq: 64, events: []))
            #expect(try await b.append(onB.with(progress: 0.9), uid: "u").seq == 65)
            #expect(try await a.store.loadEvents(uid: "u", limit: 100).events.map(\.seq) == [65])
        }
    }

    @Test func aQueuedTaskGoesToExactlyOneOfTwoNodesClaimingAtOnce() async throws {
        try await LiveDatabase.withNodes(["a", "b"]) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            for round in 0..<10 {
                let id = "t\(round)"
                _ = try await a.store.insert(TaskRecord(id: id, cmd: "echo", uid: "u", args: [:]))
                async let fromA = a.store.claimNext(ClaimRules())
                async let fromB = b.store.claimNext(ClaimRules())
                let claims = [("a", try await fromA), ("b", try await fromB)]
                let winners = claims.compactMap { node, claimed in claimed.map { (node, $0) } }
                #expect(winners.count == 1, "round \(round): claimed by \(winners.map(\.0))")
                guard let winner = winners.first else { continue }
                let (node, claimed) = winner
                #expect(claimed.id == id && claimed.status == .running && claimed.attempts == 1 && claimed.node == node)
                let stored = try #require(try await b.store.task(id: id))
                #expect(stored.status == .running && stored.node == node && stored.attempts == 1)
            }

            // Many tasks, both nodes claiming until nothing is left: each task runs on one node, none is left over.
            let ids = (0..<40).map { "bulk\($0)" }
            for id in ids { _ = try await b.store.insert(TaskRecord(id: id, cmd: "echo", uid: "u", args: [:])) }
            let claimedBy = try await withThrowingTaskGroup(of: [String].self) { group in
                for node in [a, b] {
                    for _ in 0..<3 {
                        group.addTask {
                            var claimed: [String] = []
                            while let task = try await node.store.claimNext(ClaimRules()) { claimed.append(task.id) }
                            return claimed
                        }
                    }
                }
                return try await group.reduce(into: [String]()) { $0 += $1 }
            }
            #expect(claimedBy.sorted() == ids.sorted())
            #expect(try await a.store.queuedByCommand() == [:])
            let counts = try await a.store.activeCounts(uid: "u")
            #expect(counts.queued == 0 && counts.uid == 50)
        }
    }

    @Test func claimsGoByPriorityThenOldest() async throws {
        try await LiveDatabase.withNodes(["a"]) { nodes in
            let a = nodes[0]
            for (id, priority) in [("p5-old", 5), ("p1-old", 1), ("p3", 3), ("p1-new", 1), ("p0", 0)] {
                _ = try await a.store.insert(TaskRecord(id: id, cmd: "echo", uid: "u", args: [:], priority: priority))
            }
            #expect(try await a.store.queuedByCommand() == ["echo": 5])
            var order: [String] = []
            while let task = try await a.store.claimNext(ClaimRules()) { order.append(task.id) }
            #expect(order == ["p0", "p1-old", "p1-new", "p3", "p5-old"])
        }
    }

    @Test func aClaimOfSeveralTakesTurnsAmongLanesAndStartsAPacedHandlerOnce() async throws {
        try await LiveDatabase.withNodes(["a", "b"]) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            func insert(_ id: String, uid: String, cmd: String = "echo", priority: Int = 3) async throws {
                try await a.insert(id, uid: uid, cmd: cmd, priority: priority)
            }
            // "a" has a task running on node b: b's and the paced lane's first tasks go before a's next one.
            _ = try await b.insertAndClaim(TaskRecord(id: "a0", cmd: "echo", uid: "a", args: [:]))
            for index in 1...3 { try await insert("a\(index)", uid: "a") }
            try await insert("b1", uid: "b")
            for index in 1...2 { try await insert("p\(index)", uid: "c", cmd: "paced") }
            try await insert("urgent", uid: "a", priority: 0)
            try await insert("later", uid: "b", priority: 5)
            let rules = ClaimRules(pacedCommands: ["paced"])
            let first = try await a.store.claim(rules, limit: 5)
            #expect(Set(first.map(\.id)) == ["urgent", "b1", "p1", "a1", "a2"])
            #expect(first.allSatisfy { $0.status == .running && $0.attempts == 1 && $0.node == "a" })
            for claimed in first {
                let stored = try #require(try await b.store.task(id: claimed.id))
                #expect(stored.status == .running && stored.node == "a")
            }
            // The paced handler's second task, in a claim of its own: 1 running in its lane against a's 4.
            #expect(try await a.store.claim(rules, limit: 1).map(\.id) == ["p2"])
            #expect(try await a.store.claim(rules, limit: 5).map(\.id) == ["a3", "later"])
            #expect(try await a.store.claim(rules, limit: 5).isEmpty)

            // Batches from both nodes at once: each task goes to exactly one claim.
            let ids = (0..<60).map { "bulk\($0)" }
            for (index, id) in ids.enumerated() { try await insert(id, uid: "u\(index % 5)") }
            let claimedBy = try await withThrowingTaskGroup(of: [String].self) { group in
                for node in [a, b] {
                    for _ in 0..<3 {
                        group.addTask {
                            var claimed: [String] = []
                            while true {
                                let batch = try await node.store.claim(ClaimRules(), limit: 4)
                                if batch.isEmpty { return claimed }
                                claimed += batch.map(\.id)
                            }
                        }
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(claimedBy.sorted() == ids.sorted())
        }
    }

    @Test func fairShareServesTheLaneWithFewestTasksRunningInTheWholeCluster() async throws {
        try await LiveDatabase.withNodes(["a", "b"]) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            // "busy" has a task running on b. "idle" had one claimed after it, now finished: idle runs nothing but was
            // served more recently, so only the count of running tasks (b's included) puts idle's next task first.
            _ = try await b.insertAndClaim(TaskRecord(id: "b1", cmd: "echo", uid: "busy", args: [:]))
            let i1 = try await a.insertAndClaim(TaskRecord(id: "i1", cmd: "echo", uid: "idle", args: [:]))
            try await a.store.update(i1.with(status: .succeeded), condition: .runningHere, notBefore: nil)
            try await a.insert("b2", uid: "busy")
            try await a.insert("i2", uid: "idle")
            #expect(try await a.store.claimNext(ClaimRules(fairShare: true))?.id == "i2")
            #expect(try await a.store.claimNext(ClaimRules(fairShare: true))?.id == "b2")

            // Running: busy 2, idle 1. Without fair share the oldest goes first.
            try await a.insert("b3", uid: "busy")
            try await a.insert("i3", uid: "idle")
            #expect(try await b.store.claimNext(ClaimRules(fairShare: false))?.id == "b3")
            #expect(try await b.store.claimNext(ClaimRules(fairShare: true))?.id == "i3")

            // Running: busy 3, idle 2. Priority comes before fair share.
            try await a.insert("i4", uid: "idle", priority: 4)
            try await a.insert("b4", uid: "busy", priority: 2)
            #expect(try await a.store.claimNext(ClaimRules(fairShare: true))?.id == "b4")
            #expect(try await a.store.claimNext(ClaimRules(fairShare: true))?.id == "i4")

            // Running: busy 4, idle 3. A lane is a uid and a handler: busy's first task of another handler goes first.
            try await a.insert("i5", uid: "idle")
            try await a.insert("b-resize", uid: "busy", cmd: "resize")
            #expect(try await b.store.claimNext(ClaimRules(fairShare: true))?.id == "b-resize")
            #expect(try await b.store.claimNext(ClaimRules(fairShare: true))?.id == "i5")
        }
    }

    /// Unless the served lane's tasks were all pruned since: it is forgotten with them, and counts as never served.
    @Test(arguments: [false, true])
    func amongLanesWithNothingRunningTheOneClaimedLongestAgoGoesFirst(prunedSince: Bool) async throws {
        try await LiveDatabase.withNodes(["a"]) { nodes in
            let a = nodes[0]
            // "served" had a task claimed (and finished); "new" never did.
            let first = try await a.insertAndClaim(TaskRecord(id: "s1", cmd: "echo", uid: "served", args: [:]))
            try await a.store.update(first.with(status: .succeeded), condition: .runningHere, notBefore: nil)
            if prunedSince {
                #expect(try await a.store.pruneFinishedTasks(createdBefore: nil, keepingNewest: 0, batchSize: 10) == 1)
            }
            _ = try await a.store.insert(TaskRecord(id: "s2", cmd: "echo", uid: "served", args: [:]))
            _ = try await a.store.insert(TaskRecord(id: "n1", cmd: "echo", uid: "new", args: [:]))
            // Forgotten, neither lane was served: the older task goes first.
            let order = prunedSince ? ["s2", "n1"] : ["n1", "s2"]
            #expect(try await a.store.claimNext(ClaimRules(fairShare: true))?.id == order[0])
            #expect(try await a.store.claimNext(ClaimRules(fairShare: true))?.id == order[1])
        }
    }

    @Test func theTasksTableIsVacuumedOnDemand() async throws {
        try await LiveDatabase.withNodes(["a"]) { nodes in
            let a = nodes[0]
            for index in 0..<20 {
                let claimed = try await a.insertAndClaim(TaskRecord(id: "v\(index)", cmd: "echo", uid: "u", args: [:]))
                try await a.store.update(claimed.with(status: .succeeded), condition: .runningHere, notBefore: nil)
            }
            // Each task left its queued and running versions behind. VACUUM cannot run in a transaction, so this
            // also shows the call goes as a statement of its own. The node's own loop may vacuum meanwhile: at least.
            func statistic(_ column: String) async throws -> Int64 {
                for try await value in try await a.store.client.query(
                    PostgresQuery(unsafeSQL: "SELECT \(column) FROM pg_stat_user_tables WHERE relname = 'tasks'"),
                    logger: LiveDatabase.logger
                ).decode(Int64.self) { return value }
                return -1
            }
            let before = try await statistic("vacuum_count")
            try await a.store.vacuumTasksOnce()
            #expect(try await statistic("vacuum_count") >= before + 1)
        }
    }

    @Test func excludedHandlersAreLeftForOtherNodes() async throws {
        try await LiveDatabase.withNodes(["a", "b"]) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            _ = try await a.store.insert(TaskRecord(id: "limited", cmd: "resize", uid: "u", args: [:]))
            _ = try await a.store.insert(TaskRecord(id: "free", cmd: "echo", uid: "u", args: [:]))
            let withoutResize = ClaimRules(excludedCommands: ["resize"])
            #expect(try await a.store.claimNext(withoutResize)?.id == "free")
            #expect(try await a.store.claimNext(withoutResize) == nil)
            #expect(try await b.store.claimNext(ClaimRules())?.id == "limited")
        }
    }

    @Test func writeConditionsGuardEveryWrite() async throws {
        try await LiveDatabase.withNodes(["a", "b"]) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            let claimed = try await a.insertAndClaim(TaskRecord(id: "t", cmd: "echo", uid: "u", args: [:]))

            // b does not hold the task: its write is refused and writes nothing, not even a seq.
            let refused = await #expect(throws: WriteConditionFailed.self) {
                try await b.append(claimed.with(progress: 0.3), uid: "u")
            }
            #expect(refused?.taskID == "t")
            #expect(try await a.store.lastSeqs(uids: ["u"]) == [:])
            #expect(try await a.store.events(uid: "u", after: 0, limit: 10).isEmpty)
            #expect(try await a.store.task(id: "t")?.progress == 0)
            let stolen = claimed.with(status: .failed)
            await #expect(throws: WriteConditionFailed.self) { try await b.store.update(stolen, condition: .runningHere, notBefore: nil) }
            // Running, so neither a cancel before it starts nor a reclaim (its lease is fresh) applies.
            await #expect(throws: WriteConditionFailed.self) { try await b.store.update(stolen, condition: .queued, notBefore: nil) }
            await #expect(throws: WriteConditionFailed.self) {
                try await b.append(stolen, uid: "u", condition: .leaseExpired, message: { .done(stolen, seq: $0) })
            }
            #expect(try await b.store.task(id: "t")?.status == .running)

            // The holder's writes go through, and the refused ones used no seq.
            #expect(try await a.append(claimed.with(progress: 0.3), uid: "u").seq == 1)
            let done = claimed.with(progress: 1).with(status: .succeeded)
            #expect(try await a.append(done, uid: "u", message: { .done(done, seq: $0) }).seq == 2)
            // Finished: not running here any more, so not even its holder may write it again.
            await #expect(throws: WriteConditionFailed.self) { try await a.append(done, uid: "u", message: { .done(done, seq: $0) }) }

            // A queued task may be ended by any node (a cancel before it starts), once.
            _ = try await a.store.insert(TaskRecord(id: "q", cmd: "echo", uid: "u", args: [:]))
            let cancelled = try #require(try await a.store.task(id: "q")).with(status: .cancelled)
            #expect(try await b.append(cancelled, uid: "u", condition: .queued, message: { .done(cancelled, seq: $0) }).seq == 3)
            await #expect(throws: WriteConditionFailed.self) {
                try await a.append(cancelled, uid: "u", condition: .queued, message: { .done(cancelled, seq: $0) })
            }
            #expect(try await a.store.claimNext(ClaimRules()) == nil)
            #expect(try await a.store.lastSeqs(uids: ["u"]) == ["u": 3])
        }
    }

    @Test func aLeaseRunsOutWithoutHeartbeatsAndAnotherNodeReclaimsTheTask() async throws {
        try await LiveDatabase.withNodes(["a", "b"], leaseTimeout: .seconds(1)) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            let claimed = try await a.insertAndClaim(TaskRecord(id: "t", cmd: "echo", uid: "u", args: [:]))

            // Heartbeats renew the lease: for more than two lease periods the task does not expire.
            let heartbeatsUntil = ContinuousClock.now + .milliseconds(2500)
            while ContinuousClock.now < heartbeatsUntil {
                #expect(try await a.store.heartbeat(runningTaskIDs: ["t"], clients: []) == [])
                #expect(try await b.store.expiredTasks(limit: 10).isEmpty)
                try await Task.sleep(for: .milliseconds(250))  // the heartbeat period, well within the lease
            }
            // Then a stops heartbeating, as a node that died: the lease runs out a lease period later, not sooner.
            _ = try await a.store.heartbeat(runningTaskIDs: ["t"], clients: [])
            let lastHeartbeat = ContinuousClock.now
            try await eventually("t to expire") { try await b.store.expiredTasks(limit: 10).map(\.id) == ["t"] }
            #expect(ContinuousClock.now - lastHeartbeat >= .milliseconds(800))
            #expect(try await b.store.expiredTasks(limit: 10).first?.node == "a")

            // b puts it back in the queue and runs it: a second attempt, on b.
            let requeued = claimed.with(status: .queued)
            try await b.store.update(requeued, condition: .leaseExpired, notBefore: nil)
            await #expect(throws: WriteConditionFailed.self) {
                try await b.store.update(requeued, condition: .leaseExpired, notBefore: nil)  // only one node reclaims it
            }
            let again = try #require(try await b.store.claimNext(ClaimRules()))
            #expect(again.id == "t" && again.node == "b" && again.attempts == 2)
            #expect(try await a.store.expiredTasks(limit: 10).isEmpty)
            // a's late answer is refused: it no longer owns the task.
            let late = claimed.with(status: .succeeded)
            await #expect(throws: WriteConditionFailed.self) { try await a.append(late, uid: "u", message: { .done(late, seq: $0) }) }
            // Nor does a's heartbeat renew b's lease: without b's own, it runs out again.
            let beforeLapse = ContinuousClock.now
            while ContinuousClock.now - beforeLapse < .milliseconds(1500) {
                _ = try await a.store.heartbeat(runningTaskIDs: ["t"], clients: [])
                try await Task.sleep(for: .milliseconds(250))
            }
            #expect(try await a.store.expiredTasks(limit: 10).map(\.id) == ["t"])
        }
    }

    @Test func aCancelRequestReachesTheNodeRunningTheTask() async throws {
        try await LiveDatabase.withNodes(["a", "b"]) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            _ = try await a.insertAndClaim(TaskRecord(id: "t", cmd: "sleep", uid: "u", args: [:]))
            #expect(try await a.store.heartbeat(runningTaskIDs: ["t"], clients: []) == [])
            let mark = a.heard.count
            try await b.store.requestCancel(taskID: "t")
            // At once through a notification, and on every heartbeat of the node running it until it stops.
            try await a.heard.waitFor(.cancel(taskID: "t"), since: mark)
            #expect(try await a.store.heartbeat(runningTaskIDs: ["t"], clients: []) == ["t"])
            #expect(try await a.store.heartbeat(runningTaskIDs: ["t"], clients: []) == ["t"])
            #expect(try await b.store.heartbeat(runningTaskIDs: ["t"], clients: []) == [])
        }
    }

    @Test func pruningDeletesFinishedTasksByAgeThenByCountNeverUnfinishedOnes() async throws {
        try await LiveDatabase.withNodes(["a"]) { nodes in
            let a = nodes[0]
            // Ten finished tasks a minute apart (f0 oldest), then a queued and a scheduled one, older than all of them.
            let start = Date(timeIntervalSince1970: 1_796_000_000)
            for (index, status) in [TaskStatus.queued, .scheduled].enumerated() {
                _ = try await a.store.insert(
                    TaskRecord(id: "w\(index)", cmd: "echo", uid: "u", args: [:], status: status, createdAt: start.addingTimeInterval(-60)))
            }
            let finished: [TaskStatus] = [.succeeded, .failed, .cancelled, .timedOut]
            for index in 0..<10 {
                _ = try await a.store.insert(
                    TaskRecord(
                        id: "f\(index)", cmd: "echo", uid: "u", args: [:], status: finished[index % 4],
                        createdAt: start.addingTimeInterval(Double(index) * 60)))
            }
            func ids() async throws -> Set<String> { Set(try await a.store.list(.init(limit: 100)).map(\.id)) }
            // Older than f3: f0, f1, f2 go, two batches; the waiting ones are older still but stay.
            let byAge = try await a.store.pruneFinishedTasks(
                createdBefore: start.addingTimeInterval(3 * 60), keepingNewest: nil, batchSize: 2)
            #expect(byAge == 3)
            #expect(try await ids() == Set(["w0", "w1"] + (3..<10).map { "f\($0)" }))
            // Keep the 4 newest finished: f6-f9.
            #expect(try await a.store.pruneFinishedTasks(createdBefore: nil, keepingNewest: 4, batchSize: 2) == 3)
            #expect(try await ids() == ["w0", "w1", "f6", "f7", "f8", "f9"])
            #expect(try await a.store.pruneFinishedTasks(createdBefore: nil, keepingNewest: 4, batchSize: 2) == 0)
        }
    }

    @Test func scheduleTicksAreSharedAndOnlyMoveForward() async throws {
        try await LiveDatabase.withNodes(["a", "b"]) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            #expect(try await a.store.scheduleTicks().isEmpty)
            let tick = Date(timeIntervalSince1970: 1_800_000_000)
            try await a.store.recordScheduleTick(name: "nightly", at: tick)
            try await b.store.recordScheduleTick(name: "hourly", at: tick.addingTimeInterval(60))
            #expect(try await b.store.scheduleTicks() == ["nightly": tick, "hourly": tick.addingTimeInterval(60)])
            // A node that lags behind records an older tick: it changes nothing.
            try await b.store.recordScheduleTick(name: "nightly", at: tick.addingTimeInterval(-86_400))
            #expect(try await a.store.scheduleTicks()["nightly"] == tick)
            try await b.store.recordScheduleTick(name: "nightly", at: tick.addingTimeInterval(86_400))
            #expect(try await a.store.scheduleTicks()["nightly"] == tick.addingTimeInterval(86_400))
        }
    }

    @Test func aScheduledTaskWaitsForItsTimeAndNextDueDateTellsWhen() async throws {
        try await LiveDatabase.withNodes(["a", "b"]) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            #expect(try await a.store.nextDueDate() == nil)
            let later = Date().addingTimeInterval(300)
            _ = try await a.store.insert(TaskRecord(id: "later", cmd: "echo", uid: "u", args: [:], status: .scheduled, runAt: later))
            _ = try await a.store.insert(
                TaskRecord(id: "due", cmd: "echo", uid: "u", args: [:], status: .scheduled, runAt: Date().addingTimeInterval(-1)))
            #expect(try await b.store.nextDueDate().isClose(to: later))

            let claimed = try #require(try await b.store.claimNext(ClaimRules()))
            #expect(claimed.id == "due" && claimed.status == .running && claimed.attempts == 1)
            #expect(try await b.store.claimNext(ClaimRules()) == nil)  // "later" is not due

            // A retry's backoff: back in the queue, not claimed before its time, which is now the next due date.
            let backoff = Date().addingTimeInterval(120)
            let retry = claimed.with(status: .queued)
            let mark = a.heard.count
            try await b.store.update(retry, condition: .runningHere, notBefore: backoff)
            try await a.heard.waitFor(.taskQueued, since: mark)
            #expect(try await a.store.nextDueDate().isClose(to: backoff))
            #expect(try await a.store.claimNext(ClaimRules()) == nil)

            // Once its backoff is over, it is claimed again.
            try await b.store.update(retry, condition: .queued, notBefore: Date().addingTimeInterval(-1))
            let retried = try #require(try await a.store.claimNext(ClaimRules()))
            #expect(retried.id == "due" && retried.node == "a" && retried.attempts == 2)
            #expect(try await a.store.nextDueDate().isClose(to: later))
        }
    }

    @Test func nodesAppearWithTheirClientsAndLeave() async throws {
        try await LiveDatabase.withNodes(["a", "b"]) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            let client = ClientInfo(id: "c-1", uid: "ua", transport: .webSocket, remote: nil, admin: false)
            _ = try await a.store.heartbeat(runningTaskIDs: [], clients: [client])
            _ = try await b.store.heartbeat(runningTaskIDs: [], clients: [])
            let live = try await b.store.liveNodes()
            #expect(live.map(\.id) == ["a", "b"])
            #expect(live.first?.clients.map(\.id) == ["c-1"] && live.first?.clients.map(\.uid) == ["ua"])
            // A node that leaves is gone at once, and its later heartbeats do not bring it back.
            await a.store.leave()
            #expect(try await b.store.liveNodes().map(\.id) == ["b"])
            _ = try await a.store.heartbeat(runningTaskIDs: [], clients: [client])
            #expect(try await b.store.liveNodes().map(\.id) == ["b"])
        }
    }

    /// postgres-nio keeps a statement's failed preparation with its connection, so one prepared before the tables
    /// exist would fail on that connection for good: the store must send nothing before its migrations are done.
    @Test func callsBeforeTheMigrationsFailWithoutLeavingAConnectionUnableToRunAPreparedStatement() async throws {
        try await LiveDatabase.withMigrationsHeldBack { store, release in
            // As many calls at once as the pool has connections, so that each could be the one a statement failed on.
            await withTaskGroup(of: Void.self) { group in
                for index in 0..<16 {
                    group.addTask {
                        let early = TaskRecord(id: "early\(index)", cmd: "echo", uid: "u", args: ["n": 0])
                        await #expect(throws: (any Error).self) { try await store.insert(early) }
                        await #expect(throws: (any Error).self) { try await store.claimNext(ClaimRules()) }
                        await #expect(throws: (any Error).self) { try await store.activeCounts(uid: "u") }
                        await #expect(throws: (any Error).self) { try await store.events(uid: "u", after: 0, limit: 10) }
                    }
                }
            }
            #expect(!store.isReachable)

            try await release()
            try await eventually("the store to migrate", timeout: .seconds(30)) { store.isReachable }
            // More calls at once than the pool has connections, so every connection runs every prepared statement.
            let count = 40
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<count {
                    group.addTask {
                        let task = TaskRecord(id: "t\(index)", cmd: "echo", uid: "u\(index % 4)", args: ["n": .number(Double(index))])
                        #expect(try await store.insert(task) == .inserted)
                        _ = try await store.activeCounts(uid: task.uid)
                        let claimed = try #require(try await store.claimNext(ClaimRules()))
                        _ = try await store.appendNumbered(
                            uid: claimed.uid ?? "", task: claimed, condition: .runningHere, retainCount: 1000,
                            makeMessage: { seq in .progress(claimed, seq: seq) })
                        _ = try await store.events(uid: task.uid ?? "", after: 0, limit: 10)
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await store.list(.init(limit: 100)).count == count)
        }
    }

    @Test func aReloadRequestReachesTheNodeAndItsAnswerComesBack() async throws {
        try await LiveDatabase.withNodes(["a", "b"]) { nodes in
            let (a, b) = (nodes[0], nodes[1])
            let mark = b.heard.count
            try await a.store.requestReload(requestID: "a/1", node: "b")
            try await b.heard.waitFor(.reload(requestID: "a/1", node: "b"), since: mark)
            let answer = NodeReload(node: "b", error: "handlers.json: no such file")
            try await b.store.answerReload(requestID: "a/1", answer: answer)
            try await b.store.answerReload(requestID: "a/1", answer: NodeReload(node: "b", error: "a second answer"))
            #expect(try await a.store.reloadAnswers(requestID: "a/1") == [answer])  // the first answer counts
            #expect(try await a.store.reloadAnswers(requestID: "a/2").isEmpty)
        }
    }
}

/// Without a database the suite above is skipped; where one is required (CI), that is a failure, not a skip.
@Suite("PostgreSQL for the live store tests")
struct LiveDatabaseRequirementTests {
    @Test(.enabled(if: LiveDatabase.isRequired, "TASKGATE_REQUIRE_POSTGRES is not 1"))
    func aDatabaseIsGivenWhereOneIsRequired() {
        #expect(
            LiveDatabase.url != nil,
            "TASKGATE_REQUIRE_POSTGRES=1 but TASKGATE_TEST_DATABASE_URL is not set: the PostgreSQL store tests would be skipped")
    }
}

// MARK: - Support

enum LiveDatabase {
    static let url: String? = ProcessInfo.processInfo.environment["TASKGATE_TEST_DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
    static let isRequired = ProcessInfo.processInfo.environment["TASKGATE_REQUIRE_POSTGRES"] == "1"

    static let logger: Logger = {
        var logger = Logger(label: "postgres-live-tests")
        logger.logLevel = .warning
        return logger
    }()

    /// Stores with these node ids on a fresh database, running (connections, migrations, the listener) for the
    /// body's duration. They start together, so they also take turns at the migrations.
    static func withNodes(
        _ nodeIDs: [String], leaseTimeout: Duration = .seconds(10), _ body: ([LiveNode]) async throws -> Void
    ) async throws {
        try await withScratchDatabase { url in
            let nodes = nodeIDs.map { nodeID in
                // Named after its database and node, so that a warning says whose it is.
                var nodeLogger = Logger(label: "\(url.database ?? "?")/\(nodeID)")
                nodeLogger.logLevel = .warning
                return LiveNode(store: PostgresTaskStore(url: url, nodeID: nodeID, leaseTimeout: leaseTimeout, logger: nodeLogger))
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for node in nodes {
                    group.addTask { await node.heard.record(node.store.notifications) }
                    group.addTask {
                        do { try await node.store.run() } catch { node.heard.runFailed(error) }
                    }
                }
                defer { group.cancelAll() }
                for node in nodes { try await node.waitUntilReady() }
                try await body(nodes)
            }
        }
    }

    /// A running store whose migrations wait, on a fresh database, until the body calls `release`: the advisory
    /// lock they take is held by another connection until then.
    static func withMigrationsHeldBack(
        _ body: (PostgresTaskStore, @Sendable () async throws -> Void) async throws -> Void
    ) async throws {
        try await withScratchDatabase { url in
            let holder = try await PostgresConnection.connect(
                configuration: try url.connectionConfiguration(), id: 2, logger: logger)
            do {
                try await holder.query("SELECT pg_advisory_lock(\(PostgresTaskStore.migrationLock))", logger: logger)
                let store = PostgresTaskStore(url: url, nodeID: "a", logger: logger)
                let release: @Sendable () async throws -> Void = {
                    try await holder.query("SELECT pg_advisory_unlock(\(PostgresTaskStore.migrationLock))", logger: logger)
                }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await store.run() }
                    defer { group.cancelAll() }
                    try await body(store, release)
                }
            } catch {
                try? await holder.close()
                throw error
            }
            try await holder.close()
        }
    }

    /// A database of its own for one test, dropped afterwards (a test cut short leaves it on the throwaway server).
    private static func withScratchDatabase(_ body: (DatabaseURL) async throws -> Void) async throws {
        let server = try DatabaseURL(try #require(url))
        let name = "taskgate_live_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        do {
            try await administer(server, "CREATE DATABASE \(name)")
        } catch {
            throw LiveTestFailure(
                "could not create a database for the test (the role of TASKGATE_TEST_DATABASE_URL needs CREATEDB): "
                    + String(reflecting: error))
        }
        var scratch = server
        scratch.database = name
        // Not WITH (FORCE): that refuses to end an autovacuum worker busy in the database, while a plain DROP ends
        // it and waits a few seconds for the nodes' closed connections to go; a node still connected is an error.
        let drop = "DROP DATABASE IF EXISTS \(name)"
        do {
            try await body(scratch)
        } catch {
            try? await administer(server, drop)
            throw error
        }
        do {
            try await administer(server, drop)
        } catch {
            throw LiveTestFailure("could not drop the test's database \(name): " + String(reflecting: error))
        }
    }

    private static func administer(_ server: DatabaseURL, _ statement: String) async throws {
        let connection = try await PostgresConnection.connect(
            configuration: try server.connectionConfiguration(), id: 1, logger: logger)
        do {
            try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }
}

/// A running store and what it has heard.
struct LiveNode: Sendable {
    let store: PostgresTaskStore
    let heard = NotificationLog()

    /// Ready once its listener is on (`resynchronize` is its first word), which comes after the migrations.
    func waitUntilReady() async throws {
        try await eventually("node \(store.nodeID) to be ready", timeout: .seconds(30)) {
            if let failure = heard.runFailure { throw LiveTestFailure("node \(store.nodeID) stopped: \(failure)") }
            return store.isReachable && heard.contains(.resynchronize)
        }
    }

    /// A waiting echo task (or `cmd`) of `uid` at `priority`, stored through this node.
    func insert(_ id: String, uid: String, cmd: String = "echo", priority: Int = 0) async throws {
        #expect(try await store.insert(TaskRecord(id: id, cmd: cmd, uid: uid, args: [:], priority: priority)) == .inserted)
    }

    func insertAndClaim(_ task: TaskRecord) async throws -> TaskRecord {
        #expect(try await store.insert(task) == .inserted)
        let claimed = try #require(try await store.claimNext(ClaimRules()))
        #expect(claimed.id == task.id, "\(store.nodeID) claimed \(claimed.id) instead of \(task.id)")
        return claimed
    }

    /// A progress event by default, as a running task's handler reports one.
    @discardableResult
    func append(
        _ task: TaskRecord, uid: String, condition: WriteCondition = .runningHere, retainCount: Int = 1000,
        message: (@Sendable (UInt64) -> ServerMessage)? = nil
    ) async throws -> LoggedEvent {
        try await store.appendNumbered(
            uid: uid, task: task, condition: condition, retainCount: retainCount,
            makeMessage: message ?? { seq in .progress(task, seq: seq) })
    }
}

/// Every notification a store delivered, in order; waits look for one with a deadline.
final class NotificationLog: Sendable {
    private let state = Mutex((received: [ClusterNotification](), runFailure: String?.none))

    func record(_ notifications: AsyncStream<ClusterNotification>) async {
        for await notification in notifications { state.withLock { $0.received.append(notification) } }
    }

    func runFailed(_ error: any Error) { state.withLock { $0.runFailure = String(reflecting: error) } }
    var runFailure: String? { state.withLock { $0.runFailure } }

    /// How many have arrived: pass it to `waitFor(_:since:)` to wait for one that comes after this point.
    var count: Int { state.withLock { $0.received.count } }

    func contains(_ notification: ClusterNotification, since start: Int = 0) -> Bool {
        state.withLock { $0.received.dropFirst(start).contains(notification) }
    }

    func waitFor(_ notification: ClusterNotification, since start: Int = 0) async throws {
        try await eventually("notification \(notification)") { contains(notification, since: start) }
    }
}

struct LiveTestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Waits until `condition` holds, checking every 20 ms, for at most `timeout`.
func eventually(
    _ what: String, timeout: Duration = .seconds(10), _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw LiveTestFailure("timed out after \(timeout) waiting for \(what)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// The `seq` field of a message's JSON.
func seqInJSON(_ json: String) -> Int? {
    let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
    return (object?["seq"] as? NSNumber)?.intValue
}

extension Date? {
    /// Equal as the database keeps it: microseconds, where a `Date` has a little more.
    func isClose(to date: Date) -> Bool {
        guard let self else { return false }
        return abs(self.timeIntervalSince(date)) < 0.001
    }
}

extension TaskRecord {
    func with(progress: Double) -> TaskRecord {
        var copy = self
        copy.progress = progress
        return copy
    }

    func with(status: TaskStatus, result: JSONText? = nil) -> TaskRecord {
        var copy = self
        copy.status = status
        copy.result = result
        return copy
    }
}
