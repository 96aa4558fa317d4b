import ArgumentParser
import NIOCore
import NIOPosix

@main
struct TaskGateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "taskgate",
        abstract: "A task gateway: WebSocket, long-poll and REST clients sharing one task pool.",
        discussion: """
            `serve` runs the server. The other commands talk to a running server's admin API \
            (--url, default $TASKGATE_URL or http://127.0.0.1:9501).
            """,
        subcommands: [
            ServeCommand.self, ReloadCommand.self, ListCommand.self, SubmitCommand.self, StatusCommand.self,
            CancelCommand.self, TasksCommand.self, HandlersCommand.self, NodesCommand.self, SchedulesCommand.self,
            TokenCommand.self,
        ]
    )

    static func main() async {
        // Swift tasks run on the server's NIO event loops instead of a second pool of threads: a client message, the
        // task pool's actor and the reply then stay on the same few threads, without a thread wake-up per hop.
        // Handlers still run on the task workers' own threads. It has to happen before the first task starts.
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        await main(nil)
    }
}
