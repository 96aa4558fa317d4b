import Foundation

/// One message from a client: `{"cmd": "...", "args": {...}, "ref": "...", "traceparent": "..."}`.
public struct ClientMessage: Sendable, Equatable {
    public var cmd: String
    /// The args. Off the wire they are usually kept as `argsText` and parsed here on each read: a task's args are
    /// read by the server through `argsText` (a few options), only commands read theirs here.
    public var args: [String: JSONValue] {
        get { argsText.map { $0.objectValue ?? [:] } ?? parsedArgs }
        set {
            parsedArgs = newValue
            argsText = nil
        }
    }
    private var parsedArgs: [String: JSONValue]
    /// `args` as the client wrote them, when that text can be kept (see `WireParser.parseMessage`): the task keeps
    /// these bytes instead of writing the parsed args out again. `nil`: built in code, or not kept.
    public private(set) var argsText: JSONText?
    public var ref: String?
    /// The caller's W3C trace context: a task it submits joins that trace. Anything but a valid one is ignored.
    public var traceparent: String?

    public init(cmd: String, args: [String: JSONValue] = [:], ref: String? = nil, traceparent: String? = nil) {
        self.cmd = cmd
        self.parsedArgs = args
        self.ref = ref
        self.traceparent = traceparent
    }

    /// Args kept as text: an object's compact text, as `WireParser.parseMessage` gives it.
    public init(cmd: String, argsText: JSONText, ref: String? = nil, traceparent: String? = nil) {
        self.init(cmd: cmd, ref: ref, traceparent: traceparent)
        self.argsText = argsText
    }

    /// Decodes a message, turning every malformed input into a typed `bad_request` that names the problem.
    /// `ref` is recovered even from a message that is otherwise invalid, so the error reply can still carry it.
    public static func decode(_ bytes: some Collection<UInt8>) -> Result<ClientMessage, DecodeFailure> {
        let value: JSONValue
        let messageArgs: WireParser.MessageArgs?
        do {
            (value, messageArgs) = try WireParser.parseMessage(bytes, readingArgsMembers: ReservedArguments.names)
        } catch {
            return .failure(.init(ref: nil, error: .badRequest("message is not valid JSON")))
        }
        guard case .object(let object) = value else {
            return .failure(.init(ref: nil, error: .badRequest("message must be a JSON object")))
        }
        var ref: String?
        switch object["ref"] {
        case nil, .null?: ref = nil
        case .string(let text)?:
            guard text.utf8.count <= 256 else {
                return .failure(.init(ref: nil, error: .badRequest("'ref' must be at most 256 bytes")))
            }
            ref = text
        case .number(let number)?:
            // Clients that count their requests send numbers; echo them back as text.
            ref = JSONValue.number(number).intValue.map(String.init) ?? String(number)
        default:
            return .failure(.init(ref: nil, error: .badRequest("'ref' must be a string")))
        }
        guard let cmdValue = object["cmd"] else {
            return .failure(.init(ref: ref, error: .badRequest("message has no 'cmd'")))
        }
        guard case .string(let cmd) = cmdValue, !cmd.isEmpty, cmd.utf8.count <= 64 else {
            return .failure(.init(ref: ref, error: .badRequest("'cmd' must be a non-empty string of at most 64 bytes")))
        }
        var args: [String: JSONValue] = [:]
        var argsText: JSONText?
        switch (messageArgs, object["args"]) {
        case (.text(let text)?, _): argsText = text
        case (.value(.object(let value))?, _): args = value
        case (nil, nil), (nil, .null?): break
        default:
            return .failure(.init(ref: ref, error: .badRequest("'args' must be an object")))
        }
        // Never an error: a traceparent that is not a valid one only means the task starts a new trace.
        var traceparent: String?
        if case .string(let text)? = object["traceparent"], W3CTraceparent.isValid(text) { traceparent = text }
        if let argsText { return .success(ClientMessage(cmd: cmd, argsText: argsText, ref: ref, traceparent: traceparent)) }
        return .success(ClientMessage(cmd: cmd, args: args, ref: ref, traceparent: traceparent))
    }

    /// `argsText` is how `args` were written, not part of the message's meaning.
    public static func == (lhs: ClientMessage, rhs: ClientMessage) -> Bool {
        lhs.cmd == rhs.cmd && lhs.args == rhs.args && lhs.ref == rhs.ref && lhs.traceparent == rhs.traceparent
    }

    public struct DecodeFailure: Error, Sendable, Equatable {
        public var ref: String?
        public var error: GatewayError

        public init(ref: String?, error: GatewayError) {
            self.ref = ref
            self.error = error
        }
    }
}

/// The top-level args the gateway itself reads: the task's id, its options (`TaskOptions`) and its scheduling
/// (`TaskScheduling`). A client message's parser reads them on the way (`WireParser.parseMessage`), so nothing
/// scans the args for them again.
public enum ReservedArguments {
    public static let options: Set<String> = ["timeout_ms", "max_attempts"]
    public static let scheduling: Set<String> = ["priority", "delay_ms", "run_at"]
    public static let names: Set<String> = options.union(scheduling).union(["id"])
}
