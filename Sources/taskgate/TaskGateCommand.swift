import ArgumentParser

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
            CancelCommand.self, TasksCommand.self, HandlersCommand.self, NodesCommand.self, TokenCommand.self,
        ]
    )
}
