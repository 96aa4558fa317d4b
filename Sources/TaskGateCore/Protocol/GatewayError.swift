/// Every failure a client can be told about. The one place where a failure gets its status code and slug:
/// the WebSocket and long-poll replies and the REST admin API all render errors from here.
public struct GatewayError: Error, Sendable, Equatable {
    public enum Kind: String, Sendable {
        case badRequest = "bad_request"
        case unauthorized
        case forbidden
        case unknownCommand = "unknown_command"
        case notFound = "not_found"
        case nodeNotFound = "node_not_found"
        case methodNotAllowed = "method_not_allowed"
        /// The request head or body did not arrive in time.
        case requestTimeout = "request_timeout"
        case alreadyFinished = "already_finished"
        case tooLarge = "too_large"
        case uriTooLong = "uri_too_long"
        case headersTooLarge = "headers_too_large"
        case tooManyRequests = "rate_limited"
        case queueFull = "queue_full"
        case unavailable
        case internalError = "internal_error"

        public var code: Int {
            switch self {
            case .badRequest: 400
            case .unauthorized: 401
            case .forbidden: 403
            case .unknownCommand, .notFound, .nodeNotFound: 404
            case .methodNotAllowed: 405
            case .requestTimeout: 408
            case .alreadyFinished: 409
            case .tooLarge: 413
            case .uriTooLong: 414
            case .headersTooLarge: 431
            case .tooManyRequests: 429
            case .queueFull, .unavailable: 503
            case .internalError: 500
            }
        }
    }

    public var kind: Kind
    public var info: String

    public init(_ kind: Kind, _ info: String) {
        self.kind = kind
        self.info = info
    }

    public var code: Int { kind.code }

    public static func badRequest(_ info: String) -> Self { .init(.badRequest, info) }
    public static func unknownCommand(_ cmd: String) -> Self { .init(.unknownCommand, "unknown command '\(cmd)'") }
    public static func taskNotFound(_ id: String) -> Self { .init(.notFound, "no task with id '\(id)'") }
}
