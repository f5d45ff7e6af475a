// The net kernels' math (kernels/net.cuh) compiled by the host compiler: one call runs one
// planned step over all its output elements, as the matching kernel of kernels/net_kernels.cuh
// does on the GPU. engine/inference/net/host.py runs whole models through it (the tests compare
// them with ONNX Runtime); weights are the fp16-rounded values as fp32 (W = float).
#include "net.cuh"

using namespace lfx::net;

namespace {

template <int K, typename W>
void run_per_element(const Step& s, const Ptrs& p) {
    long long per = per_sample_out(s);
    for (int n = 0; n < s.n; ++n)
        for (long long i = 0; i < per; ++i) step_px<K, W>(s, p, n, i);
}

// The GPU's block reduction, in the same order: partial k sums elements k, k + 256, …; then
// pairs at distance 128, 64, …, 1.
void run_gap(const Step& s, const Ptrs& p) {
    long long len = (long long)s.hi * s.wi;
    float parts[LFX_GAP_PARTS];
    for (int n = 0; n < s.n; ++n)
        for (int c = 0; c < s.ci; ++c) {
            const float* plane = p.x + ((long long)n * s.ci + c) * len;
            for (int k = 0; k < LFX_GAP_PARTS; ++k) parts[k] = gap_partial(plane, len, k, LFX_GAP_PARTS);
            for (int d = LFX_GAP_PARTS / 2; d > 0; d /= 2)
                for (int k = 0; k < d; ++k) parts[k] += parts[k + d];
            p.y[(long long)n * s.ci + c] = parts[0] / (float)len;
        }
}

void run_concat(const Step& s, const Ptrs& p) {
    long long per = (long long)s.ci * s.hi * s.wi;
    for (int n = 0; n < s.n; ++n)
        for (long long i = 0; i < per; ++i) concat_px(s, p, n, i);
}

template <typename W>
int run_step(const Step& s, const Ptrs& p) {
    if (p.gate && !*p.gate) return 0;
    switch (s.kind) {
        case K_CONV: run_per_element<K_CONV, W>(s, p); break;
        case K_CONVT: run_per_element<K_CONVT, W>(s, p); break;
        case K_POOL: run_per_element<K_POOL, W>(s, p); break;
        case K_SE: run_per_element<K_SE, W>(s, p); break;
        case K_ELTWISE: run_per_element<K_ELTWISE, W>(s, p); break;
        case K_RESIZE: run_per_element<K_RESIZE, W>(s, p); break;
        case K_D2S: run_per_element<K_D2S, W>(s, p); break;
        case K_PAD: run_per_element<K_PAD, W>(s, p); break;
        case K_GAP: run_gap(s, p); break;
        case K_CONCAT: run_concat(s, p); break;
        default: return -1;
    }
    return 0;
}

}  // namespace

extern "C" {

// 0 when the step ran; -1 for an unknown kind. Weights as fp32 (the fp16 values widened).
int lfx_net_step(const Step* s, const Ptrs* p) { return run_step<float>(*s, *p); }

// The same with the weights as the GPU gets them, fp16 bits (W = uint16_t, converted per use
// by wval): the device's instantiation of every per-element function, on the host.
int lfx_net_step_f16w(const Step* s, const Ptrs* p) { return run_step<uint16_t>(*s, *p); }

// The structs' sizes, so that engine/inference/net/plan.py can check its mirror of them.
int lfx_net_sizeof_step() { return (int)sizeof(Step); }
int lfx_net_sizeof_ptrs() { return (int)sizeof(Ptrs); }
int lfx_net_half_to_float(const unsigned short* h, float* out, int n) {
    for (int i = 0; i < n; ++i) out[i] = wval((uint16_t)h[i]);
    return 0;
}

}  // extern "C"
