import Hummingbird
import TaskGateCore

/// Where WebSocket upgrades are served. `/` upgrades as Swoole's server did (a plain `GET /` is still the demo page)
/// and `/ws` as TaskGate's clients expect; `--ws-path` adds more.
public enum WebSocketPaths {
    public static let always = ["/", "/ws"]
    /// The echo socket of `--enable-echo` (compliance suites).
    static let echo = "/ws/echo"
    /// Paths other routes own.
    static let reserved = ["/api", "/poll", "/sse", "/healthz", "/metrics", "/admin", echo]

    /// Why `path` cannot be a WebSocket path, if it cannot.
    public static func problem(with path: String) -> String? {
        guard path.hasPrefix("/"), path.count <= 256 else { return "'\(path)' must start with / (at most 256 characters)" }
        guard !path.contains(where: { $0 == "?" || $0 == "#" || $0 == "%" || $0.isWhitespace }) else {
            return "'\(path)' must be a plain path, without ?, #, % or spaces"
        }
        if let owner = reserved.first(where: { path == $0 || path.hasPrefix($0 + "/") }) {
            return "'\(path)' belongs to \(owner)"
        }
        return nil
    }
}

/// A WebSocket path requested without an upgrade: the identity is checked as for a socket (so a bad one gets its own
/// status), then the client is told what the endpoint needs. (`/` is the demo page instead.)
struct WebSocketPlainRoute {
    let admission: Admission
    let paths: Set<String>

    func addRoutes(to router: Router<GatewayRequestContext>) {
        for path in paths.sorted() where path != "/" {
            router.get(RouterPath(path)) { request, context -> Response in
                _ = try admission.identify(.init(request: request, context: context))
                throw GatewayError.badRequest("this endpoint needs a WebSocket upgrade (Upgrade: websocket)")
            }
        }
    }
}
