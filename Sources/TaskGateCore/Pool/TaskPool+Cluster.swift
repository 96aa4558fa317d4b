import Foundation
import Logging

/// In a cluster: queued tasks wait in the shared store, free workers claim them, expired leases are reclaimed, and
/// limits and cancels go through the coordinator.
extension TaskPool {
    /// In a cluster the queue is the shared store's, so the limits count what is waiting there.
    func reserveInCluster(uid: String?, shared: any SharedTaskStore) async throws(GatewayError) {
        let unreachable = GatewayError.databaseUnreachable
        guard shared.isReachable else { throw unreachable }
        let counts: (queued: Int, uid: Int)
        do {
            counts = try await shared.activeCounts(uid: uid)
        } catch {
            throw unreachable
        }
        guard counts.queued + reserved < configuration.queueLimit + configuration.workers else {
            throw GatewayError(.queueFull, "the task queue is full (\(configuration.queueLimit) waiting); try again later")
        }
        if let uid {
            guard counts.uid + reservedByUID[uid, default: 0] < configuration.tasksPerUID else {
                throw GatewayError(
                    .tooManyRequests, "uid '\(uid)' already has \(configuration.tasksPerUID) tasks queued or running; wait for some to finish")
            }
            reservedByUID[uid, default: 0] += 1
        }
        reserved += 1
    }

    /// A queued task is cancelled here, unless a node claims it first; a task running on another node is asked to
    /// stop through the store.
    func cancelInCluster(id: String, shared: any SharedTaskStore) async -> CancelOutcome {
        guard let record = try? await store.task(id: id), !record.status.isFinal else { return .notActive }
        if record.status == .queued || record.status == .scheduled {
            if let cancelled = await end(record, as: .cancelled, error: "cancelled before it started", condition: .queued) {
                return .dequeued(cancelled)
            }
            if running[id] != nil { return await cancel(id: id) }  // claimed here meanwhile
            guard let latest = try? await store.task(id: id), latest.status == .running else { return .notActive }
        }
        do {
            try await shared.requestCancel(taskID: id)
        } catch {
            logger.error("could not ask for a cancel", metadata: ["task": .string(id), "error": "\(error)"])
        }
        return .stopping
    }

    // MARK: - Claiming from the shared store (a cluster)

    /// Claims queued tasks from the shared store while workers are free. Called when a task is queued here or
    /// elsewhere, when a task ends, and on a timer (for retries whose backoff ran out and reclaimed tasks).
    public func claimWork() {
        guard shared != nil, accepting else { return }
        if claiming {
            claimAgain = true
            return
        }
        claiming = true
        Task { await self.claimLoop() }
    }

    func claimLoop() async {
        guard let shared else { return }
        repeat {
            claimAgain = false
            while accepting, running.count < configuration.workers {
                let now = ContinuousClock.now
                let held = pacer.blocked(now: now)
                let rules = ClaimRules(fairShare: configuration.fairShare, excludedCommands: held.commands)
                let next: TaskRecord?
                do {
                    next = try await shared.claimNext(rules)
                } catch {
                    break  // the database is away: the periodic claim tries again
                }
                guard let claimed = next else {
                    if let until = held.until { wakeUp(at: until) }
                    // Nothing due now: wake when the earliest delayed task is (any node may claim it then).
                    if let due = try? await shared.nextDueDate() {
                        wakeUp(at: .now + .milliseconds(max(0, Int64((due.timeIntervalSinceNow * 1000).rounded(.up)))))
                    }
                    break
                }
                pacer.started(claimed.cmd, limit: handlers().handler(named: claimed.cmd)?.rateLimit, now: now)
                startClaimed(claimed)
            }
        } while claimAgain && accepting && running.count < configuration.workers
        claiming = false
    }

    /// A stored task's options, as validated when it was submitted; the handler's defaults if its handler changed
    /// so much that they no longer validate.
    static func options(of record: TaskRecord, on handler: any TaskHandler) -> TaskOptions {
        (try? TaskOptions(args: record.args.objectValue ?? [:], handler: handler))
            ?? (try! TaskOptions(args: [:], handler: handler))  // no overrides: cannot fail
    }

    func startClaimed(_ record: TaskRecord) {
        let id = record.id
        let task: Task<Void, Never>
        if let handler = handlers().handler(named: record.cmd) {
            let options = Self.options(of: record, on: handler)
            task = Task { await self.execute(Job(record: record, handler: handler, options: options), claimed: true) }
        } else {
            task = Task {
                await self.end(record, as: .failed, error: "no handler named '\(record.cmd)' on node \(self.shared?.nodeID ?? "?")")
                self.running[id] = nil
                self.startWaitingJobs()
            }
        }
        running[id] = Running(cmd: record.cmd, uid: record.uid, task: task, stopReason: nil)
    }

    /// Tasks whose node stopped heartbeating: run again (idempotent, attempts left) or failed as interrupted, by the
    /// same rules as a restart. Any node may do it; the store lets only one win each task.
    public func reclaimExpiredTasks() async {
        guard let shared, accepting, let expired = try? await shared.expiredTasks(limit: 100), !expired.isEmpty else { return }
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
        claimWork()
    }

    /// Another node asked to cancel a task; it is ours only if it runs here.
    public func cancelIfRunningHere(id: String) {
        guard var entry = running[id] else { return }
        if entry.stopReason == nil { entry.stopReason = .cancelled }
        running[id] = entry
        entry.task.cancel()
    }
}
