"""Access control: API keys, client secrets, rate limits and session caps.

Sits below the transports: nothing here imports ``web.realtime`` or ``web.meetings``.
"""
