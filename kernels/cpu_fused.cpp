// LiveFX's own loops for the cpu backend (engine/ops/fused.py calls them through ctypes, which
// releases the GIL around each call).
//
// The cpu pipeline keeps all it can at low resolution: the matte at the model's size, the
// blurred background on a pyramid level. What touches every pixel of the frame is one pass per
// plane here, in 8-bit fixed point, with no full-size intermediate plane:
//
//   across     the few low-resolution rows resampled to the plane's width (bilinear, half-pixel
//              centres, clamped: the reference's convention), with a flag per 32 pixels of each
//              row saying "all 0", "all 255" or "mixed";
//   composite  α and the background each a vertical lerp of two such rows (or the plane itself,
//              or one row of a constant), out = round((fg·α + bg·(255 − α)) / 255) exactly;
//              runs where both α rows are all 255 copy the frame, all 0 copy the background;
//   vlerp      a plane as the vertical lerp of its rows (the matte shown, or asked for).
//
// And at the matte's resolution, where OpenCV and NumPy pay a call per pass:
//
//   refine       guided filter (grey guide), motion-adaptive temporal smoothing, the
//                threshold/feather ramp and the 8-bit matte, in one call;
//   masked blur  blur(x·w) / blur(w) (two box passes each) on a pyramid level, rounded;
//   box mean     (2r+1)² window, reflect-101 borders (OpenCV's boxFilter default).
//
// Every result is that of engine/ops/reference.py within the tolerances tests/test_fused.py
// holds them to. Vertical taps (two rows and a weight in 1/256 per output row) and the across
// plan come from the caller, made once per size. All 8-bit arithmetic fits 16 bits, so the loops
// vectorise to 16-bit lanes; with GCC on x86-64 each exported loop is built for AVX-512, AVX2 and
// the baseline, picked when the library loads.
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pixel.cuh"  // the per-element math the CUDA kernels use: one definition of each

using lfx::reflect101;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define LFX_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define LFX_CLONES
#endif

// Helpers are inlined into each exported loop, so that every clone compiles them for its own
// instruction set (a helper left out of line would be built once, for the baseline).
#if defined(__GNUC__)
#define LFX_INLINE inline __attribute__((always_inline))
#else
#define LFX_INLINE inline
#endif

#if defined(__GNUC__) && !defined(__clang__)
#define LFX_VECTOR_SHUFFLE 1
typedef uint8_t v16u8 __attribute__((vector_size(16)));
typedef uint16_t v16u16 __attribute__((vector_size(32)));
#endif

