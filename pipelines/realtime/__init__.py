"""The realtime conversation session: OpenAI Realtime protocol events in, events out.

Transports (WebSocket, WebRTC data channel) feed raw client messages to a
:class:`~pipelines.realtime.session.RealtimeSession` and send what it emits.
"""
