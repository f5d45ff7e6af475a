"""Training data: photos that ship inside packages, the classical cartoon target, degradations.

Training photos come from scikit-image's and scikit-learn's bundled sample data. The held-out
photos (never trained on) are LiveFX's own samples: the astronaut, the cameraman, and
scikit-image's coffee and cat (the last two are read from scikit-image too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

TRAIN_SKIMAGE = (
    "rocket", "stereo_motorcycle", "hubble_deep_field", "immunohistochemistry", "retina", "brick",
    "grass", "gravel", "colorwheel", "logo", "horse", "page", "coins", "moon", "clock",
)  # fmt: skip
TRAIN_SKLEARN = ("china.jpg", "flower.jpg")
HELD_OUT = ("astronaut", "camera", "coffee", "chelsea")


def _rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = np.clip(img * (255.0 if img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def training_photos() -> list[np.ndarray]:
    from skimage import data

    photos = []
    for name in TRAIN_SKIMAGE:
        try:
            loaded = getattr(data, name)()
        except Exception:  # a sample missing from this scikit-image version: use the rest
            continue
        # stereo_motorcycle is (left, right, disparity): two photos.
        photos += [_rgb(p) for p in (loaded[:2] if name == "stereo_motorcycle" else (loaded,))]
    from sklearn.datasets import load_sample_image

    photos += [_rgb(load_sample_image(name)) for name in TRAIN_SKLEARN]
    return [p for p in photos if min(p.shape[:2]) >= 128]


def enhance_training_photos() -> list[np.ndarray]:
    """``training_photos`` and matplotlib's sample portrait (``grace_hopper.jpg``, in every
    matplotlib wheel): the one person in the enhance set; faces are what a webcam shows."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise FileNotFoundError(f"matplotlib's sample photo is missing: {path}")
    return [*training_photos(), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)]


def held_out_photos() -> dict[str, np.ndarray]:
    from skimage import data

    return {name: _rgb(getattr(data, name)()) for name in HELD_OUT}


# A second, independent source of held-out photos: OpenCV's sample pictures, from Debian's
# ``opencv-doc`` package (fetched by ``apt-get download`` into a git-ignored cache, never
# committed, never trained on). Real photos only: no drawings, charts or test patterns.
OPENCV_DOC_PHOTOS = (
    "messi5", "baboon", "fruits", "building", "home", "butterfly", "aero1", "leuvenA", "board",
    "orange", "apple", "squirrel_cls",
)  # fmt: skip
OPENCV_DOC_PACKAGE = "opencv-doc"
OPENCV_DOC_DIR = "usr/share/doc/opencv-doc/examples/data"


def opencv_doc_photos(cache: Path, fetch: bool = True) -> dict[str, np.ndarray]:
    """OpenCV's sample photos from the ``opencv-doc`` .deb in ``cache`` (downloaded with
    ``apt-get download`` when absent and ``fetch``; none when it cannot be had)."""
    import io
    import subprocess
    import tarfile

    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{OPENCV_DOC_PACKAGE}_*.deb"))
    if not debs and fetch:
        print(f"fetching Debian's {OPENCV_DOC_PACKAGE} into {cache} (apt-get download)")
        subprocess.run(["apt-get", "download", OPENCV_DOC_PACKAGE], cwd=cache, check=False)
        debs = sorted(cache.glob(f"{OPENCV_DOC_PACKAGE}_*.deb"))
    if not debs:
        return {}
    out = cache / "opencv-doc"
    wanted = [f"{OPENCV_DOC_DIR}/{name}.jpg" for name in OPENCV_DOC_PHOTOS]
    if not all((out / w).exists() for w in wanted):
        tar = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(debs[-1])], check=True, capture_output=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            for member in t.getmembers():
                name = member.name.removeprefix("./")
                if name in wanted:
                    member.name = name
                    t.extract(member, out, filter="data")
    photos = {}
    for name, w in zip(OPENCV_DOC_PHOTOS, wanted, strict=True):
        bgr = cv2.imread(str(out / w))
        if bgr is not None:
            photos[name] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return photos


