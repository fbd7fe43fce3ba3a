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

// sin and cos in the accumulation precision (float trig is the cheaper half of the float path).
MR_HD float mr_sin(float v) { return sinf(v); }
MR_HD float mr_cos(float v) { return cosf(v); }
MR_HD double mr_sin(double v) { return sin(v); }
MR_HD double mr_cos(double v) { return cos(v); }

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
MR_HD acc_t resample_tap(acc_t x, acc_t u, acc_t sin_sinc, acc_t cos_win, acc_t scale_pi,
                         acc_t scale) {
  const acc_t sinc = u == acc_t(0) ? acc_t(1) : sin_sinc / (scale_pi * u);
  return x * scale * sinc * (acc_t(0.5) + acc_t(0.5) * cos_win);
}

// y at input position t of the item x[0 .. len). The phases are taken directly at the tap c
// nearest t (|t - c| <= 1/2, where the sinc divides by a small number) and rotated tap by tap
// outward from there, so four trig calls serve every tap and rotation errors only meet
// |t - k| >= 1/2. acc_t: float for float32 input, double for float64.
template <typename scalar_t, typename acc_t>
MR_HD scalar_t resample_at(const scalar_t* x, int64_t len, double t,
                           const ResampleKernel<acc_t>& kern) {
  // No tap reaches t (also a NaN t): zero, before t is cast to an index (an out-of-range
  // float-to-integer cast is undefined behaviour).
  if (!(t + kern.half > 0.0 && t - kern.half < static_cast<double>(len))) return scalar_t(0);
  int64_t k0 = static_cast<int64_t>(floor(t - kern.half)) + 1;  // first k with t - k < half
  int64_t k1 = static_cast<int64_t>(ceil(t + kern.half)) - 1;   // last k with k - t < half
  if (k0 < 0) k0 = 0;
  if (k1 > len - 1) k1 = len - 1;
  if (k0 > k1) return scalar_t(0);
  const double pi = 3.14159265358979323846;
  const int64_t c = static_cast<int64_t>(floor(t + 0.5));
  const double uc = t - static_cast<double>(c);
  // both phases lie within [-pi/2, pi/2]: accurate in either precision
  const acc_t phase_sinc = static_cast<acc_t>(pi * kern.scale * uc);
  const acc_t phase_win = static_cast<acc_t>(pi * uc / kern.half);
  const acc_t sin_sinc_c = mr_sin(phase_sinc), cos_sinc_c = mr_cos(phase_sinc);
  const acc_t sin_win_c = mr_sin(phase_win), cos_win_c = mr_cos(phase_win);
  const acc_t scale = static_cast<acc_t>(kern.scale), scale_pi = static_cast<acc_t>(pi * kern.scale);
  // Right of the centre (k = c, c + 1, ...) u falls by 1 per tap and each phase rotates by
  // minus its step; left of it (k = c - 1, c - 2, ...) u grows and they rotate by plus it.
  // The two sides walk together: two independent rotation chains keep the pipeline full.
  const acc_t ss = kern.sin_sinc, cs = kern.cos_sinc, sw = kern.sin_win, cw = kern.cos_win;
  acc_t rs1 = sin_sinc_c, rc1 = cos_sinc_c, rs2 = sin_win_c, rc2 = cos_win_c;
  acc_t ls1 = sin_sinc_c * cs + cos_sinc_c * ss, lc1 = cos_sinc_c * cs - sin_sinc_c * ss;
  acc_t ls2 = sin_win_c * cw + cos_win_c * sw, lc2 = cos_win_c * cw - sin_win_c * sw;
  acc_t acc_right = 0, acc_left = 0;
  const int64_t steps = k1 - c + 1 > c - k0 ? k1 - c + 1 : c - k0;
  for (int64_t j = 0; j < steps; ++j) {
    const int64_t kr = c + j, kl = c - 1 - j;
    if (kr >= k0 && kr <= k1) {
      const acc_t u = static_cast<acc_t>(t - static_cast<double>(kr));
      acc_right += resample_tap<acc_t>(static_cast<acc_t>(x[kr]), u, rs1, rc2, scale_pi, scale);
    }
    if (kl >= k0 && kl <= k1) {
      const acc_t u = static_cast<acc_t>(t - static_cast<double>(kl));
      acc_left += resample_tap<acc_t>(static_cast<acc_t>(x[kl]), u, ls1, lc2, scale_pi, scale);
    }
    const acc_t nrs1 = rs1 * cs - rc1 * ss, nrc1 = rc1 * cs + rs1 * ss;
    const acc_t nrs2 = rs2 * cw - rc2 * sw, nrc2 = rc2 * cw + rs2 * sw;
    const acc_t nls1 = ls1 * cs + lc1 * ss, nlc1 = lc1 * cs - ls1 * ss;
    const acc_t nls2 = ls2 * cw + lc2 * sw, nlc2 = lc2 * cw - ls2 * sw;
    rs1 = nrs1; rc1 = nrc1; rs2 = nrs2; rc2 = nrc2;
    ls1 = nls1; lc1 = nlc1; ls2 = nls2; lc2 = nlc2;
  }
  return static_cast<scalar_t>(acc_right + acc_left);
}

}  // namespace musicrep
