import Logging
import NIOCore
import Synchronization
import TaskGateCore

/// One gateway WebSocket behind the `ClientConnection` seam: the bytes going out. Sending hops to the channel's
/// event loop (or writes at once when already on it); what the messages mean is the client session's business.
final class SocketConnection: ClientConnection {
    let id: String
    private let eventLoop: any EventLoop
    private let socket: NIOLoopBound<WebSocketChannelHandler>
    /// Messages sent from another thread and not yet written by the event loop.
    private let sendsInFlight = Atomic<Int>(0)

    init(id: String, socket: WebSocketChannelHandler, eventLoop: any EventLoop) {
        self.id = id
        self.eventLoop = eventLoop
        self.socket = NIOLoopBound(socket, eventLoop: eventLoop)
    }

    func send(_ message: OutgoingMessage) {
        // On the event loop a message is written at once, unless earlier ones from other threads are still queued
        // for it: it then queues behind them, so messages keep the order they were sent in (the event log sends a
        // uid's events in seq order, from whichever thread delivers them).
        if eventLoop.inEventLoop && sendsInFlight.load(ordering: .relaxed) == 0 {
            socket.value.sendText(message.json)
        } else {
            sendsInFlight.add(1, ordering: .relaxed)
            eventLoop.execute {
                self.sendsInFlight.subtract(1, ordering: .relaxed)
                self.socket.value.sendText(message.json)
            }
        }
    }

    func close(reason: CloseReason) {
        if eventLoop.inEventLoop {
            socket.value.close(reason)
        } else {
            eventLoop.execute { self.socket.value.close(reason) }
        }
    }
}