namespace {

const int kChunk = 32;  // pixels per flag of an across row

// (r0·(256 − w) + r1·w + 128) >> 8 for w in 0..256: every term fits 16 bits.
LFX_INLINE uint16_t lerp8(uint8_t r0, uint8_t r1, uint16_t w) {
    return (uint16_t)((uint16_t)(r0 * (uint16_t)(256 - w) + r1 * w + 128) >> 8);
}

// round((f·a + b·(255 − a)) / 255) for 8-bit f, b, a: with t = x + 128, (t + (t >> 8)) >> 8 is
// round(x / 255) for every 0 ≤ x ≤ 255·255, and x / 255 is never a tie (255 is odd).
LFX_INLINE uint8_t blend8(uint8_t f, uint16_t b, uint16_t a) {
    uint16_t t = (uint16_t)(f * a + b * (uint16_t)(255 - a) + 128);
    return (uint8_t)((uint16_t)(t + (t >> 8)) >> 8);
}

// -- full resolution ---------------------------------------------------------------------------

LFX_INLINE void lerp_run(const uint8_t* r0, const uint8_t* r1, uint16_t w, uint8_t* o, int n) {
    if (w == 0 || r0 == r1) {
        memcpy(o, r0, (size_t)n);
        return;
    }
    for (int x = 0; x < n; ++x) o[x] = (uint8_t)lerp8(r0[x], r1[x], w);
}

LFX_INLINE void blend_run(const uint8_t* f, const uint8_t* a0, const uint8_t* a1, uint16_t wa,
                      const uint8_t* b0, const uint8_t* b1, uint16_t wb, uint8_t* o, int n) {
    if (wb == 0 || b0 == b1) {  // a full plane or a constant: no lerp for the background
        for (int x = 0; x < n; ++x) o[x] = blend8(f[x], b0[x], lerp8(a0[x], a1[x], wa));
        return;
    }
    for (int x = 0; x < n; ++x) {
        o[x] = blend8(f[x], lerp8(b0[x], b1[x], wb), lerp8(a0[x], a1[x], wa));
    }
}

// One row of ``across``: per group of ``group`` outputs (16 or 8), where the plan says their
// sources lie in the 16 bytes from base[g], one shuffle gathers them (16 lanes computed, ``group``
// kept); else, and for the tail, one output at a time. ``wt`` holds 16 readable weights past
// every group's start.
LFX_INLINE void across_row(const uint8_t* s, int dw, const int32_t* j0, const int32_t* j1,
                           const uint16_t* wt, const int32_t* base, const uint8_t* ok,
                           const uint8_t* m0, const uint8_t* m1, int group, uint8_t* o) {
    int x = 0;
#ifdef LFX_VECTOR_SHUFFLE
    for (int g = 0; g < dw / group; ++g, x += group) {
        if (!ok[g]) {
            for (int k = x; k < x + group; ++k) o[k] = (uint8_t)lerp8(s[j0[k]], s[j1[k]], wt[k]);
            continue;
        }
        v16u8 v, i0, i1;
        v16u16 w;
        memcpy(&v, s + base[g], 16);
        memcpy(&i0, m0 + 16 * g, 16);
        memcpy(&i1, m1 + 16 * g, 16);
        memcpy(&w, wt + x, 32);
        v16u16 a = __builtin_convertvector(__builtin_shuffle(v, i0), v16u16);
        v16u16 b = __builtin_convertvector(__builtin_shuffle(v, i1), v16u16);
        v16u8 r = __builtin_convertvector((a * (256 - w) + b * w + 128) >> 8, v16u8);
        memcpy(o + x, &r, (size_t)group);
    }
#else
    (void)base, (void)ok, (void)m0, (void)m1, (void)group;
#endif
    for (; x < dw; ++x) o[x] = (uint8_t)lerp8(s[j0[x]], s[j1[x]], wt[x]);
}

// 0 where all n bytes are 0, 255 where all are 255, else 1 (bitwise reductions vectorise).
LFX_INLINE uint8_t chunk_flag(const uint8_t* p, int n) {
    uint8_t any = 0, all = 255;
    for (int k = 0; k < n; ++k) {
        any |= p[k];
        all &= p[k];
    }
    return any == 0 ? 0 : (all == 255 ? 255 : 1);
}

// -- matte resolution --------------------------------------------------------------------------

// Mean over the (2r+1)² window of a w × h float plane (contiguous rows), reflect-101 borders.
// Along each row: the row padded by its reflection into ``pad`` (w + 2r floats), each output the
// sum of its 2r+1 neighbours into ``tmp`` (w × h), vectorised over the row (from pair sums in
// ``s2`` for the wider windows: half the loads). Down the columns: a running sum ``acc`` (w
// floats) that adds the row entering the window and drops the one leaving it (rows reflected at
// the ends). ``src`` and ``dst`` may be the same plane. ``scratch``: box_scratch(w, h, r) floats.
constexpr size_t box_scratch(int w, int h, int r) {
    return (size_t)w * h + 3 * (size_t)w + 4 * (size_t)r + 16;
}

template <int R>
LFX_INLINE void sum_along(const float* __restrict pad, float* __restrict s2,
                          float* __restrict t, int w) {
    if (R < 3) {
        for (int x = 0; x < w; ++x) {
            float a = pad[x];
            for (int k = 1; k <= 2 * R; ++k) a += pad[x + k];
            t[x] = a;
        }
        return;
    }
    for (int x = 0; x < w + 2 * R - 1; ++x) s2[x] = pad[x] + pad[x + 1];
    for (int x = 0; x < w; ++x) {
        float a = pad[x + 2 * R];
        for (int k = 0; k < R; ++k) a += s2[x + 2 * k];
        t[x] = a;
    }
}

LFX_INLINE void sum_along_any(const float* __restrict pad, float* __restrict t, int w, int r) {
    for (int x = 0; x < w; ++x) t[x] = pad[x];
    for (int k = 1; k <= 2 * r; ++k) {
        for (int x = 0; x < w; ++x) t[x] += pad[x + k];
    }
}

LFX_INLINE void box_mean(const float* src, float* dst, float* scratch, int w, int h, int r) {
    const int n = 2 * r + 1;
    const float norm = 1.f / (float)(n * n);
    float* __restrict tmp = scratch;
    float* __restrict pad = tmp + (size_t)w * h;
    float* __restrict acc = pad + w + 2 * r;
    float* __restrict s2 = acc + w;
    for (int y = 0; y < h; ++y) {
        const float* s = src + (size_t)y * w;
        float* t = tmp + (size_t)y * w;
        memcpy(pad + r, s, sizeof(float) * (size_t)w);
        if (r < w) {
            for (int k = 1; k <= r; ++k) {
                pad[r - k] = s[k];
                pad[r + w - 1 + k] = s[w - 1 - k];
            }
        } else {
            for (int k = 1; k <= r; ++k) {
                pad[r - k] = s[reflect101(-k, w)];
                pad[r + w - 1 + k] = s[reflect101(w - 1 + k, w)];
            }
        }
        switch (r) {
            case 1: sum_along<1>(pad, s2, t, w); break;
            case 2: sum_along<2>(pad, s2, t, w); break;
            case 3: sum_along<3>(pad, s2, t, w); break;
            case 4: sum_along<4>(pad, s2, t, w); break;
            case 5: sum_along<5>(pad, s2, t, w); break;
            case 6: sum_along<6>(pad, s2, t, w); break;
            case 7: sum_along<7>(pad, s2, t, w); break;
            case 8: sum_along<8>(pad, s2, t, w); break;
            case 9: sum_along<9>(pad, s2, t, w); break;
            case 10: sum_along<10>(pad, s2, t, w); break;
            case 11: sum_along<11>(pad, s2, t, w); break;
            case 12: sum_along<12>(pad, s2, t, w); break;
            default: sum_along_any(pad, t, w, r);
        }
    }
    for (int x = 0; x < w; ++x) acc[x] = 0.f;
    for (int k = -r; k <= r; ++k) {
        const float* __restrict t = tmp + (size_t)reflect101(k, h) * w;
        for (int x = 0; x < w; ++x) acc[x] += t[x];
    }
    for (int y = 0; y < h; ++y) {
        if (y > 0) {
            const float* __restrict in = tmp + (size_t)reflect101(y + r, h) * w;
            const float* __restrict out = tmp + (size_t)reflect101(y - r - 1, h) * w;
            for (int x = 0; x < w; ++x) acc[x] += in[x] - out[x];
        }
        float* __restrict d = dst + (size_t)y * w;
        for (int x = 0; x < w; ++x) d[x] = acc[x] * norm;
    }
}

}  // namespace

