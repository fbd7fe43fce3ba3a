#include "cpu/resample.h"

#include <ATen/Parallel.h>

#include <vector>

#include "kernels/resample.h"

namespace musicrep::cpu {

namespace {

template <typename scalar_t, typename acc_t>
void run(const scalar_t* x, scalar_t* out, const double* ratio, const double* start, int64_t batch,
         int64_t in_len, int64_t out_len, int zeros) {
  std::vector<ResampleKernel<acc_t>> kernels(batch);
  for (int64_t b = 0; b < batch; ++b) kernels[b] = resample_kernel<acc_t>(ratio[b], zeros);
  // One flat range over every output sample, so a batch of one item still uses every thread.
  const int64_t grain = 2048;
  at::parallel_for(0, batch * out_len, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / out_len, n = i % out_len;
      const double t = start[b] + static_cast<double>(n) * ratio[b];
      out[i] = resample_at<scalar_t, acc_t>(x + b * in_len, in_len, t, kernels[b]);
    }
  });
}

}  // namespace

void resample_shift(const float* x, float* out, const double* ratio, const double* start,
                    int64_t batch, int64_t in_len, int64_t out_len, int zeros) {
  run<float, float>(x, out, ratio, start, batch, in_len, out_len, zeros);
}

void resample_shift(const double* x, double* out, const double* ratio, const double* start,
                    int64_t batch, int64_t in_len, int64_t out_len, int zeros) {
  run<double, double>(x, out, ratio, start, batch, in_len, out_len, zeros);
}

}  // namespace musicrep::cpu
