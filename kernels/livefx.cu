// LiveFX CUDA kernels. Each kernel computes its output elements with the __host__ __device__
// functions of pixel.cuh, the same code the host tests run against engine/ops/reference.py.
// Entry points are extern "C" so that the driver API finds them by name (cuModuleGetFunction).
//
// One frame's sequence on a stream: halve (per pyramid level and plane) → preprocess → [model]
// → smooth_ramp → upsample_mattes → background (box blur passes, or a prepared image, or a
// colour) → composite_*; every launch is asynchronous, so the sequence can be captured in a
// CUDA graph once per resolution.
#include <cuda_fp16.h>

#include "pixel.cuh"

using namespace lfx;

namespace {

__device__ __forceinline__ int gx() { return blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int gy() { return blockIdx.y * blockDim.y + threadIdx.y; }

template <typename O>
__device__ __forceinline__ O out_cast(float v);
template <>
__device__ __forceinline__ float out_cast<float>(float v) { return v; }
template <>
__device__ __forceinline__ uint8_t out_cast<uint8_t>(float v) { return to_u8(v); }

template <typename T>
__device__ void halve(const T* src, int stride, float* dst, int dw, int dh) {
    int x = gx(), y = gy();
    if (x < dw && y < dh) dst[(size_t)y * dw + x] = halve_px(src, stride, x, y);
}

template <typename TY, typename TC, typename O>
__device__ void preprocess(const TY* y, int ys, int yw, int yh, const TC* u, const TC* v, int cs,
                           int cw, int ch, ColorMatrix c, O* out, int dw, int dh) {
    int x = gx(), row = gy();
    if (x >= dw || row >= dh) return;
    float rgb[3];
    preprocess_px(y, ys, yw, yh, u, v, cs, cw, ch, c, x, row, dw, dh, rgb);
    size_t i = (size_t)row * dw + x, plane = (size_t)dw * dh;
    out[i] = (O)rgb[0];
    out[plane + i] = (O)rgb[1];
    out[2 * plane + i] = (O)rgb[2];
}

}  // namespace

extern "C" {

// -- ingest: one exact 2×2 halving (a pyramid level) -----------------------------------------

__global__ void lfx_halve_u8(const uint8_t* src, int stride, float* dst, int dw, int dh) {
    halve(src, stride, dst, dw, dh);
}

__global__ void lfx_halve_f32(const float* src, int stride, float* dst, int dw, int dh) {
    halve(src, stride, dst, dw, dh);
}

// -- preprocess: yuv420p (or its halvings) → NCHW RGB in [0, 1], fp32 or fp16 -----------------

// One extern "C" entry point per (Y plane type, U/V plane type, output type):
// lfx_preprocess_<y><uv>_<out>. The Y plane may be a halving (float) while U/V are not, or the
// other way round for odd heights.
#define LFX_PREPROCESS(NAME, TY, TC, O)                                                         \
    __global__ void NAME(const TY* y, int ys, int yw, int yh, const TC* u, const TC* v, int cs,  \
                         int cw, int ch, ColorMatrix c, O* out, int dw, int dh) {                \
        preprocess(y, ys, yw, yh, u, v, cs, cw, ch, c, out, dw, dh);                            \
    }
LFX_PREPROCESS(lfx_preprocess_u8u8_f32, uint8_t, uint8_t, float)
LFX_PREPROCESS(lfx_preprocess_u8f32_f32, uint8_t, float, float)
LFX_PREPROCESS(lfx_preprocess_f32u8_f32, float, uint8_t, float)
LFX_PREPROCESS(lfx_preprocess_f32f32_f32, float, float, float)
LFX_PREPROCESS(lfx_preprocess_u8u8_f16, uint8_t, uint8_t, __half)
LFX_PREPROCESS(lfx_preprocess_u8f32_f16, uint8_t, float, __half)
LFX_PREPROCESS(lfx_preprocess_f32u8_f16, float, uint8_t, __half)
LFX_PREPROCESS(lfx_preprocess_f32f32_f16, float, float, __half)
#undef LFX_PREPROCESS

// -- resampling: bilinear (half-pixel centres) of a plane, after the caller's halvings --------

// lfx_resize_<in>_<out>: float output as is, uint8 output rounded (the matte, the luma guide,
// the blurred background's upsampling).
#define LFX_RESIZE(NAME, T, O)                                                                  \
    __global__ void NAME(const T* src, int ss, int sw, int sh, O* dst, int ds, int dw, int dh) { \
        int x = gx(), y = gy();                                                                 \
        if (x < dw && y < dh) {                                                                 \
            dst[(size_t)y * ds + x] = out_cast<O>(bilinear_px(src, ss, sw, sh, x, y, dw, dh));  \
        }                                                                                       \
    }
LFX_RESIZE(lfx_resize_f32_f32, float, float)
LFX_RESIZE(lfx_resize_f32_u8, float, uint8_t)
LFX_RESIZE(lfx_resize_u8_u8, uint8_t, uint8_t)
#undef LFX_RESIZE

// -- refine ----------------------------------------------------------------------------------

// Temporal smoothing (history in ``prev``, updated) and the ramp, fused: one pass over the mask.
// ``first`` (no history yet) is read from device memory, so that one captured graph serves the
// first frame and the rest: the host sets it with a memset before launching the graph.
__global__ void lfx_smooth_ramp(const float* mask, float* prev, float* matte, int n,
                                const int* first, float smoothing, float threshold,
                                float feather) {
    int i = gx();
    if (i < n) matte[i] = smooth_ramp_px(mask[i], prev + i, *first, smoothing, threshold, feather);
}

// Both uint8 mattes in one launch: the grid covers the Y plane; threads inside the U/V size
// also write the chroma matte.
__global__ void lfx_upsample_mattes(const float* matte, int mw, int mh, uint8_t* ay, int ys,
                                    int w, int h, uint8_t* auv, int cs, int cw, int ch) {
    int x = gx(), y = gy();
    if (x < w && y < h) ay[(size_t)y * ys + x] = upsample_matte_px(matte, mw, mh, x, y, w, h);
    if (x < cw && y < ch) auv[(size_t)y * cs + x] = upsample_matte_px(matte, mw, mh, x, y, cw, ch);
}

// The guided filter around lfx_box_h/lfx_box_v. The inputs of its first four box means as
// four stacked planes (one batched box launch): the guide (uint8 luma at the mask's size,
// scaled to [0, 1]), the mask, guide², guide·mask. After the box means, the fit (a, b); after
// the box means of a and b, the output.
__global__ void lfx_guided_products(const uint8_t* luma, int ls, const float* mask, float* stack,
                                    int w, int h) {
    int x = gx(), y = gy();
    if (x >= w || y >= h) return;
    size_t k = (size_t)y * w + x, n = (size_t)w * h;
    float g = (float)luma[(size_t)y * ls + x] * (1.f / 255.f);
    float p = mask[k];
    stack[k] = g;
    stack[n + k] = p;
    stack[2 * n + k] = g * g;
    stack[3 * n + k] = g * p;
}

__global__ void lfx_guided_ab(const float* mi, const float* mp, const float* mii, const float* mip,
                              float* a, float* b, int n, float eps) {
    int k = gx();
    if (k < n) guided_ab_px(mi[k], mp[k], mii[k], mip[k], eps, a + k, b + k);
}

__global__ void lfx_guided_out(const float* ma, const float* mb, const float* gi, float* out,
                               int n) {
    int k = gx();
    if (k < n) out[k] = guided_out_px(ma[k], mb[k], gi[k]);
}

// -- background ------------------------------------------------------------------------------

// The background's share at one pyramid level: 1 - (the low-resolution matte, resampled to the
// level's size after the caller's halvings). U and V (and Y, when its level has the same size)
// share it.
__global__ void lfx_background_share(const float* matte, int ms, int mw, int mh, float* share,
                                     int w, int h) {
    int x = gx(), y = gy();
    if (x < w && y < h) share[(size_t)y * w + x] = 1.f - bilinear_px(matte, ms, mw, mh, x, y, w, h);
}

// x·share, the masked blur's numerator input (its denominator input is the share itself).
// lfx_weigh_<plane type>: level 0 is the uint8 plane, deeper levels are float halvings.
#define LFX_WEIGH(NAME, T)                                                                      \
    __global__ void NAME(const T* x, int xs, const float* share, float* xw, int w, int h) {     \
        int i = gx(), j = gy();                                                                 \
        if (i < w && j < h) xw[(size_t)j * w + i] = (float)x[(size_t)j * xs + i] * share[(size_t)j * w + i]; \
    }
LFX_WEIGH(lfx_weigh_u8, uint8_t)
LFX_WEIGH(lfx_weigh_f32, float)
#undef LFX_WEIGH

// blur(x·w) / blur(w) (x where no background is near), rounded to uint8 at the level's size.
#define LFX_RATIO(NAME, T)                                                                      \
    __global__ void NAME(const float* num, const float* den, const T* x, int xs, uint8_t* out,  \
                         int w, int h) {                                                        \
        int i = gx(), j = gy();                                                                 \
        if (i >= w || j >= h) return;                                                           \
        size_t k = (size_t)j * w + i;                                                           \
        out[k] = to_u8(masked_ratio(num[k], den[k], (float)x[(size_t)j * xs + i]));            \
    }
LFX_RATIO(lfx_masked_ratio_u8, uint8_t)
LFX_RATIO(lfx_masked_ratio_f32, float)
#undef LFX_RATIO

// Horizontal box mean, radius r, through a shared-memory row tile of blockDim.x + 2r values.
// Launch with blockDim (N, 1) and (N + 2r)·4 bytes of dynamic shared memory. gridDim.z planes
// of w × h stored one after the other are filtered in one launch.
__global__ void lfx_box_h(const float* src, float* dst, int w, int h, int r) {
    extern __shared__ float tile[];
    int y = blockIdx.y, x0 = blockIdx.x * blockDim.x;
    if (y >= h) return;
    src += (size_t)blockIdx.z * w * h;
    dst += (size_t)blockIdx.z * w * h;
    const float* row = src + (size_t)y * w;
    for (int k = threadIdx.x; k < (int)blockDim.x + 2 * r; k += blockDim.x) {
        tile[k] = row[reflect101(x0 + k - r, w)];
    }
    __syncthreads();
    int x = x0 + threadIdx.x;
    if (x >= w) return;
    float s = 0.f;
    for (int k = 0; k <= 2 * r; ++k) s += tile[threadIdx.x + k];
    dst[(size_t)y * w + x] = s / (float)(2 * r + 1);
}

// Vertical box mean through a shared-memory tile of (blockDim.y + 2r) rows × blockDim.x
// columns. Launch with (blockDim.y + 2r)·blockDim.x·4 bytes of dynamic shared memory; gridDim.z
// planes as lfx_box_h.
__global__ void lfx_box_v(const float* src, float* dst, int w, int h, int r) {
    extern __shared__ float tile[];
    src += (size_t)blockIdx.z * w * h;
    dst += (size_t)blockIdx.z * w * h;
    int x = blockIdx.x * blockDim.x + threadIdx.x, y0 = blockIdx.y * blockDim.y;
    int rows = (int)blockDim.y + 2 * r;
    for (int k = threadIdx.y; k < rows; k += blockDim.y) {
        tile[k * blockDim.x + threadIdx.x] =
            x < w ? src[(size_t)reflect101(y0 + k - r, h) * w + x] : 0.f;
    }
    __syncthreads();
    int y = y0 + threadIdx.y;
    if (x >= w || y >= h) return;
    float s = 0.f;
    for (int k = 0; k <= 2 * r; ++k) s += tile[(threadIdx.y + k) * blockDim.x + threadIdx.x];
    dst[(size_t)y * w + x] = s / (float)(2 * r + 1);
}

// -- composite straight to yuv420p -----------------------------------------------------------

// Over a solid colour (its Y, U, V code values): all three planes in one launch.
__global__ void lfx_composite_colour(const uint8_t* fy, int fys, const uint8_t* fu,
                                     const uint8_t* fv, int fcs, const uint8_t* ay, int ays,
                                     const uint8_t* auv, int acs, uint8_t* oy, int oys,
                                     uint8_t* ou, uint8_t* ov, int ocs, int w, int h, int cw,
                                     int ch, uint8_t cy, uint8_t cu, uint8_t cv) {
    int x = gx(), y = gy();
    if (x < w && y < h) {
        oy[(size_t)y * oys + x] = composite_px(fy[(size_t)y * fys + x], cy, ay[(size_t)y * ays + x]);
    }
    if (x < cw && y < ch) {
        uint8_t a = auv[(size_t)y * acs + x];
        ou[(size_t)y * ocs + x] = composite_px(fu[(size_t)y * fcs + x], cu, a);
        ov[(size_t)y * ocs + x] = composite_px(fv[(size_t)y * fcs + x], cv, a);
    }
}

// Over background planes (a replacement image prepared once, or the blurred frame): all three
// planes in one launch. Background planes are packed (stride = width).
__global__ void lfx_composite_planes(const uint8_t* fy, int fys, const uint8_t* fu,
                                     const uint8_t* fv, int fcs, const uint8_t* by,
                                     const uint8_t* bu, const uint8_t* bv, const uint8_t* ay,
                                     int ays, const uint8_t* auv, int acs, uint8_t* oy, int oys,
                                     uint8_t* ou, uint8_t* ov, int ocs, int w, int h, int cw,
                                     int ch) {
    int x = gx(), y = gy();
    if (x < w && y < h) {
        oy[(size_t)y * oys + x] =
            composite_px(fy[(size_t)y * fys + x], by[(size_t)y * w + x], ay[(size_t)y * ays + x]);
    }
    if (x < cw && y < ch) {
        uint8_t a = auv[(size_t)y * acs + x];
        ou[(size_t)y * ocs + x] = composite_px(fu[(size_t)y * fcs + x], bu[(size_t)y * cw + x], a);
        ov[(size_t)y * ocs + x] = composite_px(fv[(size_t)y * fcs + x], bv[(size_t)y * cw + x], a);
    }
}

}  // extern "C"
