// A WebSocket echo server on node's `ws` (Debian's node-ws), the baseline users compare with.
// Usage: node node_ws_echo.js PORT [deflate]
'use strict';
let WebSocket;
try {
  WebSocket = require('ws');
} catch (e) {
  WebSocket = require('/usr/share/nodejs/ws');
}
const port = Number(process.argv[2]);
const deflate = process.argv[3] === 'deflate';
const server = new WebSocket.WebSocketServer({
  host: '127.0.0.1',
  port,
  maxPayload: 1 << 20,
  // ws's defaults when enabled: compressor and decompressor kept per connection (context takeover).
  perMessageDeflate: deflate ? { threshold: 0 } : false,
});
server.on('connection', (socket) => {
  socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
});
server.on('listening', () => console.log(`node ws echo on 127.0.0.1:${port}${deflate ? ' (permessage-deflate)' : ''}`));
process.on('SIGTERM', () => process.exit(0));
