import NIOPosix

/// The task workers' threads. Handlers run here (as Swoole's task workers ran in their own processes), so a
/// CPU-bound handler occupies a worker thread, never a server event loop or the Swift concurrency pool that
/// the connections' code runs on.
public final class TaskWorkerExecutor: TaskExecutor {
    private let threads: NIOThreadPool

    public init(threadCount: Int) {
        precondition(threadCount > 0)
        threads = NIOThreadPool(numberOfThreads: threadCount)
        threads.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        threads.submit { _ in job.runSynchronously(on: executor) }
    }

    public func shutdown() async {
        try? await threads.shutdownGracefully()
    }
}
