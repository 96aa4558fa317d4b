// libFuzzer target `client_message`: bytes → `ClientMessage.decode`, the decoding of one raw client message.
//
// Compiled together with TaskGateCore's own source files (see scripts/fuzz.sh), so there is no `import`.
// Properties checked on every input (a broken one traps, and libFuzzer keeps the input as a crash):
//   1. decoding never crashes, and every failure is the typed `DecodeFailure` carrying a `bad_request` (400) with
//      an explanation; a `ref` it carries is at most 256 bytes;
//   2. a decoded message keeps the protocol's bounds (`cmd` 1-64 bytes, `ref` at most 256 bytes) and agrees with
//      `WireParser` on the same bytes (the input was a JSON object whose `cmd` is that string);
//   3. a decoded message written back as `{"cmd":…,"args":…,"ref":…}` decodes to the same message;
//   4. args kept as the client's text (`argsText`) read back as what `WireParser.parse` makes of the message's
//      args, have no whitespace outside strings and no repeated top-level key, and `members(named:)` finds every
//      top-level member in them;
//   5. `WireParser.parseMessage` (args checked, not built) accepts exactly what `parse` does, with the same args.

@inline(never)
func fail(_ what: String, _ input: UnsafeBufferPointer<UInt8>) -> Never {
    let shown = String(decoding: input.prefix(2048), as: UTF8.self)
    fatalError("client_message: \(what)\ninput (\(input.count) bytes): \(shown.debugDescription)")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func clientMessageFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    // 5.
    let whole = try? WireParser.parse(input)
    let split = try? WireParser.parseMessage(input)
    if (whole == nil) != (split == nil) { fail("parse and parseMessage disagree on validity", input) }
    if case .object(let members)? = whole, let args = split?.args {
        let value: JSONValue
        switch args {
        case .text(let text): value = text.value
        case .value(let parsed): value = parsed
        }
        if members["args"] != value { fail("parseMessage's args \(value) are not parse's", input) }
    }
    // The result type is `Result<ClientMessage, ClientMessage.DecodeFailure>`: spelled out so that a change of the
    // error type is a build failure here, not a silently weaker target.
    let result: Result<ClientMessage, ClientMessage.DecodeFailure> = ClientMessage.decode(input)
    switch result {
    case .failure(let failure):
        if failure.error.kind != .badRequest || failure.error.code != 400 {
            fail("failure is \(failure.error.kind.rawValue) (\(failure.error.code)), not bad_request: \(failure.error.info)", input)
        }
        if failure.error.info.isEmpty { fail("bad_request without an explanation", input) }
        if let ref = failure.ref, ref.utf8.count > 256 { fail("failure carries a ref of \(ref.utf8.count) bytes", input) }
    case .success(let message):
        if message.cmd.isEmpty || message.cmd.utf8.count > 64 {
            fail("decoded a cmd of \(message.cmd.utf8.count) bytes", input)
        }
        if let ref = message.ref, ref.utf8.count > 256 { fail("decoded a ref of \(ref.utf8.count) bytes", input) }
        guard let parsed = try? WireParser.parse(input), case .object(let object) = parsed else {
            fail("decoded a message from bytes that WireParser does not read as an object", input)
        }
        if object["cmd"] != .string(message.cmd) { fail("decoded cmd \(message.cmd.debugDescription) is not the input's", input) }

        if let kept = message.argsText {
            guard let again = try? WireParser.parse(Array(kept.text.utf8)), again == object["args"] else {
                fail("argsText \(kept.text.debugDescription) does not read back as the message's args", input)
            }
            var inString = false, escaped = false
            for byte in kept.text.utf8 {
                if inString {
                    if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                } else if byte == UInt8(ascii: "\"") {
                    inString = true
                } else if [0x20, 0x09, 0x0A, 0x0D].contains(byte) {
                    fail("argsText \(kept.text.debugDescription) has whitespace outside strings", input)
                }
            }
            guard case .object(let members) = again, kept.members(named: Set(members.keys)) == members else {
                fail("members(named:) misses members of \(kept.text.debugDescription)", input)
            }
        }

        var members: [String: JSONValue] = ["cmd": .string(message.cmd), "args": .object(message.args)]
        if let ref = message.ref { members["ref"] = .string(ref) }
        let written = WireJSON.encode(JSONValue.object(members))
        switch ClientMessage.decode(Array(written.utf8)) {
        case .success(let again):
            if again != message { fail("written back and decoded again differs:\n  \(message)\n  \(again)\n  \(written)", input) }
        case .failure(let failure):
            fail("written back it no longer decodes (\(failure.error.info)): \(written.debugDescription)", input)
        }
    }
    return 0
}
