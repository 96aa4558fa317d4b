import Foundation
import Hummingbird
import TaskGateCore

/// The REST admin API under `/api/v1`, described in `openapi.yaml`. It drives the same `Gateway`, and so the same
/// task pool, as the WebSocket and long-poll clients.
struct AdminRoutes {
    let gateway: Gateway
    let auth: AdminAuthenticator
    let maxBodyBytes: Int

    struct StatsView: Encodable {
        var connections: [String: Int]
        var pool: TaskPool.Stats
        var generation: Int
    }

    func addRoutes(to router: Router<GatewayRequestContext>) {
        let api = router.group("api/v1").add(middleware: AdminAuthMiddleware(auth: auth))

        api.post("tasks") { request, context -> Response in
            let body = try await decodeBody(AdminAPI.SubmitRequest.self, from: request)
            if let uid = body.uid, !Identifier.isValidUID(uid) {
                throw GatewayError.badRequest("'uid' must be 1-128 characters of A-Z a-z 0-9 . _ : @ -")
            }
            let submission = try await gateway.submit(cmd: body.cmd, args: body.args ?? [:], uid: body.uid, taskID: body.id)
            return .json(submission.task, status: submission.duplicate ? .ok : .accepted)
        }

        api.get("tasks") { request, _ -> Response in
            let query = try Self.taskQuery(request)
            return .json(AdminAPI.TaskList(tasks: try await gateway.list(query)))
        }

        api.get("tasks/:id") { _, context -> Response in
            let id = try Self.taskID(context)
            return .json(try await gateway.task(id: id, visibleTo: nil))
        }

        api.post("tasks/:id/cancel") { _, context -> Response in
            let id = try Self.taskID(context)
            return .json(try await gateway.cancel(id: id, visibleTo: nil))
        }

        api.post("reload") { request, _ -> Response in
            let node = request.uri.queryParameters["node"].map(String.init)
            return .json(AdminAPI.ReloadSummary(try await gateway.reload(node: node)))
        }

        api.get("clients") { _, _ -> Response in
            .json(AdminAPI.ClientList(clients: await gateway.allClients()))
        }

        api.get("nodes") { _, _ -> Response in
            .json(AdminAPI.NodeList(nodes: try await gateway.nodes()))
        }

        api.get("schedules") { _, _ -> Response in
            .json(AdminAPI.ScheduleList(schedules: try await gateway.schedules()))
        }

        api.get("stats") { _, _ -> Response in
            .json(StatsView(connections: gateway.clients.countsByTransport(), pool: await gateway.poolStats(),
                            generation: gateway.registry.current.generation))
        }

        api.get("handlers") { _, _ -> Response in
            let table = gateway.registry.current
            let handlers = table.names.compactMap { table.handler(named: $0) }.map {
                AdminAPI.HandlerList.Handler(name: $0.name, description: $0.summary, timeoutMs: $0.defaultTimeout.wholeMilliseconds)
            }
            return .json(AdminAPI.HandlerList(generation: table.generation, handlers: handlers))
        }
    }

    /// The router hands path parameters over still percent-encoded; a scoped id (`uid~id`) with
    /// an `@` in its uid arrives as `%40`.
    private static func taskID(_ context: GatewayRequestContext) throws -> String {
        let raw = try context.parameters.require("id")
        guard let id = raw.removingPercentEncoding else {
            throw GatewayError.badRequest("task id is not valid percent-encoding")
        }
        return id
    }

    private func decodeBody<Body: Decodable>(_ type: Body.Type, from request: Request) async throws -> Body {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maxBodyBytes)
        } catch {
            throw GatewayError(.tooLarge, "request body is larger than \(maxBodyBytes) bytes")
        }
        do {
            return try WireJSON.decoder.decode(Body.self, from: Data(buffer.readableBytesView))
        } catch DecodingError.keyNotFound(let key, _) {
            throw GatewayError.badRequest("body is missing '\(key.stringValue)'")
        } catch DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context) {
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw GatewayError.badRequest("body field '\(path)' has the wrong type")
        } catch {
            throw GatewayError.badRequest("body must be a JSON object like {\"cmd\": \"echo\", \"args\": {}}")
        }
    }

    static func taskQuery(_ request: Request) throws(GatewayError) -> TaskQuery {
        let parameters = request.uri.queryParameters
        var query = TaskQuery()
        if let uid = parameters["uid"] {
            guard Identifier.isValidUID(String(uid)) else {
                throw .badRequest("'uid' must be 1-128 characters of A-Z a-z 0-9 . _ : @ -")
            }
            query.uid = String(uid)
        }
        if let status = parameters["status"] {
            guard let value = TaskStatus(rawValue: String(status)) else {
                let allowed = TaskStatus.allCases.map(\.rawValue).joined(separator: ", ")
                throw .badRequest("'status' must be one of \(allowed)")
            }
            query.status = value
        }
        if let limit = parameters["limit"] {
            guard let value = Int(limit), (1...1000).contains(value) else {
                throw .badRequest("'limit' must be a whole number from 1 to 1000")
            }
            query.limit = value
        }
        return query
    }
}

struct AdminAuthMiddleware: RouterMiddleware {
    let auth: AdminAuthenticator

    func handle(
        _ request: Request, context: GatewayRequestContext, next: (Request, GatewayRequestContext) async throws -> Response
    ) async throws -> Response {
        try auth.authorize(request, context: context)
        return try await next(request, context)
    }
}
