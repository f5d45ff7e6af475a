"""``livefx bench --browser``: the same measurement inside headless Chromium (Debian's package).

Each session is a page of its own: it draws the source frames on a canvas, stamps each frame's
number with the same code as the aiortc client (``engine.bench.code``), sends the canvas
(``captureStream``, one ``requestFrame`` per frame) over the browser's own WebRTC stack, and reads
the code of every frame it presents (``requestVideoFrameCallback``). Both times are the page's
``performance.now()``, so the round trip includes the browser's own encoder, jitter buffer and
decoder: the figure a person in a call experiences. The page posts its offers through a function
this process exposes (no CORS between the page and the endpoint). Encode, decode and jitter-buffer
times come from the page's own ``getStats()``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2

from engine.bench import code, peer
from engine.errors import ConfigError, EndpointError
from engine.frame import FrameBuffer

if TYPE_CHECKING:
    from engine.bench.run import BenchConfig, Progress, Target

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
]
CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser")

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>livefx bench</title></head>
<body><video id="v" muted autoplay playsinline></video><script>
const ROWS = %(rows)d, COLS = %(cols)d, BITS = %(number_bits)d, MIN_CONTRAST = %(min_contrast)d;
function crc8(n) {
  let crc = 0;
  for (let i = BITS - 1; i >= 0; i--) {
    const bit = Math.floor(n / 2 ** i) %% 2, top = (crc >> 7) & 1;
    crc = ((crc << 1) & 0xff) ^ (top ^ bit ? 0x07 : 0);
  }
  return crc;
}
function cells(cfg, w, h) {
  const side = Math.max(4, h * cfg.cell_of_height), x = cfg.cx * w - COLS * side / 2,
        y = cfg.cy * h - ROWS * side / 2, out = [];
  for (let r = 0; r < ROWS; r++) for (let c = 0; c < COLS; c++)
    out.push([Math.round(x + c * side), Math.round(y + r * side),
              Math.round(x + (c + 1) * side), Math.round(y + (r + 1) * side)]);
  return out;
}
function bitsOf(n) {
  const crc = crc8(n), out = [];
  for (let i = BITS - 1; i >= 0; i--) out.push(Math.floor(n / 2 ** i) %% 2);
  for (let i = 7; i >= 0; i--) out.push((crc >> i) & 1);
  return out;
}
const B = window.bench = {sent: {}, records: [], arrivals: [], unreadable: [], sizes: {},
                          pcs: [], started: null, connected: null, error: null};
B.start = async (cfg) => {
  B.cfg = cfg;
  const images = await Promise.all(cfg.frames.map(async (u) =>
    createImageBitmap(await (await fetch(u)).blob())));
  const canvas = document.createElement("canvas");
  canvas.width = cfg.width; canvas.height = cfg.height;
  const g = canvas.getContext("2d");
  const track = canvas.captureStream(0).getVideoTracks()[0];
  const mine = cells(cfg.code, cfg.width, cfg.height);
  const codecs = (RTCRtpSender.getCapabilities("video").codecs || []).filter((c) =>
    [cfg.mime, "video/rtx"].includes(c.mimeType.toLowerCase()));
  const make = () => {
    const pc = new RTCPeerConnection({iceServers: []});
    B.pcs.push(pc);
    pc.onconnectionstatechange = () => {
      const state = pc.connectionState;
      if (state === "connected" && B.connected === null) B.connected = performance.now();
      if (pc.connectionState === "failed") B.error = "connection failed";
    };
    return pc;
  };
  const negotiate = async (pc, url) => {
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") resolve();
      });
      setTimeout(resolve, 3000);
    });
    const r = await window.benchPost(url, pc.localDescription.sdp);
    if (r.error) throw new Error(r.error);
    await pc.setRemoteDescription({type: "answer", sdp: r.answer});
  };
  const receive = (pc) => {
    const video = document.getElementById("v");
    const reader = document.createElement("canvas");
    const rg = reader.getContext("2d", {willReadFrequently: true});
    pc.ontrack = (event) => {
      video.srcObject = new MediaStream([event.track]);
      const onFrame = (now, meta) => {
        const w = video.videoWidth, h = video.videoHeight;
        const t = meta && meta.presentationTime ? meta.presentationTime : now;
        B.arrivals.push(t);
        const key = w + "x" + h;
        B.sizes[key] = (B.sizes[key] || 0) + 1;
        if (reader.width !== w || reader.height !== h) { reader.width = w; reader.height = h; }
        rg.drawImage(video, 0, 0, w, h);
        const n = read(rg, cells(cfg.code, w, h));
        if (n === null) B.unreadable.push(t); else B.records.push([n, t]);
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
      video.play().catch(() => {});
    };
  };
  const read = (ctx, rects) => {
    const means = rects.map(([x0, y0, x1, y1]) => {
      const qx = Math.floor((x1 - x0) / 4), qy = Math.floor((y1 - y0) / 4);
      const w = x1 - x0 - 2 * qx, h = y1 - y0 - 2 * qy;
      if (w <= 0 || h <= 0) return NaN;
      const d = ctx.getImageData(x0 + qx, y0 + qy, w, h).data;
      let s = 0;
      for (let i = 0; i < d.length; i += 4) s += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
      return s / (d.length / 4);
    });
    const bits = [];
    for (let r = 0; r < ROWS; r++) {
      const row = means.slice(r * COLS, (r + 1) * COLS), black = row[0], white = row[COLS - 1];
      if (!(white - black >= MIN_CONTRAST)) return null;
      for (const m of row.slice(1, -1)) bits.push(m > (black + white) / 2 ? 1 : 0);
    }
    let n = 0, crc = 0;
    for (let i = 0; i < BITS; i++) n = n * 2 + bits[i];
    for (let i = BITS; i < bits.length; i++) crc = crc * 2 + bits[i];
    return crc8(n) === crc ? n : null;
  };
  const sender = make();
  const transceiver = sender.addTransceiver(track, {direction: cfg.whep ? "sendonly" : "sendrecv"});
  if (codecs.length) transceiver.setCodecPreferences(codecs);
  if (!cfg.whep) receive(sender);
  await negotiate(sender, cfg.url || cfg.whip);
  if (cfg.whep) {
    for (let attempt = 0; ; attempt++) {
      const player = make();
      const t = player.addTransceiver("video", {direction: "recvonly"});
      if (codecs.length) t.setCodecPreferences(codecs);
      receive(player);
      try { await negotiate(player, cfg.whep); break; } catch (err) {
        player.close();
        if (!String(err.message).includes(" 409 ") || attempt > 20) throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }
  B.started = performance.now();
  let i = 0;
  const tick = () => {
    const due = B.started + i * 1000 / cfg.fps;
    g.drawImage(images[i %% images.length], 0, 0, cfg.width, cfg.height);
    const bits = bitsOf(i %% 2 ** BITS);
    let k = 0;
    mine.forEach(([x0, y0, x1, y1], index) => {
      const col = index %% COLS;
      const white = col === COLS - 1 || (col !== 0 && bits[k++] === 1);
      g.fillStyle = white ? "#ebebeb" : "#101010";
      g.fillRect(x0, y0, x1 - x0, y1 - y0);
    });
    track.requestFrame();
    B.sent[i] = performance.now();
    i += 1;
    B.timer = setTimeout(tick, Math.max(0, B.started + i * 1000 / cfg.fps - performance.now()));
  };
  tick();
};
B.stats = async () => {
  const out = {encode_ms: null, decode_ms: null, jitter_buffer_ms: null};
  for (const pc of B.pcs) {
    (await pc.getStats()).forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "video" && s.framesEncoded)
        out.encode_ms = 1000 * s.totalEncodeTime / s.framesEncoded;
      if (s.type === "inbound-rtp" && s.kind === "video" && s.framesDecoded) {
        out.decode_ms = 1000 * s.totalDecodeTime / s.framesDecoded;
        if (s.jitterBufferEmittedCount)
          out.jitter_buffer_ms = 1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount;
      }
    });
  }
  return out;
};
B.stop = () => { clearTimeout(B.timer); B.pcs.forEach((pc) => pc.close()); };
</script></body></html>
"""