def cover(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """``rgb`` centre-cropped to width:height and resized to fill width×height (bicubic up,
    area down): a camera frame made from a photo."""
    from engine.samples import centre_crop

    rgb = centre_crop(rgb, width, height)
    interp = cv2.INTER_CUBIC if width > rgb.shape[1] else cv2.INTER_AREA
    return np.ascontiguousarray(cv2.resize(rgb, (width, height), interpolation=interp))


def cartoon_target(rgb: np.ndarray, colours: int = 8) -> np.ndarray:
    """The classical cartoon pipeline: edge-preserving smoothing, colour quantisation (k-means,
    fixed seed), and dark edge lines from an adaptive threshold of the smoothed grey image."""
    smooth = rgb
    for _ in range(3):
        smooth = cv2.bilateralFilter(smooth, 9, 40, 7)
    cv2.setRNGSeed(0)
    pixels = smooth.reshape(-1, 3).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    # OpenCV's stubs disagree across releases on ``bestLabels=None``: called untyped.
    kmeans: Any = cv2.kmeans
    _, labels, centres = kmeans(pixels, colours, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    flat = centres.astype(np.uint8)[labels.reshape(-1)].reshape(rgb.shape)
    grey = cv2.medianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 7)
    edges = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 4)
    out = flat.copy()
    out[edges == 0] = (out[edges == 0] * 0.15).astype(np.uint8)
    return out


@dataclass(frozen=True)
class Degradation:
    """A poor camera and a starved codec, applied in the order a picture meets them: resolution
    lost (area downscale, back up), optics (Gaussian and motion blur), the sensor (exposure,
    photon and read noise, optionally correlated as demosaicking leaves it, quantised at the
    sensor, then the gain), and the codec's blocking."""

    scale: float = 1.0  # area downscale factor before the upscale back
    blur: float = 0.0  # Gaussian σ in pixels
    noise: float = 0.0  # read noise σ in 8-bit levels, as seen after the gain
    codec: str = "jpeg"  # "jpeg" (OpenCV), "h264" (libx264) or "vp8" (libvpx) through PyAV
    quality: int = 0  # JPEG quality, or H.264's CRF, or VP8's fixed quantiser; 0 = none
    light: float = 1.0  # exposure share (0.25 = two stops under), brought back by a gain
    shot: float = 0.0  # photon noise: variance shot·level at the sensor, before the gain
    grain: float = 0.0  # σ of the blur that correlates the noise (demosaicking); 0 = white
    upscale: str = "cubic"  # the way back up after the downscale: "cubic" or "linear"
    motion: int = 0  # length in pixels of a horizontal motion blur (0 = none)

    def split(self) -> tuple[Degradation, Degradation]:
        """(the softness: downscale, blur, motion; the rest: sensor and codec)."""
        soft = Degradation(
            scale=self.scale, blur=self.blur, upscale=self.upscale, motion=self.motion
        )
        rest = Degradation(
            noise=self.noise, codec=self.codec, quality=self.quality, light=self.light,
            shot=self.shot, grain=self.grain,
        )  # fmt: skip
        return soft, rest

    def describe(self) -> str:
        parts = []
        if self.scale > 1.01:
            parts.append(f"down {self.scale:g}" + (" bilinear" if self.upscale == "linear" else ""))
        if self.blur > 0.05:
            parts.append(f"blur {self.blur:g}")
        if self.motion > 1:
            parts.append(f"motion {self.motion}")
        if self.light < 0.99:
            parts.append(f"light {self.light:g}")
        if self.noise > 0 or self.shot > 0:
            noise = f"noise {self.noise:g}" + (f"+shot {self.shot:g}" if self.shot > 0 else "")
            parts.append(noise + (f" grain {self.grain:g}" if self.grain > 0 else ""))
        if self.quality:
            name = {"jpeg": "JPEG", "h264": "H.264 crf", "vp8": "VP8 q"}[self.codec]
            parts.append(f"{name} {self.quality}")
        return ", ".join(parts) or "none"


