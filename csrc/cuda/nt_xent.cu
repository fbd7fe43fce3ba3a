// Fused NT-Xent on the GPU: one block of 256 threads per tile of 64 rows sweeps the candidates in
// tiles of 64 columns. Operands are staged through shared memory in chunks of KC features and
// converted to the accumulation type there (fp16/bf16 -> fp32); each thread holds a 4 x 4 register
// tile (mma_tile from kernels/nt_xent.h, as on the CPU). The forward folds each tile into the
// rows' running (max, sum) with the shared online log-sum-exp step, reduced across the 16 threads
// of a row by warp shuffles; the backward recomputes the tile, turns it into gradient weights
// (grad_weight) in shared memory and accumulates weights x candidate rows into the block's own
// gradient rows (no atomics: every pair's two contributions are gathered by the row's owner).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda/nt_xent_cuda.h"
#include "kernels/nt_xent.h"

namespace musicrep::cuda {
namespace {

constexpr int BM = 64;       // rows per block
constexpr int BN = 64;       // candidate columns per tile
constexpr int KC = 16;       // features per shared-memory chunk
constexpr int THREADS = 256; // 16 x 16 threads, 4 x 4 outputs each
constexpr int TR = 4;

template <class Acc>
__device__ __forceinline__ Acc to_acc(float x) { return static_cast<Acc>(x); }
template <class Acc>
__device__ __forceinline__ Acc to_acc(double x) { return static_cast<Acc>(x); }
template <class Acc>
__device__ __forceinline__ Acc to_acc(__half x) { return static_cast<Acc>(__half2float(x)); }
template <class Acc>
__device__ __forceinline__ Acc to_acc(__nv_bfloat16 x) { return static_cast<Acc>(__bfloat162float(x)); }

// sT[k][r] = u[row0 + r][k0 + k] (zero outside u) for a BM-row chunk of KC features.
template <class T, class Acc>
__device__ __forceinline__ void stage_rows_transposed(const T* u, int64_t Mc, int64_t D, int64_t row0,
                                                      int64_t k0, Acc (*sT)[BM]) {
  for (int e = threadIdx.x; e < BM * KC; e += THREADS) {
    const int r = e / KC, k = e % KC;
    const int64_t row = row0 + r, col = k0 + k;
    sT[k][r] = (row < Mc && col < D) ? to_acc<Acc>(u[row * D + col]) : Acc(0);
  }
}

// acc[r][c] = inv_tau * u_i . u_j for this thread's 4 x 4 outputs of the (i0, j0) tile.
template <class T, class Acc>
__device__ __forceinline__ void similarity_tile(const T* u, int64_t Mc, int64_t D, int64_t i0, int64_t j0,
                                                Acc inv_tau, Acc (*As)[BM], Acc (*Bs)[BN],
                                                Acc (&acc)[TR][TR]) {
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  #pragma unroll
  for (int r = 0; r < TR; ++r)
    #pragma unroll
    for (int c = 0; c < TR; ++c) acc[r][c] = Acc(0);
  for (int64_t k0 = 0; k0 < D; k0 += KC) {
    stage_rows_transposed<T, Acc>(u, Mc, D, i0, k0, As);
    stage_rows_transposed<T, Acc>(u, Mc, D, j0, k0, Bs);
    __syncthreads();
    mma_tile<TR, TR>(
        acc, KC, [&](int r, int k) { return As[k][ty * TR + r]; },
        [&](int k, int c) { return Bs[k][tx * TR + c]; });
    __syncthreads();
  }
  #pragma unroll
  for (int r = 0; r < TR; ++r)
    #pragma unroll
    for (int c = 0; c < TR; ++c) acc[r][c] *= inv_tau;
}

template <class T, class Acc>
__global__ void __launch_bounds__(THREADS)
lse_forward_kernel(const T* __restrict__ u, int64_t Mc, int64_t M, int64_t D, Acc inv_tau,
                   Acc* __restrict__ lse) {
  __shared__ Acc As[KC][BM];
  __shared__ Acc Bs[KC][BN];
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * BM;
  Acc m[TR], s[TR];
  #pragma unroll
  for (int r = 0; r < TR; ++r) {
    m[r] = -INFINITY;
    s[r] = Acc(0);
  }
  for (int64_t j0 = 0; j0 < Mc; j0 += BN) {
    Acc acc[TR][TR];
    similarity_tile<T, Acc>(u, Mc, D, i0, j0, inv_tau, As, Bs, acc);
    #pragma unroll
    for (int r = 0; r < TR; ++r) {
      const int64_t i = i0 + ty * TR + r;
      #pragma unroll
      for (int c = 0; c < TR; ++c) {
        const int64_t j = j0 + tx * TR + c;
        if (j >= Mc || j == i) acc[r][c] = -INFINITY;
      }
      Acc tm, ts;
      tile_row_stats(acc[r], tm, ts);
      // the 16 lanes holding this row's 64 columns: tx is the low 4 bits of the lane
#pragma unroll
      for (int off = 8; off > 0; off /= 2) {
        const Acc om = __shfl_xor_sync(0xffffffffu, tm, off);
        const Acc os = __shfl_xor_sync(0xffffffffu, ts, off);
        lse_merge(tm, ts, om, os);
      }
      lse_merge(m[r], s[r], tm, ts);
    }
  }
  if (tx == 0) {
    #pragma unroll
    for (int r = 0; r < TR; ++r) {
      const int64_t i = i0 + ty * TR + r;
      if (i < M) lse[i] = lse_finish(m[r], s[r]);
    }
  }
}

template <class T, class Acc>
__global__ void __launch_bounds__(THREADS)
lse_backward_kernel(const T* __restrict__ u, const Acc* __restrict__ lse, const Acc* __restrict__ g,
                    int64_t Mc, int64_t M, int64_t D, Acc inv_tau, Acc* __restrict__ grad) {
  __shared__ Acc As[KC][BM];
  __shared__ Acc Bs[KC][BN];
  __shared__ Acc W[BM][BN];  // the tile's gradient weights, rows x columns
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * BM;
  const int64_t n_cols = i0 < M ? Mc : M;  // rows that are not anchors pair with anchors only
  Acc w_row[TR], lse_row[TR];
  #pragma unroll
  for (int r = 0; r < TR; ++r) {
    const int64_t i = i0 + ty * TR + r;
    w_row[r] = i < M ? g[i] : Acc(0);
    lse_row[r] = i < M ? lse[i] : Acc(INFINITY);
  }
  for (int64_t j0 = 0; j0 < n_cols; j0 += BN) {
    Acc acc[TR][TR];
    similarity_tile<T, Acc>(u, Mc, D, i0, j0, inv_tau, As, Bs, acc);
    #pragma unroll
    for (int c = 0; c < TR; ++c) {
      const int64_t j = j0 + tx * TR + c;
      const Acc w_col = j < M ? g[j] : Acc(0), lse_col = j < M ? lse[j] : Acc(INFINITY);
      #pragma unroll
      for (int r = 0; r < TR; ++r) {
        const int64_t i = i0 + ty * TR + r;
        const Acc a = grad_weight(acc[r][c], w_row[r], lse_row[r], w_col, lse_col);
        W[ty * TR + r][tx * TR + c] = (j >= Mc || j == i) ? Acc(0) : inv_tau * a;
      }
    }
    __syncthreads();
    // grad[i0 + rows, d0 + cols] += W . u[j0 : j0 + BN, d0 + cols], 64 features at a time
    for (int64_t d0 = 0; d0 < D; d0 += BN) {
      Acc out[TR][TR];
      #pragma unroll
      for (int r = 0; r < TR; ++r)
        #pragma unroll
        for (int c = 0; c < TR; ++c) {
          const int64_t i = i0 + ty * TR + r, d = d0 + tx * TR + c;
          out[r][c] = (j0 > 0 && i < Mc && d < D) ? grad[i * D + d] : Acc(0);
        }
      for (int64_t k0 = 0; k0 < BN; k0 += KC) {
        for (int e = threadIdx.x; e < KC * BN; e += THREADS) {  // Bs[k][d] = u[j0 + k0 + k][d0 + d]
          const int k = e / BN, d = e % BN;
          const int64_t row = j0 + k0 + k, col = d0 + d;
          Bs[k][d] = (row < Mc && col < D) ? to_acc<Acc>(u[row * D + col]) : Acc(0);
        }
        __syncthreads();
        mma_tile<TR, TR>(
            out, KC, [&](int r, int k) { return W[ty * TR + r][k0 + k]; },
            [&](int k, int c) { return Bs[k][tx * TR + c]; });
        __syncthreads();
      }
      #pragma unroll
      for (int r = 0; r < TR; ++r)
        #pragma unroll
        for (int c = 0; c < TR; ++c) {
          const int64_t i = i0 + ty * TR + r, d = d0 + tx * TR + c;
          if (i < Mc && d < D) grad[i * D + d] = out[r][c];
        }
    }
    __syncthreads();
  }
}

template <class T, class Acc>
void launch_forward(const void* u, int64_t Mc, int64_t M, int64_t D, double inv_tau, void* lse,
                    cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((M + BM - 1) / BM));
  lse_forward_kernel<T, Acc><<<grid, THREADS, 0, stream>>>(static_cast<const T*>(u), Mc, M, D,
                                                           static_cast<Acc>(inv_tau), static_cast<Acc*>(lse));
}

template <class T, class Acc>
void launch_backward(const void* u, const void* lse, const void* g, int64_t Mc, int64_t M, int64_t D,
                     double inv_tau, void* grad, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((Mc + BM - 1) / BM));
  lse_backward_kernel<T, Acc><<<grid, THREADS, 0, stream>>>(
      static_cast<const T*>(u), static_cast<const Acc*>(lse), static_cast<const Acc*>(g), Mc, M, D,
      static_cast<Acc>(inv_tau), static_cast<Acc*>(grad));
}

}  // namespace

