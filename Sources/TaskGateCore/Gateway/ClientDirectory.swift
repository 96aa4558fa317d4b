import Foundation
import Synchronization

/// Who is connected, on which transport. WebSocket clients are listed while their socket is open; long-poll
/// clients while a poll is waiting or for `longPollLinger` after their last poll (they reconnect between polls).
public final class ClientDirectory: Sendable {
    private struct LongPollClient {
        var info: ClientInfo
        var lastSeen: ContinuousClock.Instant
        var waiting = 0
    }

    private struct State {
        var sockets: [String: ClientInfo] = [:]
        var polls: [String: LongPollClient] = [:]
        var nextID: UInt64 = 0
        /// Bumped on every connect and disconnect, so a cluster node republishes its list only when it changed.
        var version: UInt64 = 0
    }

    private let state = Mutex(State())
    public let longPollLinger: Duration
    /// Stamped on every client listed here (a cluster node's id).
    public let node: String?

    public init(longPollLinger: Duration = .seconds(30), node: String? = nil) {
        self.longPollLinger = longPollLinger
        self.node = node
    }

    public var version: UInt64 { state.withLock { $0.version } }

    public func makeConnectionID() -> String {
        state.withLock { state in
            state.nextID += 1
            return "c-\(state.nextID)"
        }
    }

    public func add(_ client: ClientInfo) {
        var client = client
        client.node = node
        state.withLock { [client] state in
            state.sockets[client.id] = client
            state.version += 1
        }
    }

    public func remove(id: String) {
        state.withLock { state in
            if state.sockets.removeValue(forKey: id) != nil { state.version += 1 }
        }
    }

    /// Marks the start of a long-poll request; returns a token for `endPoll`.
    public func beginPoll(uid: String, remote: String?, admin: Bool) -> String {
        let key = "lp:\(uid)@\(remote.map(Self.host(of:)) ?? "?")"
        state.withLock { state in
            let now = ContinuousClock.now
            if state.polls[key] == nil {
                state.nextID += 1
                let info = ClientInfo(
                    id: "p-\(state.nextID)", uid: uid, transport: .longPoll, remote: remote, admin: admin, node: node)
                state.polls[key] = LongPollClient(info: info, lastSeen: now)
                state.version += 1
            }
            state.polls[key]?.lastSeen = now
            state.polls[key]?.waiting += 1
        }
        return key
    }

    public func endPoll(_ key: String) {
        state.withLock { state in
            state.polls[key]?.waiting -= 1
            state.polls[key]?.lastSeen = .now
        }
    }

    public func list() -> [ClientInfo] {
        state.withLock { state in
            let cutoff = ContinuousClock.now - longPollLinger
            let before = state.polls.count
            state.polls = state.polls.filter { $0.value.waiting > 0 || $0.value.lastSeen > cutoff }
            if state.polls.count != before { state.version += 1 }
            return (state.sockets.values + state.polls.values.map(\.info)).sorted { ($0.connectedAt, $0.id) < ($1.connectedAt, $1.id) }
        }
    }

    public var count: Int { list().count }

    /// WebSocket and SSE connections of one uid, and of everyone (for the connection limits).
    public func persistentConnectionCounts(uid: String) -> (uid: Int, all: Int) {
        state.withLock { state in
            (state.sockets.values.count { $0.uid == uid }, state.sockets.count)
        }
    }

    /// Connected clients by transport (every transport listed, zero included).
    public func countsByTransport() -> [String: Int] {
        var counts = Dictionary(uniqueKeysWithValues: [Transport.webSocket, .longPoll, .sse].map { ($0.rawValue, 0) })
        for client in list() { counts[client.transport.rawValue, default: 0] += 1 }
        return counts
    }

    /// "1.2.3.4:5678" → "1.2.3.4", "[::1]:5678" → "::1": a long-poll client keeps its identity across source ports.
    static func host(of remote: String) -> String {
        if remote.hasPrefix("["), let end = remote.firstIndex(of: "]") {
            return String(remote[remote.index(after: remote.startIndex)..<end])
        }
        if let colon = remote.lastIndex(of: ":"), remote.firstIndex(of: ":") == colon {
            return String(remote[..<colon])
        }
        return remote
    }
}
