"""Effects: what replaces the background (or what is shown instead of the composite).

One class per effect, registered by name; ``create_effect`` looks the name up, and an unknown
name is an error that lists the known ones. Effects work on yuv420p planes and never import
aiortc or PyAV (a video background gets its frames through ``engine.media``).
"""

from engine.effects.base import EFFECTS, Effect, create_effect

__all__ = ["EFFECTS", "Effect", "create_effect"]
