// Variable-ratio windowed-sinc resampling on CUDA: launchers over raw device pointers.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace musicrep::cuda {

// As musicrep::cpu::resample_shift; every pointer on the device, queued on `stream`. Returns
// the launch's error (cudaSuccess when it was queued).
cudaError_t resample_shift(const float* x, float* out, const double* ratio, const double* start,
                           int64_t batch, int64_t in_len, int64_t out_len, int zeros,
                           cudaStream_t stream);
cudaError_t resample_shift(const double* x, double* out, const double* ratio, const double* start,
                           int64_t batch, int64_t in_len, int64_t out_len, int zeros,
                           cudaStream_t stream);

}  // namespace musicrep::cuda
