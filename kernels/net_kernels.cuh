// The net engine's CUDA kernels (included by kernels/livefx.cu, so one module holds the frame's
// kernels and the models'). Each is the host build's loop (kernels/net_host.cpp) with one
// thread per output element: grid (ceil(elements per sample / LFX_NET_BLOCK), 1, batch), block
// LFX_NET_BLOCK; weights are fp16 (W = uint16_t). GAP: one block of LFX_GAP_PARTS threads per
// (channel, sample), the host build's partial sums and tree in shared memory.
#pragma once

#include "net.cuh"

#define LFX_NET_BLOCK 256

namespace {

template <int K>
__device__ __forceinline__ void net_per_element(const lfx::net::Step& s, const lfx::net::Ptrs& p) {
    if (p.gate && !*p.gate) return;
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < lfx::net::per_sample_out(s)) lfx::net::step_px<K, uint16_t>(s, p, (int)blockIdx.z, i);
}

}  // namespace

extern "C" {

__global__ void __launch_bounds__(LFX_NET_BLOCK) lfx_net_conv(lfx::net::Step s, lfx::net::Ptrs p) {
    net_per_element<lfx::net::K_CONV>(s, p);
}
__global__ void __launch_bounds__(LFX_NET_BLOCK) lfx_net_convt(lfx::net::Step s, lfx::net::Ptrs p) {
    net_per_element<lfx::net::K_CONVT>(s, p);
}
__global__ void __launch_bounds__(LFX_NET_BLOCK) lfx_net_pool(lfx::net::Step s, lfx::net::Ptrs p) {
    net_per_element<lfx::net::K_POOL>(s, p);
}
__global__ void __launch_bounds__(LFX_NET_BLOCK) lfx_net_se(lfx::net::Step s, lfx::net::Ptrs p) {
    net_per_element<lfx::net::K_SE>(s, p);
}
__global__ void __launch_bounds__(LFX_NET_BLOCK) lfx_net_eltwise(lfx::net::Step s, lfx::net::Ptrs p) {
    net_per_element<lfx::net::K_ELTWISE>(s, p);
}
__global__ void __launch_bounds__(LFX_NET_BLOCK) lfx_net_resize(lfx::net::Step s, lfx::net::Ptrs p) {
    net_per_element<lfx::net::K_RESIZE>(s, p);
}
__global__ void __launch_bounds__(LFX_NET_BLOCK) lfx_net_d2s(lfx::net::Step s, lfx::net::Ptrs p) {
    net_per_element<lfx::net::K_D2S>(s, p);
}
__global__ void __launch_bounds__(LFX_NET_BLOCK) lfx_net_pad(lfx::net::Step s, lfx::net::Ptrs p) {
    net_per_element<lfx::net::K_PAD>(s, p);
}

__global__ void __launch_bounds__(LFX_GAP_PARTS) lfx_net_gap(lfx::net::Step s, lfx::net::Ptrs p) {
    __shared__ float parts[LFX_GAP_PARTS];
    if (p.gate && !*p.gate) return;
    int c = blockIdx.x, n = blockIdx.z, k = threadIdx.x;
    long long len = (long long)s.hi * s.wi;
    const float* plane = p.x + ((long long)n * s.ci + c) * len;
    parts[k] = lfx::net::gap_partial(plane, len, k, LFX_GAP_PARTS);
    __syncthreads();
    for (int d = LFX_GAP_PARTS / 2; d > 0; d /= 2) {
        if (k < d) parts[k] += parts[k + d];
        __syncthreads();
    }
    if (k == 0) p.y[(long long)n * s.ci + c] = parts[0] / (float)len;
}

__global__ void __launch_bounds__(LFX_NET_BLOCK) lfx_net_concat(lfx::net::Step s, lfx::net::Ptrs p) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (p.gate && !*p.gate) return;
    if (i < (long long)s.ci * s.hi * s.wi) lfx::net::concat_px(s, p, (int)blockIdx.z, i);
}

}  // extern "C"
