import Hummingbird
import NIOCore

/// The request context of every route: it knows the peer's address (for loopback-only admin).
public struct GatewayRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    /// The connection itself, so that a stream whose client stopped reading can be cut off.
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
        self.remoteAddress = source.channel.remoteAddress
    }

    /// "127.0.0.1:54321" or "[::1]:54321"
    public var remoteDescription: String? { Self.describe(remoteAddress) }

    static func describe(_ remoteAddress: SocketAddress?) -> String? {
        guard let address = remoteAddress, let ip = address.ipAddress else { return nil }
        let port = address.port.map { ":\($0)" } ?? ""
        return address.protocol == .inet6 ? "[\(ip)]\(port)" : "\(ip)\(port)"
    }

    public var isLoopback: Bool { Self.isLoopback(remoteAddress) }

    static func isLoopback(_ address: SocketAddress?) -> Bool {
        guard let ip = address?.ipAddress else { return false }
        return ip.hasPrefix("127.") || ip == "::1" || ip.hasPrefix("::ffff:127.")
    }
}
