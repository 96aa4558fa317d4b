import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import TaskGateCore

/// Options every admin command shares.
struct AdminOptions: ParsableArguments {
    @Option(help: "Server URL (default: $TASKGATE_URL or http://127.0.0.1:9501).")
    var url: String?

    @Option(name: .customLong("admin-token"), help: "Admin bearer token (default: $TASKGATE_ADMIN_TOKEN).")
    var adminToken: String?

    func client() -> AdminClient {
        let environment = ProcessInfo.processInfo.environment
        let base = url ?? environment["TASKGATE_URL"] ?? "http://127.0.0.1:9501"
        let token = adminToken ?? environment["TASKGATE_ADMIN_TOKEN"]
        return AdminClient(baseURL: base.hasSuffix("/") ? String(base.dropLast()) : base, token: token?.isEmpty == false ? token : nil)
    }
}

/// A failure the CLI reports as one line and a non-zero exit.
struct CLIError: Error, CustomStringConvertible {
    var description: String
}

/// The REST admin API, as the CLI uses it.
struct AdminClient {
    let baseURL: String
    let token: String?

    /// Fails at once when nothing listens (the default client retries refused connections until its timeout).
    static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(5)
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    func get<Value: Decodable>(_ path: String, as type: Value.Type) async throws -> Value {
        try await send(.GET, path, body: nil, as: type)
    }

    func post<Value: Decodable>(_ path: String, body: (some Encodable)?, as type: Value.Type) async throws -> Value {
        let data = try body.map { try WireJSON.encoder.encode($0) }
        return try await send(.POST, path, body: data, as: type)
    }

    private func send<Value: Decodable>(_ method: HTTPMethod, _ path: String, body: Data?, as type: Value.Type) async throws -> Value {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: body))
        }
        let response: HTTPClientResponse
        do {
            response = try await Self.http.execute(request, timeout: .seconds(30))
        } catch {
            throw CLIError(description: "cannot reach TaskGate at \(baseURL): is the server running? (start it with `taskgate serve`) [\(error)]")
        }
        let bytes = try await response.body.collect(upTo: 16 << 20)
        let data = Data(bytes.readableBytesView)
        guard (200..<300).contains(response.status.code) else {
            let failure = try? JSONDecoder().decode(ErrorBody.self, from: data)
            let detail = failure.map { "\($0.error): \($0.info)" } ?? String(decoding: data, as: UTF8.self)
            throw CLIError(description: "\(response.status.code) \(detail)")
        }
        do {
            return try WireJSON.decoder.decode(Value.self, from: data)
        } catch {
            throw CLIError(description: "unexpected answer from \(baseURL)\(path): \(error)")
        }
    }

    struct ErrorBody: Decodable {
        var error: String
        var info: String
    }
}

extension TaskRecord {
    var isFinal: Bool { status.isFinal }
}

struct NoBody: Encodable {}
