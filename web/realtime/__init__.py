"""Realtime transports: the OpenAI Realtime protocol over WebSocket and over WebRTC."""
