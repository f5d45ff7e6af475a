"""BodyPrior: the body model's person segmentation, fused with the selfie matte.

The selfie segmenter keeps whatever looks like salient foreground; BlazePose's segmentation
knows bodies. Every k-th frame (k from the budget level) the prior:

1. finds the person: the bounding box of the selfie mask's largest part (objects the selfie model
   merged with her included), as a square crop twice its larger side (the scale at which the
   model, trained on crops of whole bodies, segments best);
2. cuts that crop out of the frame's pyramids and runs the body model on it (on its own thread
   for live sessions, inline for files);
3. brings the body's segmentation back to the mask's grid and turns it into a *gate*: the body,
   dilated by a few per cent of its height and softened, so that the selfie model's own edges and
   hair decide near the body and nothing far from it survives. What the person holds or has in
   front of her (a mug, a phone, a helmet on her lap, a cat in her arms) the body model segments
   with her, so it stays; what stands beside or behind her goes;
4. checks the large parts the gate removes: when the body model finds a person there too, there
   are several people and the prior steps aside.

Between runs the gate follows the selfie mask's largest part (its centroid's motion). The fused
mask is ``selfie × gate``. The prior steps aside — selfie mask alone, with the reason in
``stats()`` — when no person is in the selfie mask, the body model finds no body, there are
several people, or the budget level allows no body model.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from engine.frame import FrameBuffer
from engine.ops import cpu
from engine.person.geometry import SIZE, Crop, CropSampler, crop_to_grid
from engine.person.model import BodyModel, BodyOutput

log = logging.getLogger(__name__)

PRESENCE = 0.5  # the body model's pose flag above which a body is there
WEAK = 0.15  # body probability that counts as body where it touches the body
MIN_PERSON = 0.004  # the selfie mask's largest part must cover this share of the frame
MARGIN = 2.0  # crop side / the person's larger extent (the scale the model segments best)
TRACK_REACH = 0.15  # the person is tracked within this share of her height around the gate
GATE_GROW = 0.03  # the gate reaches this share of the body's height beyond the body
CHECK_MARGIN = 1.1  # crop side / the removed part's larger extent, for the second-person check
OTHER_PERSON = 0.25  # removed parts at least this share of the body's area are checked
SHOULDERS = (11, 12)  # BlazePose's shoulder landmarks
BACKGROUND_NICE = 10  # the asynchronous body model's thread runs at this nice value
CHECK_EVERY = 30  # frames a "several people" verdict holds before it is checked again


@dataclass
class _Job:
    kind: str  # "body" or "check"
    crop: Crop
    frame_index: int
    selfie: np.ndarray | None = None  # "body": the selfie mask of that frame (a copy)
    area: float = 0.0  # "check": the part's area (grid pixels)
    region: np.ndarray | None = None  # "check": the part, as a grid-size bool mask


@dataclass
class _Result:
    job: _Job
    out: BodyOutput
    prob: np.ndarray  # sigmoid of the segmentation, 256×256 (a copy)
    landmarks: np.ndarray  # (39, 5) raw
    run_ms: float


@dataclass
class PriorStats:
    runs: int = 0
    checks: int = 0
    fused_frames: int = 0
    fallback_frames: dict[str, int] = field(default_factory=dict)
    run_ms: list[float] = field(default_factory=list)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(x, -40.0, 40.0)))
    return out.astype(np.float32)


class BodyPrior:
    """Per-session body prior on one resolution (``configure`` on a new size)."""

    def __init__(
        self,
        model: str = "lite",
        *,
        threads: int = 1,
        asynchronous: bool = False,
        body_model: BodyModel | None = None,
    ) -> None:
        self.model = body_model or BodyModel(model, threads)
        self.asynchronous = asynchronous
        self._pool = (
            concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="livefx-body", initializer=_background_priority
            )
            if asynchronous
            else None
        )
        self._future: concurrent.futures.Future[_Result] | None = None
        self.stats_ = PriorStats()
        self.state = "starting"
        self._size: tuple[int, int, int, int] = (0, 0, 0, 0)
        self.reset()

    # -- state ----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the person (a scene cut, a new size)."""
        self._gate: np.ndarray | None = None
        self._wide: np.ndarray | None = None  # the gate grown: where the person is tracked
        self._ref: np.ndarray | None = None  # the selfie mask there, at the gate's frame
        self._cur = np.empty((0, 0), np.float32)
        self._shift = (0.0, 0.0)
        self._since = 10**9
        self._frame_index = 0
        self._several_until = -1
        self._checked_until = -1
        self._checking = False
        self._misses = 0
        self.landmarks: np.ndarray | None = None  # (39, 5): x, y in frame pixels; raw logits
        self.crop: Crop | None = None
        self._pending_check: _Job | None = None

    def configure(self, width: int, height: int, grid_w: int, grid_h: int) -> None:
        if self._size != (width, height, grid_w, grid_h):
            self._size = (width, height, grid_w, grid_h)
            self._sampler = CropSampler(width, height)
            self._fused = np.empty((grid_h, grid_w), np.float32)
            self._input = np.empty((3, SIZE, SIZE), np.float32)
            self.reset()

    def close(self) -> None:
        if self._pool is not None:
            # Not waiting: a run in flight finishes on its own thread, which then exits.
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the frame path -------------------------------------------------------------------------

    def apply(
        self, mask: np.ndarray, pyramids: cpu.FramePyramids, frame: FrameBuffer, every: int
    ) -> np.ndarray:
        """The fused mask for this frame (the selfie ``mask`` itself when the prior steps aside).

        ``every``: run the body model at most every this many frames; 0 = not at all."""
        self._frame_index += 1
        self._since += 1
        if every <= 0:
            return self._aside(mask, "budget")
        if self._future is not None and self._future.done():
            future, self._future = self._future, None
            self._collect(future.result())  # the worker's exception, if any, is this frame's
        due = self._since >= every or self._gate is None or self._pending_check is not None
        if self._future is None and due:
            job = self._pending_check
            if job is None:
                person = _largest_part(mask)
                if person is None:
                    self._gate = None
                    return self._aside(mask, "no person")
                job = self._body_job(person, mask)
            self._pending_check = None
            self._start(job, pyramids, frame)
        if self._frame_index <= self._several_until:
            return self._aside(mask, "several people")
        if self._gate is None:
            return self._aside(mask, self.state if self.state != "fused" else "starting")
        gate = self._follow(mask)
        if gate is None:
            return self._aside(mask, "no person")
        np.multiply(mask, gate, out=self._fused)
        self.stats_.fused_frames += 1
        self.state = "fused"
        return self._fused

    def _aside(self, mask: np.ndarray, reason: str) -> np.ndarray:
        fb = self.stats_.fallback_frames
        fb[reason] = fb.get(reason, 0) + 1
        self.state = reason
        return mask

    def _body_job(self, person: tuple[float, float, float, float], mask: np.ndarray) -> _Job:
        width, height, gw, gh = self._size
        sx, sy = width / gw, height / gh
        x0, y0, x1, y1 = person
        w, h = (x1 - x0) * sx, (y1 - y0) * sy
        crop = Crop((x0 + x1) / 2 * sx, (y0 + y1) / 2 * sy, MARGIN * max(w, h, 8.0))
        return _Job("body", crop, self._frame_index, mask.copy())

    def _start(self, job: _Job, pyramids: cpu.FramePyramids, frame: FrameBuffer) -> None:
        self._since = 0
        self._sampler(pyramids, frame, job.crop, self._input)
        if self._pool is None:
            self._collect(self._run(job, self._input))
            return
        self._future = self._pool.submit(self._run, job, self._input.copy())

    def _run(self, job: _Job, image: np.ndarray) -> _Result:
        t = time.perf_counter()
        self.model.input[0] = image
        out = self.model.run()
        prob = _sigmoid(out.segmentation)
        return _Result(job, out, prob, out.landmarks.copy(), (time.perf_counter() - t) * 1e3)

    # -- results --------------------------------------------------------------------------------

    def _collect(self, r: _Result) -> None:
        st = self.stats_
        st.run_ms.append(r.run_ms)
        del st.run_ms[:-300]
        width, height, gw, gh = self._size
        flag = r.out.flag
        body = crop_to_grid(r.prob, r.job.crop, width, height, gw, gh)
        if r.job.kind == "check":
            st.checks += 1
            assert r.job.region is not None
            covered = float((body[r.job.region] > 0.5).mean()) if r.job.area else 0.0
            self._checking = False
            self._checked_until = self._frame_index + CHECK_EVERY
            if flag >= PRESENCE and covered >= 0.5:
                self._several_until = self._frame_index + CHECK_EVERY
                self._gate = None
            return
        st.runs += 1
        if flag < PRESENCE:
            # One miss keeps the last gate (carried with the motion); two in a row drop it.
            self._misses += 1
            if self._misses >= 2 or self._gate is None:
                self._gate = None
                self.state = "no body"
            return
        self._misses = 0
        landmarks = r.landmarks.copy()
        landmarks[:, :2] = r.job.crop.points_to_frame(landmarks[:, :2])
        self.landmarks, self.crop = landmarks, r.job.crop
        # The gate is made against the selfie mask of the job's own frame; ``_follow`` moves it
        # to the frames after (asynchronous runs come back a frame or two later).
        assert r.job.selfie is not None
        gate = self._make_gate(body, r.job.selfie, landmarks)
        if gate is None:
            return
        rows = np.nonzero((gate > 0.5).any(axis=1))[0]
        reach = max(3, round(TRACK_REACH * (rows[-1] - rows[0] + 1))) if rows.size else 3
        kw = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
        wide = cv2.dilate((gate > 0.5).astype(np.uint8), kw).astype(np.float32)
        half = (max(1, wide.shape[1] // 2), max(1, wide.shape[0] // 2))
        self._ref = cv2.resize(r.job.selfie * wide, half, interpolation=cv2.INTER_AREA)
        self._cur = np.empty_like(self._ref)
        self._gate, self._wide = gate, wide
        self._shift = (0.0, 0.0)
        self.state = "fused"

    def _make_gate(
        self, body: np.ndarray, selfie: np.ndarray, landmarks: np.ndarray
    ) -> np.ndarray | None:
        solid = (body > 0.5).astype(np.uint8)
        rows = np.nonzero(solid.any(axis=1))[0]
        if rows.size == 0:
            self.state = "no body"
            return None
        grow = max(2, round(GATE_GROW * (rows[-1] - rows[0] + 1)))
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        # What the model is unsure of (WEAK < p ≤ 0.5) joins the body where it touches it.
        weak = (body > WEAK).astype(np.uint8)
        n, labels, _, _ = cv2.connectedComponentsWithStats(weak, connectivity=8)
        if n > 2:
            keep = np.unique(labels[solid > 0])
            weak = np.isin(labels, keep[keep > 0]).astype(np.uint8)
        lifted = np.maximum(body, weak.astype(np.float32))
        gate: np.ndarray = cv2.blur(cv2.dilate(lifted, k), (grow + 1, grow + 1))
        # The parts of the selfie mask the gate removes (opened: thin strips of background the
        # selfie model kept are not parts). One that touches her and lies below her shoulders
        # rests in front of or against her (on her lap, on the desk, in her arms): it stays, as
        # what she holds does. A large other one may be a second person: check it.
        raw = ((selfie > 0.5) & (gate < 0.5)).astype(np.uint8)
        if not raw.any():
            return gate
        removed = cv2.morphologyEx(raw, cv2.MORPH_OPEN, k)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(removed, connectivity=8)
        near = cv2.dilate((gate >= 0.5).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        touching = set(np.unique(labels[near & (labels > 0)]).tolist())
        shoulders = self._shoulder_row(landmarks, gate.shape[0])
        body_area = float(solid.sum())
        resting = np.zeros_like(raw)
        for part in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[part])
            if part in touching and shoulders is not None and y >= shoulders:
                resting[labels == part] = 1
            elif (
                area >= OTHER_PERSON * body_area
                and not self._checking
                and self._frame_index > self._checked_until
            ):
                self._pending_check = self._check_job(x, y, w, h, labels == part, area)
                self._checking = True
        grown: np.ndarray = cv2.dilate(resting, k)
        resting = (grown & raw) | resting  # whole again after the opening
        if shoulders is not None:
            # Thin pieces the opening dropped (a helmet's rim beyond the body's edge): kept where
            # they touch her below the shoulders, as the parts above are.
            opened: np.ndarray = cv2.dilate(removed, k)
            thin: np.ndarray = raw & (1 - opened)
            thin[: max(0, int(np.ceil(shoulders))), :] = 0
            m, tl = cv2.connectedComponents(thin, connectivity=8)
            if m > 1:
                keep = np.unique(tl[near & (tl > 0)])
                resting |= np.isin(tl, keep[keep > 0]).astype(np.uint8)
        if resting.any():
            gate = np.maximum(gate, cv2.blur(resting.astype(np.float32), (3, 3)))
        return gate

    def _shoulder_row(self, landmarks: np.ndarray, gh: int) -> float | None:
        """The shoulders' height in grid rows, when the model sees both shoulders."""
        visible = _sigmoid(landmarks[list(SHOULDERS), 3])
        if visible.min() < 0.5:
            return None
        return float(landmarks[list(SHOULDERS), 1].mean()) * gh / self._size[1]

    def _check_job(self, x: int, y: int, w: int, h: int, part: np.ndarray, area: int) -> _Job:
        width, height, gw, gh = self._size
        sx, sy = width / gw, height / gh
        # Tight: a wider crop would hold her too, and the model would find her.
        crop = Crop((x + w / 2) * sx, (y + h / 2) * sy, CHECK_MARGIN * max(w * sx, h * sy, 8.0))
        return _Job("check", crop, self._frame_index, None, float(area), part)

    def _follow(self, mask: np.ndarray) -> np.ndarray | None:
        """The gate moved with the person: the shift of the selfie mask around her from frame
        to frame, by phase correlation (robust to parts of the mask coming and going, which
        would move a centroid), added up since the gate's frame."""
        assert self._gate is not None and self._wide is not None and self._ref is not None
        dx, dy = self._shift
        region = _shifted(self._wide, dx, dy) if any(self._shift) else self._wide
        cur = self._cur
        # At half the grid's resolution: a quarter of the transform's cost, shifts to ±1 px.
        cv2.resize(
            mask * region, (cur.shape[1], cur.shape[0]), dst=cur, interpolation=cv2.INTER_AREA
        )
        if float(cur.sum()) < 0.25:
            return None
        (ddx, ddy), response = cv2.phaseCorrelate(self._ref, cur)
        limit = max(cur.shape) / 8
        if response > 0.02 and abs(ddx) < limit and abs(ddy) < limit:
            dx, dy = dx + 2 * ddx, dy + 2 * ddy
        self._shift = (float(dx), float(dy))
        self._ref, self._cur = cur, self._ref  # this frame is the next one's reference
        if abs(dx) < 0.25 and abs(dy) < 0.25:
            return self._gate
        return _shifted(self._gate, dx, dy)

    def stats(self) -> dict[str, Any]:
        st = self.stats_
        runs = np.array(st.run_ms) if st.run_ms else np.zeros(1)
        return {
            "model": self.model.name,
            "state": self.state,
            "runs": st.runs,
            "checks": st.checks,
            "fused_frames": st.fused_frames,
            "fallback_frames": dict(st.fallback_frames),
            "run_ms_median": round(float(np.median(runs)), 3),
            "asynchronous": self.asynchronous,
        }


def _background_priority() -> None:
    """The body model's thread yields to the frame path and the encoders (Linux: a thread's
    nice value is its own)."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)


def _shifted(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], np.float32)
    out: np.ndarray = cv2.warpAffine(
        img,
        m,
        (img.shape[1], img.shape[0]),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return out


def _centroid(region: np.ndarray) -> tuple[float, float] | None:
    m = cv2.moments(region.astype(np.uint8), binaryImage=True)
    if m["m00"] < 1:
        return None
    return (m["m10"] / m["m00"], m["m01"] / m["m00"])


def _largest_part(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Bounding box (x0, y0, x1, y1, continuous grid coordinates) of the selfie mask's largest
    part, or None when it is too small to be a person."""
    solid = (mask > 0.5).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(solid, connectivity=8)
    if n <= 1:
        return None
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, area = (int(v) for v in stats[k])
    if area < MIN_PERSON * mask.size:
        return None
    return (float(x), float(y), float(x + w), float(y + h))
