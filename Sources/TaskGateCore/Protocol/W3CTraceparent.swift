/// The W3C Trace Context `traceparent` header's syntax, checked without a tracer (client messages are parsed here,
/// and this directory imports only the standard library and Foundation).
public enum W3CTraceparent {
    /// `version-traceid-parentid-flags` as W3C Trace Context (level 1) writes it: lowercase hex, an id not all zeros,
    /// and not the invalid version `ff`. Later versions may append fields after the flags.
    public static func isValid(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count >= 55, bytes.count <= 512 else { return false }
        func isHex(_ range: Range<Int>) -> Bool {
            range.allSatisfy { index in
                let byte = bytes[index]
                return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x66)
            }
        }
        func isZero(_ range: Range<Int>) -> Bool { range.allSatisfy { bytes[$0] == UInt8(ascii: "0") } }
        let dash = UInt8(ascii: "-")
        guard isHex(0..<2), bytes[2] == dash, isHex(3..<35), bytes[35] == dash, isHex(36..<52), bytes[52] == dash,
            isHex(53..<55)
        else { return false }
        guard !(bytes[0] == UInt8(ascii: "f") && bytes[1] == UInt8(ascii: "f")) else { return false }
        guard !isZero(3..<35), !isZero(36..<52) else { return false }
        let isVersionZero = bytes[0] == UInt8(ascii: "0") && bytes[1] == UInt8(ascii: "0")
        if isVersionZero { return bytes.count == 55 }
        return bytes.count == 55 || bytes[55] == dash
    }
}
