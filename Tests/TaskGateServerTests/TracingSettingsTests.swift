import Testing

@testable import TaskGateServer

@Suite("Tracing settings", .timeLimit(.minutes(1)))
struct TracingSettingsTests {
    @Test func offUnlessTheFlagOrTheStandardVariablesAskForIt() {
        #expect(!OTelTracing.isWanted(flag: false, environment: [:]))
        #expect(OTelTracing.isWanted(flag: true, environment: [:]))
        #expect(OTelTracing.isWanted(flag: false, environment: ["OTEL_TRACES_EXPORTER": "otlp"]))
        #expect(!OTelTracing.isWanted(flag: false, environment: ["OTEL_TRACES_EXPORTER": "none"]))
        #expect(OTelTracing.isWanted(flag: false, environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"]))
        #expect(OTelTracing.isWanted(flag: false, environment: ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"]))
        #expect(!OTelTracing.isWanted(flag: false, environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": ""]))
        #expect(!OTelTracing.isWanted(flag: true, environment: ["OTEL_SDK_DISABLED": "true"]))
        #expect(!OTelTracing.isWanted(flag: false, environment: ["OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "otlp"]))
        #expect(OTelTracing.isWanted(flag: true, environment: ["OTEL_SDK_DISABLED": "false"]))
        #expect(!ServerSettings().tracing)
    }

    @Test func theEndpointIsReportedAsTheExporterResolvesIt() {
        #expect(OTelTracing.tracesEndpoint(environment: [:]) == "http://localhost:4318/v1/traces")
        #expect(OTelTracing.tracesEndpoint(environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"]) == "http://c:4318/v1/traces")
        #expect(OTelTracing.tracesEndpoint(environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"]) == "http://c:4318/v1/traces")
        #expect(
            OTelTracing.tracesEndpoint(environment: [
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/x",
            ]) == "http://t:1/x")
    }
}
