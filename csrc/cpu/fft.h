// The CPU's complex FFT: radix-2, in place, split real/imaginary arrays (header-only: the mel
// loop runs it per frame, the table builder once in float64 for Bluestein's kernel).
#pragma once
#include <cstdint>

#include "kernels/mel.h"

namespace musicrep::cpu {

// In-place iterative radix-2 FFT of M points held as split real/imaginary arrays, input in
// bit-reversed order. Split arrays keep each stage's inner loop a unit-stride SIMD loop.
template <typename T>
void fft_radix2(T* __restrict re, T* __restrict im, int64_t M, const T* __restrict wr,
                const T* __restrict wi) {
  // h = 1 and h = 2 (twiddles 1 and -i) as one radix-4 pass: the generic loop is too short there
  if (M >= 4) {
    for (int64_t s = 0; s < M; s += 4) {
      const T a0r = re[s] + re[s + 1], a0i = im[s] + im[s + 1];
      const T a1r = re[s] - re[s + 1], a1i = im[s] - im[s + 1];
      const T b0r = re[s + 2] + re[s + 3], b0i = im[s + 2] + im[s + 3];
      const T b1r = re[s + 2] - re[s + 3], b1i = im[s + 2] - im[s + 3];
      re[s] = a0r + b0r, im[s] = a0i + b0i;
      re[s + 2] = a0r - b0r, im[s + 2] = a0i - b0i;
      // (a1) +- (-i) b1
      re[s + 1] = a1r + b1i, im[s + 1] = a1i - b1r;
      re[s + 3] = a1r - b1i, im[s + 3] = a1i + b1r;
    }
  } else if (M == 2) {
    butterfly(re[0], im[0], re[1], im[1], wr[1], wi[1]);
  }
  for (int64_t h = 4; h < M; h <<= 1) {
    const T* __restrict twr = wr + h;
    const T* __restrict twi = wi + h;
    for (int64_t s = 0; s < M; s += 2 * h) {
      T* __restrict ar = re + s;
      T* __restrict ai = im + s;
      T* __restrict br = re + s + h;
      T* __restrict bi = im + s + h;
#pragma GCC ivdep
      for (int64_t j = 0; j < h; ++j) butterfly(ar[j], ai[j], br[j], bi[j], twr[j], twi[j]);
    }
  }
}

}  // namespace musicrep::cpu
