import Logging
import NIOCore
import Synchronization
import TaskGateCore

/// A stream served by a channel handler on its event loop (a WebSocket, an SSE response): what the
/// `EventLoopConnection` in front of it calls, always on that loop.
protocol EventLoopStream: AnyObject {
    func send(_ message: OutgoingMessage)
    /// Messages sent together: written in order and flushed once.
    func send(_ messages: [OutgoingMessage])
    func close(_ reason: CloseReason)
}

/// A stream on the event loop behind the `ClientConnection` seam: the bytes going out. Sending hops to the
/// channel's event loop (or writes at once when already on it); what the messages mean is the client session's
/// business, how they are framed the stream's.
final class EventLoopConnection: ClientConnection {
    let id: String
    private let eventLoop: any EventLoop
    private let stream: NIOLoopBound<any EventLoopStream>
    /// Messages sent from another thread and not yet written by the event loop.
    private let sendsInFlight = Atomic<Int>(0)

    init(id: String, stream: any EventLoopStream, eventLoop: any EventLoop) {
        self.id = id
        self.eventLoop = eventLoop
        self.stream = NIOLoopBound(stream, eventLoop: eventLoop)
    }

    func send(_ message: OutgoingMessage) {
        if writesNow { stream.value.send(message) } else { later { $0.send(message) } }
    }

    func send(_ messages: [OutgoingMessage]) {
        if writesNow { stream.value.send(messages) } else { later { $0.send(messages) } }
    }

    /// On the event loop a send is written at once (no closure to allocate), unless earlier ones from other
    /// threads are still queued for it: it then queues behind them, so messages keep the order they were sent in
    /// (the event log sends a uid's events in seq order, from whichever thread delivers them).
    private var writesNow: Bool {
        eventLoop.inEventLoop && sendsInFlight.load(ordering: .relaxed) == 0
    }

    private func later(_ write: @escaping @Sendable (any EventLoopStream) -> Void) {
        sendsInFlight.add(1, ordering: .relaxed)
        eventLoop.execute {
            self.sendsInFlight.subtract(1, ordering: .relaxed)
            write(self.stream.value)
        }
    }

    func close(reason: CloseReason) {
        if eventLoop.inEventLoop {
            stream.value.close(reason)
        } else {
            eventLoop.execute { self.stream.value.close(reason) }
        }
    }
}
