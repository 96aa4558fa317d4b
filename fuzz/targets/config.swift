// libFuzzer target `config`: bytes → `ConfigLoader.parse(_:file:reservedNames:)`, the config loader on text in
// memory (what `ConfigLoader.load(path:)` does after reading the file, including the JSON5 decoding,
// `GatewayConfig`'s checks and, for a syntax error, `JSONSyntaxLocator`).
//
// Compiled together with TaskGateCore's own source files (see scripts/fuzz.sh), so there is no `import` of
// TaskGateCore.
// Properties checked on every input (a broken one traps, and libFuzzer keeps the input as a crash):
//   1. parsing never crashes; a failure is a `ConfigError` (typed throws) naming the file and the problem;
//   2. a config that loads respects its own checks: handler names are valid and not reserved, every handler has
//      an executable and its limits in range, a relative `cwd` has been made absolute;
//   3. `JSONSyntaxLocator.firstError` terminates on the same bytes (it runs only for syntax errors otherwise).
//
// The inputs that crashed it (fuzz/regressions/config-*: invalid UTF-8 in an unquoted JSON5 key, 16 384 nested `[`)
// are replayed first by scripts/fuzz.sh; `ConfigTests.invalidUTF8AndDeepNestingAreConfigErrorsNotCrashes` covers them
// in the Swift tests.

import Foundation

@inline(never)
func fail(_ what: String, _ input: UnsafeBufferPointer<UInt8>) -> Never {
    let shown = String(decoding: input.prefix(2048), as: UTF8.self)
    fatalError("config: \(what)\ninput (\(input.count) bytes): \(shown.debugDescription)")
}

let configFile = "/etc/taskgate/fuzz.json"
let reservedNames: Set<String> = ["echo", "sleep", "primes", "fail", "ping", "status", "cancel"]

@_cdecl("LLVMFuzzerTestOneInput")
public func configFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    let bytes = Data(buffer: input)
    do {
        let config = try ConfigLoader.parse(bytes, file: configFile, reservedNames: reservedNames)
        // The server section is kept as texts: its values are the settings table's to check (in TaskGateServer,
        // where a bad one is refused by its place in the file; ServerSettingsTests).
        for (name, handler) in config.handlers {
            if name.utf8.count > 64 || !Identifier.isValidTaskID(name) { fail("loaded handler name \(name.debugDescription)", input) }
            if reservedNames.contains(name) { fail("loaded reserved handler name \(name)", input) }
            if handler.command.first?.isEmpty ?? true { fail("handler \(name) has no executable", input) }
            if !(1...86_400_000).contains(handler.timeoutMs) || !(1...1000).contains(handler.concurrency)
                || !(1...10).contains(handler.maxAttempts) || !(1...64).contains(handler.processes) || handler.maxRequests < 0
            {
                fail("handler \(name) has a limit out of range: \(handler)", input)
            }
            if let directory = handler.workingDirectory, !directory.hasPrefix("/") {
                fail("handler \(name) kept a relative cwd \(directory.debugDescription)", input)
            }
        }
    } catch {
        // Typed throws: `error` is a `ConfigError`.
        if error.file != configFile { fail("ConfigError names file \(error.file.debugDescription)", input) }
        if error.problem.isEmpty { fail("ConfigError without a problem: \(error)", input) }
    }
    _ = JSONSyntaxLocator.firstError(in: Array(input))
    return 0
}
