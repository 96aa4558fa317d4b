import Testing

@testable import TaskGateServer

@Suite("Server settings: flag, then environment, then file, then default", .timeLimit(.minutes(1)))
struct ServerSettingsTests {
    @Test func defaultsComeFromTheSettingsType() throws {
        let settings = try ServerSettings.read(arguments: [], environment: [:])
        let defaults = ServerSettings()
        #expect(settings.port == defaults.port)
        #expect(settings.taskWorkers == defaults.taskWorkers)
        #expect(settings.store == .sqlite)
        #expect(settings.httpLimits == defaults.httpLimits)
        #expect(settings.limits == defaults.limits)
        #expect(settings.taskRetention == defaults.taskRetention)
    }

    @Test func aFlagWinsOverTheEnvironmentWhichWinsOverTheFile() throws {
        let file = ["task_workers": ["3"], "queue_limit": ["30"], "port": ["7000"], "allowed_origins": ["https://a.example"]]
        let environment = ["TASKGATE_TASK_WORKERS": "5", "TASKGATE_QUEUE_LIMIT": "50"]
        let settings = try ServerSettings.read(arguments: ["--task-workers", "7"], environment: environment, file: file)
        #expect(settings.taskWorkers == 7)
        #expect(settings.queueLimit == 50)
        #expect(settings.port == 7000)
        #expect(settings.host == ServerSettings().host)
        #expect(settings.allowedOrigins == ["https://a.example"])
    }

    @Test func everyFormOfAFlagIsRead() throws {
        let settings = try ServerSettings.read(
            arguments: [
                "--port=0", "--enable-echo", "--ws-path", "/a", "--ws-path=/b", "--fair-share", "off", "--log-dir", "",
                "--task-retention-count", "0", "--header-timeout", "3", "--token-algorithm", "hs512",
            ],
            environment: [:])
        #expect(settings.port == 0)
        #expect(settings.enableEchoRoute)
        #expect(settings.webSocketPaths == ["/a", "/b"])
        #expect(!settings.fairShare)
        #expect(settings.logDirectory == nil)
        #expect(settings.taskRetention.count == nil)
        #expect(settings.httpLimits.headerTimeout == .seconds(3))
        #expect(settings.userTokens.secretAlgorithm == .hs512)
    }

    @Test func listsAreCommaSeparatedInTheEnvironment() throws {
        let settings = try ServerSettings.read(
            arguments: [], environment: ["TASKGATE_ALLOWED_ORIGINS": "https://a.example, https://b.example", "TASKGATE_ENABLE_ECHO": "true"])
        #expect(settings.allowedOrigins == ["https://a.example", "https://b.example"])
        #expect(settings.enableEchoRoute)
    }

    @Test(arguments: [
        (["--bogus", "1"], "unknown option '--bogus'"),
        (["--port", "70000"], "from 0 to 65535"),
        (["--port"], "--port needs a value"),
        (["8080"], "unexpected argument '8080'"),
        (["--store", "redis"], "--store must be memory, sqlite or postgres"),
        (["--store", "postgres"], "needs --database-url"),
        (["--auth", "token"], "token mode needs"),
        (["--ws-path", "/api/x"], "--ws-path"),
        (["--task-workers", "0"], "at least 1"),
    ])
    func badSettingsAreRefusedWithTheirName(arguments: [String], message: String) {
        #expect {
            _ = try ServerSettings.read(arguments: arguments, environment: [:])
        } throws: { error in
            "\(error)".contains(message)
        }
    }

    @Test func aBadVariableIsNamedToo() {
        #expect {
            _ = try ServerSettings.read(arguments: [], environment: ["TASKGATE_QUEUE_LIMIT": "lots"])
        } throws: { error in
            "\(error)".contains("$TASKGATE_QUEUE_LIMIT")
        }
    }

    @Test func aFileKeyThatIsNoSettingOrABadFileValueIsNamedByItsPlace() {
        #expect(throws: SettingError("/etc/taskgate.json: server.tsak_workers: no such setting (see taskgate serve --help)")) {
            _ = try ServerSettings.read(arguments: [], environment: [:], file: ["tsak_workers": ["2"]], fileName: "/etc/taskgate.json")
        }
        #expect {
            _ = try ServerSettings.read(arguments: [], environment: [:], file: ["fair_share": ["no"]], fileName: "/etc/taskgate.json")
        } throws: { error in
            "\(error)".hasPrefix("/etc/taskgate.json: server.fair_share: ")
        }
        for (key, value, range) in [("port", "70000", "from 0 to 65535"), ("task_workers", "0", "at least 1")] {
            #expect {
                _ = try ServerSettings.read(arguments: [], environment: [:], file: [key: [value]], fileName: "/etc/taskgate.json")
            } throws: { error in
                "\(error)".hasPrefix("/etc/taskgate.json: server.\(key): ") && "\(error)".contains("must be a whole number \(range)")
            }
        }
    }

    @Test func helpAndTheReadmeTableListEverySettingOnce() {
        let flags = ServerSettings.table.map(\.flag)
        #expect(Set(flags).count == flags.count)
        for setting in ServerSettings.table {
            #expect(ServerSettings.helpText.contains("  \(setting.flag)"))
            #expect(ServerSettings.helpText.contains("$\(setting.environmentVariable)"))
            #expect(ServerSettings.markdownTable.contains("| `\(setting.flag)` | `$\(setting.environmentVariable)` |"))
        }
    }
}
