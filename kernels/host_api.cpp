// The pixel math of kernels/pixel.cuh compiled by the host compiler, over whole planes, for the
// host tests (tests/test_kernels_host.py, through ctypes). Each loop body is the body of the
// matching kernel in kernels/livefx.cu.
#include <string.h>

#include "gan.cuh"
#include "pixel.cuh"

using namespace lfx;

static ColorMatrix color(const float* m9, const float* off3) {
    ColorMatrix c;
    for (int i = 0; i < 9; ++i) c.m[i] = m9[i];
    for (int i = 0; i < 3; ++i) c.off[i] = off3[i];
    return c;
}

extern "C" {

void lfx_halve_u8(const uint8_t* src, int stride, float* dst, int dw, int dh) {
    for (int y = 0; y < dh; ++y)
        for (int x = 0; x < dw; ++x) dst[(size_t)y * dw + x] = halve_px(src, stride, x, y);
}

void lfx_halve_f32(const float* src, int stride, float* dst, int dw, int dh) {
    for (int y = 0; y < dh; ++y)
        for (int x = 0; x < dw; ++x) dst[(size_t)y * dw + x] = halve_px(src, stride, x, y);
}

int lfx_halvings(int w, int h, int tw, int th) { return halvings(w, h, tw, th); }

void lfx_preprocess(const float* y, int ys, int yw, int yh, const float* u, const float* v, int cs,
                    int cw, int ch, const float* m9, const float* off3, float* out, int dw,
                    int dh) {
    ColorMatrix c = color(m9, off3);
    size_t plane = (size_t)dw * dh;
    for (int row = 0; row < dh; ++row)
        for (int x = 0; x < dw; ++x) {
            float rgb[3];
            preprocess_px(y, ys, yw, yh, u, v, cs, cw, ch, c, x, row, dw, dh, rgb);
            size_t i = (size_t)row * dw + x;
            out[i] = rgb[0];
            out[plane + i] = rgb[1];
            out[2 * plane + i] = rgb[2];
        }
}

void lfx_smooth_ramp(const float* mask, float* prev, float* matte, int n, int first,
                     float smoothing, float threshold, float feather) {
    for (int i = 0; i < n; ++i)
        matte[i] = smooth_ramp_px(mask[i], prev + i, first, smoothing, threshold, feather);
}

void lfx_upsample_matte(const float* matte, int mw, int mh, uint8_t* out, int stride, int w,
                        int h) {
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; x += LFX_PX) {
            uint8_t v[LFX_PX];
            resample_row_u8(matte, mw, mw, mh, x, y, w, h, 255.f, v);
            for (int k = 0; k < LFX_PX && x + k < w; ++k) out[(size_t)y * stride + x + k] = v[k];
        }
}

void lfx_composite(const uint8_t* fg, const uint8_t* bg, const uint8_t* alpha, uint8_t* out,
                   int n) {
    for (int i = 0; i < n; ++i) out[i] = composite_px(fg[i], bg[i], alpha[i]);
}

void lfx_box_mean(const float* src, float* tmp, float* dst, int w, int h, int r) {
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) tmp[(size_t)y * w + x] = box_mean_h_px(src, w, w, x, y, r);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) dst[(size_t)y * w + x] = box_mean_v_px(tmp, w, h, x, y, r);
}

// The guided filter with a guide in [0, 1]: six box means around guided_ab_px/guided_out_px,
// in the order of the kernels (products, four means, fit, two means, output).
void lfx_guided_filter(const float* guide, const float* mask, float* out, float* work, int w,
                       int h, int r, float eps) {
    size_t n = (size_t)w * h;
    float *ii = work, *ip = work + n, *mi = work + 2 * n, *mp = work + 3 * n, *mii = work + 4 * n,
          *mip = work + 5 * n, *tmp = work + 6 * n;
    for (size_t k = 0; k < n; ++k) {
        ii[k] = guide[k] * guide[k];
        ip[k] = guide[k] * mask[k];
    }
    lfx_box_mean(guide, tmp, mi, w, h, r);
    lfx_box_mean(mask, tmp, mp, w, h, r);
    lfx_box_mean(ii, tmp, mii, w, h, r);
    lfx_box_mean(ip, tmp, mip, w, h, r);
    for (size_t k = 0; k < n; ++k) guided_ab_px(mi[k], mp[k], mii[k], mip[k], eps, ii + k, ip + k);
    lfx_box_mean(ii, tmp, mi, w, h, r);
    lfx_box_mean(ip, tmp, mp, w, h, r);
    for (size_t k = 0; k < n; ++k) out[k] = guided_out_px(mi[k], mp[k], guide[k]);
}

void lfx_masked_ratio(const float* num, const float* den, const float* x, float* out, int n) {
    for (int i = 0; i < n; ++i) out[i] = masked_ratio(num[i], den[i], x[i]);
}

