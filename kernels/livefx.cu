// LiveFX CUDA kernels. Each kernel computes its output elements with the __host__ __device__
// functions of pixel.cuh, the same code the host tests run against engine/ops/reference.py.
// Entry points are extern "C" so that the driver API finds them by name (cuModuleGetFunction).
//
// One frame's sequence on a stream (engine/gpu/chain.py): halve (Y; U and V together) →
// preprocess (+ luma guide) → [model] → guided filter (products, box passes, fit, box passes,
// output fused with smooth_ramp; or smooth_ramp alone) → for the blur: blur_inputs, box
// passes, blur_ratio → finish (mattes, background, composite); every launch is asynchronous,
// so the sequence is captured in CUDA graphs, made once per resolution and setting.
#include <cuda_fp16.h>

#include "pixel.cuh"

using namespace lfx;

namespace {

__device__ __forceinline__ int gx() { return blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int gy() { return blockIdx.y * blockDim.y + threadIdx.y; }

// gridDim.z planes (U and V) in one launch: plane z starts z·src_plane / z·dst_plane elements on.
template <typename T>
__device__ void halve(const T* src, int stride, int src_plane, float* dst, int dw, int dh,
                      int dst_plane) {
    int x = gx(), y = gy();
    src += (size_t)blockIdx.z * src_plane;
    dst += (size_t)blockIdx.z * dst_plane;
    if (x < dw && y < dh) dst[(size_t)y * dw + x] = halve_px(src, stride, x, y);
}

template <typename TY, typename TC, typename O>
__device__ void preprocess(const TY* y, int ys, int yw, int yh, const TC* u, const TC* v, int cs,
                           int cw, int ch, ColorMatrix c, O* out, uint8_t* luma, int dw, int dh) {
    int x = gx(), row = gy();
    if (x >= dw || row >= dh) return;
    float rgb[3];
    float Y = preprocess_px(y, ys, yw, yh, u, v, cs, cw, ch, c, x, row, dw, dh, rgb);
    size_t i = (size_t)row * dw + x, plane = (size_t)dw * dh;
    if (luma) luma[i] = to_u8(Y);
    out[i] = (O)rgb[0];
    out[plane + i] = (O)rgb[1];
    out[2 * plane + i] = (O)rgb[2];
}

// One thread's LFX_PX consecutive bytes of a row, as one 4-byte store where the row allows it.
__device__ __forceinline__ void store_px(uint8_t* row, int x0, int w, const uint8_t v[LFX_PX]) {
    uint8_t* p = row + x0;
    if (x0 + LFX_PX <= w && ((size_t)p & 3) == 0) {
        *(uchar4*)p = make_uchar4(v[0], v[1], v[2], v[3]);
    } else {
        for (int k = 0; k < LFX_PX && x0 + k < w; ++k) p[k] = v[k];
    }
}

}  // namespace

extern "C" {

// -- ingest: one exact 2×2 halving (a pyramid level) -----------------------------------------

__global__ void lfx_halve_u8(const uint8_t* src, int stride, int src_plane, float* dst, int dw,
                             int dh, int dst_plane) {
    halve(src, stride, src_plane, dst, dw, dh, dst_plane);
}

__global__ void lfx_halve_f32(const float* src, int stride, int src_plane, float* dst, int dw,
                              int dh, int dst_plane) {
    halve(src, stride, src_plane, dst, dw, dh, dst_plane);
}

// -- preprocess: yuv420p (or its halvings) → NCHW RGB in [0, 1], fp32 or fp16 -----------------

// One extern "C" entry point per (Y plane type, U/V plane type, output type):
// lfx_preprocess_<y><uv>_<out>. The Y plane may be a halving (float) while U/V are not, or the
// other way round for odd heights. ``luma`` (may be null): the resampled Y as uint8, the guided
// filter's guide, written in the same pass.
#define LFX_PREPROCESS(NAME, TY, TC, O)                                                         \
    __global__ void NAME(const TY* y, int ys, int yw, int yh, const TC* u, const TC* v, int cs,  \
                         int cw, int ch, ColorMatrix c, O* out, uint8_t* luma, int dw, int dh) { \
        preprocess(y, ys, yw, yh, u, v, cs, cw, ch, c, out, luma, dw, dh);                      \
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

// The guided filter's output (from the box means of a and b, and the guide), then temporal
// smoothing and the ramp as lfx_smooth_ramp: the filtered mask never goes to memory.
__global__ void lfx_guided_smooth_ramp(const float* ma, const float* mb, const float* gi,
                                       float* prev, float* matte, int n, const int* first,
                                       float smoothing, float threshold, float feather) {
    int k = gx();
    if (k < n) {
        float q = guided_out_px(ma[k], mb[k], gi[k]);
        matte[k] = smooth_ramp_px(q, prev + k, *first, smoothing, threshold, feather);
    }
}

// -- background ------------------------------------------------------------------------------

// The masked blur's inputs at one pyramid level, as stacked planes for the batched box passes:
// x_m·share for each of the ``n`` planes (1 to 3, of one type and size), then the share itself,
// share = 1 - (the low-resolution matte resampled to the level's size after the caller's
// halvings). lfx_blur_inputs_<plane type>: level 0 is a uint8 plane, deeper levels are float.
#define LFX_BLUR_INPUTS(NAME, T)                                                                \
    __global__ void NAME(const float* matte, int ms, int mw, int mh, const T* x0, int xs0,      \
                         const T* x1, int xs1, const T* x2, int xs2, int n, float* stack, int w, \
                         int h) {                                                               \
        int i = gx(), j = gy();                                                                 \
        if (i >= w || j >= h) return;                                                           \
        float share = 1.f - bilinear_px(matte, ms, mw, mh, i, j, w, h);                         \
        size_t k = (size_t)j * w + i, plane = (size_t)w * h;                                    \
        stack[k] = (float)x0[(size_t)j * xs0 + i] * share;                                      \
        if (n > 1) stack[plane + k] = (float)x1[(size_t)j * xs1 + i] * share;                   \
        if (n > 2) stack[2 * plane + k] = (float)x2[(size_t)j * xs2 + i] * share;               \
        stack[n * plane + k] = share;                                                           \
    }
LFX_BLUR_INPUTS(lfx_blur_inputs_u8, uint8_t)
LFX_BLUR_INPUTS(lfx_blur_inputs_f32, float)
#undef LFX_BLUR_INPUTS

// The masked blur's ratio blur(x·w) / blur(w) (x where no background is near), rounded to
// uint8 at the level's size, for the ``n`` planes of a stack made by lfx_blur_inputs (whose
// last plane is the blurred share): small plane m = stack plane m ÷ the last.
#define LFX_BLUR_RATIO(NAME, T)                                                                 \
    __global__ void NAME(const float* stack, const T* x0, int xs0, const T* x1, int xs1,        \
                         const T* x2, int xs2, int n, uint8_t* small, int w, int h) {           \
        int i = gx(), j = gy();                                                                 \
        if (i >= w || j >= h) return;                                                           \
        size_t k = (size_t)j * w + i, plane = (size_t)w * h;                                    \
        float den = stack[n * plane + k];                                                       \
        small[k] = blur_ratio_px(stack[k], den, (float)x0[(size_t)j * xs0 + i]);                \
        if (n > 1) small[plane + k] = blur_ratio_px(stack[plane + k], den, (float)x1[(size_t)j * xs1 + i]); \
        if (n > 2) small[2 * plane + k] = blur_ratio_px(stack[2 * plane + k], den, (float)x2[(size_t)j * xs2 + i]); \
    }
LFX_BLUR_RATIO(lfx_blur_ratio_u8, uint8_t)
LFX_BLUR_RATIO(lfx_blur_ratio_f32, float)
#undef LFX_BLUR_RATIO

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

// -- the last stage: mattes, background and composite straight to yuv420p, one launch ------

// A composite's background, passed by value: a colour, packed planes of the frame's size (a
// still image), or the blurred pyramid levels (uint8), upsampled on the fly.
struct Background {
    int mode;  // 0 colour, 1 planes, 2 levels
    int cy, cu, cv;  // mode 0: Y, U, V code values
    const uint8_t* y;  // modes 1 and 2: the planes or the levels
    const uint8_t* u;
    const uint8_t* v;
    int yw, yh, cw, ch;  // mode 2: the Y level's size and the U/V levels' size
};

// The background of LFX_PX pixels of plane p (0 Y, 1 U, 2 V; w × h) at row y from x0.
__device__ __forceinline__ void background_px(const Background& bg, int p, int x0, int y, int w,
                                              int h, uint8_t b[LFX_PX]) {
    const uint8_t* src = p == 0 ? bg.y : (p == 1 ? bg.u : bg.v);
    if (bg.mode == 2) {
        int lw = p == 0 ? bg.yw : bg.cw, lh = p == 0 ? bg.yh : bg.ch;
        resample_row_u8(src, lw, lw, lh, x0, y, w, h, 1.f, b);
        return;
    }
    int c = p == 0 ? bg.cy : (p == 1 ? bg.cu : bg.cv);
#pragma unroll
    for (int k = 0; k < LFX_PX; ++k) {
        int x = x0 + k < w ? x0 + k : w - 1;
        b[k] = bg.mode == 0 ? (uint8_t)c : src[(size_t)y * w + x];
    }
}

// composite_px over LFX_PX pixels of a row, stored.
__device__ __forceinline__ void composite_row(const uint8_t* f, const uint8_t a[LFX_PX],
                                              const uint8_t b[LFX_PX], uint8_t* out, int x0,
                                              int w) {
    uint8_t o[LFX_PX];
#pragma unroll
    for (int k = 0; k < LFX_PX; ++k) {
        int x = x0 + k < w ? x0 + k : w - 1;
        o[k] = composite_px(f[x], b[k], a[k]);
    }
    store_px(out, x0, w, o);
}

// LFX_PX pixels per thread along x; the grid covers the Y plane, threads inside the U/V size
// also do U and V. The uint8 mattes (the low-resolution matte resampled, as the cpu backend's
// refine) are written too. Outputs and mattes packed (stride = width).
__global__ void lfx_finish(const uint8_t* fy, int fys, const uint8_t* fu, const uint8_t* fv,
                           int fcs, const float* matte, int mw, int mh, uint8_t* ay,
                           uint8_t* auv, uint8_t* oy, uint8_t* ou, uint8_t* ov, int w, int h,
                           int cw, int ch, Background bg) {
    int x0 = gx() * LFX_PX, y = gy();
    uint8_t a[LFX_PX], b[LFX_PX];
    if (x0 < w && y < h) {
        resample_row_u8(matte, mw, mw, mh, x0, y, w, h, 255.f, a);
        store_px(ay + (size_t)y * w, x0, w, a);
        background_px(bg, 0, x0, y, w, h, b);
        composite_row(fy + (size_t)y * fys, a, b, oy + (size_t)y * w, x0, w);
    }
    if (x0 < cw && y < ch) {
        resample_row_u8(matte, mw, mw, mh, x0, y, cw, ch, 255.f, a);
        store_px(auv + (size_t)y * cw, x0, cw, a);
        background_px(bg, 1, x0, y, cw, ch, b);
        composite_row(fu + (size_t)y * fcs, a, b, ou + (size_t)y * cw, x0, cw);
        background_px(bg, 2, x0, y, cw, ch, b);
        composite_row(fv + (size_t)y * fcs, a, b, ov + (size_t)y * cw, x0, cw);
    }
}

// The frame's gate, one block of 256 threads: the luma's mean absolute change since the frame
// the model last ran on → gate[0] (run the model), gate[1] (a scene cut: the smoothing starts
// again, *first = 1), gate[2] (the change, as float bits); where the model runs, the luma is
// kept as the new reference.
__global__ void __launch_bounds__(256) lfx_gate(const uint8_t* luma, uint8_t* last, int n,
                                                const int* flags, float static_delta,
                                                float scene_delta, int* gate, int* first) {
    __shared__ float parts[256];
    __shared__ int run;
    int k = threadIdx.x;
    parts[k] = abs_diff_partial(luma, last, n, k, 256);
    __syncthreads();
    for (int d = 128; d > 0; d /= 2) {
        if (k < d) parts[k] += parts[k + d];
        __syncthreads();
    }
    if (k == 0) {
        float delta = parts[0] / (float)n;
        int scene;
        run = frame_gate(delta, flags, static_delta, scene_delta, &scene);
        gate[0] = run;
        gate[1] = scene;
        gate[2] = __float_as_int(delta);
        if (scene) *first = 1;
    }
    __syncthreads();
    if (run)
        for (int i = k; i < n; i += 256) last[i] = luma[i];
}

}  // extern "C"

// The GAN effect's kernels around its generator, and the net engine's kernels (the models'
// layers), in the same module.
#include "gan_kernels.cuh"
#include "net_kernels.cuh"
