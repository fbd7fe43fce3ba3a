// The module musicrep._C. Importing it registers the operator library `musicrep` (torch.ops.musicrep,
// csrc/glue/library.cpp); the Python module itself holds only what is not an op: whether the CUDA
// kernels are built in, and the helpers a glue file adds through MUSICREP_BIND (the mel table cache).
#include "registry.h"

namespace musicrep {

std::vector<Binder>& binders() {
  static std::vector<Binder> all;
  return all;
}

}  // namespace musicrep

PYBIND11_MODULE(_C, m) {
  m.doc() = "musicrep's compiled operators (torch.ops.musicrep: CPU, and CUDA where built)";
#ifdef MUSICREP_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  for (auto binder : musicrep::binders()) binder(m);
}
