import ArgumentParser
import Foundation

/// `taskgate-load`: the benchmark load generator. A SwiftNIO client on its own event loops (not the bottleneck: it
/// reports its own CPU time next to the server's), bounded in connections and time, loopback only unless told.
@main
struct LoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "taskgate-load",
        abstract: "Drives a WebSocket or long-poll server on loopback and prints a JSON summary and a table.",
        discussion: """
            Modes:
              rtt    closed loop: each connection sends --message and waits for --replies messages, again and again.
              idle   holds --connections open (optionally after one exchange) and reports server RSS per connection.
              poll   TaskGate long-poll: --connections waiting GET /poll, each woken by an echo task submitted for
                     its uid over REST; reports delivery latency and server RSS per waiting poll.
            In --url, {i} is replaced by the connection's index (e.g. ws://127.0.0.1:9501/ws?uid=b{i}).
            With --server-pid, the server's CPU time (/proc/PID/stat) and RSS (/proc/PID/status) are measured
            over exactly the measurement window.
            """
    )

    enum Mode: String, ExpressibleByArgument, CaseIterable { case rtt, idle, poll }

    @Option(help: "rtt, idle or poll.") var mode: Mode = .rtt
    @Option(help: "ws://host:port/path for rtt and idle; http://host:port for poll.") var url: String
    @Option(help: "Connections (at most 60000).") var connections: Int = 100
    @Option(help: "Seconds measured (rtt; idle: seconds held), at most 600.") var duration: Double = 5
    @Option(help: "Seconds of warm-up before measuring (rtt), at most 60.") var warmup: Double = 1
    @Option(help: "Client event-loop threads.") var threads: Int = 1
    @Option(help: "The message each connection sends; {payload} is replaced by --payload-bytes of JSON rows.")
    var message: String = #"{"cmd":"ping"}"#
    @Option(help: "Approximate size of the generated JSON that replaces {payload}.") var payloadBytes: Int = 0
    @Option(help: "Messages that answer one sent message (TaskGate: 1 for ping, 3 for an echo task).") var replies: Int = 1
    @Option(help: "Messages to read after connecting before the first send (TaskGate's hello: 1).") var skipFirst: Int = 0
    @Option(help: "Substring the last reply must contain when it is not compressed (counted as an error otherwise).")
    var expect: String?
    @Flag(help: "Offer permessage-deflate in the upgrade request.") var deflate = false
    @Flag(help: "idle: exchange one message on each connection before holding it.") var exchange = false
    @Option(help: "The server's PID, for CPU and RSS.") var serverPid: Int32?
    @Option(help: "poll: concurrent REST connections submitting the waking tasks.") var submitters: Int = 8
    @Option(help: "poll/idle: seconds to wait once everything is connected, before measuring RSS.") var settle: Double = 2
    @Option(help: "Simultaneous connection attempts while connecting.") var connectBatch: Int = 200
    @Option(help: "A label for the summary.") var label: String = ""
    @Option(help: "Also write the JSON summary to this file.") var jsonOut: String?
    @Flag(help: "Allow a target that is not on loopback.") var allowRemote = false

    func validate() throws {
        guard (1...60_000).contains(connections) else { throw ValidationError("--connections must be 1...60000") }
        guard duration > 0, duration <= 600 else { throw ValidationError("--duration must be in (0, 600] seconds") }
        guard warmup >= 0, warmup <= 60 else { throw ValidationError("--warmup must be in [0, 60] seconds") }
        guard settle >= 0, settle <= 60 else { throw ValidationError("--settle must be in [0, 60] seconds") }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be 1...64") }
        guard (1...1000).contains(replies) else { throw ValidationError("--replies must be 1...1000") }
        guard (1...256).contains(submitters) else { throw ValidationError("--submitters must be 1...256") }
        guard (1...10_000).contains(connectBatch) else { throw ValidationError("--connect-batch must be 1...10000") }
        guard payloadBytes >= 0, payloadBytes <= 1 << 20 else { throw ValidationError("--payload-bytes must be at most 1 MiB") }
        let target = try Target(url)
        if !allowRemote && !target.isLoopback {
            throw ValidationError("\(target.host) is not a loopback address; pass --allow-remote to load another machine")
        }
        if mode == .poll && target.scheme != "http" { throw ValidationError("poll mode needs an http:// URL") }
        if mode != .poll && target.scheme != "ws" { throw ValidationError("\(mode.rawValue) mode needs a ws:// URL") }
    }

    func run() async throws {
        let target = try Target(url)
        let summary: Summary
        switch mode {
        case .rtt: summary = try await RoundTripRun(options: self, target: target).run()
        case .idle: summary = try await IdleRun(options: self, target: target).run()
        case .poll: summary = try await PollRun(options: self, target: target).run()
        }
        let json = summary.json()
        print(json)
        print(summary.table())
        if let jsonOut {
            try (json + "\n").write(toFile: jsonOut, atomically: true, encoding: .utf8)
        }
        if summary.completed == 0 { throw ExitCode(2) }
    }

    /// The messages to send, with {payload} expanded: with a payload, 64 different ones (different rows), sent in
    /// turn, so that a compressor keeping its window across messages cannot just point back at the last message.
    var expandedMessages: [[UInt8]] {
        guard message.contains("{payload}") else { return [Array(message.utf8)] }
        return (0..<64).map { seed in
            Array(message.replacingOccurrences(
                of: "{payload}", with: Payload.rows(approximateBytes: payloadBytes, seed: UInt64(seed))).utf8)
        }
    }
}

/// Where to connect. Only the parts the generator needs: scheme, host, port and the request target.
struct Target: Sendable {
    var scheme: String
    var host: String
    var port: Int
    var pathAndQuery: String

    init(_ text: String) throws {
        guard let components = URLComponents(string: text.replacingOccurrences(of: "{i}", with: "0")),
            let scheme = components.scheme, let host = components.host
        else { throw ValidationError("cannot parse URL \(text)") }
        self.scheme = scheme
        self.host = host
        self.port = components.port ?? 80
        // Keep the {i} placeholder in the request target.
        let afterAuthority = text.drop(while: { $0 != "/" }).dropFirst(2).drop(while: { $0 != "/" })
        self.pathAndQuery = afterAuthority.isEmpty ? "/" : String(afterAuthority)
    }

    var isLoopback: Bool {
        host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }

    func path(for index: Int) -> String {
        pathAndQuery.replacingOccurrences(of: "{i}", with: String(index))
    }
}

/// Generated JSON rows, deterministic, of roughly the asked size: what a report-like task result looks like.
enum Payload {
    static func rows(approximateBytes: Int, seed: UInt64 = 0) -> String {
        guard approximateBytes > 0 else { return "[]" }
        let names = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
        let regions = ["north", "south", "east", "west"]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15 &+ seed &* 0x2545_F491_4F6C_DD1D
        func next() -> UInt64 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return state
        }
        var text = "["
        var index = 0
        while text.utf8.count < approximateBytes - 2 {
            if index > 0 { text += "," }
            let price = Double(next() % 100_000) / 100
            let quantity = next() % 500
            text += #"{"id":\#(10_000 + Int(seed) * 1000 + index),"name":"\#(names[Int(next() % 10)])-\#(next() % 1000)","#
            text += #""region":"\#(regions[Int(next() % 4)])","price":\#(price),"quantity":\#(quantity),"#
            text += #""updated":"2026-11-\#(10 + next() % 20)T\#(10 + next() % 14):\#(10 + next() % 50):00Z","active":\#(next() % 2 == 0)}"#
            index += 1
        }
        return text + "]"
    }
}
