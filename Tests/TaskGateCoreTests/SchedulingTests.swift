import Foundation
import Synchronization
import Testing

@testable import TaskGateCore

private func utc(_ text: String) -> Date { RFC3339.parse(text)! }
private let paris = TimeZone(identifier: "Europe/Paris")!

@Suite("Cron expressions", .timeLimit(.minutes(2)))
struct CronExpressionTests {
    @Test func fiveFieldsRunOnTheMinute() throws {
        let cron = try CronExpression("*/15 * * * *")
        #expect(cron.next(after: utc("2026-12-02T10:07:31Z"), in: .gmt) == utc("2026-12-02T10:15:00Z"))
        #expect(cron.next(after: utc("2026-12-02T10:45:00Z"), in: .gmt) == utc("2026-12-02T11:00:00Z"))
    }

    @Test func sixFieldsHaveSecondsFirst() throws {
        let cron = try CronExpression("*/1 * * * * *")
        #expect(cron.next(after: utc("2026-12-02T10:07:31.400Z"), in: .gmt) == utc("2026-12-02T10:07:32Z"))
        let odd = try CronExpression("5,35 * * * * *")
        #expect(odd.next(after: utc("2026-12-02T10:07:31Z"), in: .gmt) == utc("2026-12-02T10:07:35Z"))
        #expect(odd.next(after: utc("2026-12-02T10:07:35Z"), in: .gmt) == utc("2026-12-02T10:08:05Z"))
    }

    @Test func timeZonesAndDaylightSaving() throws {
        let cron = try CronExpression("0 3 * * *")
        // 03:00 in Paris is 02:00 UTC in winter and 01:00 UTC in summer.
        #expect(cron.next(after: utc("2026-12-02T10:00:00Z"), in: paris) == utc("2026-12-03T02:00:00Z"))
        #expect(cron.next(after: utc("2026-07-01T10:00:00Z"), in: paris) == utc("2026-07-02T01:00:00Z"))
        // 2026-03-29: Paris skips 02:00-03:00; a 02:30 job runs the next day at 02:30.
        let skipped = try CronExpression("30 2 * * *")
        #expect(skipped.next(after: utc("2026-03-28T12:00:00Z"), in: paris) == utc("2026-03-30T00:30:00Z"))
    }

    @Test func namesMacrosAndTheDayRule() throws {
        // The first Monday of... either the 1st or any Monday (Vixie's OR rule when both are restricted).
        let either = try CronExpression("0 9 1 * MON")
        #expect(either.next(after: utc("2026-12-02T10:00:00Z"), in: .gmt) == utc("2026-12-07T09:00:00Z"))  // a Monday
        #expect(either.next(after: utc("2026-12-28T10:00:00Z"), in: .gmt) == utc("2027-01-01T09:00:00Z"))  // the 1st
        let sunday = try CronExpression("0 0 * * 7")
        #expect(sunday.next(after: utc("2026-12-02T10:00:00Z"), in: .gmt) == utc("2026-12-06T00:00:00Z"))
        let months = try CronExpression("0 0 1 jan,JUL *")
        #expect(months.next(after: utc("2026-12-02T10:00:00Z"), in: .gmt) == utc("2027-01-01T00:00:00Z"))
        let daily = try CronExpression("@daily")
        #expect(daily.next(after: utc("2026-12-02T10:00:00Z"), in: .gmt) == utc("2026-12-03T00:00:00Z"))
        let ranges = try CronExpression("0 8-18/5 * * 1-5")
        #expect(ranges.next(after: utc("2026-12-04T18:00:00Z"), in: .gmt) == utc("2026-12-07T08:00:00Z"))  // Fri 18:00 -> Mon 08:00
    }

    @Test func nonsenseIsRefusedAndImpossibleDatesNeverMatch() throws {
        for bad in ["", "* * * *", "61 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "5-1 * * * *", "*/0 * * * *",
                    "a * * * *", "1,,2 * * * *", "* * * * * * *", "@sometimes"]
        {
            #expect(throws: CronExpression.ParseError.self, "\(bad)") { try CronExpression(bad) }
        }
        #expect(try CronExpression("0 0 30 2 *").next(after: Date(), in: .gmt) == nil)
    }
}

