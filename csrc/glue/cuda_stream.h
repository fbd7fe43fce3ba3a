// Where the glue launches CUDA work: on the tensor's device (each caller holds a CUDAGuard) and
// that device's current stream, as PyTorch's own ops do, so a caller's torch.cuda.stream(...)
// context is honoured without passing a stream handle through Python.
#pragma once
#ifdef MUSICREP_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

namespace musicrep {

inline c10::cuda::CUDAStream current_stream(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index());
}

}  // namespace musicrep
#endif
