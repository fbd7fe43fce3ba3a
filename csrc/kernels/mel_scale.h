// Mel scales and triangular mel filters, as librosa defines them (librosa.filters.mel).
#pragma once
#include <math.h>

#include "kernels/common.h"

namespace musicrep {

// Slaney's auditory toolbox scale: linear below 1 kHz, logarithmic above.
constexpr double kSlaneyFSp = 200.0 / 3.0;
constexpr double kSlaneyMinLogHz = 1000.0;
constexpr double kSlaneyMinLogMel = kSlaneyMinLogHz / kSlaneyFSp;  // 15

MR_HD double slaney_logstep() { return log(6.4) / 27.0; }

MR_HD double hz_to_mel(double hz, bool htk) {
  if (htk) return 2595.0 * log10(1.0 + hz / 700.0);
  if (hz >= kSlaneyMinLogHz) return kSlaneyMinLogMel + log(hz / kSlaneyMinLogHz) / slaney_logstep();
  return hz / kSlaneyFSp;
}

MR_HD double mel_to_hz(double mel, bool htk) {
  if (htk) return 700.0 * (pow(10.0, mel / 2595.0) - 1.0);
  if (mel >= kSlaneyMinLogMel) return kSlaneyMinLogHz * exp(slaney_logstep() * (mel - kSlaneyMinLogMel));
  return kSlaneyFSp * mel;
}

// Centre frequency (Hz) of edge k of n_mels + 2 edges spread evenly on the mel scale, spaced as
// np.linspace spaces them (k * step + lo, the last one exactly hi), so the top edge rounds as
// librosa's does: an edge an ulp above Nyquist would give the Nyquist bin a 1e-16 weight that
// an L_p normalisation then blows up to 1.
MR_HD double mel_edge_hz(int k, int n_mels, double f_min, double f_max, bool htk) {
  const double lo = hz_to_mel(f_min, htk), hi = hz_to_mel(f_max, htk);
  const double mel = k == n_mels + 1 ? hi : k * ((hi - lo) / (n_mels + 1)) + lo;
  return mel_to_hz(mel, htk);
}

// Unnormalised weight of filter m at frequency f (Hz): the triangle over edges m, m+1, m+2.
MR_HD double mel_triangle(double f, double left, double centre, double right) {
  const double lower = (f - left) / (centre - left);
  const double upper = (right - f) / (right - centre);
  const double w = lower < upper ? lower : upper;
  return w > 0.0 ? w : 0.0;
}

}  // namespace musicrep