@Suite("Task scheduling options", .timeLimit(.minutes(2)))
struct TaskSchedulingTests {
    private struct Urgent: TaskHandler {
        let name = "urgent"
        let summary = ""
        var defaultPriority: Int { 3 }
        func run(_ context: TaskContext) async throws -> JSONValue { .null }
    }

    @Test func rfc3339TimesWithZones() {
        #expect(RFC3339.parse("2026-12-02T10:00:00Z") == Date(timeIntervalSince1970: 1_796_205_600))
        #expect(RFC3339.parse("2026-12-02T11:00:00+01:00") == Date(timeIntervalSince1970: 1_796_205_600))
        #expect(RFC3339.parse("2026-12-02t09:30:00.5-00:30") == Date(timeIntervalSince1970: 1_796_205_600.5))
        for bad in ["2026-12-02", "2026-12-02T10:00:00", "2026-02-30T10:00:00Z", "2026-12-02T10:00:00+1", "tomorrow", "2026-12-02T25:00:00Z",
                    "2026-12-02T10:00:00Zjunk"]
        {
            #expect(RFC3339.parse(bad) == nil, "\(bad)")
        }
    }

    @Test func delaysTimesAndPriorities() throws {
        let now = utc("2026-12-02T10:00:00Z")
        let echo = EchoHandler()
        let plain = try TaskScheduling(args: [:], handler: echo, now: now)
        #expect(plain.priority == 0 && plain.runAt == nil)
        #expect(try TaskScheduling(args: ["delay_ms": 1500], handler: echo, now: now).runAt == utc("2026-12-02T10:00:01.500Z"))
        #expect(try TaskScheduling(args: ["run_at": "2026-12-02T12:00:00+01:00"], handler: echo, now: now).runAt == utc("2026-12-02T11:00:00Z"))
        #expect(try TaskScheduling(args: ["run_at": "2026-12-01T12:00:00Z"], handler: echo, now: now).runAt == nil)  // past: now
        #expect(try TaskScheduling(args: ["priority": 9], handler: echo, now: now).priority == 9)
        // null is absent, for each option and for both together.
        let nulls = try TaskScheduling(args: ["priority": .null, "delay_ms": .null, "run_at": .null], handler: echo, now: now)
        #expect(nulls.priority == 0 && nulls.runAt == nil)
        #expect(try TaskScheduling(args: ["delay_ms": .null, "run_at": "2026-12-02T12:00:00Z"], handler: echo, now: now).runAt != nil)
        let refused: [[String: JSONValue]] = [
            ["priority": 10], ["priority": -1], ["priority": "high"], ["priority": 1.5], ["delay_ms": -5], ["delay_ms": 3e9],
            ["delay_ms": "soon"], ["delay_ms": 10, "run_at": "2026-12-02T12:00:00Z"], ["run_at": "tomorrow"],
            ["run_at": "2027-01-15T00:00:00Z"],
        ]
        for args in refused {
            #expect(throws: GatewayError.self, "\(args)") { try TaskScheduling(args: args, handler: echo, now: now) }
        }
    }

