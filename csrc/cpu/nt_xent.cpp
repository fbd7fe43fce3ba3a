// Fused NT-Xent on the CPU. Work is split over row tiles of BR rows (at::parallel_for); each tile
// sweeps the candidates in panels of BC columns. A panel's similarities are made by a
// register-blocked micro-kernel (mma_tile over GCC/Clang SIMD vectors) into a transposed tile
// St[BC][BR] that fits in L1, so the per-row log-sum-exp and gradient weights run vectorised
// across the tile's rows. Extra memory: a zero-padded copy of u and, per thread, one packed row
// tile, one similarity tile and (backward) one gradient tile: O(Mc * D) in all.
#include "cpu/nt_xent.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/nt_xent.h"

namespace musicrep::cpu {
namespace {

template <class T>
struct Simd;
template <>
struct Simd<float> {
  typedef float V __attribute__((vector_size(64)));
};
template <>
struct Simd<double> {
  typedef double V __attribute__((vector_size(64)));
};

constexpr int64_t BR = 64;  // rows per tile (the unit of parallel work)
constexpr int64_t BC = 64;  // candidate columns per panel
constexpr int MR = 8;       // micro-kernel: MR broadcast rows ...
constexpr int NC = 2;       // ... times NC vectors

template <class T>
struct Layout {
  using V = typename Simd<T>::V;
  static constexpr int64_t lanes = sizeof(V) / sizeof(T);
  static constexpr int64_t NW = NC * lanes;  // micro-kernel width in elements
  int64_t Mc, M, D, Dp, Mcp;
  Layout(int64_t Mc_, int64_t M_, int64_t D_)
      : Mc(Mc_), M(M_), D(D_), Dp((D_ + NW - 1) / NW * NW), Mcp((Mc_ + BC - 1) / BC * BC) {}
  int64_t tiles() const { return Mcp / BR; }
  int64_t anchor_tiles() const { return (M + BR - 1) / BR; }
};

template <class V, class T>
inline V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class V, class T>
inline void store(T* p, const V& v) {
  std::memcpy(p, &v, sizeof v);
}

// u [Mc, D] -> up [Mcp, Dp], zero-padded, so every tile reads whole vectors in bounds.
template <class T>
std::vector<T> padded_copy(const T* u, const Layout<T>& L) {
  std::vector<T> up(static_cast<size_t>(L.Mcp * L.Dp), T(0));
  at::parallel_for(0, L.Mc, 256, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) std::memcpy(&up[r * L.Dp], u + r * L.D, L.D * sizeof(T));
  });
  return up;
}

// Row tile i0 of up, transposed: IT[k][r] = up[i0 + r][k], so its rows lie along SIMD lanes.
template <class T>
void pack_rows_transposed(const T* up, const Layout<T>& L, int64_t i0, T* IT) {
  for (int64_t r = 0; r < BR; ++r) {
    const T* src = up + (i0 + r) * L.Dp;
    for (int64_t k = 0; k < L.D; ++k) IT[k * BR + r] = src[k];
  }
}

// St[j][r] = inv_tau * up[j0 + j] . up[i0 + r] for the BC x BR tile (the row tile given packed).
template <class T>
void similarity_tile(const T* IT, const T* up, const Layout<T>& L, int64_t j0, T inv_tau, T* St) {
  using V = typename Layout<T>::V;
  constexpr int64_t NW = Layout<T>::NW, lanes = Layout<T>::lanes;
  const int K = static_cast<int>(L.D);
  for (int64_t jb = 0; jb < BC; jb += MR) {
    const T* cols = up + (j0 + jb) * L.Dp;
    for (int64_t rb = 0; rb < BR; rb += NW) {
      V acc[MR][NC] = {};
      mma_tile<MR, NC>(
          acc, K, [&](int j, int k) { return cols[j * L.Dp + k]; },
          [&](int k, int c) { return load<V>(IT + k * BR + rb + c * lanes); });
      for (int j = 0; j < MR; ++j)
        for (int c = 0; c < NC; ++c) store(St + (jb + j) * BR + rb + c * lanes, acc[j][c] * inv_tau);
    }
  }
}

// Logits that do not count: a row with itself, and the padding columns beyond Mc.
template <class T>
void mask_tile(const Layout<T>& L, int64_t i0, int64_t j0, T value, T* St) {
  for (int64_t j = std::max<int64_t>(0, L.Mc - j0); j < BC; ++j)
    for (int64_t r = 0; r < BR; ++r) St[j * BR + r] = value;
  for (int64_t r = 0; r < BR; ++r) {
    const int64_t j = i0 + r - j0;
    if (j >= 0 && j < BC) St[j * BR + r] = value;
  }
}