def _chromium() -> str:
    for name in CHROMIUM:
        path = shutil.which(name) or (name if Path(name).exists() else None)
        if path:
            return path
    raise ConfigError("--browser needs Chromium (Debian: apt-get install chromium)")


def _data_urls(frames: list[FrameBuffer], limit: int = 30) -> list[str]:
    from engine.ops import cpu

    urls = []
    for fb in frames[:limit]:
        bgr = cv2.cvtColor(cpu.yuv420p_to_rgb(fb), cv2.COLOR_RGB2BGR)
        ok, jpg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
        if ok:
            urls.append("data:image/jpeg;base64," + base64.b64encode(jpg.tobytes()).decode())
    return urls


class BrowserRunner:
    """One headless Chromium for the whole bench; a page per session."""

    def __init__(self, config: BenchConfig, frames: list[FrameBuffer], layout: code.Layout):
        self.config = config
        self.layout = layout
        self.frames = _data_urls(frames)
        self._times: list[dict[str, Any]] = []
        self._pw: Any = None
        self._browser: Any = None

    async def start(self) -> None:
        try:
            from playwright.async_api import async_playwright
        except ImportError:
            raise ConfigError("--browser needs Playwright (pip install playwright)") from None
        executable = _chromium()
        self._pw = await async_playwright().start()
        self._browser = await self._pw.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS
        )

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self._browser is not None:
                await self._browser.close()
        with contextlib.suppress(Exception):
            if self._pw is not None:
                await self._pw.stop()

    def codec_times(self) -> dict[str, Any]:
        def mean(key: str) -> float | None:
            values = [t[key] for t in self._times if t.get(key) is not None]
            return round(sum(values) / len(values), 2) if values else None

        return {
            "encode_ms": mean("encode_ms"),
            "decode_ms": mean("decode_ms"),
            "jitter_buffer_ms": mean("jitter_buffer_ms"),
        }

    async def _session(self, target: Target, http: Any, locations: list[str]) -> Any:
        page = await self._browser.new_page()

        async def bench_post(url: str, sdp: str) -> dict[str, Any]:
            try:
                answer, location = await peer.post_offer_patiently(
                    http, url, sdp, self.config.token
                )
            except EndpointError as exc:
                return {"error": str(exc)}
            if location:
                locations.append(location)
            return {"answer": answer}

        await page.expose_function("benchPost", bench_post)
        await page.set_content(PAGE % self.layout.as_dict())
        cfg = {
            "width": self.config.width,
            "height": self.config.height,
            "fps": self.config.fps,
            "frames": self.frames,
            "code": self.layout.as_dict(),
            "mime": "video/h264" if self.config.codec == "h264" else "video/vp8",
            "url": target.url,
            "whip": target.whip,
            "whep": target.whep,
        }
        try:
            await asyncio.wait_for(
                page.evaluate("(cfg) => window.bench.start(cfg)", cfg), peer.CONNECT_TIMEOUT_S + 10
            )
        except asyncio.TimeoutError:
            raise EndpointError(f"{target.label}: the browser did not connect") from None
        except Exception as exc:  # the page's own error (a refused offer, a bad answer)
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EndpointError(message.replace("Page.evaluate: Error: ", "")[:300]) from None
        return page

    async def measure(
        self,
        target: Target,
        n: int,
        seconds: float,
        http: Any,
        livefx: bool,
        progress: Progress,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, Any]]:
        from engine.bench.run import GRACE_S, STATS_EVERY_S, StatsPoller

        locations: list[str] = []
        pages: list[Any] = []
        self._times = []
        poller = StatsPoller(http, target.origin, self.config.token) if livefx else None
        try:
            for _ in range(n):
                pages.append(await self._session(target, http, locations))
            t0 = time.perf_counter()
            warm, done = self.config.warmup, 0.0
            while (elapsed := time.perf_counter() - t0) < warm + seconds + GRACE_S:
                await asyncio.sleep(STATS_EVERY_S)
                if poller is not None and elapsed >= warm:
                    await poller.poll([loc.rstrip("/").rsplit("/", 1)[-1] for loc in locations])
                measured = min(max(time.perf_counter() - t0 - warm, 0.0), seconds)
                progress.advance(measured - done)
                done = measured
            summaries = []
            for page in pages:
                data = await page.evaluate(
                    "() => JSON.stringify({sent: window.bench.sent, records: window.bench.records,"
                    " arrivals: window.bench.arrivals, unreadable: window.bench.unreadable,"
                    " sizes: window.bench.sizes, started: window.bench.started,"
                    " error: window.bench.error})"
                )
                self._times.append(await page.evaluate("() => window.bench.stats()"))
                summaries.append(self._summary(json.loads(data), seconds))
        finally:
            for page in pages:
                with contextlib.suppress(Exception):
                    await page.evaluate("() => window.bench.stop()")
                    await page.close()
            for location in locations:
                await peer.delete(http, location, self.config.token)
        return summaries, poller.summary() if poller is not None else None, self.codec_times()

    def _summary(self, data: dict[str, Any], seconds: float) -> dict[str, Any]:
        m = peer.Measurement()
        m.sent = {int(k) % code.MODULO: v / 1000.0 for k, v in data["sent"].items()}
        for number, t in data["records"]:
            m.add(int(number), t / 1000.0, (self.config.width, self.config.height))
        m.arrivals = sorted(t / 1000.0 for t in data["arrivals"])
        m.unreadable = [t / 1000.0 for t in data["unreadable"]]
        m.sizes.clear()
        for key, count in data["sizes"].items():
            w, h = (int(v) for v in key.split("x"))
            m.sizes[(w, h)] = count
        m.condition = data.get("error")
        start = (data["started"] or 0.0) / 1000.0 + self.config.warmup
        return m.summary(start, start + seconds, (self.config.width, self.config.height))
