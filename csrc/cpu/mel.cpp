#include <ATen/Parallel.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "cpu/fft.h"
#include "cpu/mel.h"

namespace musicrep::cpu {

namespace {

// Frames per work item: a tile's mel columns are buffered and written out row by row, so the
// [B, n_mels, frames] output is stored in contiguous runs rather than one strided column a frame.
constexpr int64_t kTile = 16;

template <typename T>
struct Scratch {
  std::vector<T> re, im, x, spec, tile;
  explicit Scratch(const MelParams& q)
      : re(std::max(q.n_fft, q.bluestein)), im(re.size()), x(q.n_fft), spec(q.n_fft / 2 + 1),
        tile(q.n_mels * kTile) {}
};

// Bluestein's algorithm for sizes that are not powers of two: with c_j = exp(-i pi j^2 / n),
// X_k = c_k sum_j (x_j c_j) conj(c_{k-j}), a convolution done with power-of-two FFTs of size L.
// |c_k| = 1, so |X_k| is the magnitude of the convolution itself.
template <typename T>
void bluestein_power(const T* clip, int64_t f, const MelParams& q, const MelTables<T>& t, Scratch<T>& s) {
  const int64_t n = q.n_fft, L = q.bluestein;
  T* __restrict re = s.re.data();
  T* __restrict im = s.im.data();
  T* __restrict x = s.x.data();
  T* __restrict spec = s.spec.data();
  if (frame_inside(f, q)) {
    const T* src = clip + f * q.hop - q.pad;
    for (int64_t j = 0; j < n; ++j) x[j] = src[j] * t.window[j];
  } else {
    for (int64_t j = 0; j < n; ++j) x[j] = frame_sample(clip, f, j, t.window, q);
  }
  for (int64_t m = 0; m < L; ++m) {
    const int64_t j = t.bitrev[m];
    const T v = j < n ? x[j] : T(0);
    re[m] = j < n ? v * t.chirp_re[j] : T(0);
    im[m] = j < n ? v * t.chirp_im[j] : T(0);
  }
  fft_radix2(re, im, L, t.stage_re, t.stage_im);
  // conj(A K), then back to bit-reversed order: the inverse FFT as a forward one
  for (int64_t k = 0; k < L; ++k) {
    const T ar = re[k], ai = im[k], kr = t.kernel_re[k], ki = t.kernel_im[k];
    re[k] = ar * kr - ai * ki;
    im[k] = -(ar * ki + ai * kr);
  }
  for (int64_t m = 0; m < L; ++m) {
    const int64_t r = t.bitrev[m];
    if (m < r) {
      std::swap(re[m], re[r]);
      std::swap(im[m], im[r]);
    }
  }
  fft_radix2(re, im, L, t.stage_re, t.stage_im);
  for (int64_t k = 0; k <= n / 2; ++k) spec[k] = re[k] * re[k] + im[k] * im[k];
  if (q.power != 2.0)
    for (int64_t k = 0; k <= n / 2; ++k) spec[k] = power_from_squared(spec[k], q.power);
}

// spec[k] = |X_k|^power for k in [0, n_fft / 2] of frame f.
template <typename T>
void frame_power(const T* clip, int64_t f, const MelParams& q, const MelTables<T>& t, Scratch<T>& s) {
  T* __restrict re = s.re.data();
  T* __restrict im = s.im.data();
  T* __restrict spec = s.spec.data();
  if (q.pow2) {
    const int64_t M = q.n_fft / 2;
    const T* w = t.window;
    if (frame_inside(f, q)) {
      const T* x = clip + f * q.hop - q.pad;
      for (int64_t m = 0; m < M; ++m) {
        const int64_t j = 2 * int64_t{t.bitrev[m]};
        re[m] = x[j] * w[j];
        im[m] = x[j + 1] * w[j + 1];
      }
    } else {
      for (int64_t m = 0; m < M; ++m) {
        const int64_t j = 2 * int64_t{t.bitrev[m]};
        re[m] = frame_sample(clip, f, j, w, q);
        im[m] = frame_sample(clip, f, j + 1, w, q);
      }
    }
    fft_radix2(re, im, M, t.stage_re, t.stage_im);
    const T* __restrict ur = t.unpack_re;
    const T* __restrict ui = t.unpack_im;
    // k = 0 and k = M both pair Z[0] with itself
    T xr, xi;
    real_fft_unpack(re[0], im[0], re[0], im[0], ur[0], ui[0], xr, xi);
    spec[0] = xr * xr + xi * xi;
    real_fft_unpack(re[0], im[0], re[0], im[0], ur[M], ui[M], xr, xi);
    spec[M] = xr * xr + xi * xi;
    for (int64_t k = 1; k < M; ++k) {
      T yr, yi;
      real_fft_unpack(re[k], im[k], re[M - k], im[M - k], ur[k], ui[k], yr, yi);
      spec[k] = yr * yr + yi * yi;
    }
    if (q.power != 2.0)
      for (int64_t k = 0; k <= M; ++k) spec[k] = power_from_squared(spec[k], q.power);
  } else if (q.bluestein) {
    bluestein_power(clip, f, q, t, s);
  } else {
    for (int64_t j = 0; j < q.n_fft; ++j) re[j] = frame_sample(clip, f, j, t.window, q);
    for (int64_t k = 0; k <= q.n_fft / 2; ++k) {
      T xr, xi;
      dft_bin(re, q.n_fft, k, t.dft_cos, t.dft_sin, xr, xi);
      spec[k] = spectral_power(xr, xi, q.power);
    }
  }
}

// dst[i] = log_compress(src[i]) with the mode chosen once, so each loop vectorises.
template <typename T>
void compress_row(const T* __restrict src, T* __restrict dst, int64_t n, const MelParams& q) {
  const T floor = static_cast<T>(q.log_floor), scale = static_cast<T>(q.log_scale);
  switch (q.log_mode) {
    case kLogLn:
      for (int64_t i = 0; i < n; ++i) dst[i] = log_floored(src[i], floor);
      break;
    case kLogDb:
      for (int64_t i = 0; i < n; ++i) dst[i] = db_floored(src[i], floor);
      break;
    case kLogLog1p:
      for (int64_t i = 0; i < n; ++i) dst[i] = log1p_scaled(src[i], scale);
      break;
    case kLogLog10p:
      for (int64_t i = 0; i < n; ++i) dst[i] = log10p_scaled(src[i], scale);
      break;
    default:
      for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
  }
}

}  // namespace

template <typename T>
void mel_spectrogram(const T* wave, T* out, int64_t batch, const MelParams& q, const MelTables<T>& t) {
  const int64_t tiles = (q.n_frames + kTile - 1) / kTile;
  at::parallel_for(0, batch * tiles, 1, [&](int64_t begin, int64_t end) {
    Scratch<T> s(q);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tiles, f0 = (task % tiles) * kTile;
      const int64_t nt = std::min(kTile, q.n_frames - f0);
      const T* clip = wave + b * q.length;
      for (int64_t i = 0; i < nt; ++i) {
        frame_power(clip, f0 + i, q, t, s);
        for (int64_t m = 0; m < q.n_mels; ++m) s.tile[m * kTile + i] = mel_dot(s.spec.data(), t, m);
      }
      for (int64_t m = 0; m < q.n_mels; ++m)
        compress_row(s.tile.data() + m * kTile, out + (b * q.n_mels + m) * q.n_frames + f0, nt, q);
    }
  });
}

template void mel_spectrogram<float>(const float*, float*, int64_t, const MelParams&, const MelTables<float>&);
template void mel_spectrogram<double>(const double*, double*, int64_t, const MelParams&,
                                      const MelTables<double>&);

}  // namespace musicrep::cpu
