// A WebSocket echo on `/` built on Hummingbird 2 and hummingbird-websocket, configured as TaskGate's `/ws` was on
// that engine (`serve --ws-engine hummingbird`, since removed): 1 MiB frame and message limit, permessage-deflate
// offered (server window 2^12, no server context takeover, zlib memory level 5), auto-ping every 30 s, a 3 s close
// timeout, UTF-8 validated. `GET /healthz` answers 200. The benchmark peer of bench/run.sh.
//
//   hummingbird-echo [--host 127.0.0.1] [--port 8080]
import Hummingbird
import HummingbirdWSCompression
import HummingbirdWebSocket
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct HummingbirdEcho {
    static func main() async {
        // As TaskGate's CLI does (and so as the old `--ws-engine hummingbird` peer ran): Swift tasks run on the NIO
        // event loops rather than on a second pool of threads. Before the first task starts.
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        let options: Options
        do {
            options = try Options(CommandLine.arguments.dropFirst())
        } catch {
            writeError("hummingbird-echo: \(error)\n\(Options.usage)\n")
            exit(64)
        }
        if options.help {
            print(Options.usage)
            return
        }
        do {
            // Hummingbird's own logger: label "hummingbird-echo", level from $LOG_LEVEL (default info).
            try await buildApplication(host: options.host, port: options.port).runService()
        } catch {
            writeError("hummingbird-echo: \(error)\n")
            exit(1)
        }
    }
}

/// TaskGate's frame limit: `max(maxMessageBytes * 4, 1 MiB)` with its default 64 KiB messages.
let frameLimit = 1 << 20

func buildApplication(host: String, port: Int) -> some ApplicationProtocol {
    let router = Router(context: BasicWebSocketRequestContext.self)
    router.get("/healthz") { _, _ -> HTTPResponse.Status in .ok }

    let webSocketRouter = Router(context: BasicWebSocketRequestContext.self)
    webSocketRouter.ws("/") { inbound, outbound, _ in
        for try await message in inbound.messages(maxSize: frameLimit) {
            switch message {
            case .text(let text): try await outbound.write(.text(text))
            case .binary(let buffer): try await outbound.write(.binary(buffer))
            }
        }
    }
    let webSocket = WebSocketServerConfiguration(
        maxFrameSize: frameLimit,
        extensions: [
            .perMessageDeflate(
                serverMaxWindow: 12, serverNoContextTakeover: true, memoryLevel: 5, maxDecompressedFrameSize: frameLimit)
        ],
        autoPing: .enabled(timePeriod: .seconds(30)),
        closeTimeout: .seconds(3),
        validateUTF8: true
    )
    return Application(
        router: router,
        server: .http1WebSocketUpgrade(webSocketRouter: webSocketRouter, configuration: .init(ws: webSocket)),
        configuration: .init(address: .hostname(host, port: port), serverName: "hummingbird-echo")
    )
}

struct Options {
    static let usage = "usage: hummingbird-echo [--host HOST] [--port PORT]   (defaults 127.0.0.1, 8080)"

    var host = "127.0.0.1"
    var port = 8080
    var help = false

    struct BadArgument: Error, CustomStringConvertible {
        var description: String
    }

    init(_ arguments: ArraySlice<String>) throws {
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            var name = argument
            var value: String?
            if let equals = argument.firstIndex(of: "="), argument.hasPrefix("--") {
                name = String(argument[..<equals])
                value = String(argument[argument.index(after: equals)...])
            }
            func takeValue() throws -> String {
                if let value { return value }
                guard let next = rest.popFirst() else { throw BadArgument(description: "\(name) needs a value") }
                return next
            }
            switch name {
            case "--host": host = try takeValue()
            case "--port":
                let text = try takeValue()
                guard let number = Int(text), (0...65535).contains(number) else {
                    throw BadArgument(description: "bad port '\(text)'")
                }
                port = number
            case "-h", "--help": help = true
            default: throw BadArgument(description: "unknown argument '\(argument)'")
            }
        }
    }
}

/// To standard error, unbuffered (no Foundation here).
func writeError(_ text: String) {
    var text = text
    text.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}
