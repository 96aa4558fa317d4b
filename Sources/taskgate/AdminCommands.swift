import ArgumentParser
import Foundation
import TaskGateCore

struct ReloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload", abstract: "Reload the task handlers softly: connections stay, running tasks finish.")
    @OptionGroup var options: AdminOptions
    @Option(help: "Reload only this node of a cluster (default: every node).")
    var node: String?

    func run() async throws {
        let path = node.map { "/api/v1/reload?node=\($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $0)" }
        let result = try await options.client().post(path ?? "/api/v1/reload", body: NoBody(), as: AdminAPI.ReloadSummary.self)
        print("reloaded: generation \(result.generation), handlers: \(result.handlers.joined(separator: ", "))")
        // A cluster answers per node; a single node's one answer is the line above.
        let nodes = result.nodes
        guard nodes.count > 1 || nodes.first?.node != Gateway.standaloneNodeID else { return }
        for answer in nodes {
            if let error = answer.error {
                print("  \(answer.node): refused: \(error)")
            } else {
                print("  \(answer.node): generation \(answer.generation ?? 0), handlers: \((answer.handlers ?? []).joined(separator: ", "))")
            }
        }
    }
}

struct NodesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "nodes", abstract: "List the live nodes of a cluster.")
    @OptionGroup var options: AdminOptions

    func run() async throws {
        let list = try await options.client().get("/api/v1/nodes", as: AdminAPI.NodeList.self)
        print("NODE\tCLIENTS\tRUNNING\tSTARTED\tHEARTBEAT")
        for node in list.nodes {
            let marker = node.`self` ? " (answered)" : ""
            print("\(node.id)\t\(node.clients)\t\(node.running)\t\(WireJSON.formatTimestamp(node.startedAt))\t\(WireJSON.formatTimestamp(node.heartbeatAt))\(marker)")
        }
    }
}

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the connected clients.")
    @OptionGroup var options: AdminOptions

    func run() async throws {
        let list = try await options.client().get("/api/v1/clients", as: AdminAPI.ClientList.self)
        guard !list.clients.isEmpty else {
            print("no clients connected")
            return
        }
        print("UID\tTRANSPORT\tNODE\tREMOTE\tSINCE\tID")
        for client in list.clients {
            let admin = client.admin ? " admin" : ""
            print(
                "\(client.uid)\t\(client.transport.rawValue)\t\(client.node ?? Gateway.standaloneNodeID)\t\(client.remote ?? "-")\tsince \(WireJSON.formatTimestamp(client.connectedAt))\t\(client.id)\(admin)"
            )
        }
    }
}

struct HandlersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "handlers", abstract: "List the task handlers.")
    @OptionGroup var options: AdminOptions

    func run() async throws {
        let list = try await options.client().get("/api/v1/handlers", as: AdminAPI.HandlerList.self)
        print("generation \(list.generation)")
        for handler in list.handlers {
            print("\(handler.name)\t\(handler.description)")
        }
    }
}

struct SubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit", abstract: "Submit a task.",
        discussion: "Example: taskgate submit sleep --uid alice --arg ms=2000 --wait")
    @OptionGroup var options: AdminOptions

    @Argument(help: "The task handler, e.g. echo, sleep, primes, fail.")
    var cmd: String

    @Option(help: "Whose connections get the task's events.")
    var uid: String?

    @Option(help: "Client-chosen task id (submitting it again returns the same task).")
    var id: String?

    @Option(name: .customLong("arg"), help: "An argument as key=value; the value is read as JSON when it parses (2000, true), else as text.")
    var arguments: [String] = []

    @Flag(help: "Wait for the task to finish, showing its progress.")
    var wait = false

    func run() async throws {
        let args = try Self.parseArguments(arguments)
        let client = options.client()
        let task = try await client.post(
            "/api/v1/tasks", body: AdminAPI.SubmitRequest(cmd: cmd, args: args, uid: uid, id: id), as: TaskRecord.self)
        print("submitted \(task.id) (\(task.cmd), \(task.status.rawValue))")
        guard wait else { return }
        let finished = try await waitForTask(task.id, client: client)
        printTask(finished)
        if finished.status != .succeeded { throw ExitCode(2) }
    }

    static func parseArguments(_ pairs: [String]) throws -> [String: JSONValue] {
        var args: [String: JSONValue] = [:]
        for pair in pairs {
            guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                throw ValidationError("--arg takes key=value, got '\(pair)'")
            }
            let key = String(pair[..<equals])
            let text = String(pair[pair.index(after: equals)...])
            args[key] = (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))) ?? .string(text)
        }
        return args
    }
}