// The kernels' two steps: the ratio rounded to uint8 at the level, then its upsampling, a row
// group of LFX_PX pixels at a time.
void lfx_blur_up(const float* num, const float* den, const float* x, int lw, int lh,
                 uint8_t* small, uint8_t* out, int ow, int oh) {
    for (size_t k = 0; k < (size_t)lw * lh; ++k) small[k] = blur_ratio_px(num[k], den[k], x[k]);
    for (int j = 0; j < oh; ++j)
        for (int i = 0; i < ow; i += LFX_PX) {
            uint8_t v[LFX_PX];
            resample_row_u8(small, lw, lw, lh, i, j, ow, oh, 1.f, v);
            for (int k = 0; k < LFX_PX && i + k < ow; ++k) out[(size_t)j * ow + i + k] = v[k];
        }
}

void lfx_rgb01_to_yuv(const float* rgb, const float* inv9, const float* off3, float* yuv, int n) {
    ColorMatrix c = color(inv9, off3);
    for (int i = 0; i < n; ++i) rgb01_to_yuv(c, rgb + 3 * i, yuv + 3 * i);
}

// The GAN effect around its generator (kernels/gan.cuh), in the order of its kernels.
void lfx_gan_pre(const float* y, int ys, int yw, int yh, const float* u, const float* v, int cs,
                 int cw, int ch, const float* m9, const float* off3, uint8_t* small, float* rgb,
                 int dw, int dh) {
    ColorMatrix c = color(m9, off3);
    size_t plane = (size_t)dw * dh;
    for (int row = 0; row < dh; ++row)
        for (int x = 0; x < dw; ++x) {
            uint8_t s[3];
            float p[3];
            gan_pre_px(y, ys, yw, yh, u, v, cs, cw, ch, c, x, row, dw, dh, s, p);
            size_t i = (size_t)row * dw + x;
            for (int k = 0; k < 3; ++k) {
                small[k * plane + i] = s[k];
                rgb[k * plane + i] = p[k];
            }
        }
}

void lfx_gan_yuv(const float* rgb, const float* inv9, const float* off3, uint8_t* out, int w,
                 int h) {
    ColorMatrix inv = color(inv9, off3);
    size_t plane = (size_t)w * h;
    for (size_t i = 0; i < plane; ++i) {
        float p[3] = {rgb[i], rgb[plane + i], rgb[2 * plane + i]};
        uint8_t o[3];
        gan_yuv_px(inv, p, o);
        for (int k = 0; k < 3; ++k) out[k * plane + i] = o[k];
    }
}

// One plane's guided upsampling: stack, box means (radius r), noise sums (256 partials summed
// as the kernel's tree), fit, output. ``work``: 7 · gw · gh floats.
void lfx_gan_guided_up(const uint8_t* small, const uint8_t* styled, int gw, int gh,
                       const uint8_t* full, int pw, int ph, float eps, float noise_eps, int r,
                       float* work, uint8_t* out) {
    size_t n = (size_t)gw * gh;
    float *stack = work, *tmp = work + 4 * n, *ab = work + 5 * n;
    for (size_t i = 0; i < n; ++i) {
        float I = small[i], q = styled[i];
        stack[i] = I;
        stack[n + i] = q;
        stack[2 * n + i] = I * q;
        stack[3 * n + i] = I * I;
    }
    for (int k = 0; k < 4; ++k) lfx_box_mean(stack + k * n, tmp, stack + k * n, gw, gh, r);
    float parts[256];
    for (int k = 0; k < 256; ++k) parts[k] = noise_partial(small, gw, gw, gh, k, 256);
    for (int d = 128; d > 0; d /= 2)
        for (int k = 0; k < d; ++k) parts[k] += parts[k + d];
    float e = gan_eps(eps, noise_eps, parts[0], gw, gh);
    for (size_t i = 0; i < n; ++i)
        guided_ab_px(stack[i], stack[n + i], stack[3 * n + i], stack[2 * n + i], e, ab + i,
                     ab + n + i);
    for (int y = 0; y < ph; ++y)
        for (int x = 0; x < pw; ++x)
            out[(size_t)y * pw + x] =
                gan_up_px(ab, ab + n, gw, gh, (float)full[(size_t)y * pw + x], x, y, pw, ph);
}

// The frame's gate as lfx_gate (256 partials summed as its tree); returns gate[0].
int lfx_gate(const uint8_t* luma, uint8_t* last, int n, const int* flags, float static_delta,
             float scene_delta, int* gate, int* first) {
    float parts[256];
    for (int k = 0; k < 256; ++k) parts[k] = abs_diff_partial(luma, last, n, k, 256);
    for (int d = 128; d > 0; d /= 2)
        for (int k = 0; k < d; ++k) parts[k] += parts[k + d];
    float delta = parts[0] / (float)n;
    int scene, run = frame_gate(delta, flags, static_delta, scene_delta, &scene);
    gate[0] = run;
    gate[1] = scene;
    memcpy(gate + 2, &delta, sizeof delta);
    if (scene) *first = 1;
    if (run)
        for (int i = 0; i < n; ++i) last[i] = luma[i];
    return run;
}

}  // extern "C"
