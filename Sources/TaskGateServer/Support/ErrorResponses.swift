import Hummingbird
import TaskGateCore

/// The one place where failures become HTTP responses: every error body is the same JSON as a WebSocket error
/// message, `{"type":"error","code":…,"error":"slug","info":"…"}`.
extension GatewayError: HTTPResponseError {
    public var status: HTTPResponse.Status { .init(code: code) }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        .json(ServerMessage.error(self, ref: nil), status: status)
    }

    /// Hummingbird's own errors (no route, body too large, …) in our shape.
    init(httpStatus: HTTPResponse.Status, message: String?) {
        let kind: Kind =
            switch httpStatus.code {
            case 401: .unauthorized
            case 403: .forbidden
            case 404: .notFound
            case 405: .methodNotAllowed
            case 408: .requestTimeout
            case 413: .tooLarge
            case 414: .uriTooLong
            case 431: .headersTooLarge
            case 429: .tooManyRequests
            case 400..<500: .badRequest
            case 503: .unavailable
            default: .internalError
            }
        self.init(kind, message ?? httpStatus.reasonPhrase)
    }
}

/// Renders every error thrown by a route, including Hummingbird's, as a `GatewayError`.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as GatewayError {
            return try error.response(from: request, context: context)
        } catch let error as HTTPError where error.status == .notFound {
            // The router answers 404 for a known path with another method; say 405 and what is allowed.
            guard let allowed = KnownRoutes.methods(forPath: request.uri.path), !allowed.contains(request.method) else {
                return try GatewayError(.notFound, "no such path: \(request.uri.path)").response(from: request, context: context)
            }
            var response = try GatewayError(.methodNotAllowed, "\(request.method) is not supported here").response(
                from: request, context: context)
            response.headers[.allow] = allowed.map(\.rawValue).joined(separator: ", ")
            return response
        } catch let error as HTTPError {
            var response = try GatewayError(httpStatus: error.status, message: error.body).response(from: request, context: context)
            // A 404 from the router keeps its status, but with the JSON body; a 405 likewise.
            response.status = error.status
            for field in error.headers { response.headers.append(field) }
            return response
        } catch {
            context.logger.error("unhandled error", metadata: ["error": "\(error)"])
            return try GatewayError(.internalError, "internal error").response(from: request, context: context)
        }
    }
}

extension Response {
    /// A JSON response encoded with the wire encoder.
    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        do {
            return jsonText(try WireJSON.encode(value), status: status)
        } catch {
            return jsonText(
                WireJSON.encode(ServerMessage.error(GatewayError(.internalError, "the answer could not be written"), ref: nil)),
                status: .internalServerError)
        }
    }

    static func jsonText(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status,
            headers: [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: text))
        )
    }
}

/// The paths the server answers and their methods, for the `405 Allow` answer.
enum KnownRoutes {
    static let table: [(pattern: [String], methods: [HTTPRequest.Method])] = [
        ([], [.get]),  // the demo page
        (["healthz"], [.get]),
        (["metrics"], [.get]),
        (["ws"], [.get]),
        (["sse"], [.get]),
        (["poll"], [.get, .post]),
        (["api", "v1", "tasks"], [.get, .post]),
        (["api", "v1", "tasks", "*"], [.get]),
        (["api", "v1", "tasks", "*", "cancel"], [.post]),
        (["api", "v1", "reload"], [.post]),
        (["api", "v1", "clients"], [.get]),
        (["api", "v1", "nodes"], [.get]),
        (["api", "v1", "schedules"], [.get]),
        (["api", "v1", "handlers"], [.get]),
        (["api", "v1", "stats"], [.get]),
    ]

    static func methods(forPath path: String) -> [HTTPRequest.Method]? {
        let parts = path.split(separator: "/").map(String.init)
        return table.first { route in
            route.pattern.count == parts.count && zip(route.pattern, parts).allSatisfy { $0 == "*" || $0 == $1 }
        }?.methods
    }
}
