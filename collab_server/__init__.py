"""Real-time collaborative code editing server: Yjs rooms over WebSocket, durably stored."""
