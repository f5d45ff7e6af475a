"""Failpoints: named places where LiveFX can be made to fail on purpose, to test what it does then.

A failpoint is a call ``faults.hit("segment")`` at a place where a real fault can happen (a model
run, an effect, an encoder, the worker's hand-off). Unless ``LIVEFX_FAILPOINTS`` is set when the
process starts, a hit is one falsy test and nothing more. Set, it is a ``;``-separated list of
``NAME=raise[@FROM[-[TO]]]``:

- ``NAME``: a point (``segment``, ``effect``, ``encode``, ``worker``), or a point and a
  qualifier (``effect.blur``: only the blur effect; ``encode.vp8``);
- ``@FROM-TO``: the hits it fails on, counted from 1 per point and per scope (each session's
  worker is a scope), ``TO`` inclusive; ``@FROM-`` from then on; ``@N`` that hit only; no ``@``:
  every hit.

For example ``LIVEFX_FAILPOINTS="segment=raise@20-24;effect.blur=raise@40-"``: the segmenter fails
on frames 20 to 24 of every session, the blur effect from its 40th frame on. The same idea as
FreeBSD's fail(9) and the fail-rs crate, kept to what LiveFX's tests need.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass

ENV = "LIVEFX_FAILPOINTS"


class InjectedFault(RuntimeError):
    """What a failpoint raises."""


@dataclass(frozen=True)
class Rule:
    name: str
    first: int = 1
    last: int | None = None  # inclusive; None: no end

    def fails(self, n: int) -> bool:
        return n >= self.first and (self.last is None or n <= self.last)


def parse(spec: str) -> dict[str, Rule]:
    """``NAME=raise[@FROM[-[TO]]]`` rules; a malformed one is a ValueError naming it."""
    rules: dict[str, Rule] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, sep, action = part.partition("=")
        action, _, span = action.partition("@")
        if not sep or not name or action != "raise":
            raise ValueError(f"{ENV}: {part!r} is not NAME=raise[@FROM[-TO]]")
        first, last = 1, None
        try:
            if span:
                a, dash, b = span.partition("-")
                first = int(a)
                last = (int(b) if b else None) if dash else first
        except ValueError:
            raise ValueError(f"{ENV}: {part!r}: the span must be FROM, FROM- or FROM-TO") from None
        rules[name.strip()] = Rule(name.strip(), first, last)
    return rules


_rules: dict[str, Rule] = parse(os.environ.get(ENV, ""))
_counts: Counter[tuple[str, str]] = Counter()
_lock = threading.Lock()
_scope = threading.local()


def configure(spec: str) -> None:
    """Replace the rules (tests in one process); counts start over."""
    global _rules
    _rules = parse(spec)
    with _lock:
        _counts.clear()


def set_scope(name: str) -> None:
    """Count this thread's hits apart (a session's worker calls it with the session's id)."""
    _scope.name = name


def hit(point: str, qualifier: str = "") -> None:
    """Raise ``InjectedFault`` if a rule says this hit fails; nothing otherwise."""
    if not _rules:
        return
    scope = getattr(_scope, "name", "")
    for name in (point, f"{point}.{qualifier}" if qualifier else ""):
        rule = _rules.get(name) if name else None
        if rule is None:
            continue
        with _lock:
            _counts[(name, scope)] += 1
            n = _counts[(name, scope)]
        if rule.fails(n):
            raise InjectedFault(f"failpoint {name} (hit {n})")
