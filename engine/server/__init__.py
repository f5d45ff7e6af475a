"""The WebRTC server: HTTP and WebSocket signalling on one port, one pipeline per session.

aiortc stays here, at the edge: ``engine.pipeline``, ``engine.ops`` and ``engine.effects`` know
frames, not WebRTC. Importing this package imports aiortc.
"""
