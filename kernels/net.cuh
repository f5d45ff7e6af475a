// LiveFX's net kernels: the per-element math of every layer the net engine plans
// (engine/inference/net), one definition for the CUDA kernels (kernels/net_kernels.cuh, nvcc or
// NVRTC) and the host build (kernels/net_host.cpp, g++), which CI runs on every shipped model
// against ONNX Runtime.
//
// A step is described by one ``Step`` (sizes, attributes, offsets into the model's constant
// blobs) and one ``Ptrs`` (its tensors), both passed by value; engine/inference/net/plan.py
// mirrors both structs field for field. Tensors are NCHW fp32; weights are fp16 on the GPU
// (``W`` = uint16_t, the half's bits) and the same fp16-rounded values as fp32 on the host
// (``W`` = float), so both builds multiply the same numbers; sums are fp32. Every output element
// is computed by one call, from its own index alone: results do not depend on the launch shape
// or on the batch size.
#pragma once

#include "pixel.cuh"

#if defined(__CUDACC_RTC__)
typedef unsigned short uint16_t;
#endif
#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

namespace lfx {
namespace net {

enum Kind {
    K_CONV = 1,     // Conv (groups, stride, dilation, pads zero/edge/reflect) + epilogue
    K_CONVT = 2,    // ConvTranspose + epilogue
    K_POOL = 3,     // MaxPool / AveragePool with a window
    K_GAP = 4,      // global average (AveragePool over the whole plane, ReduceMean over H, W)
    K_SE = 5,       // a squeeze-and-excite gate: [1×1 conv → act] → 1×1 conv → act, on pooled values
    K_ELTWISE = 6,  // a (× per-channel scale) op b, then an activation
    K_RESIZE = 7,   // Resize, nearest or linear, on H and W
    K_D2S = 8,      // DepthToSpace (DCR or CRD)
    K_PAD = 9,      // Pad on H and W (constant, edge, reflect)
    K_CONCAT = 10,  // one input of a channel Concat, copied into its channel range
};

enum ActKind {
    A_NONE = 0,
    A_RELU = 1,
    A_CLIP = 2,  // min(max(v, lo), hi); Relu6 is Clip(0, 6)
    A_HARDSWISH = 3,
    A_SIGMOID = 4,
    A_HARDSIGMOID = 5,  // max(0, min(1, lo·v + hi))
    A_LEAKY = 6,        // v < 0 ? lo·v : v
    A_TANH = 7,
};

enum PadMode { P_ZERO = 0, P_EDGE = 1, P_REFLECT = 2 };
enum EltOp { E_ADD = 0, E_MUL = 1, E_SUB = 2, E_DIV = 3, E_RSUB = 4, E_RDIV = 5 };
// Where an elementwise step's second operand comes from.
enum EltB { B_NONE = 0, B_FULL = 1, B_NC = 2, B_CONST_C = 3, B_CONST_1 = 4 };
enum CoordMode { C_HALF_PIXEL = 0, C_ASYMMETRIC = 1, C_ALIGN_CORNERS = 2, C_PYTORCH_HALF = 3 };
enum NearestMode { N_ROUND_FLOOR = 0, N_ROUND_CEIL = 1, N_FLOOR = 2, N_CEIL = 3 };

struct Act {
    int kind;
    float lo, hi;
};

struct Step {
    int kind;
    int n, ci, hi, wi;  // input: batch, channels, height, width
    int co, ho, wo;     // output (per sample)
    int kh, kw, sh, sw, pt, pl, dh, dw, group;
    int mode;   // CONV/PAD: PadMode; POOL: 0 max, 1 avg, 2 avg counting pads; ELTWISE: EltOp;
                // RESIZE: 0 nearest, 1 linear; D2S: 0 DCR, 1 CRD; CONCAT: first output channel
    int mode2;  // ELTWISE: EltB; RESIZE: CoordMode
    int mode3;  // RESIZE: NearestMode
    float fy, fx;  // RESIZE: the scales (output / input); PAD: the constant
    int w_off;     // weights: offset in the fp16 blob (-1: none)
    int b_off;     // fp32 constants: bias, or an elementwise constant (-1: none)
    int w2_off;    // SE: the second layer's weights
    int cmid;      // SE: hidden channels (0: one layer)
    Act act1, act2;  // epilogue: act1 after the bias, then + the residual, then act2
};

struct Ptrs {
    const float* x;  // input
    const float* r;  // residual (CONV/CONVT) or second operand (ELTWISE); may be null
    const float* s;  // per (n, input channel) scale; may be null
    const void* w;   // the model's weights (W elements)
    const float* f;  // the model's fp32 constants
    float* y;        // output
    const int* gate;  // may be null; where *gate is 0 the step does nothing (the frame's gate
                      // reuses the last mask: kernels/pixel.cuh's frame_gate)
};

LFX_HD float wval(float w) { return w; }
LFX_HD float wval(uint16_t h) {
#if defined(__CUDA_ARCH__)
    return __half2float(__ushort_as_half(h));
#else
    unsigned sign = h >> 15, e = (h >> 10) & 31u, m = h & 1023u;
    float v = e == 0 ? ldexpf((float)m, -24)
                     : (e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 1024u), (int)e - 25));
    return sign ? -v : v;
#endif
}

