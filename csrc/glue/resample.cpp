#include "cpu/resample.h"
#include "glue/checks.h"
#include "glue/cuda_stream.h"
#include <torch/library.h>
#ifdef MUSICREP_WITH_CUDA
#include "cuda/resample_cuda.h"
#endif

namespace musicrep {

constexpr double kMaxRatio = 16.0;  // musicrep.ops.resample.MAX_RATIO
constexpr int64_t kMaxZeros = 64;   // musicrep.ops.resample.MAX_ZEROS

namespace {

// The operator musicrep::resample_shift: x [batch, in_len] float32/float64, contiguous; ratio and
// start [batch] float64 on x's device. CUDA work runs on x's device and its current stream. The
// Python wrapper (musicrep.ops.resample_shift) validates first; these checks are backstops.
void check_inputs(const at::Tensor& x, const at::Tensor& ratio, const at::Tensor& start, int64_t out_len,
                  int64_t zeros) {
  check_device(x, "resample_shift", "x");
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous(), "resample_shift: x must be a contiguous [batch, time] tensor");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "resample_shift: x must be float32 or float64");
  const int64_t batch = x.size(0), in_len = x.size(1);
  for (const at::Tensor* p : {&ratio, &start}) {
    TORCH_CHECK(p->dim() == 1 && p->size(0) == batch && p->scalar_type() == at::kDouble &&
                    p->is_contiguous() && p->device() == x.device(),
                "resample_shift: ratio and start must be contiguous float64 [batch] on x's device");
  }
  TORCH_CHECK(out_len >= 0 && 0 < zeros && zeros <= kMaxZeros,
              "resample_shift: need out_len >= 0 and 0 < zeros <= ", kMaxZeros);
  // the kernel's taps and its cutoff follow from the ratio: bounded as in musicrep.ops.resample_shift
  TORCH_CHECK(batch == 0 || ((ratio >= 1 / kMaxRatio) & (ratio <= kMaxRatio)).all().item<bool>(),
              "resample_shift: ratio must lie in [1/", kMaxRatio, ", ", kMaxRatio, "]");
  TORCH_CHECK(batch == 0 || start.isfinite().all().item<bool>(), "resample_shift: start must be finite");
}

}  // namespace

#ifdef MUSICREP_WITH_CUDA
static at::Tensor resample_shift_cuda(const at::Tensor& x, const at::Tensor& ratio, const at::Tensor& start,
                                      int64_t out_len, int64_t zeros) {
  check_inputs(x, ratio, start, out_len, zeros);
  const int64_t batch = x.size(0), in_len = x.size(1);
  auto out = at::empty({batch, out_len}, x.options());
  const int z = static_cast<int>(zeros);
  {
    const c10::cuda::CUDAGuard guard(x.device());
    const cudaStream_t s = current_stream(x).stream();
    cudaError_t err;
    if (x.scalar_type() == at::kFloat)
      err = cuda::resample_shift(x.data_ptr<float>(), out.data_ptr<float>(), ratio.data_ptr<double>(),
                                 start.data_ptr<double>(), batch, in_len, out_len, z, s);
    else
      err = cuda::resample_shift(x.data_ptr<double>(), out.data_ptr<double>(), ratio.data_ptr<double>(),
                                 start.data_ptr<double>(), batch, in_len, out_len, z, s);
    TORCH_CHECK(err == cudaSuccess, "resample_shift: CUDA launch failed: ", cudaGetErrorString(err));
  }
  return out;
}
#endif

static at::Tensor resample_shift_cpu(const at::Tensor& x, const at::Tensor& ratio, const at::Tensor& start,
                                     int64_t out_len, int64_t zeros) {
  check_inputs(x, ratio, start, out_len, zeros);
  TORCH_CHECK(x.is_cpu(), "resample_shift: the CPU kernel got x on ", x.device());
  const int64_t batch = x.size(0), in_len = x.size(1);
  auto out = at::empty({batch, out_len}, x.options());
  const int z = static_cast<int>(zeros);
  if (x.scalar_type() == at::kFloat)
    cpu::resample_shift(x.data_ptr<float>(), out.data_ptr<float>(), ratio.data_ptr<double>(),
                        start.data_ptr<double>(), batch, in_len, out_len, z);
  else
    cpu::resample_shift(x.data_ptr<double>(), out.data_ptr<double>(), ratio.data_ptr<double>(),
                        start.data_ptr<double>(), batch, in_len, out_len, z);
  return out;
}

TORCH_LIBRARY_IMPL(musicrep, CPU, m) { m.impl("resample_shift", &resample_shift_cpu); }

#ifdef MUSICREP_WITH_CUDA
TORCH_LIBRARY_IMPL(musicrep, CUDA, m) { m.impl("resample_shift", &resample_shift_cuda); }
#endif

}  // namespace musicrep
