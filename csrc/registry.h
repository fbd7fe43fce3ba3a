// Python helpers that are not ops (an op is registered with TORCH_LIBRARY_IMPL, glue/library.cpp):
// each glue file adds its own, so adding one never edits bind.cpp.
#pragma once
#include <torch/extension.h>

#include <vector>

namespace musicrep {

using Binder = void (*)(pybind11::module_&);

std::vector<Binder>& binders();

struct RegisterBinder {
  explicit RegisterBinder(Binder binder) { binders().push_back(binder); }
};

}  // namespace musicrep

// MUSICREP_BIND(bind_foo) { m.def("foo", &foo); }
#define MUSICREP_BIND(name)                                  \
  static void name(pybind11::module_& m);                    \
  static ::musicrep::RegisterBinder name##_registration(name); \
  static void name(pybind11::module_& m)
