import Foundation
import Synchronization

/// How long finished tasks stay on record (as BullMQ's removeOnComplete, Oban's pruner and River's cleaner do):
/// a finished task goes once it is older than `maxAge`, or once `count` newer finished tasks are kept. Queued,
/// scheduled and running tasks are never pruned. `nil`: no limit of that kind.
public struct TaskRetention: Sendable, Equatable {
    public static let defaultMaxAge = Duration.seconds(7 * 24 * 3600)
    public static let defaultCount = 100_000
    /// Rows deleted per statement, so that a large prune never holds the writer for long.
    public static let batchSize = 1000

    public var maxAge: Duration?
    public var count: Int?

    public init(maxAge: Duration? = Self.defaultMaxAge, count: Int? = Self.defaultCount) {
        self.maxAge = maxAge
        self.count = count
    }

    /// Finished tasks created before this are pruned.
    public func cutoff(now: Date = Date()) -> Date? {
        maxAge.map { now.addingTimeInterval(-Double($0.wholeMilliseconds) / 1000) }
    }
}

/// What the last prune did, for `/healthz`.
public struct RetentionReport: Sendable, Equatable {
    public var lastRun: Date?
    public var lastPruned = 0
    public var totalPruned = 0
    public var lastError: String?
}

extension Gateway {
    /// Deletes the finished tasks beyond the retention settings, a batch at a time. Safe on every node of a cluster at
    /// once (each deletes what is still there).
    @discardableResult
    public func pruneFinishedTasks(now: Date = Date()) async -> Int {
        let retention = configuration.taskRetention
        guard retention.maxAge != nil || retention.count != nil else { return 0 }
        do {
            let pruned = try await store.pruneFinishedTasks(
                createdBefore: retention.cutoff(now: now), keepingNewest: retention.count, batchSize: TaskRetention.batchSize)
            retentionReport.withLock { report in
                report.lastRun = now
                report.lastPruned = pruned
                report.totalPruned += pruned
                report.lastError = nil
            }
            if pruned > 0 { logger.info("pruned finished tasks", metadata: ["count": "\(pruned)"]) }
            return pruned
        } catch {
            retentionReport.withLock { report in
                report.lastRun = now
                report.lastError = "\(error)"
            }
            logger.error("could not prune finished tasks", metadata: ["error": "\(error)"])
            return 0
        }
    }

    public var lastRetentionReport: RetentionReport { retentionReport.withLock { $0 } }
}
