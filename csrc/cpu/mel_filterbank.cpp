#include <cmath>
#include <vector>

#include "cpu/filterbank.h"
#include "kernels/mel_scale.h"

namespace musicrep::cpu {

void mel_filterbank(double* out, int64_t n_mels, int64_t n_fft, double sample_rate, double f_min,
                    double f_max, bool htk, double norm_p) {
  const int64_t n_freqs = n_fft / 2 + 1;
  std::vector<double> edges(n_mels + 2);
  for (int64_t k = 0; k < n_mels + 2; ++k)
    edges[k] = mel_edge_hz(static_cast<int>(k), static_cast<int>(n_mels), f_min, f_max, htk);
  // the rfft bin spacing as numpy's rfftfreq computes it (librosa's fft_frequencies), so bins
  // that land on an edge round the same way; for odd n_fft the top bin lies below Nyquist
  const double bin_hz = 1.0 / (static_cast<double>(n_fft) * (1.0 / sample_rate));
  for (int64_t m = 0; m < n_mels; ++m) {
    double* row = out + m * n_freqs;
    for (int64_t f = 0; f < n_freqs; ++f) {
      const double hz = static_cast<double>(f) * bin_hz;
      row[f] = mel_triangle(hz, edges[m], edges[m + 1], edges[m + 2]);
    }
    double scale = 1.0;
    if (norm_p < 0) {
      scale = 2.0 / (edges[m + 2] - edges[m]);
    } else if (norm_p > 0) {
      double acc = 0.0;
      for (int64_t f = 0; f < n_freqs; ++f) acc += std::pow(std::fabs(row[f]), norm_p);
      const double length = std::pow(acc, 1.0 / norm_p);
      // librosa.util.normalize leaves (near-)empty filters as they are
      if (length > 1e-300) scale = 1.0 / length;
    }
    for (int64_t f = 0; f < n_freqs; ++f) row[f] *= scale;
  }
}

}  // namespace musicrep::cpu
