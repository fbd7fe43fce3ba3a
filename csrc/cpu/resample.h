// Variable-ratio windowed-sinc resampling on the CPU; the glue checks the arguments first.
#pragma once
#include <cstdint>

namespace musicrep::cpu {

// out[b, n] = the input item x[b, 0 .. in_len) read at start[b] + n * ratio[b]
// (kernels/resample.h), for n < out_len. x: [batch, in_len], out: [batch, out_len], contiguous.
void resample_shift(const float* x, float* out, const double* ratio, const double* start,
                    int64_t batch, int64_t in_len, int64_t out_len, int zeros);
void resample_shift(const double* x, double* out, const double* ratio, const double* start,
                    int64_t batch, int64_t in_len, int64_t out_len, int zeros);

}  // namespace musicrep::cpu
