// The GAN effect's pixel math around the generator (which runs on the net kernels): the
// generator's input and the frame's planes at its size, its RGB back to Y, U, V, and the
// self-guided upsampling to the frame's size (engine/ops/guided.py's GuidedUpsampler, the fast
// guided filter on the 0–255 scale, with its eps raised to the frame's own noise where asked).
// One definition for the kernels (kernels/livefx.cu) and the host tests (kernels/host_api.cpp,
// against engine.ops.cpu and engine.ops.guided).
#pragma once

#include "pixel.cuh"

namespace lfx {

// Generator input pixel (x, row) of a dw × dh resample of the (halved) planes, and the planes'
// values there rounded to 8 bits (``engine.ops.cpu.Preprocessor``: its small planes, and the
// colour matrix applied to them).
template <typename TY, typename TC>
LFX_HD void gan_pre_px(const TY* y, int ys, int yw, int yh, const TC* u, const TC* v, int cs,
                       int cw, int ch, const ColorMatrix& c, int x, int row, int dw, int dh,
                       uint8_t small[3], float rgb[3]) {
    small[0] = to_u8(bilinear_px(y, ys, yw, yh, x, row, dw, dh));
    small[1] = to_u8(bilinear_px(u, cs, cw, ch, x, row, dw, dh));
    small[2] = to_u8(bilinear_px(v, cs, cw, ch, x, row, dw, dh));
    yuv_to_rgb01(c, (float)small[0], (float)small[1], (float)small[2], rgb);
}

// The generator's RGB (any range) → 8-bit Y, U, V at its own size: clamp(M rgb + off + 0.5)
// truncated (``RgbToYuv420p.planes``); ``inv`` holds M and off.
LFX_HD void gan_yuv_px(const ColorMatrix& inv, const float rgb[3], uint8_t out[3]) {
    for (int i = 0; i < 3; ++i) {
        float v = inv.m[3 * i] * rgb[0] + inv.m[3 * i + 1] * rgb[1] + inv.m[3 * i + 2] * rgb[2] +
                  (inv.off[i] + 0.5f);
        v = v < 0.f ? 0.f : (v > 255.f ? 255.f : v);
        out[i] = (uint8_t)v;
    }
}

// |Laplacian| (1 −2 1 / −2 4 −2 / 1 −2 1) summed over the interior pixels part, part + parts, …
// of a w × h plane: one partial of the noise estimate (Immerkær 1996, ``noise_sigma``).
LFX_HD float noise_partial(const uint8_t* p, int stride, int w, int h, int part, int parts) {
    long long n = (long long)(w - 2) * (h - 2);
    float acc = 0.f;
    for (long long k = part; k < n; k += parts) {
        int x = 1 + (int)(k % (w - 2)), y = 1 + (int)(k / (w - 2));
        const uint8_t* r0 = p + (long long)(y - 1) * stride + x;
        const uint8_t* r1 = r0 + stride;
        const uint8_t* r2 = r1 + stride;
        float s = (float)r0[-1] - 2.f * r0[0] + (float)r0[1] - 2.f * r1[-1] + 4.f * r1[0] -
                  2.f * r1[1] + (float)r2[-1] - 2.f * r2[0] + (float)r2[1];
        acc += fabsf(s);
    }
    return acc;
}

// The fit's eps: ``eps``, raised to noise_eps · σ² where asked (σ from the partials' sum).
LFX_HD float gan_eps(float eps, float noise_eps, float abs_sum, int w, int h) {
    if (noise_eps <= 0.f || w <= 2 || h <= 2) return eps;
    float sigma = 1.2533141373155f * (abs_sum / ((float)(w - 2) * (float)(h - 2))) / 6.f;
    float e = noise_eps * sigma * sigma;
    return e > eps ? e : eps;
}

// One output pixel of the upsampling: a and b (low size, gw × gh) bilinear at (x, y) of the
// full plane (pw × ph), applied to the full plane's value; rounded and saturated.
LFX_HD uint8_t gan_up_px(const float* a, const float* b, int gw, int gh, float full, int x,
                         int y, int pw, int ph) {
    float A = bilinear_px(a, gw, gw, gh, x, y, pw, ph);
    float B = bilinear_px(b, gw, gw, gh, x, y, pw, ph);
    return to_u8(A * full + B);
}

}  // namespace lfx