# The degradation that the first generator was judged on (and the README's picture shows).
EVAL_DEGRADATION = Degradation(scale=2.0, blur=0.8, noise=4.0, quality=35)

# Held-out evaluation: the trained family's corners, and kinds and settings never trained on
# (VP8, motion blur, a 3× downscale brought back bilinearly, darker light and coarser grain
# than any training picture), and a mild case with little to fix. ``True``: in the family.
EVAL_SET: dict[str, tuple[Degradation, bool]] = {
    "old eval": (EVAL_DEGRADATION, True),
    "down 2, JPEG 35": (Degradation(scale=2.0, quality=35), True),
    "webcam, H.264": (
        Degradation(noise=6.0, shot=0.1, grain=0.5, codec="h264", quality=30),
        True,
    ),
    "low light, JPEG": (Degradation(light=0.3, noise=3.0, shot=0.15, quality=60), True),
    "VP8": (Degradation(codec="vp8", quality=45), False),
    "soft, VP8": (Degradation(scale=1.5, blur=0.6, codec="vp8", quality=35), False),
    "dark, H.264": (
        Degradation(light=0.2, noise=4.0, shot=0.2, grain=1.0, codec="h264", quality=32),
        False,
    ),
    "down 3 bilinear": (Degradation(scale=3.0, upscale="linear", quality=50), False),
    "motion, H.264": (Degradation(motion=5, noise=3.0, codec="h264", quality=28), False),
    "mild JPEG 85": (Degradation(quality=85), True),
}


def random_degradation(rng: np.random.Generator) -> Degradation:
    """The training family. One time in eight a good camera: nothing, or only JPEG 70–95 or
    H.264 CRF 18–26. Otherwise any mix of softness (downscale 1–2.5 back up bicubic, Gaussian
    blur σ 0.3–1.2), under-exposure (0.3–1) with photon, read (σ ≤ 10) and correlated noise
    (grain 0.3–0.8), then JPEG (quality 30–95) or H.264 (CRF 18–36), or no compression."""
    codec = "jpeg" if rng.random() < 0.55 else "h264"
    if rng.random() < 1 / 8:
        if rng.random() < 0.2:
            return Degradation()
        good = int(rng.integers(70, 96)) if codec == "jpeg" else int(rng.integers(18, 27))
        return Degradation(codec=codec, quality=good)
    on = rng.random(6)
    quality = 0
    if rng.random() < 0.7:
        quality = int(rng.integers(30, 96)) if codec == "jpeg" else int(rng.integers(18, 37))
    return Degradation(
        scale=float(rng.uniform(1.0, 2.5)) if on[0] < 0.3 else 1.0,
        blur=float(rng.uniform(0.3, 1.2)) if on[1] < 0.3 else 0.0,
        noise=float(rng.uniform(0.0, 10.0)) if on[2] < 0.85 else 0.0,
        shot=float(rng.uniform(0.0, 0.25)) if on[3] < 0.5 else 0.0,
        grain=float(rng.uniform(0.3, 0.8)) if on[4] < 0.5 else 0.0,
        light=float(rng.uniform(0.3, 0.9)) if on[5] < 0.3 else 1.0,
        codec=codec,
        quality=quality,
    )


