// The per-tile math of the fused NT-Xent loss, shared by the CPU loops (cpu/nt_xent.cpp) and the
// CUDA kernels (cuda/nt_xent.cu).
//
// The fused op computes, for the rows u_r of a candidate matrix u [Mc, D] whose first M rows are
// the anchors, lse_r = log sum_{c != r} exp(u_r . u_c / tau) for r < M, without ever holding the
// M x Mc similarity matrix: similarities are produced a tile at a time (mma_tile), folded into a
// running (max, sum of exponentials) per row (tile_row_stats + lse_merge), and recomputed in the
// backward pass, where each pair contributes grad_weight(...) * u to both of its rows.
#pragma once
#include <math.h>

#include "kernels/common.h"

#if defined(__CUDACC__)
#define MR_UNROLL _Pragma("unroll")
#elif defined(__clang__)
#define MR_UNROLL _Pragma("unroll")
#else
#define MR_UNROLL _Pragma("GCC unroll 16")
#endif

namespace musicrep {

MR_HD float bits_as_float(int bits) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(bits);
#else
  return __builtin_bit_cast(float, bits);
#endif
}

// exp(x) for float, branch-free so the CPU loops vectorise (Cephes' expf range reduction and
// polynomial, ~1 ulp). It is only ever called with x <= 0 plus rounding (logits minus their
// running max or their row's log-sum-exp); x below -87.3 (or -inf) gives exactly 0.
MR_HD float exp_fast(float x) {
  const float lo = -87.33654f, hi = 88.0f;
  float xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  // n = round(xc / ln 2): adding and removing 1.5 * 2^23 rounds to an integer (floorf would
  // keep GCC from vectorising the loop)
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float y = p * bits_as_float((static_cast<int>(n) + 127) << 23);
  return x < lo ? 0.0f : y;
}

MR_HD float exp_of(float x) { return exp_fast(x); }
MR_HD double exp_of(double x) { return exp(x); }

// acc[r][c] += a(r, k) * b(k, c) for k < K: a register-blocked tile of a matrix product, the one
// building block of both passes. On the CPU Acc is a SIMD vector (b yields vectors of columns, a
// scalar broadcast); on the GPU Acc is a float and a, b read shared memory.
template <int MR, int NC, class Acc, class LoadA, class LoadB>
MR_HD void mma_tile(Acc (&acc)[MR][NC], int K, const LoadA& a, const LoadB& b) {
  for (int k = 0; k < K; ++k) {
    Acc bk[NC];
    MR_UNROLL
    for (int c = 0; c < NC; ++c) bk[c] = b(k, c);
    MR_UNROLL
    for (int r = 0; r < MR; ++r) {
      const auto ar = a(r, k);
      MR_UNROLL
      for (int c = 0; c < NC; ++c) acc[r][c] += ar * bk[c];
    }
  }
}

// (max, sum exp(x - max)) of N logits held in registers; masked logits are -inf. Returns
// max = -inf, sum = 0 when every logit is masked.
template <int N, class T>
MR_HD void tile_row_stats(const T (&x)[N], T& max_out, T& sum_out) {
  T m = -INFINITY;
  MR_UNROLL
  for (int j = 0; j < N; ++j) m = x[j] > m ? x[j] : m;
  const T shift = m == -INFINITY ? T(0) : m;
  T s = 0;
  MR_UNROLL
  for (int j = 0; j < N; ++j) s += exp_of(x[j] - shift);
  max_out = m;
  sum_out = s;
}

// Fold the statistics (m2, s2) of more logits into a row's running (m, s): the online
// log-sum-exp step. Safe when either side is empty (max -inf).
template <class T>
MR_HD void lse_merge(T& m, T& s, T m2, T s2) {
  if (m2 == -INFINITY) return;
  if (m2 > m) {
    s = s * exp_of(m - m2) + s2;
    m = m2;
  } else {
    s += s2 * exp_of(m2 - m);
  }
}

template <class T>
MR_HD T lse_finish(T m, T s) { return m + log(s); }

// d(sum_r w_r lse_r) / d(logit s_rc) for the pair (r, c), both directions of the symmetric logit:
// row r's softmax weight of c plus row c's softmax weight of r. Rows that are not anchors carry
// w = 0 and lse = +inf, so their term vanishes.
template <class T>
MR_HD T grad_weight(T s, T w_r, T lse_r, T w_c, T lse_c) {
  return w_r * exp_of(s - lse_r) + w_c * exp_of(s - lse_c);
}

}  // namespace musicrep
