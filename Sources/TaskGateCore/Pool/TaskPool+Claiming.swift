import Foundation
import Logging

/// Starting waiting tasks: free workers claim the next due task from the coordinator (this node's queue, or the
/// cluster's store), within each handler's start rate; tasks a lost node left behind are reclaimed.
extension TaskPool {
    /// Claims waiting tasks while workers are free, from outside the pool (a task queued on another node, the
    /// periodic claim for retries whose backoff ran out); it returns at once.
    public func claimWork() {
        guard accepting else { return }
        Task { await self.startWaitingJobs() }
    }

    /// Claims and starts waiting tasks while workers are free. Called when a task is queued, when one ends and at a
    /// wake-up. A cluster's claims suspend: a call meanwhile asks the loop under way for one more round instead.
    func startWaitingJobs() async {
        if claiming {
            claimAgain = true
            return
        }
        claiming = true
        repeat {
            claimAgain = false
            while accepting, running.working < configuration.workers {
                let now = ContinuousClock.now
                let table = handlers()
                let rules = ClaimRules(
                    fairShare: configuration.fairShare, excludedCommands: pacer.blocked(now: now).commands,
                    pacedCommands: table.pacedCommands)
                // One claim for every free worker: in a cluster, one round trip rather than one per task.
                let limit = configuration.workers - running.working
                let claimed: [TaskRecord]
                do {
                    claimed = try await coordinator.claim(rules, runningHere: running.byLane, limit: limit)
                } catch {
                    break  // the database is away: the periodic claim tries again
                }
                for task in claimed {
                    pacer.started(task.cmd, limit: table.handler(named: task.cmd)?.rateLimit, now: now)
                    startClaimed(task)
                }
                // Fewer than asked for: nothing more may start now, so no second claim to hear it.
                guard claimed.count == limit else {
                    await wakeWhenATaskMayStart()
                    break
                }
            }
        } while claimAgain && accepting && running.working < configuration.workers
        claiming = false
        signalIdleIfNeeded()
    }

    /// Nothing more may start now: wake when a held handler's rate allows a start, and when the earliest waiting
    /// task is due (in a cluster any node may claim it then).
    private func wakeWhenATaskMayStart() async {
        if let until = pacer.blocked(now: .now).until { wakeUp(at: until) }
        if let due = try? await coordinator.nextDueDate() {
            wakeUp(at: .now + .milliseconds(max(0, Int64((due.timeIntervalSinceNow * 1000).rounded(.up)))))
        }
    }

    /// A stored task's options, as validated when it was submitted; the handler's defaults if its handler changed
    /// so much that they no longer validate.
    static func options(of record: TaskRecord, on handler: any TaskHandler) -> TaskOptions {
        (try? TaskOptions(args: record.args.members(named: TaskOptions.argumentNames), handler: handler))
            ?? (try! TaskOptions(args: [:], handler: handler))  // no overrides: cannot fail
    }

    /// Runs a claimed task on the handler table in force now (a reload's handlers run the tasks queued before it).
    func startClaimed(_ record: TaskRecord) {
        let id = record.id
        let task: Task<Void, Never>
        if let handler = handlers().handler(named: record.cmd) {
            let options = Self.options(of: record, on: handler)
            task = Task { await self.execute(Job(record: record, handler: handler, options: options)) }
        } else {
            let place = coordinator.nodeID.map { " on node \($0)" } ?? " any more (removed by a reload)"
            task = Task {
                await self.end(record, as: .failed, error: "no handler named '\(record.cmd)'\(place)")
                await self.ended(id)
            }
        }
        // The task starts only after it is in `running`, so its completion always finds its entry.
        running[id] = Running(cmd: record.cmd, uid: record.uid, task: task, stopReason: nil)
    }

    /// A task no longer runs here: its worker claims the next.
    func ended(_ id: String) async {
        running[id] = nil
        // Also after `handlerReturned`: what its end queued (a retry) may need a wake-up.
        await startWaitingJobs()
    }

    /// A task's handler has returned: its worker takes the next task while its end is recorded (a durable store's
    /// commit is milliseconds in which a worker would sit idle).
    func handlerReturned(_ id: String) async {
        guard var entry = running[id], !entry.isFinishing else { return }
        entry.isFinishing = true
        running[id] = entry
        await startWaitingJobs()
    }

    /// Tasks whose node stopped heartbeating: run again (idempotent, attempts left) or failed as interrupted, by the
    /// same rules as a restart. Any node may do it; the store lets only one win each task.
    public func reclaimExpiredTasks() async {
        guard accepting else { return }
        let expired = await coordinator.expiredTasks(limit: 100)
        guard !expired.isEmpty else { return }
        let table = handlers()
        for var record in expired {
            let lostNode = record.node ?? "?"
            guard let handler = table.handler(named: record.cmd), handler.isIdempotent,
                record.attempts < Self.options(of: record, on: handler).maxAttempts
            else {
                await end(
                    record, as: .failed, error: "interrupted: node \(lostNode) stopped while the task was running",
                    condition: .leaseExpired)
                continue
            }
            record.status = .queued
            record.error = "interrupted: node \(lostNode) stopped while it ran; running it again"
            if await persist(record, condition: .leaseExpired) {
                logger.notice("reclaimed a task from a lost node", metadata: ["task": .string(record.id), "node": .string(lostNode)])
            }
        }
        await startWaitingJobs()
    }

    /// Another node asked to cancel a task; it is ours only if it runs here.
    public func cancelIfRunningHere(id: String) {
        _ = stopRunning(id: id, because: .cancelled)
    }
}
