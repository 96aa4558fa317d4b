// libFuzzer target `wire_json`: bytes → `WireParser.parse`.
//
// Compiled together with TaskGateCore's own source files (see scripts/fuzz.sh), so there is no `import`.
// Properties checked on every input (a broken one traps, and libFuzzer keeps the input as a crash):
//   1. parsing never crashes; a failure is a `SyntaxError` whose offset lies within the input;
//   2. whatever the parser accepts, `WireJSON.encode(_: JSONValue)` writes, and the parser reads that back equal;
//      writing the value read back gives the same bytes again (the writer's output is canonical);
//   3. an accepted value nests no deeper than `JSONLimits.maxDepth`; wrapped in arrays up to exactly that depth it
//      is still accepted, one level more and it is refused.

@inline(never)
func fail(_ what: String, _ input: UnsafeBufferPointer<UInt8>) -> Never {
    let shown = String(decoding: input.prefix(2048), as: UTF8.self)
    fatalError("wire_json: \(what)\ninput (\(input.count) bytes): \(shown.debugDescription)")
}

/// `value` inside `levels` arrays, written as JSON.
func wrapped(_ encoded: String, levels: Int) -> [UInt8] {
    var bytes = [UInt8](repeating: UInt8(ascii: "["), count: levels)
    bytes.append(contentsOf: encoded.utf8)
    bytes.append(contentsOf: repeatElement(UInt8(ascii: "]"), count: levels))
    return bytes
}

@_cdecl("LLVMFuzzerTestOneInput")
public func wireJSONFuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    let value: JSONValue
    do {
        value = try WireParser.parse(input)
    } catch {
        // Typed throws: `error` is a `WireParser.SyntaxError`.
        if error.offset < 0 || error.offset > size { fail("syntax error offset \(error.offset) outside the input", input) }
        return 0
    }

    // 2. Round trip through the writer.
    let encoded = WireJSON.encode(value)
    let reread: JSONValue
    do {
        reread = try WireParser.parse(Array(encoded.utf8))
    } catch {
        fail("the parser refuses what the writer wrote (offset \(error.offset)): \(encoded.debugDescription)", input)
    }
    if reread != value {
        fail("read back differs:\n  first:  \(value)\n  second: \(reread)\n  written: \(encoded.debugDescription)", input)
    }
    let again = WireJSON.encode(reread)
    if again != encoded {
        fail("writing the value read back gives other bytes:\n  \(encoded.debugDescription)\n  \(again.debugDescription)", input)
    }

    // 3. The nesting limit.
    let limit = JSONLimits.maxDepth
    let depth = value.nestingDepth()
    if depth > limit { fail("accepted a value nested \(depth) levels deep (limit \(limit))", input) }
    if !value.fitsDepthLimit() { fail("accepted a value (depth \(depth)) that fitsDepthLimit() refuses", input) }
    if depth > 0, value.nestingDepth(limit: depth) != depth {
        fail("nestingDepth(limit: \(depth)) != nestingDepth() = \(depth)", input)
    }
    let deepest = wrapped(encoded, levels: limit - depth)
    do {
        let parsed = try WireParser.parse(deepest)
        if parsed.nestingDepth() != limit { fail("wrapped to depth \(limit), nestingDepth() is \(parsed.nestingDepth())", input) }
    } catch {
        fail("refused the value wrapped to exactly the limit (\(limit) levels) at offset \(error.offset)", input)
    }
    if (try? WireParser.parse(wrapped(encoded, levels: limit - depth + 1))) != nil {
        fail("accepted the value wrapped to \(limit + 1) levels (limit \(limit))", input)
    }
    return 0
}
