import Foundation
import GRDB
import Synchronization

/// Copies the write-ahead log back into the database on a connection and a thread of its own, so that the one
/// writer never stops to do it. SQLite's automatic checkpoint runs inside the commit that crosses its threshold
/// (1,000 pages): the serial writer spent that time copying pages rather than committing the next batch, and copied
/// the same hot pages (the tasks' indexes) again at every threshold. A passive checkpoint runs beside the writer's
/// transactions and waits for no one. The writer keeps a higher automatic threshold as a backstop, for when this
/// one falls behind (`backstopPages`).
final class WALCheckpointer: Sendable {
    static let backstopPages = 10_000
    /// The least time between two checkpoints started after commits.
    static let spacing = Duration.milliseconds(100)

    /// Its own serial queue runs the checkpoints, off the writer's thread.
    private let connection: DatabaseQueue
    private struct State {
        var running = false
        var lastStart = ContinuousClock.now - WALCheckpointer.spacing
        var completed = 0
    }
    private let state = Mutex(State())

    init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        connection = try DatabaseQueue(path: path, configuration: configuration)
    }

    /// After a commit: starts a checkpoint unless one runs or one started within `spacing`. Cheap when it does not.
    func committed() {
        let start = state.withLock { state -> Bool in
            guard !state.running, ContinuousClock.now - state.lastStart >= Self.spacing else { return false }
            state.running = true
            state.lastStart = .now
            return true
        }
        guard start else { return }
        connection.asyncWriteWithoutTransaction { db in
            // A full or failing disk makes it fail; the writer reports that, and the next commit tries again.
            let done = (try? db.checkpoint(.passive)) != nil
            self.state.withLock { state in
                state.running = false
                if done { state.completed += 1 }
            }
        }
    }

    /// How many checkpoints started after commits have gone through.
    var completed: Int { state.withLock { $0.completed } }

    /// One passive checkpoint: the log's frames, and how many of them are now in the database.
    @discardableResult
    func checkpoint() throws -> (walFrameCount: Int, checkpointedFrameCount: Int) {
        try connection.writeWithoutTransaction { try $0.checkpoint(.passive) }
    }
}
