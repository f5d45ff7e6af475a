// LiveFX pixel math: one definition for the CUDA kernels (nvcc) and the host tests (g++).
//
// Every function here is __host__ __device__ and works on one output pixel, so that the same
// code runs in kernels/livefx.cu and, compiled by the host compiler, in kernels/host_api.cpp,
// which the tests call through ctypes and compare with engine/ops/reference.py.
//
// Conventions are the reference's (see its module docstring): resampling halves exactly while
// both sides are even and at least twice the target, then bilinear with half-pixel centres,
// clamped at the border; colour is rgb01 = M (yuv - offset) with M and offset from
// engine/ops/color.py, passed in by the caller (one definition of the matrices).
#pragma once

#if defined(__CUDACC_RTC__)
// NVRTC (run-time compilation, where no prebuilt binary fits the device) has no C library
// headers; the one type these files take from them.
typedef unsigned char uint8_t;
#else
#include <stdint.h>
#endif

#ifdef __CUDACC__
#define LFX_HD __host__ __device__ __forceinline__
#define LFX_UNROLL _Pragma("unroll")
#else
#define LFX_UNROLL
#include <math.h>
#define LFX_HD inline
#endif

namespace lfx {

// rgb01 = m (yuv - off); yuv = inv rgb01 + off. Row-major 3×3.
struct ColorMatrix {
    float m[9];
    float off[3];
};

LFX_HD float clamp01(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }

// Round half to even (numpy's rint) and clamp to 0..255.
LFX_HD uint8_t to_u8(float x) {
    float r = rintf(x);
    return (uint8_t)(r < 0.f ? 0.f : (r > 255.f ? 255.f : r));
}

// Bilinear tap for destination index i of a src → dst resample: the two source indices and
// the weight of the second (half-pixel centres, clamped at the border).
struct Tap {
    int j0, j1;
    float f;
};

// src / dst: a resample's step, computed once by a thread that makes several outputs.
LFX_HD float tap_scale(int src, int dst) { return (float)src / (float)dst; }

LFX_HD Tap bilinear_tap_s(int i, int src, float scale) {
    float x = ((float)i + 0.5f) * scale - 0.5f;
    x = x < 0.f ? 0.f : (x > (float)(src - 1) ? (float)(src - 1) : x);
    Tap t;
    t.j0 = (int)floorf(x);
    t.j1 = t.j0 + 1 < src ? t.j0 + 1 : src - 1;
    t.f = x - (float)t.j0;
    return t;
}

LFX_HD Tap bilinear_tap(int i, int src, int dst) {
    return bilinear_tap_s(i, src, tap_scale(src, dst));
}

// How many exact 2×2 halvings come before the bilinear step (the reference's ``halvings``).
LFX_HD int halvings(int w, int h, int tw, int th) {
    int n = 0;
    while (w % 2 == 0 && h % 2 == 0 && w >= 2 * tw && h >= 2 * th) {
        w /= 2;
        h /= 2;
        ++n;
    }
    return n;
}

// Mean of the 2×2 block at (x, y) of the next level: one pyramid pixel.
template <typename T>
LFX_HD float halve_px(const T* p, int stride, int x, int y) {
    const T* r0 = p + (size_t)(2 * y) * stride + 2 * x;
    const T* r1 = r0 + stride;
    return ((float)r0[0] + (float)r0[1] + (float)r1[0] + (float)r1[1]) * 0.25f;
}

// Bilinear sample of a plane (sw × sh, row stride ``stride``) for destination pixel (x, y) of a
// dw × dh resample. The caller has already applied the exact halvings.
template <typename T>
LFX_HD float bilinear_px(const T* p, int stride, int sw, int sh, int x, int y, int dw, int dh) {
    Tap tx = bilinear_tap(x, sw, dw);
    Tap ty = bilinear_tap(y, sh, dh);
    const T* r0 = p + (size_t)ty.j0 * stride;
    const T* r1 = p + (size_t)ty.j1 * stride;
    float top = (float)r0[tx.j0] * (1.f - tx.f) + (float)r0[tx.j1] * tx.f;
    float bot = (float)r1[tx.j0] * (1.f - tx.f) + (float)r1[tx.j1] * tx.f;
    return top * (1.f - ty.f) + bot * ty.f;
}

// 8-bit Y, U, V code values → R'G'B' in [0, 1] (clamped), as the reference's ``preprocess``.
LFX_HD void yuv_to_rgb01(const ColorMatrix& c, float y, float u, float v, float rgb[3]) {
    float a = y - c.off[0], b = u - c.off[1], d = v - c.off[2];
    for (int i = 0; i < 3; ++i) {
        rgb[i] = clamp01(c.m[3 * i] * a + c.m[3 * i + 1] * b + c.m[3 * i + 2] * d);
    }
}

// R'G'B' in [0, 1] → the three code values (unrounded), with ``inv`` the inverse matrix.
LFX_HD void rgb01_to_yuv(const ColorMatrix& inv, const float rgb[3], float yuv[3]) {
    for (int i = 0; i < 3; ++i) {
        yuv[i] = inv.m[3 * i] * rgb[0] + inv.m[3 * i + 1] * rgb[1] + inv.m[3 * i + 2] * rgb[2] +
                 inv.off[i];
    }
}

// Motion-adaptive temporal smoothing of one matte value (the reference's ``temporal_smooth``):
// k = min(1, k_min + (1 - k_min)·4·|m - prev|), k_min = 1 - 0.85·smoothing.
LFX_HD float temporal_smooth_px(float m, float prev, float smoothing) {
    if (smoothing <= 0.f) return m;
    float k_min = 1.f - 0.85f * smoothing;
    float k = k_min + (1.f - k_min) * fabsf(m - prev) * 4.f;
    k = k > 1.f ? 1.f : k;
    return prev + k * (m - prev);
}

// The threshold/feather ramp (the reference's ``matte_curve``).
LFX_HD float matte_curve_px(float m, float threshold, float feather) {
    if (feather <= 0.f) return m >= threshold ? 1.f : 0.f;
    return clamp01((m - threshold) / feather + 0.5f);
}

// out = a·fg + (1 - a)·bg, a = alpha/255 (the reference's ``composite``).
LFX_HD uint8_t composite_px(uint8_t fg, uint8_t bg, uint8_t alpha) {
    float a = (float)alpha * (1.f / 255.f);
    return to_u8(a * (float)fg + (1.f - a) * (float)bg);
}

// The masked blur's ratio blur(x·w) / blur(w), keeping x where no background is near.
LFX_HD float masked_ratio(float num, float den, float x) { return den > 1e-3f ? num / den : x; }

// Reflect-101 index (OpenCV's default border, the reference's ``box_mean``): -1 → 1, n → n-2.
LFX_HD int reflect101(int i, int n) {
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
}

}  // namespace lfx

