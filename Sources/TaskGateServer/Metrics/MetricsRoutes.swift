import Hummingbird
import TaskGateCore

/// `GET /metrics`: the Prometheus text exposition (format 0.0.4).
struct MetricsRoutes {
    let gateway: Gateway
    let metrics: GatewayMetrics

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/metrics") { _, _ -> Response in
            let text = await metrics.render(gateway)
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
    }
}
