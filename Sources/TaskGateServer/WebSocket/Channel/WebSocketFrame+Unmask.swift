import NIOCore
import NIOWebSocket

extension WebSocketFrame {
    /// The payload unmasked into a buffer of its own in one pass, eight bytes at a time, noting on the way whether it
    /// is all ASCII. NIO's `unmaskedData` copies the payload (the frame shares the read buffer), then unmasks it a
    /// byte at a time, and a text message is then read a third time for its UTF-8: for a 16 KB message those three
    /// passes were a tenth of the server's CPU.
    func unmaskedPayload(allocator: ByteBufferAllocator) -> (payload: ByteBuffer, isASCII: Bool) {
        let count = data.readableBytes
        guard let key = maskKey, count > 0 else {
            return (data, data.withUnsafeReadableBytes { bytes in bytes.allSatisfy { $0 < 0x80 } })
        }
        // Payload byte i is masked with key byte (i + offset) % 4, the offset being the extension data's length.
        let offset = extensionData?.readableBytes ?? 0
        var word: UInt64 = 0
        for byte in 0..<4 { word |= UInt64(key[(byte + offset) % 4]) << (8 * byte) }
        // The mask laid out in memory as the payload's bytes are: k0 k1 k2 k3 k0 k1 k2 k3.
        let mask = UInt64(littleEndian: word | word << 32)
        var highBits: UInt64 = 0
        var payload = allocator.buffer(capacity: count)
        data.withUnsafeReadableBytes { source in
            payload.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { target in
                var index = 0
                while index + 8 <= count {
                    let unmasked = source.loadUnaligned(fromByteOffset: index, as: UInt64.self) ^ mask
                    highBits |= unmasked
                    target.storeBytes(of: unmasked, toByteOffset: index, as: UInt64.self)
                    index += 8
                }
                while index < count {
                    let unmasked = source[index] ^ key[(index + offset) % 4]
                    highBits |= UInt64(unmasked)
                    target[index] = unmasked
                    index += 1
                }
                return count
            }
        }
        return (payload, highBits & 0x8080_8080_8080_8080 == 0)
    }
}