extern "C" {

// Floats of scratch a box mean of a w × h plane with radius r needs.
size_t lfx_box_scratch(int w, int h, int r) { return box_scratch(w, h, r); }

// ``n`` rows (row stride ``ss``) resampled across to ``dw`` (row stride ``os``). The plan, per
// output pixel: source pixels j0, j1 and the weight of j1 in 1/256; per group of ``group``
// outputs: ``ok`` where the sources lie in the 16 bytes from ``base``, with the shuffle indices
// ``m0``, ``m1`` (16 per group) relative to it. ``flags`` (optional, ceil(dw/32) per row): 0
// where a row's 32 pixels are all 0, 255 where all 255, else 1.
LFX_CLONES void lfx_across(const uint8_t* src, ptrdiff_t ss, int n, int dw, const int32_t* j0,
                           const int32_t* j1, const uint16_t* wt, const int32_t* base,
                           const uint8_t* ok, const uint8_t* m0, const uint8_t* m1, int group,
                           uint8_t* out, ptrdiff_t os, uint8_t* flags) {
    const int nc = (dw + kChunk - 1) / kChunk;
    for (int y = 0; y < n; ++y) {
        uint8_t* o = out + y * os;
        across_row(src + y * ss, dw, j0, j1, wt, base, ok, m0, m1, group, o);
        if (flags) {
            for (int c = 0; c < nc; ++c) {
                int x0 = c * kChunk, len = dw - x0 < kChunk ? dw - x0 : kChunk;
                flags[(size_t)y * nc + c] = chunk_flag(o + x0, len);
            }
        }
    }
}

// One plane: out = fg·α + bg·(1 − α), α and bg each a vertical lerp of their rows: ``*_j0``,
// ``*_j1`` the two source rows of each of the ``h`` output rows, ``*_w`` the second's weight in
// 1/256. ``a_flags`` (optional): the α rows' flags from ``lfx_across``.
LFX_CLONES void lfx_composite(int w, int h, const uint8_t* fg, ptrdiff_t fg_stride,
                              const uint8_t* a_rows, ptrdiff_t a_stride, const uint8_t* a_flags,
                              const int32_t* a_j0, const int32_t* a_j1, const uint16_t* a_w,
                              const uint8_t* b_rows, ptrdiff_t b_stride, const int32_t* b_j0,
                              const int32_t* b_j1, const uint16_t* b_w, uint8_t* out,
                              ptrdiff_t out_stride) {
    const int nc = (w + kChunk - 1) / kChunk;
    for (int y = 0; y < h; ++y) {
        const uint8_t* f = fg + y * fg_stride;
        const uint8_t* a0 = a_rows + a_j0[y] * a_stride;
        const uint8_t* a1 = a_rows + a_j1[y] * a_stride;
        const uint8_t* b0 = b_rows + b_j0[y] * b_stride;
        const uint8_t* b1 = b_rows + b_j1[y] * b_stride;
        const uint16_t wa = a_w[y], wb = b_w[y];
        uint8_t* o = out + y * out_stride;
        if (!a_flags) {
            blend_run(f, a0, a1, wa, b0, b1, wb, o, w);
            continue;
        }
        const uint8_t* f0 = a_flags + (size_t)a_j0[y] * nc;
        const uint8_t* f1 = a_flags + (size_t)a_j1[y] * nc;
        for (int c = 0; c < nc;) {
            // A run of chunks of one kind: all person, all background, or mixed.
            const uint8_t k = f0[c] == f1[c] ? f0[c] : 1;
            int e = c + 1;
            while (e < nc && (f0[e] == f1[e] ? f0[e] : 1) == k) ++e;
            const int x0 = c * kChunk, x1 = e * kChunk < w ? e * kChunk : w;
            if (k == 255) {
                memcpy(o + x0, f + x0, (size_t)(x1 - x0));
            } else if (k == 0) {
                lerp_run(b0 + x0, b1 + x0, wb, o + x0, x1 - x0);
            } else {
                blend_run(f + x0, a0 + x0, a1 + x0, wa, b0 + x0, b1 + x0, wb, o + x0, x1 - x0);
            }
            c = e;
        }
    }
}

// A plane as the vertical lerp of its rows.
LFX_CLONES void lfx_vlerp(int w, int h, const uint8_t* rows, ptrdiff_t stride, const int32_t* j0,
                          const int32_t* j1, const uint16_t* wt, uint8_t* out,
                          ptrdiff_t out_stride) {
    for (int y = 0; y < h; ++y) {
        lerp_run(rows + j0[y] * stride, rows + j1[y] * stride, wt[y], out + y * out_stride, w);
    }
}

// Box mean of a contiguous w × h float plane; ``scratch``: lfx_box_scratch(w, h, r) floats.
LFX_CLONES void lfx_box_mean(const float* src, float* dst, float* scratch, int w, int h, int r) {
    box_mean(src, dst, scratch, w, h, r);
}

// The refine stage at the matte's size (w × h, contiguous float planes), as
// reference.refine up to its upsampling:
//   1. guided filter of ``mask`` with the grey guide ``luma`` / 255 (skipped when luma is NULL)
//      into ``filtered``;
//   2. motion-adaptive temporal smoothing against ``prev`` (``first``: no history) into
//      ``smoothed``, and ``prev`` updated;
//   3. the threshold/feather ramp into ``matte``, and ``small8`` = ⌊255·matte + 0.5⌋.
// ``scratch``: 5·w·h + lfx_box_scratch(w, h, r) floats.
LFX_CLONES void lfx_refine(const float* mask, const uint8_t* luma, ptrdiff_t luma_stride, int w,
                           int h, int radius, float eps, float* prev, int first, float smoothing,
                           float threshold, float feather, float* filtered, float* smoothed,
                           float* matte, uint8_t* small8, float* scratch) {
    const size_t n = (size_t)w * h;
    const float* q = mask;
    if (luma) {
        float *gi = scratch, *mi = gi + n, *mp = mi + n, *cii = mp + n, *cip = cii + n;
        float* box = cip + n;
        for (int y = 0; y < h; ++y) {
            const uint8_t* l = luma + y * luma_stride;
            float* g = gi + (size_t)y * w;
            for (int x = 0; x < w; ++x) g[x] = (float)l[x] * (1.f / 255.f);
        }
        for (size_t k = 0; k < n; ++k) {
            cii[k] = gi[k] * gi[k];
            cip[k] = gi[k] * mask[k];
        }
        box_mean(gi, mi, box, w, h, radius);
        box_mean(mask, mp, box, w, h, radius);
        box_mean(cii, cii, box, w, h, radius);
        box_mean(cip, cip, box, w, h, radius);
        for (size_t k = 0; k < n; ++k) {  // a into cii, b into cip
            float a, b;
            lfx::guided_ab_px(mi[k], mp[k], cii[k], cip[k], eps, &a, &b);
            cii[k] = a;
            cip[k] = b;
        }
        box_mean(cii, cii, box, w, h, radius);
        box_mean(cip, cip, box, w, h, radius);
        for (size_t k = 0; k < n; ++k) filtered[k] = lfx::guided_out_px(cii[k], cip[k], gi[k]);
        q = filtered;
    }
    if (first) {
        memcpy(smoothed, q, sizeof(float) * n);
    } else {
        for (size_t k = 0; k < n; ++k) {
            smoothed[k] = lfx::temporal_smooth_px(q[k], prev[k], smoothing);
        }
    }
    memcpy(prev, smoothed, sizeof(float) * n);
    for (size_t k = 0; k < n; ++k) {
        matte[k] = lfx::matte_curve_px(smoothed[k], threshold, feather);
        small8[k] = (uint8_t)(matte[k] * 255.f + 0.5f);
    }
}

// The blur's denominator on a pyramid level: box(box(share)), share = the background's weight.
// ``scratch``: lfx_box_scratch(w, h, r) floats.
LFX_CLONES void lfx_blur_den(const float* share, float* den, float* scratch, int w, int h,
                             int r) {
    box_mean(share, den, scratch, w, h, r);
    box_mean(den, den, scratch, w, h, r);
}

// The masked blur of one w × h uint8 plane (row stride ``ss``): box(box(x·share)) / den, or x
// where den ≤ 1e-3 (no background within reach), rounded to uint8 into ``out``.
// ``scratch``: w·h + lfx_box_scratch(w, h, r) floats.
LFX_CLONES void lfx_masked_blur(const uint8_t* src, ptrdiff_t ss, const float* share,
                                const float* den, int w, int h, int r, uint8_t* out,
                                ptrdiff_t os, float* scratch) {
    const size_t n = (size_t)w * h;
    float *num = scratch, *box = num + n;
    for (int y = 0; y < h; ++y) {
        const uint8_t* s = src + y * ss;
        float* d = num + (size_t)y * w;
        const float* sh = share + (size_t)y * w;
        for (int x = 0; x < w; ++x) d[x] = (float)s[x] * sh[x];
    }
    box_mean(num, num, box, w, h, r);
    box_mean(num, num, box, w, h, r);
    for (int y = 0; y < h; ++y) {
        const uint8_t* s = src + y * ss;
        const float* nr = num + (size_t)y * w;
        const float* dn = den + (size_t)y * w;
        uint8_t* o = out + y * os;
        for (int x = 0; x < w; ++x) {
            float v = lfx::masked_ratio(nr[x], dn[x], (float)s[x]) + 0.5f;
            o[x] = (uint8_t)(v < 0.f ? 0.f : (v > 255.f ? 255.f : v));
        }
    }
}

}  // extern "C"

// An importable module, so that the build is found like any extension.
static struct PyModuleDef lfx_module = {
    PyModuleDef_HEAD_INIT, "_fused", "LiveFX's cpu loops (called through ctypes).", -1, nullptr,
    nullptr,               nullptr,  nullptr,                                       nullptr};

PyMODINIT_FUNC PyInit__fused(void) { return PyModule_Create(&lfx_module); }
