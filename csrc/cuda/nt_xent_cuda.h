// Launchers of the fused NT-Xent CUDA kernels: raw device pointers and a stream, no torch.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace musicrep::cuda {

enum class Dtype { f32, f64, f16, bf16 };

// u [Mc, D] of dtype (rows < M are anchors) -> lse [M], float64 for f64 input, float32 otherwise.
void nt_xent_lse_forward(const void* u, Dtype dtype, int64_t Mc, int64_t M, int64_t D, double inv_tau,
                         void* lse, cudaStream_t stream);

// grad [Mc, D] (float64 for f64 input, float32 otherwise) of sum_r g[r] * lse[r]; lse and g as
// returned by / shaped like the forward's lse.
void nt_xent_lse_backward(const void* u, Dtype dtype, const void* lse, const void* g, int64_t Mc,
                          int64_t M, int64_t D, double inv_tau, void* grad, cudaStream_t stream);

}  // namespace musicrep::cuda
