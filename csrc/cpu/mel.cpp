#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "cpu/mel.h"

namespace musicrep::cpu {

namespace {

// Frames per work item: a tile's mel columns are buffered and written out row by row, so the
// [B, n_mels, frames] output is stored in contiguous runs rather than one strided column a frame.
constexpr int64_t kTile = 16;

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

template <typename T>
struct Scratch {
  std::vector<T> re, im, spec, tile;
  Scratch(const MelParams& q)
      : re(q.n_fft), im(q.n_fft), spec(q.n_fft / 2 + 1), tile(q.n_mels * kTile) {}
};

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
