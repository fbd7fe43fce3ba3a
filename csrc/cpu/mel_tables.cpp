#include <cmath>

#include "cpu/fft.h"
#include "cpu/filterbank.h"
#include "cpu/mel.h"

namespace musicrep::cpu {

namespace {

int32_t reverse_bits(int64_t v, int bits) {
  int64_t r = 0;
  for (int b = 0; b < bits; ++b) r |= ((v >> b) & 1) << (bits - 1 - b);
  return static_cast<int32_t>(r);
}

// Twiddles exp(-2 pi i j / 2h) at [h + j] for every stage of an M-point radix-2 FFT.
void stage_twiddles(int64_t M, double* re, double* im) {
  for (int64_t h = 1; h < M; h <<= 1)
    for (int64_t j = 0; j < h; ++j) {
      const double a = -M_PI * static_cast<double>(j) / static_cast<double>(h);
      re[h + j] = std::cos(a);
      im[h + j] = std::sin(a);
    }
}

int bit_count(int64_t M) {
  int bits = 0;
  while ((int64_t{1} << bits) < M) ++bits;
  return bits;
}

// exp(-i pi j^2 / n) with j^2 reduced mod 2n first, so the angle stays small and exact.
void chirp(int64_t j, int64_t n, double& re, double& im) {
  const double a = -M_PI * static_cast<double>((j * j) % (2 * n)) / static_cast<double>(n);
  re = std::cos(a);
  im = std::sin(a);
}

}  // namespace

int64_t bluestein_size(int64_t n_fft) {
  if (n_fft <= kDftMax || (n_fft & (n_fft - 1)) == 0) return 0;
  int64_t L = 1;
  while (L < 2 * n_fft - 1) L <<= 1;
  return L;
}

template <typename T>
MelTableData<T> build_mel_tables(const MelParams& q, int64_t win_length, const MelFilterSpec& spec) {
  MelTableData<T> d;
  const int64_t n = q.n_fft, n_bins = n / 2 + 1;
  // the radix-2 size: n / 2 for the real FFT, L for Bluestein's convolution
  const int64_t m_fft = q.pow2 ? n / 2 : q.bluestein;
  auto& r = d.reals;

  d.window = 0;
  for (int64_t j = 0; j < n; ++j) r.push_back(static_cast<T>(hann_window_value(j, n, win_length)));

  std::vector<double> st_re(m_fft), st_im(m_fft);
  stage_twiddles(m_fft, st_re.data(), st_im.data());
  d.stage_re = r.size();
  d.stage_im = d.stage_re + m_fft;
  for (double v : st_re) r.push_back(static_cast<T>(v));
  for (double v : st_im) r.push_back(static_cast<T>(v));
  const int64_t n_unpack = q.pow2 ? m_fft + 1 : 0;
  d.unpack_re = r.size();
  d.unpack_im = d.unpack_re + n_unpack;
  r.resize(r.size() + 2 * n_unpack);
  for (int64_t k = 0; k < n_unpack; ++k) {
    const double a = -2.0 * M_PI * static_cast<double>(k) / static_cast<double>(n);
    r[d.unpack_re + k] = static_cast<T>(std::cos(a));
    r[d.unpack_im + k] = static_cast<T>(std::sin(a));
  }
  const int64_t n_dft = q.pow2 || q.bluestein ? 0 : n;
  d.dft_cos = r.size();
  d.dft_sin = d.dft_cos + n_dft;
  r.resize(r.size() + 2 * n_dft);
  for (int64_t j = 0; j < n_dft; ++j) {
    const double a = 2.0 * M_PI * static_cast<double>(j) / static_cast<double>(n);
    r[d.dft_cos + j] = static_cast<T>(std::cos(a));
    r[d.dft_sin + j] = static_cast<T>(-std::sin(a));
  }

  auto& i = d.ints;
  d.bitrev = 0;
  const int bits = bit_count(m_fft);
  for (int64_t m = 0; m < m_fft; ++m) i.push_back(reverse_bits(m, bits));

  // Bluestein: the chirp, and the FFT of its conjugate wrapped around L (scaled by 1 / L)
  const int64_t n_chirp = q.bluestein ? n : 0, L = q.bluestein;
  d.chirp_re = r.size();
  d.chirp_im = d.chirp_re + n_chirp;
  r.resize(r.size() + 2 * n_chirp);
  std::vector<double> kr(L, 0.0), ki(L, 0.0);
  for (int64_t j = 0; j < n_chirp; ++j) {
    double cr, ci;
    chirp(j, n, cr, ci);
    r[d.chirp_re + j] = static_cast<T>(cr);
    r[d.chirp_im + j] = static_cast<T>(ci);
    for (int64_t at : {j, (L - j) % L}) {  // conj(c_j) at j and at -j
      const int64_t slot = reverse_bits(at, bits);
      kr[slot] = cr / static_cast<double>(L);
      ki[slot] = -ci / static_cast<double>(L);
    }
  }
  if (L) fft_radix2(kr.data(), ki.data(), L, st_re.data(), st_im.data());
  d.kernel_re = r.size();
  d.kernel_im = d.kernel_re + L;
  for (double v : kr) r.push_back(static_cast<T>(v));
  for (double v : ki) r.push_back(static_cast<T>(v));

  std::vector<double> bank(q.n_mels * n_bins);
  mel_filterbank(bank.data(), q.n_mels, n, spec.sample_rate, spec.f_min, spec.f_max, spec.htk,
                 spec.norm_p);
  d.mel_start = i.size();
  d.mel_len = d.mel_start + q.n_mels;
  d.mel_offset = d.mel_len + q.n_mels;
  i.resize(i.size() + 3 * q.n_mels, 0);
  d.weights = r.size();
  for (int64_t m = 0; m < q.n_mels; ++m) {
    const double* row = bank.data() + m * n_bins;
    int64_t lo = 0, hi = n_bins;
    while (lo < n_bins && row[lo] == 0.0) ++lo;
    while (hi > lo && row[hi - 1] == 0.0) --hi;
    if (lo == n_bins) lo = hi = 0;  // an empty filter: its energy is exactly zero
    i[d.mel_start + m] = static_cast<int32_t>(lo);
    i[d.mel_len + m] = static_cast<int32_t>(hi - lo);
    i[d.mel_offset + m] = static_cast<int32_t>(r.size() - d.weights);
    for (int64_t f = lo; f < hi; ++f) r.push_back(static_cast<T>(row[f]));
  }
  if (r.empty()) r.push_back(T(0));  // keep data() valid
  if (i.empty()) i.push_back(0);
  return d;
}

template MelTableData<float> build_mel_tables<float>(const MelParams&, int64_t, const MelFilterSpec&);
template MelTableData<double> build_mel_tables<double>(const MelParams&, int64_t, const MelFilterSpec&);

}  // namespace musicrep::cpu
