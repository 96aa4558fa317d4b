import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import TaskGateServer

@Suite("Prometheus metrics", .timeLimit(.minutes(2)))
struct MetricsTests {
    @Test func metricsAfterATaskRan() async throws {
        let (app, gateway) = try await applicationWithGateway()
        try await app.test(.router) { client in
            let id = try await client.execute(
                uri: "/api/v1/tasks", method: .post, headers: bearer,
                body: ByteBuffer(string: #"{"cmd":"echo","args":{"a":1},"uid":"m1"}"#)
            ) { response in
                #expect(response.status == .accepted)
                return try #require(try json(response.body)["id"] as? String)
            }
            // One message over long-poll, so that a transport counter moves too.
            try await client.execute(
                uri: "/poll?uid=m1", method: .post, headers: [.contentType: "application/json"],
                body: ByteBuffer(string: #"{"cmd":"ping"}"#)
            ) { response in
                #expect(response.status == .ok)
            }
            // The task's `done` event (awaited on the gateway, not over long-poll, which would move its counters).
            _ = try await gateway.finished(id)
            let status = try await client.execute(uri: "/api/v1/tasks/\(id)", method: .get, headers: bearer) { response in
                try json(response.body)["status"] as? String ?? ""
            }
            #expect(status == "succeeded")

            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("text/plain") == true)
                let text = String(buffer: response.body)
                for expected in [
                    #"taskgate_connections{transport="websocket"} 0"#,
                    #"taskgate_messages_in_total{transport="long-poll"} 1"#,
                    #"taskgate_messages_out_total{transport="long-poll"} 1"#,
                    #"taskgate_tasks_finished{status="succeeded"} 1"#,
                    #"taskgate_tasks{status="queued"} 0"#,
                    "taskgate_queue_depth 0",
                    "taskgate_longpoll_waiters 0",
                    "taskgate_task_duration_seconds_count 1",
                    #"taskgate_store_write_seconds_count{op="insert"} 1"#,
                    "# TYPE taskgate_task_duration_seconds histogram",
                ] {
                    #expect(text.contains(expected), "missing \(expected) in:\n\(text)")
                }
            }
        }
    }
}