LFX_HD float act(const Act& a, float v) {
    switch (a.kind) {
        case A_RELU:
            return v > 0.f ? v : 0.f;
        case A_CLIP:
            return v < a.lo ? a.lo : (v > a.hi ? a.hi : v);
        case A_HARDSWISH: {
            float t = v + 3.f;
            t = t < 0.f ? 0.f : (t > 6.f ? 6.f : t);
            return v * t * (1.f / 6.f);
        }
        case A_SIGMOID:
            return 1.f / (1.f + expf(-v));
        case A_HARDSIGMOID: {
            float t = a.lo * v + a.hi;
            return t < 0.f ? 0.f : (t > 1.f ? 1.f : t);
        }
        case A_LEAKY:
            return v < 0.f ? a.lo * v : v;
        case A_TANH:
            return tanhf(v);
        default:
            return v;
    }
}

// A source index outside 0..n-1 under a pad mode; -1 where it reads the zero padding.
LFX_HD int pad_index(int i, int n, int mode) {
    if (i >= 0 && i < n) return i;
    if (mode == P_EDGE) return i < 0 ? 0 : n - 1;
    if (mode == P_REFLECT) return n == 1 ? 0 : reflect101(i, n);
    return -1;
}

// Output element (n, c, y, x) of a step whose per-sample output is co × ho × wo.
struct Pos {
    int n, c, y, x;
};
LFX_HD Pos position(const Step& s, int n, long long i) {
    Pos p;
    p.n = n;
    p.x = (int)(i % s.wo);
    long long t = i / s.wo;
    p.y = (int)(t % s.ho);
    p.c = (int)(t / s.ho);
    return p;
}
LFX_HD long long out_index(const Step& s, const Pos& p) {
    return (((long long)p.n * s.co + p.c) * s.ho + p.y) * s.wo + p.x;
}
LFX_HD long long per_sample_out(const Step& s) { return (long long)s.co * s.ho * s.wo; }

// Bias, act1, + residual, act2.
LFX_HD float epilogue(const Step& s, const Ptrs& p, float v, int c, long long oi) {
    if (s.b_off >= 0) v += p.f[s.b_off + c];
    v = act(s.act1, v);
    if (p.r) v += p.r[oi];
    return act(s.act2, v);
}

template <typename W>
LFX_HD float conv_px(const Step& s, const Ptrs& p, const Pos& o) {
    int cig = s.ci / s.group, cog = s.co / s.group, g = o.c / cog;
    long long plane = (long long)s.hi * s.wi;
    const float* xn = p.x + (long long)o.n * s.ci * plane;
    const W* wc = (const W*)p.w + s.w_off + (long long)o.c * cig * s.kh * s.kw;
    float acc = 0.f;
    for (int k = 0; k < cig; ++k) {
        int ci = g * cig + k;
        const float* xp = xn + ci * plane;
        const W* wk = wc + k * s.kh * s.kw;
        float part = 0.f;
        for (int ky = 0; ky < s.kh; ++ky) {
            int iy = pad_index(o.y * s.sh - s.pt + ky * s.dh, s.hi, s.mode);
            if (iy < 0) continue;
            for (int kx = 0; kx < s.kw; ++kx) {
                int ix = pad_index(o.x * s.sw - s.pl + kx * s.dw, s.wi, s.mode);
                if (ix < 0) continue;
                part += wval(wk[ky * s.kw + kx]) * xp[(long long)iy * s.wi + ix];
            }
        }
        acc += p.s ? part * p.s[o.n * s.ci + ci] : part;
    }
    return acc;
}

// ConvTranspose: weights [ci][co / group][kh][kw]; output (y, x) gathers input (iy, ix) where
// y + pt = iy·sh + ky·dh.
template <typename W>
LFX_HD float convt_px(const Step& s, const Ptrs& p, const Pos& o) {
    int cig = s.ci / s.group, cog = s.co / s.group, g = o.c / cog, cl = o.c - g * cog;
    long long plane = (long long)s.hi * s.wi;
    const float* xn = p.x + (long long)o.n * s.ci * plane;
    const W* w = (const W*)p.w + s.w_off;
    float acc = 0.f;
    for (int ky = 0; ky < s.kh; ++ky) {
        int ty = o.y + s.pt - ky * s.dh;
        if (ty < 0 || ty % s.sh) continue;
        int iy = ty / s.sh;
        if (iy >= s.hi) continue;
        for (int kx = 0; kx < s.kw; ++kx) {
            int tx = o.x + s.pl - kx * s.dw;
            if (tx < 0 || tx % s.sw) continue;
            int ix = tx / s.sw;
            if (ix >= s.wi) continue;
            for (int k = 0; k < cig; ++k) {
                int ci = g * cig + k;
                float xv = xn[ci * plane + (long long)iy * s.wi + ix];
                acc += xv * wval(w[(((long long)ci * cog + cl) * s.kh + ky) * s.kw + kx]);
            }
        }
    }
    return acc;
}