    @Test func endUsersMayLowerTheirPriorityButNotRaiseIt() throws {
        let handler = Urgent()
        #expect(try TaskScheduling(args: [:], handler: handler, mayRaisePriority: false).priority == 3)
        #expect(try TaskScheduling(args: ["priority": 7], handler: handler, mayRaisePriority: false).priority == 7)
        #expect(throws: GatewayError(.forbidden, "'args.priority' 1 is more urgent than the handler's default (3); raising it needs the admin API")) {
            try TaskScheduling(args: ["priority": 1], handler: handler, mayRaisePriority: false)
        }
        #expect(try TaskScheduling(args: ["priority": 1], handler: handler, mayRaisePriority: true).priority == 1)
    }

    @Test func rateLimitsAndTheirSpacing() {
        #expect(RateLimit("50/s") == RateLimit(count: 50, per: .seconds(1)))
        #expect(RateLimit("300/m")?.interval == .milliseconds(200))
        #expect(RateLimit("2/h")?.interval == .seconds(1800))
        for bad in ["fast", "0/s", "-1/s", "5/d", "5", "/s", "100001/s"] { #expect(RateLimit(bad) == nil, "\(bad)") }
        var pacer = StartPacer()
        let start = ContinuousClock.now
        let limit = RateLimit(count: 10, per: .seconds(1))
        #expect(pacer.notBefore("x", now: start) == nil)
        pacer.started("x", limit: limit, now: start)
        #expect(pacer.notBefore("x", now: start) == start + .milliseconds(100))
        #expect(pacer.blocked(now: start).commands == ["x"])
        #expect(pacer.blocked(now: start + .milliseconds(100)).commands.isEmpty)
        pacer.started("y", limit: nil, now: start)  // no limit: never held
        #expect(pacer.notBefore("y", now: start) == nil)
    }
}

@Suite("Fair share and priorities", .timeLimit(.minutes(2)))
struct ReadyQueueTests {
    private func drain(_ queue: inout ReadyQueue<String>, running: [Lane: Int] = [:], held: Set<String> = []) -> [String] {
        var running = running
        var order: [String] = []
        while let next = queue.popNext(running: { running[$0, default: 0] }, held: held) {
            order.append(next)
            // Popped tasks start running: the lane's load grows, as in the pool.
            let uid = String(next.prefix(1))
            running[Lane(cmd: "sleep", uid: uid), default: 0] += 1
        }
        return order
    }

    @Test func aBurstDoesNotStarveAnotherUID() {
        var queue = ReadyQueue<String>(fairShare: true)
        for index in 1...5 { queue.append("a\(index)", id: "a\(index)", lane: Lane(cmd: "sleep", uid: "a"), priority: 0) }
        queue.append("b1", id: "b1", lane: Lane(cmd: "sleep", uid: "b"), priority: 0)
        queue.append("b2", id: "b2", lane: Lane(cmd: "sleep", uid: "b"), priority: 0)
        // a already has two running: b goes first, until b has as many running as a.
        #expect(drain(&queue, running: [Lane(cmd: "sleep", uid: "a"): 2]) == ["b1", "b2", "a1", "a2", "a3", "a4", "a5"])
    }

    @Test func withOneWorkerTurnsAlternate() {
        var queue = ReadyQueue<String>(fairShare: true)
        let a = Lane(cmd: "sleep", uid: "a")
        let b = Lane(cmd: "sleep", uid: "b")
        // a's first task starts at once; then the rest of a's burst and b's two arrive.
        queue.append("a1", id: "a1", lane: a, priority: 0)
        #expect(queue.popNext(running: { _ in 0 }) == "a1")
        for index in 2...4 { queue.append("a\(index)", id: "a\(index)", lane: a, priority: 0) }
        queue.append("b1", id: "b1", lane: b, priority: 0)
        queue.append("b2", id: "b2", lane: b, priority: 0)
        // Nothing runs between starts (one worker): the lane served longest ago goes next.
        var order: [String] = []
        while let next = queue.popNext(running: { _ in 0 }) { order.append(next) }
        #expect(order == ["b1", "a2", "b2", "a3", "a4"])
    }

    @Test func withoutFairShareItIsFirstInFirstOut() {
        var queue = ReadyQueue<String>(fairShare: false)
        for index in 1...3 { queue.append("a\(index)", id: "a\(index)", lane: Lane(cmd: "sleep", uid: "a"), priority: 0) }
        queue.append("b1", id: "b1", lane: Lane(cmd: "sleep", uid: "b"), priority: 0)
        #expect(drain(&queue, running: [Lane(cmd: "sleep", uid: "a"): 2]) == ["a1", "a2", "a3", "b1"])
    }