// -- one output element of each kernel: the kernels and the host loops both call these --------

namespace lfx {

// Model input pixel (x, y) of a dw × dh resample of the three planes (already halved), as
// R'G'B' in [0, 1]: the reference's ``preprocess``. Returns the resampled Y code value (the
// guided filter's guide at the model's size, taken in the same pass).
template <typename TY, typename TC>
LFX_HD float preprocess_px(const TY* y, int ys, int yw, int yh, const TC* u, const TC* v, int cs,
                          int cw, int ch, const ColorMatrix& c, int x, int row, int dw, int dh,
                          float rgb[3]) {
    float Y = bilinear_px(y, ys, yw, yh, x, row, dw, dh);
    float U = bilinear_px(u, cs, cw, ch, x, row, dw, dh);
    float V = bilinear_px(v, cs, cw, ch, x, row, dw, dh);
    yuv_to_rgb01(c, Y, U, V, rgb);
    return Y;
}

// One matte value after the guided filter: temporal smoothing against ``*prev`` (updated in
// place; ``first``: no history yet) and the ramp. Returns the matte in [0, 1].
LFX_HD float smooth_ramp_px(float m, float* prev, int first, float smoothing, float threshold,
                            float feather) {
    float s = first ? m : temporal_smooth_px(m, *prev, smoothing);
    *prev = s;
    return matte_curve_px(s, threshold, feather);
}


// Horizontal and vertical box means of radius r at (x, y), reflect-101 borders: the two passes
// of the reference's ``box_mean``.
LFX_HD float box_mean_h_px(const float* p, int stride, int w, int x, int y, int r) {
    const float* row = p + (size_t)y * stride;
    float s = 0.f;
    for (int k = -r; k <= r; ++k) s += row[reflect101(x + k, w)];
    return s / (float)(2 * r + 1);
}

// The guided filter (the reference's ``guided_filter``, He et al.) around its box means: the
// per-window linear fit (a, b) of the mask to the guide, and the output from their means.
LFX_HD void guided_ab_px(float mean_i, float mean_p, float mean_ii, float mean_ip, float eps,
                         float* a, float* b) {
    float var_i = mean_ii - mean_i * mean_i;
    float cov_ip = mean_ip - mean_i * mean_p;
    *a = cov_ip / (var_i + eps);
    *b = mean_p - *a * mean_i;
}

LFX_HD float guided_out_px(float mean_a, float mean_b, float guide) {
    return mean_a * guide + mean_b;
}

// The masked blur's result at one pixel of its pyramid level, rounded to uint8 as the cpu
// backend stores it: blur(x·w) / blur(w), or x where no background is near.
LFX_HD uint8_t blur_ratio_px(float num, float den, float x) { return to_u8(masked_ratio(num, den, x)); }

// Row ``y`` of a bilinear resample (after the caller's halvings) at LFX_PX consecutive outputs
// from x0, scaled by ``mul`` and rounded to uint8: one thread's work in the upsampling kernels
// (the mattes, the blurred background). The vertical tap and the horizontal step are computed
// once for the group.
#define LFX_PX 4
template <typename T>
LFX_HD void resample_row_u8(const T* src, int ss, int sw, int sh, int x0, int y, int dw, int dh,
                            float mul, uint8_t out[LFX_PX]) {
    Tap ty = bilinear_tap(y, sh, dh);
    float sx = tap_scale(sw, dw);
    const T* r0 = src + (size_t)ty.j0 * ss;
    const T* r1 = src + (size_t)ty.j1 * ss;
    LFX_UNROLL
    for (int k = 0; k < LFX_PX; ++k) {
        int x = x0 + k < dw ? x0 + k : dw - 1;
        Tap tx = bilinear_tap_s(x, sw, sx);
        float top = (float)r0[tx.j0] * (1.f - tx.f) + (float)r0[tx.j1] * tx.f;
        float bot = (float)r1[tx.j0] * (1.f - tx.f) + (float)r1[tx.j1] * tx.f;
        out[k] = to_u8((top * (1.f - ty.f) + bot * ty.f) * mul);
    }
}

LFX_HD float box_mean_v_px(const float* p, int stride, int h, int x, int y, int r) {
    float s = 0.f;
    for (int k = -r; k <= r; ++k) s += p[(size_t)reflect101(y + k, h) * stride + x];
    return s / (float)(2 * r + 1);
}

// The frame's gate (the cpu pipeline's static-frame and scene-cut tests, engine/pipeline/
// pipeline.py): from the mean absolute change of the model-size luma since the frame the model
// last ran on, whether the model runs on this frame. ``flags``: [0] a mask exists, [1] the
// quality level's infer_every allows reusing it, [2] its skip_static. Returns the decision
// (1: run); ``scene``: a new scene (its temporal state must not leak into it).
LFX_HD int frame_gate(float delta, const int* flags, float static_delta, float scene_delta,
                      int* scene) {
    int has_mask = flags[0];
    *scene = has_mask && delta > scene_delta;
    if (!has_mask || *scene) return 1;
    int still = flags[2] && delta < static_delta;
    return flags[1] || still ? 0 : 1;
}

// |a - b| summed over elements part, part + parts, … of n (the gate's partial sums).
LFX_HD float abs_diff_partial(const uint8_t* a, const uint8_t* b, int n, int part, int parts) {
    float acc = 0.f;
    for (int k = part; k < n; k += parts) acc += fabsf((float)a[k] - (float)b[k]);
    return acc;
}

}  // namespace lfx