LFX_HD float pool_px(const Step& s, const Ptrs& p, const Pos& o) {
    const float* xp = p.x + ((long long)o.n * s.ci + o.c) * s.hi * s.wi;
    float best = -3.402823466e38f, sum = 0.f;  // -FLT_MAX (NVRTC has no math.h)
    int count = 0;
    for (int ky = 0; ky < s.kh; ++ky) {
        int iy = o.y * s.sh - s.pt + ky;
        for (int kx = 0; kx < s.kw; ++kx) {
            int ix = o.x * s.sw - s.pl + kx;
            bool inside = iy >= 0 && iy < s.hi && ix >= 0 && ix < s.wi;
            if (inside) {
                float v = xp[(long long)iy * s.wi + ix];
                best = v > best ? v : best;
                sum += v;
                ++count;
            } else if (s.mode == 2 && iy < s.hi + s.pt && ix < s.wi + s.pl) {
                ++count;  // count_include_pad: the padding (not the window's overhang) counts
            }
        }
    }
    if (s.mode == 0) return best;
    return count ? sum / (float)count : 0.f;
}

// The mean of plane (n, c), summed in ``parts`` interleaved partial sums and then in order (the
// GPU kernel's block reduction sums the same partials in a tree; the host build in order).
LFX_HD float gap_partial(const float* plane, long long len, int part, int parts) {
    float acc = 0.f;
    for (long long i = part; i < len; i += parts) acc += plane[i];
    return acc;
}

// A squeeze-and-excite gate for (n, c): act2(W2 · act1(W1 · pooled + b1) + b2), the hidden
// values recomputed per output channel (cmid · ci multiply-adds: tens of thousands at most).
template <typename W>
LFX_HD float se_px(const Step& s, const Ptrs& p, int n, int c) {
    const float* x = p.x + (long long)n * s.ci;
    const W* w = (const W*)p.w;
    if (s.cmid == 0) {
        float acc = s.b_off >= 0 ? p.f[s.b_off + c] : 0.f;
        for (int i = 0; i < s.ci; ++i) acc += wval(w[s.w_off + c * s.ci + i]) * x[i];
        return act(s.act2, acc);
    }
    float out = s.b_off >= 0 ? p.f[s.b_off + s.cmid + c] : 0.f;
    for (int j = 0; j < s.cmid; ++j) {
        float h = s.b_off >= 0 ? p.f[s.b_off + j] : 0.f;
        for (int i = 0; i < s.ci; ++i) h += wval(w[s.w_off + j * s.ci + i]) * x[i];
        out += wval(w[s.w2_off + c * s.cmid + j]) * act(s.act1, h);
    }
    return act(s.act2, out);
}

LFX_HD float eltwise_px(const Step& s, const Ptrs& p, const Pos& o, long long oi) {
    float a = p.x[oi];
    if (p.s) a *= p.s[o.n * s.co + o.c];
    float b;
    switch (s.mode2) {
        case B_FULL:
            b = p.r[oi];
            break;
        case B_NC:
            b = p.r[o.n * s.co + o.c];
            break;
        case B_CONST_C:
            b = p.f[s.b_off + o.c];
            break;
        case B_CONST_1:
            b = p.f[s.b_off];
            break;
        default:
            return act(s.act1, a);
    }
    float v;
    switch (s.mode) {
        case E_MUL:
            v = a * b;
            break;
        case E_SUB:
            v = a - b;
            break;
        case E_DIV:
            v = a / b;
            break;
        case E_RSUB:
            v = b - a;
            break;
        case E_RDIV:
            v = b / a;
            break;
        default:
            v = a + b;
    }
    return act(s.act1, v);
}

// ONNX Resize's source coordinate of output index i along one axis.
LFX_HD float resize_coord(int i, int in, int out, float scale, int mode) {
    switch (mode) {
        case C_ASYMMETRIC:
            return (float)i / scale;
        case C_ALIGN_CORNERS:
            return out == 1 ? 0.f : (float)i * (float)(in - 1) / (float)(out - 1);
        case C_PYTORCH_HALF:
            return out > 1 ? ((float)i + 0.5f) / scale - 0.5f : 0.f;
        default:
            return ((float)i + 0.5f) / scale - 0.5f;
    }
}

