// Mel filter banks on the CPU (float64); the glue checks the arguments first.
#pragma once
#include <cstdint>

namespace musicrep::cpu {

// Triangular mel filters [n_mels, n_freqs] over the rfft bins of n_fft at sample_rate.
// norm_p: 0 for none, -1 for Slaney's area normalisation, p > 0 for unit L_p norm per filter.
void mel_filterbank(double* out, int64_t n_mels, int64_t n_fft, double sample_rate, double f_min,
                    double f_max, bool htk, double norm_p);

}  // namespace musicrep::cpu
