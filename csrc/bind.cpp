// The module musicrep._C: every glue file adds its functions through MUSICREP_BIND.
#include "registry.h"

namespace musicrep {

std::vector<Binder>& binders() {
  static std::vector<Binder> all;
  return all;
}

}  // namespace musicrep

PYBIND11_MODULE(_C, m) {
  m.doc() = "musicrep's compiled kernels (CPU, and CUDA where built)";
#ifdef MUSICREP_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  for (auto binder : musicrep::binders()) binder(m);
}
