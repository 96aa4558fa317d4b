import Foundation

/// The wire JSON of the hot types written directly into a byte array, instead of through `JSONEncoder`'s generic
/// containers (which cost ≈ 150 ns per byte of a task's free-form args and results, the largest share of the server's
/// CPU time per message). The output is byte for byte what `WireJSON.encoder` writes — sorted keys, unescaped
/// slashes, whole numbers without a fraction, `formatTimestamp` dates, absent optionals left out of `ServerMessage`
/// and written as `null` in `TaskRecord` and `ClientInfo` — and `WireWriterTests` checks it against `JSONEncoder`,
/// including that every stored property of these types is written (a new field must be added here too).
///
/// These overloads are picked over the generic `WireJSON.encode(_:)` wherever the static type is one of them.
extension WireJSON {
    public static func encode(_ message: ServerMessage) -> String {
        var writer = WireWriter()
        writer.write(message)
        return writer.string
    }

    public static func encode(_ task: TaskRecord) -> String {
        var writer = WireWriter()
        writer.write(task)
        return writer.string
    }

    public static func encode(_ value: JSONValue) -> String {
        var writer = WireWriter()
        writer.write(value)
        return writer.string
    }
}

struct WireWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 256) {
        bytes.reserveCapacity(capacity)
    }

    var string: String { String(decoding: bytes, as: UTF8.self) }

    // MARK: - Objects with known keys, in sorted order

    struct Object {
        var first = true
    }

    /// For writers of other types in other files: `{`, then `key` and a value for each member, then `endObject`.
    mutating func beginObject() -> Object {
        bytes.append(UInt8(ascii: "{"))
        return Object()
    }

    mutating func endObject() {
        bytes.append(UInt8(ascii: "}"))
    }

    mutating func key(_ name: StaticString, _ object: inout Object) {
        if object.first { object.first = false } else { bytes.append(UInt8(ascii: ",")) }
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
    }

    mutating func write(_ message: ServerMessage) {
        bytes.append(UInt8(ascii: "{"))
        var object = Object()
        // Keys in the order `.sortedKeys` gives them.
        if let added = message.added { key("added", &object); write(added) }
        if let admin = message.admin { key("admin", &object); write(admin) }
        if let changed = message.changed { key("changed", &object); write(changed) }
        if let clients = message.clients { key("clients", &object); write(list: clients) { $0.write($1) } }
        if let code = message.code { key("code", &object); write(integer: Int64(code)) }
        if let duplicate = message.duplicate { key("duplicate", &object); write(duplicate) }
        if let error = message.error { key("error", &object); write(string: error) }
        if let generation = message.generation { key("generation", &object); write(integer: Int64(generation)) }
        if let handlers = message.handlers { key("handlers", &object); write(handlers) }
        if let head = message.head { key("head", &object); write(unsigned: head) }
        if let info = message.info { key("info", &object); write(string: info) }
        if let nodes = message.nodes { key("nodes", &object); write(list: nodes) { $0.write($1) } }
        if let ref = message.ref { key("ref", &object); write(string: ref) }
        if let removed = message.removed { key("removed", &object); write(removed) }
        if let reset = message.reset { key("reset", &object); write(reset) }
        if let seq = message.seq { key("seq", &object); write(unsigned: seq) }
        if let task = message.task {
            key("task", &object)
            switch task {
            case .whole(let record): write(record)
            case .change(let change): write(change)
            }
        }
        if let transport = message.transport { key("transport", &object); write(string: transport) }
        key("type", &object)
        write(string: message.type)
        if let uid = message.uid { key("uid", &object); write(string: uid) }
        bytes.append(UInt8(ascii: "}"))
    }

    mutating func write(_ task: TaskRecord) {
        bytes.append(UInt8(ascii: "{"))
        var object = Object()
        key("args", &object); write(text: task.args)
        key("attempts", &object); write(integer: Int64(task.attempts))
        key("cmd", &object); write(string: task.cmd)
        key("createdAt", &object); write(date: task.createdAt)
        key("error", &object); write(optional: task.error)
        key("finishedAt", &object); write(date: task.finishedAt)
        key("id", &object); write(string: task.id)
        key("node", &object); write(optional: task.node)
        key("priority", &object); write(integer: Int64(task.priority))
        key("progress", &object); write(double: task.progress)
        key("result", &object); write(text: task.result ?? .null)
        key("runAt", &object); write(date: task.runAt)
        key("schedule", &object); write(optional: task.schedule)
        key("startedAt", &object); write(date: task.startedAt)
        key("status", &object); write(string: task.status.rawValue)
        key("traceparent", &object); write(optional: task.traceparent)
        key("uid", &object); write(optional: task.uid)
        bytes.append(UInt8(ascii: "}"))
    }

    mutating func write(_ change: TaskChange) {
        bytes.append(UInt8(ascii: "{"))
        var object = Object()
        switch change {
        case .progress(let id, let status, let progress, let attempts):
            key("attempts", &object); write(integer: Int64(attempts))
            key("id", &object); write(string: id)
            key("progress", &object); write(double: progress)
            key("status", &object); write(string: status.rawValue)
        case .done(let id, let status, let result, let error):
            key("error", &object); write(optional: error)
            key("id", &object); write(string: id)
            key("result", &object); write(text: result ?? .null)
            key("status", &object); write(string: status.rawValue)
        }
        bytes.append(UInt8(ascii: "}"))
    }

    mutating func write(_ client: ClientInfo) {
        bytes.append(UInt8(ascii: "{"))
        var object = Object()
        key("admin", &object); write(client.admin)
        key("connectedAt", &object); write(date: client.connectedAt)
        key("id", &object); write(string: client.id)
        key("node", &object); write(optional: client.node)
        key("remote", &object); write(optional: client.remote)
        key("transport", &object); write(string: client.transport.rawValue)
        key("uid", &object); write(string: client.uid)
        bytes.append(UInt8(ascii: "}"))
    }

    /// Absent fields are left out, as `NodeReload.encode(to:)` does.
    mutating func write(_ answer: NodeReload) {
        bytes.append(UInt8(ascii: "{"))
        var object = Object()
        if let added = answer.added { key("added", &object); write(added) }
        if let changed = answer.changed { key("changed", &object); write(changed) }
        if let error = answer.error { key("error", &object); write(string: error) }
        if let generation = answer.generation { key("generation", &object); write(integer: Int64(generation)) }
        if let handlers = answer.handlers { key("handlers", &object); write(handlers) }
        key("node", &object); write(string: answer.node)
        if let removed = answer.removed { key("removed", &object); write(removed) }
        bytes.append(UInt8(ascii: "}"))
    }

    // MARK: - Free-form values

    /// Copied as it is: a `JSONText` is already compact JSON.
    mutating func write(text: JSONText) {
        bytes.append(contentsOf: text.text.utf8)
    }

    mutating func write(_ value: JSONValue) {
        switch value {
        case .null: bytes.append(contentsOf: "null".utf8)
        case .bool(let flag): write(flag)
        case .number(let number):
            // As `JSONValue.encode(to:)`: whole numbers go out without a fraction.
            if number.rounded() == number, abs(number) < 1e15 {
                write(integer: Int64(number))
            } else {
                write(double: number)
            }
        case .string(let text): write(string: text)
        case .array(let elements):
            bytes.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                write(element)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let members):
            bytes.append(UInt8(ascii: "{"))
            for (index, key) in members.keys.sorted(by: Self.sortedKeyOrder).enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                write(string: key)
                bytes.append(UInt8(ascii: ":"))
                write(members[key]!)
            }
            bytes.append(UInt8(ascii: "}"))
        }
    }

    /// The order `JSONEncoder.OutputFormatting.sortedKeys` uses: by UTF-8 bytes.
    static func sortedKeyOrder(_ a: String, _ b: String) -> Bool {
        // memcmp over the contiguous UTF-8 of both (free for native strings): the generic
        // `utf8.lexicographicallyPrecedes` was a tenth of the CPU of writing large results.
        var a = a
        var b = b
        return a.withUTF8 { left in
            b.withUTF8 { right in
                let common = min(left.count, right.count)
                let order = common == 0 ? 0 : memcmp(left.baseAddress!, right.baseAddress!, common)
                return order != 0 ? order < 0 : left.count < right.count
            }
        }
    }

    // MARK: - Scalars

    /// `[a,b,…]`, each item by `writeItem`.
    mutating func write<Item>(list items: [Item], _ writeItem: (inout WireWriter, Item) -> Void) {
        bytes.append(UInt8(ascii: "["))
        for (index, item) in items.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            writeItem(&self, item)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    mutating func write(_ flag: Bool) {
        bytes.append(contentsOf: flag ? "true".utf8 : "false".utf8)
    }

    mutating func write(_ strings: [String]) {
        bytes.append(UInt8(ascii: "["))
        for (index, text) in strings.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            write(string: text)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    mutating func write(integer: Int64) {
        bytes.append(contentsOf: String(integer).utf8)
    }

    mutating func write(unsigned: UInt64) {
        bytes.append(contentsOf: String(unsigned).utf8)
    }

    mutating func write(double: Double) {
        // Non-finite numbers cannot be JSON; JSONEncoder would refuse the whole message.
        guard double.isFinite else {
            bytes.append(contentsOf: "null".utf8)
            return
        }
        var text = double.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        bytes.append(contentsOf: text.utf8)
    }

    mutating func write(date: Date?) {
        guard let date else {
            bytes.append(contentsOf: "null".utf8)
            return
        }
        write(string: WireJSON.formatTimestamp(date))
    }

    mutating func write(optional text: String?) {
        guard let text else {
            bytes.append(contentsOf: "null".utf8)
            return
        }
        write(string: text)
    }

    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    mutating func write(string text: String) {
        bytes.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { utf8 in
            var start = 0
            for index in 0..<utf8.count {
                let byte = utf8[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<index]))
                start = index + 1
                switch byte {
                case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
                case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
                case 0x08: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
                case 0x0C: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
                case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
                case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
                case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
                default:
                    bytes.append(contentsOf: [
                        UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), Self.hex[Int(byte >> 4)],
                        Self.hex[Int(byte & 0x0F)],
                    ])
                }
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<utf8.count]))
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