    @Test func priorityComesBeforeFairnessAndHeldHandlersWait() {
        var queue = ReadyQueue<String>(fairShare: true)
        queue.append("a-low", id: "1", lane: Lane(cmd: "sleep", uid: "a"), priority: 9)
        queue.append("b-mid", id: "2", lane: Lane(cmd: "sleep", uid: "b"), priority: 5)
        queue.append("a-top", id: "3", lane: Lane(cmd: "sleep", uid: "a"), priority: 0)
        queue.append("c-held", id: "4", lane: Lane(cmd: "paced", uid: "c"), priority: 0)
        #expect(drain(&queue, held: ["paced"]) == ["a-top", "b-mid", "a-low"])
        #expect(queue.count == 1)
        #expect(queue.remove(id: "4") == "c-held")
        #expect(queue.isEmpty)
    }

    /// The rule written as a scan of every waiting task, to hold the queue's faster pick against.
    private struct ScanningModel {
        var waiting: [(sequence: Int, id: String, lane: Lane)] = []
        var served: [Lane: Int] = [:]
        var starts = 0
        let fairShare: Bool

        mutating func popNext(running: [Lane: Int], held: Set<String>) -> String? {
            var heads: [Lane: (sequence: Int, index: Int)] = [:]
            for (index, task) in waiting.enumerated() where heads[task.lane] == nil { heads[task.lane] = (task.sequence, index) }
            let candidates = heads.filter { !held.contains($0.key.cmd) }.map { lane, head in
                (load: fairShare ? running[lane, default: 0] : 0, served: fairShare ? served[lane, default: 0] : 0,
                 sequence: head.sequence, index: head.index, lane: lane)
            }
            guard let best = candidates.min(by: { ($0.load, $0.served, $0.sequence) < ($1.load, $1.served, $1.sequence) })
            else { return nil }
            if fairShare {
                starts += 1
                served[best.lane] = starts
            }
            return waiting.remove(at: best.index).id
        }
    }

    /// Random appends, picks (with random loads and held handlers) and cancels, against the scanning model.
    @Test(arguments: [true, false])
    func picksAsAScanOfEveryLaneWould(fairShare: Bool) {
        var random = SplitMix64(state: fairShare ? 7 : 11)
        var queue = ReadyQueue<String>(fairShare: fairShare)
        var model = ScanningModel(fairShare: fairShare)
        let lanes = ["echo", "sleep", "paced"].flatMap { cmd in ([nil] + (0..<6).map { "u\($0)" }).map { Lane(cmd: cmd, uid: $0) } }
        var nextID = 0
        for _ in 0..<5_000 {
            switch random.next() % 10 {
            case 0..<5:
                let lane = lanes[Int(random.next() % UInt64(lanes.count))]
                let id = "t\(nextID)"
                queue.append(id, id: id, lane: lane, priority: 3)
                model.waiting.append((nextID, id, lane))
                nextID += 1
            case 5..<9:
                var running: [Lane: Int] = [:]
                for lane in lanes where random.next() % 3 == 0 { running[lane] = Int(random.next() % 3) }
                let held: Set<String> = random.next() % 4 == 0 ? ["paced"] : []
                let expected = model.popNext(running: running, held: held)
                #expect(queue.popNext(running: { running[$0, default: 0] }, held: held) == expected)
            default:
                guard !model.waiting.isEmpty else { continue }
                let index = Int(random.next() % UInt64(model.waiting.count))
                let id = model.waiting.remove(at: index).id
                #expect(queue.remove(id: id) == id)
            }
            #expect(queue.count == model.waiting.count)
        }
    }
}


