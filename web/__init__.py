"""The server: HTTP, WebSocket, WebRTC signalling and the static browser client."""
