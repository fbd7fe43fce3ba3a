// Fused NT-Xent on the CPU. A tile's similarities (BR rows x BC candidate columns) come from a
// register-blocked micro-kernel (mma_tile over GCC/Clang SIMD vectors) into a transposed tile
// St[BC][BR] that fits in L1, so the log-sum-exp statistics and gradient weights run vectorised
// across the tile's rows.
//  - Forward: at::parallel_for over the pairs (row tile I, panel J >= I). The logits are
//    symmetric, so one tile updates the online log-sum-exp of its rows and of the anchors among
//    its columns: half the dot products of a row-by-row sweep. Each thread keeps its own
//    (max, sum) per anchor; they are merged at the end (O(threads * M)).
//  - Backward: at::parallel_for over row tiles; each owns its gradient rows and recomputes its
//    tiles against every candidate, weighting each pair by both of its directions
//    (grad_weight), so no two threads write the same row and nothing is reduced across threads.
// Extra memory: a zero-padded copy of u and, per thread, one packed row tile, one similarity
// tile and (backward) one gradient tile: O(Mc * D + threads * (M + BR * D)).
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
static_assert(BR == BC, "the forward pairs row tile I with panel J = I: tiles and panels align");
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

// Logits that do not count: a row with itself, and the padding rows and columns beyond Mc.
template <class T>
void mask_tile(const Layout<T>& L, int64_t i0, int64_t j0, T value, T* St) {
  for (int64_t j = std::max<int64_t>(0, L.Mc - j0); j < BC; ++j)
    for (int64_t r = 0; r < BR; ++r) St[j * BR + r] = value;
  for (int64_t j = 0; j < BC; ++j)
    for (int64_t r = std::max<int64_t>(0, L.Mc - i0); r < BR; ++r) St[j * BR + r] = value;
  for (int64_t r = 0; r < BR; ++r) {
    const int64_t j = i0 + r - j0;
    if (j >= 0 && j < BC) St[j * BR + r] = value;
  }
}

// Running (max, sum) per anchor row, one set per thread (merged at the end): the forward visits
// each unordered pair of tiles once and updates the stats of both its row and column anchors.
template <class T>
struct RowStats {
  T* m;
  T* s;
};

// Fold the tile's logits into the stats of its BR rows, vectorised along the rows.
template <class T>
void update_rows(const T* St, RowStats<T> rows, T* tmax, T* tsum, T* shift) {
  std::fill(tmax, tmax + BR, -std::numeric_limits<T>::infinity());
  std::fill(tsum, tsum + BR, T(0));
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
  for (int64_t r = 0; r < BR; ++r) lse_merge(rows.m[r], rows.s[r], tmax[r], tsum[r]);
}

// Fold the tile's logits into the stats of its first n_cols columns (anchors), each a reduction
// along one contiguous row of St, kept in SIMD vectors.
template <class T>
void update_cols(const T* St, int64_t n_cols, RowStats<T> cols, T* ex) {
  using V = typename Layout<T>::V;
  constexpr int64_t lanes = Layout<T>::lanes;
  for (int64_t j = 0; j < n_cols; ++j) {
    const T* x = &St[j * BR];
    V vm = load<V>(x);
    for (int64_t r = lanes; r < BR; r += lanes) {
      const V v = load<V>(x + r);
      vm = v > vm ? v : vm;
    }
    T tmax = vm[0];
    for (int64_t l = 1; l < lanes; ++l) tmax = vm[l] > tmax ? vm[l] : tmax;
    if (tmax == -std::numeric_limits<T>::infinity()) continue;
    for (int64_t r = 0; r < BR; ++r) ex[r] = exp_of(x[r] - tmax);
    V vs = load<V>(ex);
    for (int64_t r = lanes; r < BR; r += lanes) vs += load<V>(ex + r);
    T tsum = 0;
    for (int64_t l = 0; l < lanes; ++l) tsum += vs[l];
    lse_merge(cols.m[j], cols.s[j], tmax, tsum);
  }
}

// Tile pairs (I, J), I an anchor row tile, J >= I a candidate panel, numbered row tile by row
// tile: first[I] is the number of the pair (I, I).
std::vector<int64_t> first_pairs(int64_t row_tiles, int64_t panels) {
  std::vector<int64_t> first(row_tiles + 1, 0);
  for (int64_t I = 0; I < row_tiles; ++I) first[I + 1] = first[I] + (panels - I);
  return first;
}

template <class T>
void forward_pairs(const T* up, const Layout<T>& L, T inv_tau, const std::vector<int64_t>& first,
                   int64_t p0, int64_t p1, RowStats<T> stats) {
  std::vector<T> IT(L.D * BR), St(BC * BR), tmax(BR), tsum(BR), shift(BR), ex(BR);
  int64_t I = std::upper_bound(first.begin(), first.end(), p0) - first.begin() - 1;
  int64_t packed = -1;
  for (int64_t p = p0; p < p1; ++p) {
    while (p >= first[I + 1]) ++I;
    const int64_t i0 = I * BR, j0 = (I + p - first[I]) * BC;
    if (packed != I) {
      pack_rows_transposed(up, L, i0, IT.data());
      packed = I;
    }
    similarity_tile(IT.data(), up, L, j0, inv_tau, St.data());
    if (j0 + BC > L.Mc || i0 == j0 || i0 + BR > L.Mc)
      mask_tile(L, i0, j0, -std::numeric_limits<T>::infinity(), St.data());
    update_rows(St.data(), RowStats<T>{stats.m + i0, stats.s + i0}, tmax.data(), tsum.data(), shift.data());
    if (j0 != i0 && j0 < L.M)  // the same logits, seen from the anchors among the columns
      update_cols(St.data(), std::min<int64_t>(BC, L.M - j0), RowStats<T>{stats.m + j0, stats.s + j0},
                  ex.data());
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
  const std::vector<int64_t> first = first_pairs(L.anchor_tiles(), L.Mcp / BC);
  const int64_t rows = L.anchor_tiles() * BR, n_threads = at::get_num_threads();
  std::vector<T> m(n_threads * rows, -std::numeric_limits<T>::infinity()), s(n_threads * rows, T(0));
  at::parallel_for(0, first.back(), 1, [&](int64_t p0, int64_t p1) {
    const int64_t t = at::get_thread_num();
    forward_pairs(up.data(), L, inv_tau, first, p0, p1, RowStats<T>{&m[t * rows], &s[t * rows]});
  });
  at::parallel_for(0, M, 1024, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t t = 1; t < n_threads; ++t) lse_merge(m[r], s[r], m[t * rows + r], s[t * rows + r]);
      lse[r] = lse_finish(m[r], s[r]);
    }
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
