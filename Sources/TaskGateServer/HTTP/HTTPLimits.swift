import NIOCore

/// What one HTTP connection may take of the server before it is answered and closed. The defaults are nginx's
/// (`client_header_timeout`, `keepalive_timeout`, `client_body_timeout`, `large_client_header_buffers`).
public struct HTTPLimits: Sendable, Equatable {
    /// The first request's head must be complete this long after the connection opens: `408`, then closed.
    public var headerTimeout: Duration = .seconds(60)
    /// An idle keep-alive connection (no request after a response) is closed after this.
    public var keepAliveTimeout: Duration = .seconds(75)
    /// The longest pause between two reads of a request body: `408`, then closed.
    public var bodyTimeout: Duration = .seconds(60)
    /// All header fields of a request together: `431` past it.
    public var maxHeaderBytes = 32 * 1024
    /// The request line (method, target, version): `414` past it.
    public var maxRequestLineBytes = 8 * 1024
    /// Connections open at once; past it the server stops accepting until one closes. `nil`: derived from the
    /// open-file limit, keeping some descriptors for the store, handlers and logs.
    public var maxConnections: Int?
    /// After a shutdown begins, how long a connection may take to finish its request before it is cut.
    public var drainTimeout: Duration = .seconds(5)

    public init() {}

    /// File descriptors kept out of the connection budget: the database, handler pipes, log files, the runtime.
    public static let reservedDescriptors = 128

    /// `maxConnections`, or what the open-file limit leaves.
    public func connectionBudget(openFileLimit: Int) -> Int {
        maxConnections ?? max(16, openFileLimit - Self.reservedDescriptors)
    }

    /// The decoder's own bound, well above both limits so that a long target or many headers reach the
    /// connection guard and get their own status (414 or 431) instead of the decoder's overflow error.
    var decoderLimit: Int { 4 * (maxHeaderBytes + maxRequestLineBytes) }
}
