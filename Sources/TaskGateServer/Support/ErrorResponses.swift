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
            case 413: .tooLarge
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
        jsonText(WireJSON.encode(value), status: status)
    }

    static func jsonText(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status,
            headers: [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: text))
        )
    }
}