/// Opened once by the test; until then `wait()` suspends.
private final class Latch: Sendable {
    private let state = Mutex((open: false, waiters: [CheckedContinuation<Void, Never>]()))
    func wait() async {
        await withCheckedContinuation { continuation in
            let openAlready = state.withLock { state -> Bool in
                if !state.open { state.waiters.append(continuation) }
                return state.open
            }
            if openAlready { continuation.resume() }
        }
    }
    func open() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

/// Waits for the latch when its args say `"hold": true`, after opening `started`; else returns at once.
private struct Hold: TaskHandler {
    let name = "hold"
    let summary = ""
    let latch: Latch
    let started: Latch
    func run(_ context: TaskContext) async throws -> JSONValue {
        if context.args["hold"] == .bool(true) {
            started.open()
            await latch.wait()
        }
        return .null
    }
}

@Suite("Scheduled, prioritised and paced tasks in the pool", .timeLimit(.minutes(2)))
struct PoolSchedulingTests {
    private struct Paced: TaskHandler {
        let name = "paced"
        let summary = ""
        var rateLimit: RateLimit? { RateLimit(count: 2, per: .seconds(1)) }
        func run(_ context: TaskContext) async throws -> JSONValue { .null }
    }

    @Test func aDelayedTaskIsScheduledThenRunsNotBeforeItsTime() async throws {
        let gateway = Gateway.forTests()
        let submitted = try await gateway.submit(cmd: "echo", args: ["delay_ms": 300], uid: "u").task
        #expect(submitted.status == .scheduled)
        let runAt = try #require(submitted.runAt)
        #expect(try await gateway.task(id: submitted.id, visibleTo: nil).status == .scheduled)
        let done = try await gateway.finished(submitted.id)
        #expect(done.status == .succeeded)
        #expect(try #require(done.startedAt) >= runAt.addingTimeInterval(-0.001))
    }

    @Test func aScheduledTaskCanBeCancelledAndNeverRuns() async throws {
        let gateway = Gateway.forTests()
        let submitted = try await gateway.submit(cmd: "echo", args: ["delay_ms": 60_000], uid: "u").task
        let cancelled = try await gateway.cancel(id: submitted.id, visibleTo: "u")
        #expect(cancelled.status == .cancelled && cancelled.startedAt == nil)
        #expect(await gateway.pool.queuedCount == 0)
    }

