// Windowed-sinc resampling at an arbitrary, per-item ratio: the value of one output sample.
//
// Output sample n of an item reads the input at position t = start + n * ratio (in input
// samples). With ratio r > 1 the signal plays faster (pitch and tempo up by r, like a tape run
// fast); r < 1 slows it down. The interpolation kernel is a sinc low-passed at
// scale = min(1, 1 / r) of the input's Nyquist frequency (so speeding up does not alias),
// tapered by a Hann window reaching `zeros` zero crossings of that sinc on each side:
//
//   y[n] = sum_k x[k] * scale * sinc(scale * (t - k)) * hann((t - k) / W),   W = zeros / scale
//   sinc(z) = sin(pi z) / (pi z),  hann(v) = (1 + cos(pi v)) / 2 for |v| < 1, else 0,
//
// over 0 <= k < len (the input is zero outside). musicrep.ops.reference.resample_shift is the
// same formula in plain PyTorch.
#pragma once
#include <math.h>
#include <stdint.h>

#include "kernels/common.h"

namespace musicrep {

// The per-item constants of the kernel for `ratio`: cutoff, half-width (the taps reach
// |t - k| < half) and the rotation by one tap of the sinc's phase pi*scale*u and of the
// window's phase pi*u/half.
template <typename acc_t>
struct ResampleKernel {
  double scale, half;
  acc_t sin_sinc, cos_sinc, sin_win, cos_win;
};

template <typename acc_t>
MR_HD ResampleKernel<acc_t> resample_kernel(double ratio, int zeros) {
  const double pi = 3.14159265358979323846;
  ResampleKernel<acc_t> k;
  k.scale = ratio > 1.0 ? 1.0 / ratio : 1.0;
  k.half = zeros / k.scale;
  k.sin_sinc = static_cast<acc_t>(sin(pi * k.scale));
  k.cos_sinc = static_cast<acc_t>(cos(pi * k.scale));
  k.sin_win = static_cast<acc_t>(sin(pi / k.half));
  k.cos_win = static_cast<acc_t>(cos(pi / k.half));
  return k;
}

// One tap's contribution: x * scale * sinc * hann, the sines given for this u.
template <typename acc_t>
MR_HD acc_t resample_tap(acc_t x, acc_t u, acc_t sin_sinc, acc_t cos_win, acc_t scale_pi, acc_t scale) {
  const acc_t sinc = u == acc_t(0) ? acc_t(1) : sin_sinc / (scale_pi * u);
  return x * scale * sinc * (acc_t(0.5) + acc_t(0.5) * cos_win);
}

// y at input position t of the item x[0 .. len). The phases are taken directly at the tap c
// nearest t (|t - c| <= 1/2, where the sinc divides by a small number) and rotated tap by tap
// outward from there, so four trig calls serve every tap and rotation errors only meet
// |t - k| >= 1/2. acc_t: float for float32 input, double for float64.
template <typename scalar_t, typename acc_t>
MR_HD scalar_t resample_at(const scalar_t* x, int64_t len, double t, const ResampleKernel<acc_t>& kern) {
  int64_t k0 = static_cast<int64_t>(floor(t - kern.half)) + 1;  // first k with t - k < half
  int64_t k1 = static_cast<int64_t>(ceil(t + kern.half)) - 1;   // last k with k - t < half
  if (k0 < 0) k0 = 0;
  if (k1 > len - 1) k1 = len - 1;
  if (k0 > k1) return scalar_t(0);
  const double pi = 3.14159265358979323846;
  const int64_t c = static_cast<int64_t>(floor(t + 0.5));
  const double uc = t - static_cast<double>(c);
  const acc_t sin_sinc_c = static_cast<acc_t>(sin(pi * kern.scale * uc));
  const acc_t cos_sinc_c = static_cast<acc_t>(cos(pi * kern.scale * uc));
  const acc_t sin_win_c = static_cast<acc_t>(sin(pi * uc / kern.half));
  const acc_t cos_win_c = static_cast<acc_t>(cos(pi * uc / kern.half));
  const acc_t scale = static_cast<acc_t>(kern.scale), scale_pi = static_cast<acc_t>(pi * kern.scale);
  acc_t acc = 0;
  // k = c, c + 1, ...: u falls by 1 per tap, each phase rotates by minus its step
  acc_t s1 = sin_sinc_c, c1 = cos_sinc_c, s2 = sin_win_c, c2 = cos_win_c;
  for (int64_t k = c; k <= k1; ++k) {
    if (k >= k0)
      acc += resample_tap<acc_t>(static_cast<acc_t>(x[k]), static_cast<acc_t>(t - static_cast<double>(k)),
                                 s1, c2, scale_pi, scale);
    const acc_t ns1 = s1 * kern.cos_sinc - c1 * kern.sin_sinc, nc1 = c1 * kern.cos_sinc + s1 * kern.sin_sinc;
    const acc_t ns2 = s2 * kern.cos_win - c2 * kern.sin_win, nc2 = c2 * kern.cos_win + s2 * kern.sin_win;
    s1 = ns1; c1 = nc1; s2 = ns2; c2 = nc2;
  }
  // k = c - 1, c - 2, ...: u grows by 1 per tap, each phase rotates by plus its step
  s1 = sin_sinc_c; c1 = cos_sinc_c; s2 = sin_win_c; c2 = cos_win_c;
  for (int64_t k = c - 1; k >= k0; --k) {
    const acc_t ns1 = s1 * kern.cos_sinc + c1 * kern.sin_sinc, nc1 = c1 * kern.cos_sinc - s1 * kern.sin_sinc;
    const acc_t ns2 = s2 * kern.cos_win + c2 * kern.sin_win, nc2 = c2 * kern.cos_win - s2 * kern.sin_win;
    s1 = ns1; c1 = nc1; s2 = ns2; c2 = nc2;
    if (k <= k1)
      acc += resample_tap<acc_t>(static_cast<acc_t>(x[k]), static_cast<acc_t>(t - static_cast<double>(k)),
                                 s1, c2, scale_pi, scale);
  }
  return static_cast<scalar_t>(acc);
}

}  // namespace musicrep