/// Polls the task until it is final, drawing a progress bar on stderr.
func waitForTask(_ id: String, client: AdminClient) async throws -> TaskRecord {
    while true {
        let task = try await client.get(taskPath(id), as: TaskRecord.self)
        let width = 30
        let filled = Int((task.progress * Double(width)).rounded())
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        FileHandle.standardError.write(Data("\r[\(bar)] \(Int(task.progress * 100))% \(task.status.rawValue)   ".utf8))
        if task.isFinal {
            FileHandle.standardError.write(Data("\n".utf8))
            return task
        }
        try await Task.sleep(for: .milliseconds(200))
    }
}

func printTask(_ task: TaskRecord) {
    print("id:       \(task.id)")
    print("cmd:      \(task.cmd)")
    print("uid:      \(task.uid ?? "-")")
    print("status:   \(task.status.rawValue)")
    print("progress: \(Int(task.progress * 100))%")
    if let result = task.result, !result.isNull { print("result:   \(result.text)") }
    if let error = task.error { print("error:    \(error)") }
    print("created:  \(WireJSON.formatTimestamp(task.createdAt))")
    if let started = task.startedAt { print("started:  \(WireJSON.formatTimestamp(started))") }
    if let finished = task.finishedAt { print("finished: \(WireJSON.formatTimestamp(finished))") }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show one task.")
    @OptionGroup var options: AdminOptions
    @Argument(help: "Task id.") var id: String

    func run() async throws {
        printTask(try await options.client().get(taskPath(id), as: TaskRecord.self))
    }
}

struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancel a queued or running task.")
    @OptionGroup var options: AdminOptions
    @Argument(help: "Task id.") var id: String

    func run() async throws {
        let task = try await options.client().post(taskPath(id) + "/cancel", body: NoBody(), as: TaskRecord.self)
        print("cancel requested for \(task.id) (now \(task.status.rawValue))")
    }
}

struct TasksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tasks", abstract: "List recent tasks, newest first.")
    @OptionGroup var options: AdminOptions
    @Option(help: "Only this user's tasks.") var uid: String?
    @Option(help: "Only tasks in this status.") var status: String?
    @Option(help: "At most this many.") var limit = 20

    func run() async throws {
        var query = ["limit=\(limit)"]
        if let uid { query.append("uid=\(uid.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? uid)") }
        if let status { query.append("status=\(status)") }
        let list = try await options.client().get("/api/v1/tasks?\(query.joined(separator: "&"))", as: AdminAPI.TaskList.self)
        if list.tasks.isEmpty { print("no tasks") }
        for task in list.tasks {
            print("\(task.id)\t\(task.cmd)\t\(task.status.rawValue)\t\(Int(task.progress * 100))%\t\(task.uid ?? "-")\t\(WireJSON.formatTimestamp(task.createdAt))")
        }
    }
}

/// A task id in a path, percent-encoded: scoped ids hold `~` and a uid may hold `@` or `:`.
func taskPath(_ id: String) -> String {
    "/api/v1/tasks/" + (id.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? id)
}

struct SchedulesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedules", abstract: "List the recurring schedules with their next and last run.")
    @OptionGroup var options: AdminOptions
    @Flag(help: "Print the server's JSON answer instead of a table.") var json = false

    func run() async throws {
        let list = try await options.client().get("/api/v1/schedules", as: AdminAPI.ScheduleList.self)
        if json {
            print(try WireJSON.encode(list))
            return
        }
        guard !list.schedules.isEmpty else {
            print("no schedules")
            return
        }
        print("NAME\tCMD\tCRON\tTIMEZONE\tNEXT RUN\tLAST RUN")
        for schedule in list.schedules {
            let next = schedule.nextRun.map(WireJSON.formatTimestamp) ?? "never"
            let last = schedule.lastRun.map(WireJSON.formatTimestamp) ?? "-"
            print("\(schedule.name)\t\(schedule.cmd)\t\(schedule.cron)\t\(schedule.timezone)\t\(next)\t\(last)")
        }
    }
}
