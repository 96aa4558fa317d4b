/// The protocol seen from one client: turns each client message into exactly one direct reply.
/// It is the same for every transport; the transport only moves bytes.
public struct Session: Sendable {
    public let uid: String
    public let isAdmin: Bool
    public let transport: Transport
    public let gateway: Gateway

    public init(uid: String, isAdmin: Bool, transport: Transport, gateway: Gateway) {
        self.uid = uid
        self.isAdmin = isAdmin
        self.transport = transport
        self.gateway = gateway
    }

    /// Commands the server answers itself; every other name is a task handler.
    public static let serverCommands: Set<String> = ["ping", "status", "cancel", "handlers", "clients", "reload"]

    /// Raw text in, exactly one call of `reply` out: bad input becomes an error reply, never a dropped message or a
    /// closed connection. A `submitted` reply is handed over before the task starts, so on a connection it always
    /// comes before the task's own events.
    public func handle(_ bytes: some Collection<UInt8>, reply: (ServerMessage) -> Void) async {
        switch ClientMessage.decode(bytes) {
        case .success(let message):
            await handle(message, reply: reply)
        case .failure(let failure):
            reply(.error(failure.error, ref: failure.ref))
        }
    }

    public func handle(_ message: ClientMessage, reply: (ServerMessage) -> Void) async {
        do {
            if let answer = try await answer(message, reply: reply) { reply(answer) }
        } catch {
            reply(.error(error, ref: message.ref))
        }
    }

    /// The reply to a command that needs neither the pool nor the store (`ping`, `handlers`), or `nil`. A transport
    /// can answer these where the message arrived, without a hop to another thread.
    public func immediateAnswer(_ message: ClientMessage) -> ServerMessage? {
        switch message.cmd {
        case "ping":
            return ServerMessage(type: "pong", code: 200, ref: message.ref)
        case "handlers":
            let handlers = gateway.registry.current
            var reply = ServerMessage(type: "handlers", code: 200, ref: message.ref)
            reply.handlers = handlers.names
            reply.generation = handlers.generation
            return reply
        default:
            return nil
        }
    }

    /// The reply for `message`, or `nil` when it has already been handed to `reply`.
    private func answer(_ message: ClientMessage, reply: (ServerMessage) -> Void) async throws(GatewayError) -> ServerMessage? {
        if let immediate = immediateAnswer(message) { return immediate }
        let ref = message.ref
        switch message.cmd {
        case "status":
            var reply = ServerMessage(type: "status", code: 200, ref: ref)
            reply.task = .whole(try await gateway.task(id: try taskID(message), visibleTo: uid))
            return reply
        case "cancel":
            var reply = ServerMessage(type: "cancelling", code: 200, info: "cancel requested", ref: ref)
            reply.task = .whole(try await gateway.cancel(id: try taskID(message), visibleTo: uid))
            return reply
        case "clients":
            try requireAdmin(message.cmd)
            var reply = ServerMessage(type: "clients", code: 200, ref: ref)
            reply.clients = await gateway.allClients()
            return reply
        case "reload":
            try requireAdmin(message.cmd)
            let node: String?
            switch message.args["node"] {
            case nil, .null?: node = nil
            case .string(let name)?: node = name
            default: throw GatewayError.badRequest("'args.node' must be a node id")
            }
            let answers = try await gateway.reload(node: node)
            // The first node that reloaded speaks for the reply, as on a single node; `nodes` has every answer.
            let first = answers.firstReloaded
            var reply = ServerMessage(type: "reloaded", code: 200, info: "handlers reloaded", ref: ref)
            reply.generation = first?.generation
            reply.handlers = first?.handlers
            reply.added = first?.added
            reply.changed = first?.changed
            reply.removed = first?.removed
            reply.nodes = answers
            return reply
        default:
            let traceparent = message.traceparent
            let accepted = { (submission: Gateway.Submission) in
                reply(.submitted(submission.task, duplicate: submission.duplicate, ref: ref))
            }
            if let argsText = message.argsText {
                _ = try await gateway.submit(
                    cmd: message.cmd, argsText: argsText, uid: uid, traceparent: traceparent, privileged: isAdmin, accepted: accepted)
            } else {
                _ = try await gateway.submit(
                    cmd: message.cmd, args: message.args, uid: uid, traceparent: traceparent, privileged: isAdmin, accepted: accepted)
            }
            return nil
        }
    }

    private func requireAdmin(_ cmd: String) throws(GatewayError) {
        guard isAdmin else { throw GatewayError(.forbidden, "'\(cmd)' is for admin connections only") }
    }

    private func taskID(_ message: ClientMessage) throws(GatewayError) -> String {
        guard let id = try Gateway.clientTaskID(in: message.args) else {
            throw .badRequest("'\(message.cmd)' needs 'args.id'")
        }
        return id
    }
}
