//! The Turnpike gateway: WebSocket and SSE clients in, the pipeline's streamed replies out. The protocol is
//! in `PROTOCOL.md`.
