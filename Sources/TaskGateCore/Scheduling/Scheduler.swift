import Foundation
import Logging

/// Runs the recurring schedules of the handler table in force. Every node runs one: each tick is submitted with
/// the same task id on every node (`Schedule.taskID(forTick:)`), and the store keeps only the first, so a tick runs
/// once across the cluster and still runs when a node is down.
public struct Scheduler: Sendable {
    let gateway: Gateway
    let logger: Logger
    let clock: @Sendable () -> Date

    public init(gateway: Gateway, logger: Logger, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.gateway = gateway
        self.logger = logger
        self.clock = clock
    }

    private struct Plan {
        var schedule: Schedule
        var next: Date?
    }

    /// Until cancelled. Looks at the handler table at least once a second, so a reload's schedules apply at once.
    public func run() async {
        guard let ticks = await loadTicks() else { return }
        var lastTicks = ticks
        var plans: [String: Plan] = [:]
        var generation: Int?
        while !Task.isCancelled {
            let table = gateway.registry.current
            if table.generation != generation {
                plans = await replan(table.schedules, old: plans, lastTicks: &lastTicks, starting: generation == nil)
                generation = table.generation
            }
            let now = clock()
            for (name, plan) in plans {
                guard let tick = plan.next, tick <= now else { continue }
                await fire(plan.schedule, tick: tick)
                lastTicks[name] = tick
                var next = plan.schedule.nextTick(after: tick)
                // Far behind (the process was paused): carry on from now rather than running the backlog.
                if let upcoming = next, upcoming < now.addingTimeInterval(-1) { next = plan.schedule.nextTick(after: now) }
                plans[name]?.next = next
            }
            let earliest = plans.values.compactMap(\.next).min()
            let wait = min(max(earliest.map { $0.timeIntervalSince(clock()) } ?? 1, 0), 1)
            if wait > 0 { try? await Task.sleep(for: .milliseconds(Int64((wait * 1000).rounded(.up)))) }
        }
    }

    /// The ticks on record; retried while the store cannot answer (a database still starting). `nil`: cancelled.
    private func loadTicks() async -> [String: Date]? {
        while !Task.isCancelled {
            do {
                return try await gateway.store.scheduleTicks()
            } catch {
                logger.warning("could not read the schedules' last ticks; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
        return nil
    }

    /// Plans for the schedules in force: unchanged ones keep their next tick; changed ones start from now; at start
    /// (and for a schedule seen again) ticks missed since the last on record follow the schedule's `missed` policy.
    private func replan(
        _ schedules: [Schedule], old: [String: Plan], lastTicks: inout [String: Date], starting: Bool
    ) async -> [String: Plan] {
        let now = clock()
        var plans: [String: Plan] = [:]
        for schedule in schedules {
            if let existing = old[schedule.name] {
                plans[schedule.name] = existing.schedule == schedule ? existing : Plan(schedule: schedule, next: schedule.nextTick(after: now))
                continue
            }
            guard let last = lastTicks[schedule.name], let firstMissed = schedule.nextTick(after: last), firstMissed <= now else {
                plans[schedule.name] = Plan(schedule: schedule, next: schedule.nextTick(after: lastTicks[schedule.name].map { max($0, now) } ?? now))
                continue
            }
            switch schedule.missed {
            case .skip:
                logger.notice("schedule missed ticks while no node ran; skipping them", metadata: ["schedule": .string(schedule.name)])
            case .runOnce:
                // The first missed tick names the catch-up task, the same on every node that starts from this record;
                // the record moves to now, so a node that starts later sees nothing missed.
                logger.notice("schedule missed ticks while no node ran; running it once", metadata: ["schedule": .string(schedule.name)])
                await fire(schedule, tick: firstMissed, recordedAs: now)
                lastTicks[schedule.name] = now
            }
            plans[schedule.name] = Plan(schedule: schedule, next: schedule.nextTick(after: now))
        }
        if !starting {
            let removed = Set(old.keys).subtracting(plans.keys)
            if !removed.isEmpty { logger.notice("schedules removed", metadata: ["schedules": "\(removed.sorted())"]) }
        }
        return plans
    }

    /// Submits the tick's task (a duplicate when another node got there first), then records the tick. A refusal
    /// that may pass (a full queue, a database away) is tried again for a few seconds; a bad request is not.
    private func fire(_ schedule: Schedule, tick: Date, recordedAs recorded: Date? = nil) async {
        let id = schedule.taskID(forTick: tick)
        for attempt in 1...5 {
            do throws(GatewayError) {
                let submission = try await gateway.submit(
                    cmd: schedule.cmd, args: schedule.args, uid: schedule.uid, taskID: id, privileged: true, schedule: schedule.name)
                if !submission.duplicate {
                    logger.info("schedule ticked", metadata: ["schedule": .string(schedule.name), "task": .string(submission.task.id)])
                }
                do {
                    try await gateway.store.recordScheduleTick(name: schedule.name, at: recorded ?? tick)
                } catch {
                    logger.warning("could not record a schedule's tick", metadata: ["schedule": .string(schedule.name), "error": "\(error)"])
                }
                return
            } catch where error.code >= 500 && attempt < 5 {
                try? await Task.sleep(for: .milliseconds(200 * attempt))
            } catch {
                logger.error(
                    "schedule tick not run", metadata: ["schedule": .string(schedule.name), "task": .string(id), "error": "\(error.info)"])
                return
            }
        }
    }
}

/// A schedule as `GET /api/v1/schedules` and `taskgate schedules` show it.
public struct ScheduleStatus: Sendable, Codable, Equatable {
    public var name: String
    public var cmd: String
    public var args: [String: JSONValue]
    public var cron: String
    public var timezone: String
    public var missed: String
    public var uid: String?
    public var nextRun: Date?
    public var lastRun: Date?

    enum CodingKeys: String, CodingKey { case name, cmd, args, cron, timezone, missed, uid, nextRun, lastRun }

    // `nil` fields are written as `null`, as in `TaskRecord`.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(all: [
            .name: name, .cmd: cmd, .args: args, .cron: cron, .timezone: timezone, .missed: missed, .uid: uid,
            .nextRun: nextRun, .lastRun: lastRun
        ])
    }
}

extension Gateway {
    /// The schedules in force, by name, with their next tick and the last one any node ran.
    public func schedules(now: Date = Date()) async throws(GatewayError) -> [ScheduleStatus] {
        let ticks: [String: Date]
        do {
            ticks = try await store.scheduleTicks()
        } catch {
            throw storeFailure("the schedules' last ticks could not be read")
        }
        return registry.current.schedules.sorted { $0.name < $1.name }.map { schedule in
            ScheduleStatus(
                name: schedule.name, cmd: schedule.cmd, args: schedule.args, cron: schedule.cron.description,
                timezone: schedule.timezoneName, missed: schedule.missed.rawValue, uid: schedule.uid,
                nextRun: schedule.nextTick(after: now), lastRun: ticks[schedule.name])
        }
    }
}
