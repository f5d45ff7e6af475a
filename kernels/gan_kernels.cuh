// The GAN effect's kernels around the generator (included by kernels/livefx.cu; the math is
// kernels/gan.cuh). One frame: lfx_gan_pre (the generator's input and the planes at its size)
// → the generator (net kernels) → lfx_gan_yuv → per plane, either lfx_resample_u8 (no
// upsampling: the low size covers the plane) or the guided upsampling: lfx_gan_stack →
// lfx_box_h/lfx_box_v (radius 2, four planes each) → lfx_gan_noise → lfx_gan_ab → lfx_gan_up.
// gridDim.z runs several planes of one size in one launch (U and V).
#pragma once

#include "gan.cuh"

#define LFX_GAN_PRE(NAME, TY, TC)                                                                  \
    __global__ void NAME(const TY* y, int ys, int yw, int yh, const TC* u, const TC* v, int cs,     \
                         int cw, int ch, ColorMatrix c, uint8_t* small, float* rgb, int dw, int dh) { \
        int x = gx(), row = gy();                                                                   \
        if (x >= dw || row >= dh) return;                                                           \
        uint8_t s[3];                                                                               \
        float p[3];                                                                                 \
        gan_pre_px(y, ys, yw, yh, u, v, cs, cw, ch, c, x, row, dw, dh, s, p);                       \
        size_t i = (size_t)row * dw + x, plane = (size_t)dw * dh;                                   \
        for (int k = 0; k < 3; ++k) {                                                               \
            small[k * plane + i] = s[k];                                                            \
            rgb[k * plane + i] = p[k];                                                              \
        }                                                                                           \
    }

extern "C" {

LFX_GAN_PRE(lfx_gan_pre_u8u8, uint8_t, uint8_t)
LFX_GAN_PRE(lfx_gan_pre_u8f32, uint8_t, float)
LFX_GAN_PRE(lfx_gan_pre_f32u8, float, uint8_t)
LFX_GAN_PRE(lfx_gan_pre_f32f32, float, float)

// The generator's NCHW RGB (w × h) → three 8-bit planes at its size.
__global__ void lfx_gan_yuv(const float* rgb, ColorMatrix inv, uint8_t* out, int w, int h) {
    int x = gx(), y = gy();
    if (x >= w || y >= h) return;
    size_t i = (size_t)y * w + x, plane = (size_t)w * h;
    float p[3] = {rgb[i], rgb[plane + i], rgb[2 * plane + i]};
    uint8_t o[3];
    gan_yuv_px(inv, p, o);
    for (int k = 0; k < 3; ++k) out[k * plane + i] = o[k];
}

// Plane z (first + z of the small and styled planes): the stack I, q, I·q, I² (0–255 scale).
__global__ void lfx_gan_stack(const uint8_t* small, const uint8_t* styled, float* stack, int w,
                              int h) {
    int x = gx(), y = gy();
    if (x >= w || y >= h) return;
    size_t n = (size_t)w * h, i = (size_t)y * w + x;
    float I = (float)small[blockIdx.z * n + i], q = (float)styled[blockIdx.z * n + i];
    float* s = stack + blockIdx.z * 4 * n;
    s[i] = I;
    s[n + i] = q;
    s[2 * n + i] = I * q;
    s[3 * n + i] = I * I;
}

// One block per plane: the noise estimate's |Laplacian| sum, partials summed as a tree.
__global__ void __launch_bounds__(256) lfx_gan_noise(const uint8_t* small, float* sums, int w, int h) {
    __shared__ float parts[256];
    int k = threadIdx.x;
    parts[k] = noise_partial(small + (size_t)blockIdx.x * w * h, w, w, h, k, 256);
    __syncthreads();
    for (int d = 128; d > 0; d /= 2) {
        if (k < d) parts[k] += parts[k + d];
        __syncthreads();
    }
    if (k == 0) sums[blockIdx.x] = parts[0];
}

// The fit a = cov(I, q) / (var(I) + eps), b = mean(q) − a·mean(I) of plane z, its eps raised
// to the plane's noise where noise_eps > 0.
__global__ void lfx_gan_ab(const float* means, const float* sums, float* ab, int w, int h,
                           float eps, float noise_eps) {
    int x = gx(), y = gy();
    if (x >= w || y >= h) return;
    size_t n = (size_t)w * h, i = (size_t)y * w + x;
    const float* m = means + blockIdx.z * 4 * n;
    float e = gan_eps(eps, noise_eps, sums[blockIdx.z], w, h);
    float* out = ab + blockIdx.z * 2 * n;
    guided_ab_px(m[i], m[n + i], m[3 * n + i], m[2 * n + i], e, out + i, out + n + i);
}

// Plane z at full size: a and b upsampled and applied to the frame's plane.
__global__ void lfx_gan_up(const float* ab, int gw, int gh, const uint8_t* full, int full_plane,
                           uint8_t* out, int out_plane, int pw, int ph) {
    int x = gx(), y = gy();
    if (x >= pw || y >= ph) return;
    const float* a = ab + blockIdx.z * 2 * (size_t)gw * gh;
    size_t i = (size_t)y * pw + x;
    float f = (float)full[blockIdx.z * (size_t)full_plane + i];
    out[blockIdx.z * (size_t)out_plane + i] = gan_up_px(a, a + (size_t)gw * gh, gw, gh, f, x, y, pw, ph);
}

// A plane (already halved) resampled bilinearly to dw × dh uint8, LFX_PX outputs per thread;
// plane z at src + z·src_plane, dst + z·dst_plane.
#define LFX_RESAMPLE_U8(NAME, T)                                                                   \
    __global__ void NAME(const T* src, int ss, int sw, int sh, int src_plane, uint8_t* dst,         \
                         int dw, int dh, int dst_plane) {                                           \
        int x0 = gx() * LFX_PX, y = gy();                                                           \
        if (x0 >= dw || y >= dh) return;                                                            \
        src += (size_t)blockIdx.z * src_plane;                                                      \
        dst += (size_t)blockIdx.z * dst_plane;                                                      \
        uint8_t v[LFX_PX];                                                                          \
        resample_row_u8(src, ss, sw, sh, x0, y, dw, dh, 1.f, v);                                    \
        store_px(dst + (size_t)y * dw, x0, dw, v);                                                  \
    }
LFX_RESAMPLE_U8(lfx_resample_u8_u8, uint8_t)
LFX_RESAMPLE_U8(lfx_resample_u8_f32, float)
#undef LFX_RESAMPLE_U8

}  // extern "C"

#undef LFX_GAN_PRE