LFX_HD int nearest_index(float x, int n, int mode) {
    int i;
    switch (mode) {
        case N_FLOOR:
            i = (int)floorf(x);
            break;
        case N_CEIL:
            i = (int)ceilf(x);
            break;
        case N_ROUND_CEIL:
            i = (int)floorf(x + 0.5f);
            break;
        default:  // round_prefer_floor: halves go down
            i = x == floorf(x) + 0.5f ? (int)floorf(x) : (int)floorf(x + 0.5f);
    }
    return i < 0 ? 0 : (i > n - 1 ? n - 1 : i);
}

LFX_HD float resize_px(const Step& s, const Ptrs& p, const Pos& o) {
    const float* xp = p.x + ((long long)o.n * s.ci + o.c) * s.hi * s.wi;
    float fy = resize_coord(o.y, s.hi, s.ho, s.fy, s.mode2);
    float fx = resize_coord(o.x, s.wi, s.wo, s.fx, s.mode2);
    if (s.mode == 0) {
        int iy = nearest_index(fy, s.hi, s.mode3), ix = nearest_index(fx, s.wi, s.mode3);
        return xp[(long long)iy * s.wi + ix];
    }
    fy = fy < 0.f ? 0.f : (fy > (float)(s.hi - 1) ? (float)(s.hi - 1) : fy);
    fx = fx < 0.f ? 0.f : (fx > (float)(s.wi - 1) ? (float)(s.wi - 1) : fx);
    int y0 = (int)fy, x0 = (int)fx;
    int y1 = y0 + 1 < s.hi ? y0 + 1 : y0, x1 = x0 + 1 < s.wi ? x0 + 1 : x0;
    float ay = fy - (float)y0, ax = fx - (float)x0;
    const float* r0 = xp + (long long)y0 * s.wi;
    const float* r1 = xp + (long long)y1 * s.wi;
    float top = r0[x0] * (1.f - ax) + r0[x1] * ax;
    float bottom = r1[x0] * (1.f - ax) + r1[x1] * ax;
    return top * (1.f - ay) + bottom * ay;
}

LFX_HD float d2s_px(const Step& s, const Ptrs& p, const Pos& o) {
    int b = s.kh, by = o.y % b, bx = o.x % b;
    int ic = s.mode == 0 ? (by * b + bx) * s.co + o.c : (o.c * b + by) * b + bx;
    return p.x[(((long long)o.n * s.ci + ic) * s.hi + o.y / b) * s.wi + o.x / b];
}

LFX_HD float pad_px(const Step& s, const Ptrs& p, const Pos& o) {
    int iy = pad_index(o.y - s.pt, s.hi, s.mode), ix = pad_index(o.x - s.pl, s.wi, s.mode);
    if (iy < 0 || ix < 0) return s.fy;
    return p.x[(((long long)o.n * s.ci + o.c) * s.hi + iy) * s.wi + ix];
}

// The value of one output element of a per-element step of kind K (every kind but GAP and
// CONCAT); written to its place. i indexes the sample's output.
template <int K, typename W>
LFX_HD void step_px(const Step& s, const Ptrs& p, int n, long long i) {
    Pos o = position(s, n, i);
    long long oi = out_index(s, o);
    float v;
    if constexpr (K == K_CONV) {
        v = epilogue(s, p, conv_px<W>(s, p, o), o.c, oi);
    } else if constexpr (K == K_CONVT) {
        v = epilogue(s, p, convt_px<W>(s, p, o), o.c, oi);
    } else if constexpr (K == K_POOL) {
        v = pool_px(s, p, o);
    } else if constexpr (K == K_SE) {
        v = se_px<W>(s, p, n, o.c);
    } else if constexpr (K == K_ELTWISE) {
        v = eltwise_px(s, p, o, oi);
    } else if constexpr (K == K_RESIZE) {
        v = resize_px(s, p, o);
    } else if constexpr (K == K_D2S) {
        v = d2s_px(s, p, o);
    } else {
        static_assert(K == K_PAD, "a per-element kind");
        v = pad_px(s, p, o);
    }
    p.y[oi] = v;
}

// GAP: LFX_GAP_PARTS interleaved partial sums of a plane, summed as a tree (the GPU kernel's
// block reduction; the host build sums the same partials in the same order).
#define LFX_GAP_PARTS 256
// CONCAT: input element i of sample n (ci × hi × wi) to output channel mode + c.
LFX_HD void concat_px(const Step& s, const Ptrs& p, int n, long long i) {
    long long plane = (long long)s.hi * s.wi;
    long long c = i / plane, r = i - c * plane;
    p.y[((long long)n * s.co + s.mode + c) * plane + r] = p.x[(long long)n * s.ci * plane + i];
}

}  // namespace net
}  // namespace lfx
