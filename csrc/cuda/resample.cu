#include "cuda/resample_cuda.h"
#include "kernels/resample.h"

namespace musicrep::cuda {

namespace {

// One thread per output sample (grid-stride); neighbouring threads read neighbouring inputs.
template <typename scalar_t, typename acc_t>
__global__ void resample_shift_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out,
                                      const double* __restrict__ ratio, const double* __restrict__ start,
                                      int64_t total, int64_t in_len, int64_t out_len, int zeros) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / out_len, n = i % out_len;
    const double t = start[b] + static_cast<double>(n) * ratio[b];
    // the item's constants, recomputed per thread (four trig calls) rather than kept in a buffer
    const ResampleKernel<acc_t> kern = resample_kernel<acc_t>(ratio[b], zeros);
    out[i] = resample_at<scalar_t, acc_t>(x + b * in_len, in_len, t, kern);
  }
}

template <typename scalar_t, typename acc_t>
cudaError_t launch(const scalar_t* x, scalar_t* out, const double* ratio, const double* start,
                   int64_t batch, int64_t in_len, int64_t out_len, int zeros, cudaStream_t stream) {
  const int64_t total = batch * out_len;
  if (total == 0) return cudaSuccess;
  const int threads = 256;
  int64_t blocks = (total + threads - 1) / threads;
  if (blocks > 65535 * 16) blocks = 65535 * 16;
  resample_shift_kernel<scalar_t, acc_t><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
      x, out, ratio, start, total, in_len, out_len, zeros);
  return cudaGetLastError();
}

}  // namespace

cudaError_t resample_shift(const float* x, float* out, const double* ratio, const double* start,
                           int64_t batch, int64_t in_len, int64_t out_len, int zeros,
                           cudaStream_t stream) {
  return launch<float, float>(x, out, ratio, start, batch, in_len, out_len, zeros, stream);
}

cudaError_t resample_shift(const double* x, double* out, const double* ratio, const double* start,
                           int64_t batch, int64_t in_len, int64_t out_len, int zeros,
                           cudaStream_t stream) {
  return launch<double, double>(x, out, ratio, start, batch, in_len, out_len, zeros, stream);
}

}  // namespace musicrep::cuda
