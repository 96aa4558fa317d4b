import Foundation
import Logging
import Testing

@testable import TaskGateCore

@Suite("Config file", .timeLimit(.minutes(2)))
struct ConfigTests {
    func parse(_ text: String) throws(ConfigError) -> GatewayConfig {
        try ConfigLoader.parse(Data(text.utf8), file: "/etc/taskgate.json", reservedNames: ["echo", "ping"])
    }

    func problem(_ text: String) -> String {
        do {
            _ = try parse(text)
            return "accepted"
        } catch {
            return error.description
        }
    }

    @Test func theExampleConfigLoads() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples/taskgate.json").path
        let config = try ConfigLoader.load(path: path)
        #expect(config.server.options["port"] == ["9501"])
        #expect(config.handlers["report"]?.kind == .command)
        #expect(config.handlers["export"]?.kind == .worker)
        #expect(config.handlers["export"]?.maxRequests == 100)
        #expect(config.handlers["report"]?.workingDirectory?.hasSuffix("/examples") == true)
    }

    @Test func commentsAndTrailingCommasAreAllowed() throws {
        let config = try parse("""
            // a comment
            { "handlers": { "a": { "type": "command", "command": ["true"], /* inline */ }, }, }
            """)
        #expect(config.handlers["a"]?.command == ["true"])
        #expect(config.handlers["a"]?.timeoutMs == 60_000)
    }

    @Test(arguments: [
        (#"{"handlers": {"a": {"type": "command"}}}"#, "/etc/taskgate.json: handlers.a.command: missing"),
        (#"{"handlers": {"a": {"type": "lambda", "command": ["x"]}}}"#, "/etc/taskgate.json: handlers.a.type:"),
        (#"{"handlers": {"a": {"type": "command", "command": []}}}"#, "/etc/taskgate.json: handlers.a.command: must name an executable"),
        (#"{"handlers": {"a": {"type": "worker", "command": ["x"], "proceses": 2}}}"#, "/etc/taskgate.json: handlers.a.proceses: unknown key"),
        (#"{"handlers": {"a": {"type": "worker", "command": ["x"], "processes": 0}}}"#, "/etc/taskgate.json: handlers.a.processes: must be from 1 to 64"),
        (#"{"handlers": {"a": {"type": "command", "command": ["x"], "timeout_ms": "5"}}}"#, "/etc/taskgate.json: handlers.a.timeout_ms: must be a whole number"),
        (#"{"handlers": {"a": {"type": "command", "command": ["x"], "max_requests": 5}}}"#, "/etc/taskgate.json: handlers.a.processes: 'processes' and 'max_requests' are for"),
        (#"{"handlers": {"echo": {"type": "command", "command": ["x"]}}}"#, "/etc/taskgate.json: handlers.echo: 'echo' is already a built-in"),
        (#"{"handlers": {"a b": {"type": "command", "command": ["x"]}}}"#, "/etc/taskgate.json: handlers.a b: a handler name is"),
        (#"{"server": {"port": [1, {}]}}"#, "/etc/taskgate.json: server.port: must be a list of strings or numbers"),
        (#"{"sever": {}}"#, "/etc/taskgate.json: sever: unknown key"),
        ("{\n  \"handlers\": {\n    \"a\": {\"type\": \"command\" \"command\": []}\n  }\n}", "/etc/taskgate.json: line 3, column 29: expected ',' or '}'"),
        ("{\"handlers\": {\"a\": \"x\"}}", "/etc/taskgate.json: handlers.a: must be"),
        ("{\"handlers\": ", "/etc/taskgate.json: line 1, column 14: unexpected end of file"),
    ])
    func badConfigsNameFileKeyAndProblem(text: String, expected: String) {
        let message = problem(text)
        #expect(message.hasPrefix(expected), "\(message)")
    }

    /// Found by fuzzing (fuzz/regressions/config-*): Foundation's JSON5 reader trapped on invalid UTF-8 in an
    /// unquoted key, and the syntax locator recursed once per bracket without end.
    @Test func invalidUTF8AndDeepNestingAreConfigErrorsNotCrashes() throws {
        #expect(throws: ConfigError.self) {
            try ConfigLoader.parse(Data([0x7B, 0xF8, 0x61, 0x61, 0x61, 0x61]), file: "/etc/taskgate.json")
        }
        let deep = Data(String(repeating: "[", count: 100_000).utf8)
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(deep, file: "/etc/taskgate.json") }
        let failure = JSONSyntaxLocator.firstError(in: Array(String(repeating: "[", count: 100_000).utf8))
        #expect(failure?.problem.contains("nested deeper") == true)
    }

    @Test func syntaxLocatorFindsTheFirstError() {
        #expect(JSONSyntaxLocator.firstError(in: Array(#"{"a": [1, 2,], "b": 'x'}"#.utf8)) == nil)
        #expect(JSONSyntaxLocator.firstError(in: Array("{\"a\": tru}".utf8))?.problem == "expected a value, found 'tru'")
        #expect(JSONSyntaxLocator.firstError(in: Array("[1]\n x".utf8))?.line == 2)
    }
}

@Suite("Configured handler registry", .timeLimit(.minutes(2)))
struct ConfiguredRegistryTests {
    func writeConfig(_ handlers: String, to path: String) throws {
        try "{\"handlers\": {\(handlers)}}".write(toFile: path, atomically: true, encoding: .utf8)
    }

    @Test func reloadReportsAddedChangedRemovedAndRefusesBadFiles() async throws {
        let path = temporaryDatabasePath().replacingOccurrences(of: "taskgate.sqlite", with: "taskgate.json")
        try writeConfig(#""a": {"type": "command", "command": ["true"]}, "b": {"type": "command", "command": ["true"]}"#, to: path)
        let registry = try ConfiguredHandlerRegistry(configPath: path, logger: Logger(label: "test"))
        #expect(registry.current.names == ["a", "b", "echo", "fail", "primes", "sleep"])
        let unchanged = try #require(registry.current.handler(named: "a") as? CommandHandler)

        try writeConfig(
            #""a": {"type": "command", "command": ["true"]}, "b": {"type": "command", "command": ["false"]}, "c": {"type": "command", "command": ["true"]}"#,
            to: path)
        let result = try await registry.reload()
        #expect(result.added == ["c"])
        #expect(result.changed == ["b"])
        #expect(result.removed == [])
        #expect(result.table.generation == 2)
        #expect((registry.current.handler(named: "a") as? CommandHandler)?.config == unchanged.config)

        try writeConfig(#""c": {"type": "command", "command": ["true"]}"#, to: path)
        #expect(try await registry.reload().removed == ["a", "b"])

        try "{ broken".write(toFile: path, atomically: true, encoding: .utf8)
        await #expect(throws: ConfigError.self) { try await registry.reload() }
        #expect(registry.current.generation == 3)
        #expect(registry.current.names.contains("c"))
    }
}
