// The fused NT-Xent core on the CPU: per-row log-sum-exp of scaled similarities, forward and
// backward, never holding the similarity matrix. The glue checks shapes and dtypes first.
#pragma once
#include <cstdint>

namespace musicrep::cpu {

// u: [Mc, D] row-major candidates; rows r < M are anchors. lse[r] = log sum_{c != r, c < Mc}
// exp(inv_tau * u_r . u_c) for r < M. T is float or double.
template <class T>
void nt_xent_lse_forward(const T* u, int64_t Mc, int64_t M, int64_t D, T inv_tau, T* lse);

// grad[Mc, D] = d(sum_{r<M} g[r] * lse[r]) / du, recomputing the similarities tile by tile.
template <class T>
void nt_xent_lse_backward(const T* u, const T* lse, const T* g, int64_t Mc, int64_t M, int64_t D,
                          T inv_tau, T* grad);

}  // namespace musicrep::cpu
