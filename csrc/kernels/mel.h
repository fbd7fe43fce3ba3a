// The log-mel front end's per-element math, shared by the CPU loop (cpu/mel.cpp) and the CUDA
// kernels (cuda/mel.cu): framing with padding by index arithmetic, the window, the radix-2
// butterfly, the real-FFT unpacking step, a plain DFT bin, spectral power, the sparse mel dot
// product and the log compression. Every CPU test of mel_spectrogram runs these functions.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/common.h"

namespace musicrep {

enum MelPadMode : int { kPadReflect = 0, kPadConstant = 1, kPadReplicate = 2 };
enum MelLogMode : int { kLogNone = 0, kLogLn = 1, kLogDb = 2, kLogLog1p = 3, kLogLog10p = 4 };

// Sizes and settings of one call; `pad` is the left padding (n_fft / 2 when centred, else 0).
struct MelParams {
  int64_t length;    // samples per clip (T)
  int64_t n_fft;
  int64_t hop;
  int64_t n_mels;
  int64_t n_frames;
  int64_t pad;
  int pad_mode;      // MelPadMode
  int log_mode;      // MelLogMode
  double power;      // exponent on |X|: 2 power, 1 magnitude
  double log_floor;  // lower clamp before 'log' and 'db'
  double log_scale;  // x is scaled by this before 'log1p' and 'log10p'
  bool pow2;         // n_fft is an even power of two: the real FFT runs on n_fft / 2 complex points
  int64_t bluestein;  // CPU, other sizes above kDftMax: the power-of-two FFT size of Bluestein's
                      // convolution (0: plain DFT, which the CUDA kernel always uses for them)
};

// Sizes up to this (not powers of two) take the plain DFT on the CPU too.
constexpr int64_t kDftMax = 32;

// The precomputed tables of one call (host or device pointers; see cpu/mel.h for the layout).
// The FFT path uses window, bitrev, stage twiddles and unpack twiddles; the DFT path dft_cos/sin.
template <typename T>
struct MelTables {
  const T* window;        // [n_fft] Hann window of win_length centred in n_fft, zero elsewhere
  const T* stage_re;      // [M] twiddles: stage with half-size h uses entries [h, 2h) (M = n_fft / 2,
                          // or Bluestein's L)
  const T* stage_im;
  const T* unpack_re;     // [M + 1] exp(-2 pi i k / n_fft)
  const T* unpack_im;
  const int32_t* bitrev;  // [M] bit-reversed index (M as for stage_re)
  const T* dft_cos;       // [n_fft] cos(2 pi j / n_fft)   (non-power-of-two sizes only)
  const T* dft_sin;       // [n_fft] -sin(2 pi j / n_fft)
  const T* chirp_re;      // [n_fft] exp(-i pi j^2 / n_fft)   (Bluestein only)
  const T* chirp_im;
  const T* kernel_re;     // [L] FFT of the conjugate chirp, divided by L   (Bluestein only)
  const T* kernel_im;
  const int32_t* mel_start;   // [n_mels] first nonzero rfft bin of each filter
  const int32_t* mel_len;     // [n_mels] number of bins from mel_start on
  const int32_t* mel_offset;  // [n_mels] where the filter's weights start in mel_weights
  const T* mel_weights;       // the nonzero stretch of every filter, back to back
};

// torch.hann_window(win_length) (periodic) zero-padded to n_fft with (n_fft - win) / 2 zeros on
// the left, as torch.stft centres a shorter window.
MR_HD double hann_window_value(int64_t j, int64_t n_fft, int64_t win_length) {
  const int64_t k = j - (n_fft - win_length) / 2;
  if (k < 0 || k >= win_length) return 0.0;
  if (win_length == 1) return 1.0;  // torch.hann_window(1) is [1]
  return 0.5 - 0.5 * cos(2.0 * M_PI * static_cast<double>(k) / static_cast<double>(win_length));
}

// Index into the clip of position p of the padded signal, or -1 where the padding is zero.
// Reflect needs pad < length (checked in Python), so one reflection always lands inside.
MR_HD int64_t padded_source(int64_t p, const MelParams& q) {
  int64_t i = p - q.pad;
  if (i >= 0 && i < q.length) return i;
  if (q.pad_mode == kPadConstant) return -1;
  if (q.pad_mode == kPadReplicate) return i < 0 ? 0 : q.length - 1;
  return i < 0 ? -i : 2 * (q.length - 1) - i;
}

// Sample j of frame f, windowed.
template <typename T>
MR_HD T frame_sample(const T* clip, int64_t f, int64_t j, const T* window, const MelParams& q) {
  const int64_t i = padded_source(f * q.hop + j, q);
  return i < 0 ? T(0) : clip[i] * window[j];
}

// Whether frame f needs no padding, so its samples can be read straight from the clip.
MR_HD bool frame_inside(int64_t f, const MelParams& q) {
  const int64_t first = f * q.hop - q.pad;
  return first >= 0 && first + q.n_fft <= q.length;
}

// Decimation-in-time butterfly: (a, b) <- (a + w b, a - w b).
template <typename T>
MR_HD void butterfly(T& ar, T& ai, T& br, T& bi, T wr, T wi) {
  const T tr = br * wr - bi * wi;
  const T ti = br * wi + bi * wr;
  br = ar - tr;
  bi = ai - ti;
  ar += tr;
  ai += ti;
}

// Bin k (0..M) of the real FFT of length 2M from Z, the M-point FFT of z[m] = x[2m] + i x[2m+1]:
// X[k] = E[k] + w^k O[k], E = (Z[k] + conj Z[M-k]) / 2, O = (Z[k] - conj Z[M-k]) / 2i.
template <typename T>
MR_HD void real_fft_unpack(T zr, T zi, T cr, T ci, T wr, T wi, T& xr, T& xi) {
  // (zr, zi) = Z[k mod M], (cr, ci) = Z[(M - k) mod M]
  const T er = T(0.5) * (zr + cr), ei = T(0.5) * (zi - ci);
  const T or_ = T(0.5) * (zi + ci), oi = T(0.5) * (cr - zr);
  xr = er + wr * or_ - wi * oi;
  xi = ei + wr * oi + wi * or_;
}

// Bin k of the DFT of the n real samples x, with cos/-sin tables of length n: the fallback for
// sizes that are not a power of two (O(n) per bin).
template <typename T>
MR_HD void dft_bin(const T* x, int64_t n, int64_t k, const T* cos_t, const T* sin_t, T& xr, T& xi) {
  T re = 0, im = 0;
  int64_t idx = 0;
  for (int64_t j = 0; j < n; ++j) {
    re += x[j] * cos_t[idx];
    im += x[j] * sin_t[idx];
    idx += k;
    if (idx >= n) idx -= n;
  }
  xr = re;
  xi = im;
}

// |X|^power from |X|^2.
template <typename T>
MR_HD T power_from_squared(T p2, double power) {
  if (power == 2.0) return p2;
  if (power == 1.0) return sqrt(p2);
  return pow(p2, static_cast<T>(0.5 * power));
}

// |X|^power from the real and imaginary parts.
template <typename T>
MR_HD T spectral_power(T re, T im, double power) {
  return power_from_squared(re * re + im * im, power);
}

// Filter m applied to the power spectrum: only the filter's nonzero stretch of bins.
template <typename T>
MR_HD T mel_dot(const T* spec, const MelTables<T>& t, int64_t m) {
  const T* w = t.mel_weights + t.mel_offset[m];
  const T* s = spec + t.mel_start[m];
  const int32_t len = t.mel_len[m];
  T acc = 0;
  for (int32_t i = 0; i < len; ++i) acc += w[i] * s[i];
  return acc;
}

// Natural log of a positive float in straight-line arithmetic (no table, no call), so the CPU
// compiler vectorises the log pass: x = 2^e m with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s),
// s = (m - 1) / (m + 1), |s| < 0.172, odd series to s^9 (truncation < 1e-9 relative). Inputs
// below FLT_MIN (subnormals) are read as FLT_MIN.
MR_HD float mr_log(float x) {
  x = x > 1.17549435e-38f ? x : 1.17549435e-38f;
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  // shift the mantissa into [sqrt(1/2), sqrt(2)) by moving 0x3f3504f3 (sqrt(1/2)) to exponent 0
  const uint32_t shifted = bits - 0x3f3504f3u;
  const int32_t e = static_cast<int32_t>(shifted) >> 23;
  const uint32_t mbits = (shifted & 0x007fffffu) + 0x3f3504f3u;
  float m;
  memcpy(&m, &mbits, sizeof m);
  const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
  const float series = 1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9))));
  return static_cast<float>(e) * 0.693147180559945309f + 2.0f * s * series;
}
MR_HD double mr_log(double x) { return log(x); }

