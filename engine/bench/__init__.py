"""``livefx bench``: round trips of any WebRTC endpoint, measured by a client that stamps each
frame's number into its picture (see docs/bench.md)."""
