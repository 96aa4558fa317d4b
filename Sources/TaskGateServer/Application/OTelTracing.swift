import Foundation
import Logging
import OTel
import ServiceLifecycle
import Synchronization

/// OpenTelemetry tracing: off unless `serve --otel`, or the standard variables ask for it. Only traces go to
/// OpenTelemetry (OTLP over HTTP/protobuf); metrics stay Prometheus and logs stay swift-log.
public enum OTelTracing {
    /// Whether tracing is on: the flag, or `OTEL_TRACES_EXPORTER=otlp`, or an OTLP endpoint set, unless
    /// `OTEL_SDK_DISABLED=true`.
    public static func isWanted(flag: Bool, environment: [String: String]) -> Bool {
        if environment["OTEL_SDK_DISABLED"]?.lowercased() == "true" { return false }
        if flag { return true }
        if environment["OTEL_TRACES_EXPORTER"]?.lowercased() == "otlp" { return true }
        return ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].contains { !(environment[$0] ?? "").isEmpty }
    }

    /// Where the spans go, as the OTLP/HTTP exporter resolves it from the variables.
    public static func tracesEndpoint(environment: [String: String]) -> String {
        if let endpoint = environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], !endpoint.isEmpty { return endpoint }
        let base = environment["OTEL_EXPORTER_OTLP_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 } ?? "http://localhost:4318"
        return base.hasSuffix("/") ? base + "v1/traces" : base + "/v1/traces"
    }

    /// The tracer is global and may be set once per process.
    private static let bootstrapped = Mutex(false)

    /// Bootstraps the OTLP tracer; the returned service exports the spans and flushes them when it stops.
    static func bootstrap(environment: [String: String], logger: Logger) throws -> any Service {
        let first = bootstrapped.withLock { done in
            defer { done = true }
            return !done
        }
        guard first else { throw StartupError(description: "tracing is already set up in this process") }
        var config = OTel.Configuration.default
        config.serviceName = "taskgate"  // OTEL_SERVICE_NAME overrides it
        config.metrics.enabled = false
        config.logs.enabled = false
        config.traces.otlpExporter.protocol = .httpProtobuf
        // Its own diagnostics only when something is wrong (OTEL_LOG_LEVEL overrides); the line below says it is on.
        config.diagnosticLogLevel = .warning
        // `OTEL_SDK_DISABLED=false` would switch metrics and logs back on (and bootstrap them a second time); the
        // decision whether to trace was made already.
        var variables = environment
        variables["OTEL_SDK_DISABLED"] = nil
        // Only the OTLP/HTTP exporter is built in; swift-otel traps on a gRPC one, so it is refused here first.
        let tracesProtocol = [variables["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"], variables["OTEL_EXPORTER_OTLP_PROTOCOL"]]
            .compactMap { $0 }.first { !$0.isEmpty }
        if tracesProtocol?.lowercased() == "grpc" {
            throw StartupError(
                description: "cannot set up tracing: this build exports OTLP over HTTP only; "
                    + "set OTEL_EXPORTER_OTLP_PROTOCOL to http/protobuf (the default) instead of grpc")
        }
        let service: any Service
        do {
            service = try OTel.bootstrap(configuration: config, environment: variables)
        } catch {
            let exporter = variables["OTEL_TRACES_EXPORTER"].map { " (OTEL_TRACES_EXPORTER=\($0); only otlp is built in)" } ?? ""
            throw StartupError(description: "cannot set up tracing: \(error)\(exporter)")
        }
        logger.notice(
            "tracing on: spans go to OTLP/HTTP",
            metadata: [
                "endpoint": .string(tracesEndpoint(environment: variables)),
                "service": .string(variables["OTEL_SERVICE_NAME"].flatMap { $0.isEmpty ? nil : $0 } ?? config.serviceName),
            ])
        return service
    }
}