// The log modes, one function each so a CPU loop over one mode vectorises.
template <typename T>
MR_HD T log_floored(T x, T floor) { return mr_log(x > floor ? x : floor); }

template <typename T>
MR_HD T db_floored(T x, T floor) { return T(4.34294481903251827651) * log_floored(x, floor); }

// ln(1 + scale x) for x >= 0, accurate for tiny arguments: ln(u) y / (u - 1) with u = 1 + y
// cancels the rounding of u (Goldberg's log1p).
template <typename T>
MR_HD T log1p_scaled(T x, T scale) {
  const T y = scale * x, u = T(1) + y, d = u - T(1);
  const T ratio = y / (d == T(0) ? T(1) : d);  // no division by zero, so the select vectorises
  return d == T(0) ? y : mr_log(u) * ratio;
}

template <typename T>
MR_HD T log10p_scaled(T x, T scale) { return T(0.43429448190325182765) * log1p_scaled(x, scale); }

// The log compression of one mel energy, as q.log_mode says.
template <typename T>
MR_HD T log_compress(T x, const MelParams& q) {
  const T floor = static_cast<T>(q.log_floor), scale = static_cast<T>(q.log_scale);
  switch (q.log_mode) {
    case kLogLn:
      return log_floored(x, floor);
    case kLogDb:
      return db_floored(x, floor);
    case kLogLog1p:
      return log1p_scaled(x, scale);
    case kLogLog10p:
      return log10p_scaled(x, scale);
    default:
      return x;
  }
}

}  // namespace musicrep
