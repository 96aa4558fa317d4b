import Hummingbird
import TaskGateCore

/// `GET /ws` without an upgrade: the identity is checked as for a socket (so a bad one gets its own status), then
/// the client is told what the endpoint needs.
struct WebSocketPlainRoute {
    let admission: Admission

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/ws") { request, context -> Response in
            _ = try admission.identify(.init(request: request, context: context))
            throw GatewayError.badRequest("this endpoint needs a WebSocket upgrade (Upgrade: websocket)")
        }
    }
}
