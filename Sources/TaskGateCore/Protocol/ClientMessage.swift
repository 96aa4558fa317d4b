import Foundation

/// One message from a client: `{"cmd": "...", "args": {...}, "ref": "...", "traceparent": "..."}`.
public struct ClientMessage: Sendable, Equatable {
    public var cmd: String
    public var args: [String: JSONValue]
    /// `args` as the client wrote them, when that text can be kept (see `WireParser.parseMessage`): the task keeps
    /// these bytes instead of writing the parsed args out again. `nil`: built in code, or not kept.
    public var argsText: JSONText?
    public var ref: String?
    /// The caller's W3C trace context: a task it submits joins that trace. Anything but a valid one is ignored.
    public var traceparent: String?

    public init(
        cmd: String, args: [String: JSONValue] = [:], argsText: JSONText? = nil, ref: String? = nil, traceparent: String? = nil
    ) {
        self.cmd = cmd
        self.args = args
        self.argsText = argsText
        self.ref = ref
        self.traceparent = traceparent
    }

    /// Decodes a message, turning every malformed input into a typed `bad_request` that names the problem.
    /// `ref` is recovered even from a message that is otherwise invalid, so the error reply can still carry it.
    public static func decode(_ bytes: some Collection<UInt8>) -> Result<ClientMessage, DecodeFailure> {
        let value: JSONValue
        let argsText: JSONText?
        do {
            (value, argsText) = try WireParser.parseMessage(bytes)
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
        let args: [String: JSONValue]
        switch object["args"] {
        case nil, .null?: args = [:]
        case .object(let value)?: args = value
        default:
            return .failure(.init(ref: ref, error: .badRequest("'args' must be an object")))
        }
        // Never an error: a traceparent that is not a valid one only means the task starts a new trace.
        var traceparent: String?
        if case .string(let text)? = object["traceparent"], W3CTraceparent.isValid(text) { traceparent = text }
        return .success(ClientMessage(cmd: cmd, args: args, argsText: args.isEmpty ? nil : argsText, ref: ref, traceparent: traceparent))
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