template <class T>
void forward_tiles(const T* up, const Layout<T>& L, T inv_tau, T* lse, int64_t t0, int64_t t1) {
  std::vector<T> IT(L.D * BR), St(BC * BR), tmax(BR), tsum(BR), shift(BR), m(BR), s(BR);
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t i0 = t * BR;
    pack_rows_transposed(up, L, i0, IT.data());
    std::fill(m.begin(), m.end(), -std::numeric_limits<T>::infinity());
    std::fill(s.begin(), s.end(), T(0));
    for (int64_t j0 = 0; j0 < L.Mc; j0 += BC) {
      similarity_tile(IT.data(), up, L, j0, inv_tau, St.data());
      if (j0 + BC > L.Mc || (i0 < j0 + BC && j0 < i0 + BR))
        mask_tile(L, i0, j0, -std::numeric_limits<T>::infinity(), St.data());
      // the tile's (max, sum of exponentials) for all BR rows at once, vectorised along the rows
      std::fill(tmax.begin(), tmax.end(), -std::numeric_limits<T>::infinity());
      std::fill(tsum.begin(), tsum.end(), T(0));
      for (int64_t j = 0; j < BC; ++j) {
        const T* x = &St[j * BR];
        for (int64_t r = 0; r < BR; ++r) tmax[r] = x[r] > tmax[r] ? x[r] : tmax[r];
      }
      for (int64_t r = 0; r < BR; ++r)  // a fully masked row: shift 0, every term exp(-inf) = 0
        shift[r] = tmax[r] == -std::numeric_limits<T>::infinity() ? T(0) : tmax[r];
      for (int64_t j = 0; j < BC; ++j) {
        const T* x = &St[j * BR];
        for (int64_t r = 0; r < BR; ++r) tsum[r] += exp_of(x[r] - shift[r]);
      }
      for (int64_t r = 0; r < BR; ++r) lse_merge(m[r], s[r], tmax[r], tsum[r]);
    }
    for (int64_t r = 0; r < BR && i0 + r < L.M; ++r) lse[i0 + r] = lse_finish(m[r], s[r]);
  }
}

// One row tile's gradient: G[r] = sum_c grad_weight(s_rc, ...) * u_c over the candidate columns
// that can pair with these rows (all of them for anchor rows, only the anchors otherwise).
template <class T>
void backward_tiles(const T* up, const Layout<T>& L, const T* w, const T* lsep, T inv_tau, T* grad,
                    int64_t t0, int64_t t1) {
  using V = typename Layout<T>::V;
  constexpr int64_t NW = Layout<T>::NW, lanes = Layout<T>::lanes;
  std::vector<T> IT(L.D * BR), St(BC * BR), G(BR * L.Dp);
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t i0 = t * BR;
    pack_rows_transposed(up, L, i0, IT.data());
    std::fill(G.begin(), G.end(), T(0));
    const int64_t n_cols = i0 < L.M ? L.Mc : L.M;
    for (int64_t j0 = 0; j0 < n_cols; j0 += BC) {
      similarity_tile(IT.data(), up, L, j0, inv_tau, St.data());
      for (int64_t j = 0; j < BC; ++j) {  // St becomes the weight tile A^T in place
        T* x = &St[j * BR];
        const T wj = w[j0 + j], lj = lsep[j0 + j];
        for (int64_t r = 0; r < BR; ++r) x[r] = grad_weight(x[r], w[i0 + r], lsep[i0 + r], wj, lj);
      }
      if (j0 + BC > L.Mc || (i0 < j0 + BC && j0 < i0 + BR)) mask_tile(L, i0, j0, T(0), St.data());
      // G[BR, Dp] += A[BR, BC] . up[j0 : j0 + BC, Dp]
      const T* rows = up + j0 * L.Dp;
      for (int64_t cb = 0; cb < L.Dp; cb += NW) {  // a BC x NW block of rows stays in L1 over rb
        for (int64_t rb = 0; rb < BR; rb += MR) {
          V acc[MR][NC];
          for (int r = 0; r < MR; ++r)
            for (int c = 0; c < NC; ++c) acc[r][c] = load<V>(&G[(rb + r) * L.Dp + cb + c * lanes]);
          mma_tile<MR, NC>(
              acc, static_cast<int>(BC), [&](int r, int k) { return St[k * BR + rb + r]; },
              [&](int k, int c) { return load<V>(rows + k * L.Dp + cb + c * lanes); });
          for (int r = 0; r < MR; ++r)
            for (int c = 0; c < NC; ++c) store(&G[(rb + r) * L.Dp + cb + c * lanes], acc[r][c]);
        }
      }
    }
    for (int64_t r = 0; r < BR && i0 + r < L.Mc; ++r)
      for (int64_t k = 0; k < L.D; ++k) grad[(i0 + r) * L.D + k] = inv_tau * G[r * L.Dp + k];
  }
}

}  // namespace

template <class T>
void nt_xent_lse_forward(const T* u, int64_t Mc, int64_t M, int64_t D, T inv_tau, T* lse) {
  const Layout<T> L(Mc, M, D);
  const std::vector<T> up = padded_copy(u, L);
  at::parallel_for(0, L.anchor_tiles(), 1, [&](int64_t t0, int64_t t1) {
    forward_tiles(up.data(), L, inv_tau, lse, t0, t1);
  });
}

template <class T>
void nt_xent_lse_backward(const T* u, const T* lse, const T* g, int64_t Mc, int64_t M, int64_t D,
                          T inv_tau, T* grad) {
  const Layout<T> L(Mc, M, D);
  const std::vector<T> up = padded_copy(u, L);
  // per-row weight and log-sum-exp over all padded rows: non-anchors get w = 0, lse = +inf
  std::vector<T> w(L.Mcp, T(0)), lsep(L.Mcp, std::numeric_limits<T>::infinity());
  std::copy(g, g + M, w.begin());
  std::copy(lse, lse + M, lsep.begin());
  at::parallel_for(0, L.tiles(), 1, [&](int64_t t0, int64_t t1) {
    backward_tiles(up.data(), L, w.data(), lsep.data(), inv_tau, grad, t0, t1);
  });
}

template void nt_xent_lse_forward<float>(const float*, int64_t, int64_t, int64_t, float, float*);
template void nt_xent_lse_forward<double>(const double*, int64_t, int64_t, int64_t, double, double*);
template void nt_xent_lse_backward<float>(const float*, const float*, const float*, int64_t, int64_t,
                                          int64_t, float, float*);
template void nt_xent_lse_backward<double>(const double*, const double*, const double*, int64_t,
                                           int64_t, int64_t, double, double*);

}  // namespace musicrep::cpu
