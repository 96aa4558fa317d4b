import CompressNIO
import NIOCore
import NIOPosix

/// permessage-deflate (RFC 7692) as TaskGate negotiates it: always without context takeover in both directions, so
/// that no connection keeps zlib state between messages. Each event-loop thread owns one compressor and one
/// decompressor, reset after every message; an idle connection with compression negotiated costs nothing more
/// than one without (a zlib context pair is 130–250 KB).
struct PerMessageDeflate: Sendable, Equatable {
    /// The window our compressor uses: 15 unless the client asked for less with `server_max_window_bits`.
    var serverWindowBits: Int32 = 15

    static let extensionName = "permessage-deflate"
    /// Messages shorter than this are sent uncompressed: deflate would not make them smaller.
    static let minimumCompressedSize = 64

    /// Picks the first offer in `Sec-WebSocket-Extensions` we can honour; `nil` when there is none (the connection
    /// then runs uncompressed).
    static func negotiate(offers header: [String]) -> PerMessageDeflate? {
        for offer in header.flatMap({ $0.split(separator: ",") }) {
            var parts = offer.split(separator: ";").map { trimmed($0) }
            guard !parts.isEmpty, parts.removeFirst().lowercased() == extensionName else { continue }
            if let accepted = accept(parameters: parts) { return accepted }
        }
        return nil
    }

    private static func accept(parameters: [Substring]) -> PerMessageDeflate? {
        var result = PerMessageDeflate()
        var seen = Set<String>()
        for parameter in parameters {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { trimmed($0, quotes: true) }
            guard let name = pair.first?.lowercased() else { return nil }
            // A parameter given twice makes the offer invalid (RFC 7692 §7).
            guard seen.insert(name).inserted else { return nil }
            let value = pair.count == 2 ? pair[1] : nil
            switch name {
            case "server_no_context_takeover", "client_no_context_takeover":
                guard value == nil else { return nil }
            case "server_max_window_bits":
                // zlib cannot write a raw deflate stream with an 8-bit window: decline, the client may offer another.
                guard let value, let bits = Int32(value), (9...15).contains(bits), value.first != "0" else { return nil }
                result.serverWindowBits = bits
            case "client_max_window_bits":
                // Any window up to 15 bits inflates with ours; a value only limits the client.
                if let value {
                    guard let bits = Int32(value), (8...15).contains(bits), value.first != "0" else { return nil }
                }
            default:
                return nil
            }
        }
        return result
    }

    private static func trimmed(_ text: Substring, quotes: Bool = false) -> Substring {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || (quotes && $0 == "\"") }
        guard let start = text.firstIndex(where: { !blank($0) }), let end = text.lastIndex(where: { !blank($0) }) else { return "" }
        return text[start...end]
    }

    /// The `Sec-WebSocket-Extensions` answer.
    var responseHeader: String {
        var header = "\(Self.extensionName); server_no_context_takeover; client_no_context_takeover"
        if serverWindowBits < 15 { header += "; server_max_window_bits=\(serverWindowBits)" }
        return header
    }

    enum InflateError: Error {
        /// The message inflates to more than the limit.
        case tooLarge
        case corrupt
    }

    /// Inflates one whole message (its frames' payloads, concatenated).
    func inflate(_ compressed: inout ByteBuffer, limit: Int, allocator: ByteBufferAllocator) throws(InflateError) -> ByteBuffer {
        let codec = DeflateCodec.current
        do {
            let decompressor = try codec.decompressor()
            defer { try? decompressor.reset() }
            // The sender removed the empty block's trailer (RFC 7692 §7.2.2).
            compressed.writeBytes([0x00, 0x00, 0xFF, 0xFF])
            return try compressed.decompressStream(with: decompressor, maxSize: limit, allocator: allocator)
        } catch let error as CompressNIOError where error == .bufferOverflow {
            throw .tooLarge
        } catch {
            throw .corrupt
        }
    }

    /// Deflates one whole message; `nil` when it is not worth it or zlib failed (it then goes uncompressed).
    func deflate(_ message: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard message.readableBytes >= Self.minimumCompressedSize else { return nil }
        do {
            let compressor = try DeflateCodec.current.compressor(windowBits: serverWindowBits)
            defer { try? compressor.reset() }
            var input = message
            var output = try input.compressStream(with: compressor, flush: .sync, allocator: allocator)
            // Ends with the sync flush's 00 00 FF FF, which the receiver adds back.
            guard output.readableBytes >= 4 else { return nil }
            output.moveWriterIndex(to: output.writerIndex - 4)
            return output
        } catch {
            return nil
        }
    }
}

/// One event-loop thread's zlib streams, created on first use.
///
/// `@unchecked Sendable`: an instance is only ever reached through `DeflateCodec.current`, a thread-specific
/// variable, so each one is used by the single thread that created it and never concurrently.
final class DeflateCodec: @unchecked Sendable {
    private static let perThread = ThreadSpecificVariable<DeflateCodec>()

    static var current: DeflateCodec {
        if let codec = perThread.currentValue { return codec }
        let codec = DeflateCodec()
        perThread.currentValue = codec
        return codec
    }

    private var compressors: [Int32: ZlibCompressor] = [:]
    private var inflater: ZlibDecompressor?

    func compressor(windowBits: Int32) throws -> ZlibCompressor {
        if let compressor = compressors[windowBits] { return compressor }
        let compressor = try ZlibCompressor(
            algorithm: .deflate,
            // Level 3: on JSON rows about half the CPU of zlib's default level 6, for 6.4× instead of 7.1× fewer bytes.
            configuration: .init(windowSize: windowBits, compressionLevel: 3, memoryLevel: 8))
        compressors[windowBits] = compressor
        return compressor
    }

    func decompressor() throws -> ZlibDecompressor {
        if let inflater { return inflater }
        let created = try ZlibDecompressor(algorithm: .deflate, windowSize: 15)
        inflater = created
        return created
    }
}
