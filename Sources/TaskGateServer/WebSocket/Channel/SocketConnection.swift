import DequeModule
import Logging
import NIOCore
import Synchronization
import TaskGateCore

/// One gateway WebSocket behind the `ClientConnection` seam, for the channel-handler engine. Sending hops to the
/// channel's event loop (or writes at once when already on it). Client messages that need the pool or the store
/// are handled in order by a task that exists only while such messages are waiting, so an idle connection holds
/// no Swift task at all.
final class SocketConnection: ClientConnection {
    let id: String
    let session: Session
    private let eventLoop: any EventLoop
    private let socket: NIOLoopBound<WebSocketChannelHandler>
    private let logger: Logger

    private struct Inbox {
        var messages = Deque<Result<ClientMessage, ClientMessage.DecodeFailure>>()
        /// A task is handling messages; new ones wait behind it.
        var busy = false
        /// The event log knows this connection; whoever sees `gone` second unsubscribes.
        var subscribed = false
        var gone = false
    }
    private let inbox: Mutex<Inbox>
    /// Messages sent from another thread and not yet written by the event loop.
    private let sendsInFlight = Atomic<Int>(0)

    init(id: String, session: Session, socket: WebSocketChannelHandler, eventLoop: any EventLoop, logger: Logger) {
        self.id = id
        self.session = session
        self.eventLoop = eventLoop
        self.socket = NIOLoopBound(socket, eventLoop: eventLoop)
        self.logger = logger
        // Messages that arrive before the greeting is out wait for the subscription, which runs as the first "busy" task.
        inbox = Mutex(Inbox(busy: true))
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

    /// Registers with the event log (greeting and replay first), then handles what arrived meanwhile.
    func start(cursor: UInt64?, isAdmin: Bool) {
        let uid = session.uid
        Task {
            do {
                try await session.gateway.events.subscribe(uid: uid, connection: self, after: cursor) { latestSeq, reset in
                    .hello(uid: uid, transport: .webSocket, latestSeq: latestSeq, admin: isAdmin, reset: reset)
                }
                let gone = inbox.withLock { inbox in
                    inbox.subscribed = true
                    return inbox.gone
                }
                if gone { session.gateway.events.unsubscribe(uid: uid, connectionID: id) }
            } catch {
                // The user's events could not be loaded: say so and close, rather than serve a log with holes.
                logger.error("could not load events", metadata: ["uid": .string(uid), "error": "\(error)"])
                send(OutgoingMessage(ServerMessage.error(GatewayError(.unavailable, "events unavailable; try again"), ref: nil)))
                close(reason: .tryAgainLater("events unavailable"))
            }
            await drain()
        }
    }

    /// True when no message is waiting or being handled and no reply is on its way to the event loop: a new
    /// message may then be answered on the spot without overtaking an earlier answer. (The drain task's last send
    /// counts itself in flight before it clears `busy`, under the lock.)
    var isIdle: Bool {
        inbox.withLock { !$0.busy } && sendsInFlight.load(ordering: .relaxed) == 0
    }

    /// Queues a message (or the answer to one that could not be read) to be handled after every earlier one.
    func enqueue(_ message: Result<ClientMessage, ClientMessage.DecodeFailure>) {
        let start = inbox.withLock { inbox -> Bool in
            inbox.messages.append(message)
            if inbox.busy { return false }
            inbox.busy = true
            return true
        }
        if start { Task { await drain() } }
    }

    private func drain() async {
        while let next = inbox.withLock({ inbox -> Result<ClientMessage, ClientMessage.DecodeFailure>? in
            if let next = inbox.messages.popFirst() { return next }
            inbox.busy = false
            return nil
        }) {
            switch next {
            case .success(let message):
                await session.handle(message) { reply in send(OutgoingMessage(reply)) }
            case .failure(let failure):
                send(OutgoingMessage(ServerMessage.error(failure.error, ref: failure.ref)))
            }
        }
    }

    /// The socket is closed: leave the event log and the client list.
    func disconnected() {
        let subscribed = inbox.withLock { inbox in
            inbox.gone = true
            inbox.messages.removeAll()
            return inbox.subscribed
        }
        if subscribed { session.gateway.events.unsubscribe(uid: session.uid, connectionID: id) }
        session.gateway.clients.remove(id: id)
    }
}
