// The fused log-mel front end on the CPU, and the host-side tables it (and the CUDA kernels) use.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/mel.h"

namespace musicrep::cpu {

// The mel filter bank to build (as cpu::mel_filterbank takes it).
struct MelFilterSpec {
  double sample_rate;
  double f_min;
  double f_max;
  bool htk;
  double norm_p;  // 0 none, -1 Slaney, p > 0 unit L_p
};

// Host copies of every table of one call, packed into one real and one integer array so a
// device copy is two transfers. view() points MelTables into any copy of the two arrays.
template <typename T>
struct MelTableData {
  std::vector<T> reals;
  std::vector<int32_t> ints;
  // offsets into reals, one per MelTables field
  int64_t window = 0, stage_re = 0, stage_im = 0, unpack_re = 0, unpack_im = 0, dft_cos = 0,
          dft_sin = 0, chirp_re = 0, chirp_im = 0, kernel_re = 0, kernel_im = 0, weights = 0;
  // offsets into ints: bitrev, mel_start, mel_len, mel_offset
  int64_t bitrev = 0, mel_start = 0, mel_len = 0, mel_offset = 0;

  MelTables<T> view(const T* r, const int32_t* i) const {
    return {r + window, r + stage_re, r + stage_im, r + unpack_re, r + unpack_im, i + bitrev,
            r + dft_cos, r + dft_sin, r + chirp_re, r + chirp_im, r + kernel_re, r + kernel_im,
            i + mel_start, i + mel_len, i + mel_offset, r + weights};
  }
};

// The tables for `q` (n_fft, pow2, bluestein, n_mels) with a Hann window of win_length; computed
// in float64 and rounded to T once. Each filter keeps only its nonzero stretch of bins.
template <typename T>
MelTableData<T> build_mel_tables(const MelParams& q, int64_t win_length, const MelFilterSpec& spec);

// out[b, m, f] for wave [batch, q.length]: one pass per frame (pad, window, FFT, power, sparse
// mel, log), parallel over batch x tiles of frames.
// Bluestein's FFT size for n_fft on the CPU: 0 where the radix-2 path or the plain DFT serves.
int64_t bluestein_size(int64_t n_fft);

template <typename T>
void mel_spectrogram(const T* wave, T* out, int64_t batch, const MelParams& q, const MelTables<T>& t);

}  // namespace musicrep::cpu