def _noise_field(shape: tuple[int, ...], grain: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-σ Gaussian noise, white or correlated by a Gaussian blur of σ ``grain``."""
    n = rng.standard_normal(shape).astype(np.float32)
    if grain <= 0.05:
        return n
    blurred = np.asarray(cv2.GaussianBlur(n, (0, 0), grain), np.float32)
    return blurred / np.float32(max(float(blurred.std()), 1e-6))


def compress(rgb: np.ndarray, codec: str, quality: int) -> np.ndarray:
    """``rgb`` through JPEG (OpenCV) or one intra frame of H.264/VP8 (PyAV's libx264/libvpx,
    one thread: the same bytes every time). Video codecs need even sizes: an odd last row or
    column is kept from the input."""
    if codec == "jpeg":
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        ok, enc = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(enc, cv2.IMREAD_COLOR)
        assert ok and decoded is not None
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    import io

    import av

    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        if codec == "h264":
            stream = out.add_stream("libx264", rate=30)
            stream.options = {"crf": str(quality), "preset": "veryfast", "threads": "1"}
        elif codec == "vp8":
            stream = out.add_stream("libvpx", rate=30)
            q = str(quality)
            stream.options = {"crf": q, "qmin": q, "qmax": q, "b": "0", "deadline": "realtime",
                              "cpu-used": "8", "threads": "1"}  # fmt: skip
        else:
            raise ValueError(f"codec {codec!r} is not jpeg, h264 or vp8")
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24")
        for packet in (*stream.encode(frame), *stream.encode()):
            out.mux(packet)
    buf.seek(0)
    with av.open(buf) as inp:
        decoded = next(inp.decode(video=0)).to_ndarray(format="rgb24")
    result = rgb.copy()
    result[:h, :w] = decoded
    return result


def degrade(rgb: np.ndarray, d: Degradation, rng: np.random.Generator) -> np.ndarray:
    """A poor webcam's picture of ``rgb`` (uint8 RGB): soft, noisy, dark, blocky, same size."""
    h, w = rgb.shape[:2]
    img = rgb
    if d.scale > 1.01:
        small = cv2.resize(
            img,
            (max(1, round(w / d.scale)), max(1, round(h / d.scale))),
            interpolation=cv2.INTER_AREA,
        )
        up = cv2.INTER_LINEAR if d.upscale == "linear" else cv2.INTER_CUBIC
        img = cv2.resize(small, (w, h), interpolation=up)
    if d.blur > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), d.blur)
    if d.motion > 1:
        kernel = np.full((1, d.motion), 1.0 / d.motion, np.float32)
        img = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REPLICATE)
    if d.noise > 0 or d.shot > 0 or d.light < 0.99:
        sensor = img.astype(np.float32) * np.float32(d.light)
        sigma = np.sqrt(d.shot * sensor + (d.noise * d.light) ** 2)
        sensor += sigma * _noise_field(img.shape, d.grain, rng)
        sensor = np.clip(np.rint(sensor), 0, 255)  # the sensor's own 8 bits, then the gain
        img = np.clip(np.rint(sensor / np.float32(d.light)), 0, 255).astype(np.uint8)
    if d.quality:
        img = compress(img, d.codec, d.quality)
    return np.ascontiguousarray(img)