    /// Start order of `ids`, by their recorded start times.
    private func startOrder(_ gateway: Gateway, _ ids: [String]) async throws -> [String] {
        var started: [(String, Date)] = []
        for id in ids { started.append((id, try #require(try await gateway.finished(id).startedAt))) }
        return started.sorted { $0.1 < $1.1 }.map(\.0)
    }

    /// Holds the one worker with a `hold` task of uid a until the test has queued the rest, so the order they
    /// start in depends on the rule alone, not on how fast the test submits.
    private func holding(fairShare: Bool = true, _ queueTheRest: (Gateway) async throws -> [String]) async throws -> (String, [String]) {
        let (latch, started) = (Latch(), Latch())
        let registry = try SwiftHandlerRegistry { BuiltinHandlers.all() + [Hold(latch: latch, started: started)] }
        let gateway = Gateway.forTests(workers: 1, fairShare: fairShare, registry: registry)
        let blocker = try await gateway.submit(cmd: "hold", args: ["hold": true], uid: "a").task.id
        // The handler itself says it holds the worker.
        try await within(.seconds(10), "the blocking task to start") { await started.wait() }
        let rest = try await queueTheRest(gateway)
        latch.open()
        return (blocker, try await startOrder(gateway, [blocker] + rest))
    }

    @Test(arguments: [true, false])
    func fairShareLetsAnotherUIDGoNext(fairShare: Bool) async throws {
        var burst: [String] = []
        var other = ""
        let (blocker, order) = try await holding(fairShare: fairShare) { gateway in
            for _ in 0..<4 { burst.append(try await gateway.submit(cmd: "hold", args: [:], uid: "a").task.id) }
            other = try await gateway.submit(cmd: "hold", args: [:], uid: "b").task.id
            return burst + [other]
        }
        // With fair share b's task starts as soon as a's running one ends (a was served last); without, after a's.
        #expect(order == [blocker] + (fairShare ? [other] + burst : burst + [other]))
    }

    @Test func lowerPriorityNumbersStartFirst() async throws {
        var ids: [Int: String] = [:]
        let (blocker, order) = try await holding { gateway in
            for priority in [5, 1, 9, 0, 3] {
                ids[priority] = try await gateway.submit(cmd: "hold", args: ["priority": .number(Double(priority))], uid: "a").task.id
            }
            return Array(ids.values)
        }
        #expect(order == [blocker] + [0, 1, 3, 5, 9].map { ids[$0]! })
    }

    @Test func aRateLimitSpacesStartsAndLetsOtherHandlersThrough() async throws {
        let registry = try SwiftHandlerRegistry { BuiltinHandlers.all() + [Paced()] }
        let gateway = Gateway.forTests(workers: 4, registry: registry)
        var paced: [String] = []
        for _ in 0..<4 { paced.append(try await gateway.submit(cmd: "paced", args: [:], uid: "a").task.id) }
        let echoSubmitted = Date()
        let echo = try await gateway.submit(cmd: "echo", args: [:], uid: "a").task.id
        var starts: [Date] = []
        for id in paced { starts.append(try #require(try await gateway.finished(id).startedAt)) }
        starts.sort()
        let gaps = zip(starts.dropFirst(), starts).map { $0.timeIntervalSince($1) }
        // 2/s: the pool starts them 500 ms apart (1.5 s for four). A recorded start also carries the delay of the
        // task's first step, which a loaded machine makes long for any one of them: never faster than the rate
        // allows is what holds, within one interval.
        #expect(starts.last!.timeIntervalSince(starts.first!) >= 1.0, "\(gaps)")
        // The unlimited handler was not held behind the paced ones: it started before the last of them, or (a loaded
        // machine can make the submits themselves take past it) well within one interval of its own submit.
        let echoStarted = try #require(try await gateway.finished(echo).startedAt)
        #expect(echoStarted < starts.last! || echoStarted.timeIntervalSince(echoSubmitted) < 0.4, "\(echoStarted) \(starts)")
    }
}

@Suite("Recurring schedules", .timeLimit(.minutes(2)))
struct SchedulerTests {
    /// Runs a scheduler until the scheduled tasks in `store` satisfy `condition`, looking again after each write.
    private func run(
        _ gateway: Gateway, store: ObservedStore, until what: String, _ condition: @escaping @Sendable ([TaskRecord]) -> Bool
    ) async throws -> [TaskRecord] {
        let scheduler = Scheduler(gateway: gateway, logger: .init(label: "test"))
        let running = Task { await scheduler.run() }
        defer { running.cancel() }
        var tasks: [TaskRecord] = []
        try await waitUntil(what, timeout: .seconds(10), on: store.writes) {
            tasks = try await gateway.list(.init(limit: 1000)).filter { $0.schedule != nil }
            return condition(tasks)
        }
        return tasks
    }

    @Test func everyTickMakesOneTaskNamedByItsTime() async throws {
        let tick = Schedule(name: "tick", cmd: "echo", args: ["n": 1], cron: try CronExpression("*/1 * * * * *"), uid: "ops")
        let store = ObservedStore()
        let gateway = Gateway.forTests(store: store, registry: StaticTableRegistry(schedules: [tick]))
        let tasks = try await run(gateway, store: store, until: "two ticks' tasks") { $0.count >= 2 }
        let seconds = tasks.compactMap { Int($0.id.split(separator: ":").last!) }.sorted()
        #expect(seconds.count == tasks.count && Set(seconds).count == seconds.count)
        // One task per tick, each named by its second (a loaded machine may skip ahead, never repeat).
        #expect(zip(seconds.dropFirst(), seconds).allSatisfy { $0 > $1 })
        #expect(tasks.allSatisfy { $0.uid == "ops" && $0.schedule == "tick" && $0.id.hasPrefix("ops~schedule:tick:") })
        #expect(try await gateway.store.scheduleTicks()["tick"] != nil)
        let listed = try await gateway.schedules()
        #expect(listed.map(\.name) == ["tick"] && listed[0].nextRun != nil && listed[0].lastRun != nil)
    }

    @Test(arguments: [Schedule.Missed.runOnce, .skip])
    func missedTicksFollowThePolicy(missed: Schedule.Missed) async throws {
        let hourly = Schedule(name: "hourly", cmd: "echo", cron: try CronExpression("@hourly"), missed: missed)
        let store = ObservedStore()
        let lastTick = Date().addingTimeInterval(-3 * 3600)
        try await store.recordScheduleTick(name: "hourly", at: lastTick)
        let registry = StaticTableRegistry(schedules: [hourly])
        let gateway = Gateway.forTests(store: store, registry: registry)
        let scheduler = Scheduler(gateway: gateway, logger: .init(label: "test"))
        let running = Task { await scheduler.run() }
        defer { running.cancel() }
        if missed == .runOnce {
            var tasks: [TaskRecord] = []
            try await waitUntil("the catch-up task", on: store.writes) {
                tasks = try await gateway.list(.init()).filter { $0.schedule == "hourly" }
                return !tasks.isEmpty
            }
            // One catch-up task, named by the first missed tick, for all three missed hours.
            let first = try #require(hourly.nextTick(after: lastTick))
            #expect(tasks.map(\.id) == ["~" + hourly.taskID(forTick: first)])
        } else {
            // Wait until the scheduler has planned (its record stays as it was), then check nothing ran: it reads
            // the handler table at the start of every pass, so a second read means its first pass (planning, and
            // firing whatever was due) is over. Nothing else reads this table when nothing is submitted.
            try await waitUntil("the scheduler's second pass", on: registry.reads) { registry.readCount >= 2 }
            #expect(try await gateway.list(.init()).isEmpty)
        }
    }
}

/// A registry with a fixed table of the built-in handlers and `schedules`, that counts how often it is read.
final class StaticTableRegistry: HandlerRegistry {
    private let table: HandlerTable
    private let count = Mutex(0)
    /// Bumped on every read of `current`.
    let reads = ChangeSignal()

    init(schedules: [Schedule]) {
        table = HandlerTable(generation: 1, handlers: BuiltinHandlers.all(), schedules: schedules)
    }

    var current: HandlerTable {
        count.withLock { $0 += 1 }
        reads.bump()
        return table
    }
    var readCount: Int { count.withLock { $0 } }

    func reload() async throws -> ReloadResult { ReloadResult(table: table) }
}

@Suite("Fair claiming across a cluster", .timeLimit(.minutes(2)))
struct ClusterClaimTests {
    @Test func theUIDWithFewestRunningInTheClusterIsClaimedFirst() async throws {
        let database = SharedMemoryDatabase()
        let one = SharedMemoryStore(node: "one", database: database, lease: .seconds(10))
        let two = SharedMemoryStore(node: "two", database: database, lease: .seconds(10))
        for index in 0..<3 { _ = try await one.insert(TaskRecord(id: "a\(index)", cmd: "sleep", uid: "a", args: [:])) }
        _ = try await one.insert(TaskRecord(id: "b0", cmd: "sleep", uid: "b", args: [:]))
        _ = try await one.insert(TaskRecord(id: "later", cmd: "sleep", uid: "c", args: [:], status: .scheduled, runAt: Date().addingTimeInterval(60)))
        #expect(try await one.claimNext(ClaimRules())?.id == "a0")
        // a runs one task (on node one): node two's claim goes to b, not to a's next.
        #expect(try await two.claimNext(ClaimRules())?.id == "b0")
        #expect(try await two.claimNext(ClaimRules(fairShare: true, excludedCommands: ["sleep"])) == nil)
        #expect(try await two.claimNext(ClaimRules(fairShare: false))?.id == "a1")
        // The scheduled task is not due: not claimed, but its time is known.
        #expect(try await one.claimNext(ClaimRules())?.id == "a2")
        #expect(try await one.claimNext(ClaimRules()) == nil)
        #expect(try await one.nextDueDate() != nil)
    }
}