void nt_xent_lse_forward(const void* u, Dtype dtype, int64_t Mc, int64_t M, int64_t D, double inv_tau,
                         void* lse, cudaStream_t stream) {
  switch (dtype) {
    case Dtype::f32: return launch_forward<float, float>(u, Mc, M, D, inv_tau, lse, stream);
    case Dtype::f64: return launch_forward<double, double>(u, Mc, M, D, inv_tau, lse, stream);
    case Dtype::f16: return launch_forward<__half, float>(u, Mc, M, D, inv_tau, lse, stream);
    case Dtype::bf16: return launch_forward<__nv_bfloat16, float>(u, Mc, M, D, inv_tau, lse, stream);
  }
}

void nt_xent_lse_backward(const void* u, Dtype dtype, const void* lse, const void* g, int64_t Mc,
                          int64_t M, int64_t D, double inv_tau, void* grad, cudaStream_t stream) {
  switch (dtype) {
    case Dtype::f32: return launch_backward<float, float>(u, lse, g, Mc, M, D, inv_tau, grad, stream);
    case Dtype::f64: return launch_backward<double, double>(u, lse, g, Mc, M, D, inv_tau, grad, stream);
    case Dtype::f16: return launch_backward<__half, float>(u, lse, g, Mc, M, D, inv_tau, grad, stream);
    case Dtype::bf16:
      return launch_backward<__nv_bfloat16, float>(u, lse, g, Mc, M, D, inv_tau, grad, stream);
  }
}

}  // namespace musicrep::cuda