def augment(
    a: np.ndarray, b: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The same random flip and quarter turn on a pair."""
    k = int(rng.integers(0, 4))
    a, b = np.rot90(a, k), np.rot90(b, k)
    if rng.random() < 0.5:
        a, b = a[:, ::-1], b[:, ::-1]
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


class PatchSampler:
    """Random (input, target) patches, float32 NCHW in [0, 1], from whole-photo pairs."""

    def __init__(self, task: str, photos: list[np.ndarray], patch: int, seed: int) -> None:
        self.task = task
        self.patch = patch
        self.rng = np.random.default_rng(seed)
        self.photos = photos
        # Cartoon targets are made once per photo (and per scale of the photo).
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        if task == "cartoon":
            for p in photos:
                for s in (1.0, 0.5):
                    img = (
                        p
                        if s == 1.0
                        else cv2.resize(p, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
                    )
                    if min(img.shape[:2]) > patch:
                        self.pairs.append((img, cartoon_target(img)))

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        size = self.patch
        for _ in range(n):
            if self.task == "cartoon":
                src, tgt = self.pairs[int(self.rng.integers(len(self.pairs)))]
            else:
                photo = self.photos[int(self.rng.integers(len(self.photos)))]
                src = tgt = photo
            h, w = src.shape[:2]
            y0, x0 = (
                int(self.rng.integers(0, h - size + 1)),
                int(self.rng.integers(0, w - size + 1)),
            )
            a = src[y0 : y0 + size, x0 : x0 + size]
            b = tgt[y0 : y0 + size, x0 : x0 + size]
            if self.task == "enhance":
                a = degrade(b, random_degradation(self.rng), self.rng)
            a, b = augment(a, b, self.rng)
            xs.append(a)
            ys.append(b)
        x = np.stack(xs).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        y = np.stack(ys).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        return x, y


class EnhanceSampler:
    """Random (degraded, clean) patches for ``enhance``, float32 NCHW in [0, 1].

    A pool of ``pool`` pairs is made at a time and remade every ``refresh`` batches: a
    ``crop``² piece of a random photo at a random scale (0.5–1.3: sharp and soft pictures),
    degraded by ``random_degradation`` (codecs are slow per patch, quick per piece); half the
    pairs are then shrunk together by 1.3–3 (area), as the effect shrinks a frame before the
    generator at its reduced size. Patches are cut at random places from the pool's pairs
    (blocking at any alignment to the generator's strides), with a random flip and quarter turn.
    """

    def __init__(
        self,
        photos: list[np.ndarray],
        patch: int,
        seed: int,
        pool: int = 384,
        refresh: int = 500,
        crop: int = 200,
        soft_targets: bool = True,
    ) -> None:
        self.soft_targets = soft_targets
        self.photos, self.patch, self.pool_size, self.refresh, self.crop = (
            photos, patch, pool, refresh, crop
        )  # fmt: skip
        self.rng = np.random.default_rng(seed)
        self.calls = 0
        self.pool: list[tuple[np.ndarray, np.ndarray]] = []

    def _pair(self) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        photo = self.photos[int(rng.integers(len(self.photos)))]
        r = float(rng.uniform(0.5, 1.3))
        side = min(round(self.crop / r), *photo.shape[:2])
        y0 = int(rng.integers(0, photo.shape[0] - side + 1))
        x0 = int(rng.integers(0, photo.shape[1] - side + 1))
        piece = photo[y0 : y0 + side, x0 : x0 + side]
        interp = cv2.INTER_CUBIC if side < self.crop else cv2.INTER_AREA
        clean = cv2.resize(piece, (self.crop, self.crop), interpolation=interp)
        soft, rest = random_degradation(rng).split()
        if self.soft_targets:  # softness is the picture's, not the generator's to undo
            clean = degrade(clean, soft, rng)
            bad = degrade(clean, rest, rng)
        else:
            bad = degrade(clean, soft, rng)
            bad = degrade(bad, rest, rng)
        if rng.random() < 0.5:
            size = round(self.crop / rng.uniform(1.3, 3.0))
            size = max(size, self.patch)
            clean = cv2.resize(clean, (size, size), interpolation=cv2.INTER_AREA)
            bad = cv2.resize(bad, (size, size), interpolation=cv2.INTER_AREA)
        return bad, clean

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.calls % self.refresh == 0:
            self.pool = [self._pair() for _ in range(self.pool_size)]
        self.calls += 1
        xs, ys = [], []
        size = self.patch
        for _ in range(n):
            bad, clean = self.pool[int(self.rng.integers(len(self.pool)))]
            h, w = clean.shape[:2]
            y0, x0 = (
                int(self.rng.integers(0, h - size + 1)),
                int(self.rng.integers(0, w - size + 1)),
            )
            a, b = augment(
                bad[y0 : y0 + size, x0 : x0 + size], clean[y0 : y0 + size, x0 : x0 + size], self.rng
            )
            xs.append(a)
            ys.append(b)
        x = np.stack(xs).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        y = np.stack(ys).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        return x, y
