// oneDNN's 2-D convolutions (forward, input gradient, kernel gradient) as XLA:CPU custom calls (the XLA FFI).
//
// Why: XLA:CPU 0.10's convolutions, above all the kernel gradient, are several times slower than oneDNN's on the
// same layer (benchmarks/RESULTS.md), and no XLA flag in that jaxlib routes them to oneDNN. This file is the whole
// bridge: the layouts are Flax's (activations NHWC, kernels HWIO), in float32 or bfloat16 (one type for all
// three arrays); onednn_conv.py beside it (dl4cv_jax/backends/cpu/) compiles it on first use and falls back to
// XLA's convolution where it cannot.
//
// Each handler builds its oneDNN primitive once per geometry (cached; oneDNN JIT-compiles its kernels), lets
// oneDNN pick its kernel layout (format `any`) and reorders the HWIO kernel to and from it. Scratch memory is
// per calling thread, so that XLA may run two convolutions at once. Where oneDNN's first choice of kernel is a
// brgemm one that its direct JIT kernel beats on few channels, the direct one is taken (PreferDirectKernel).

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "onednn_bridge.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using Dims = ffi::Span<const int64_t>;

namespace {

using namespace dl4cv_onednn;  // Engine, UserScratchpad, ThreadStream, ThreadScratch(pad), Cached

enum class Direction { kForward, kInputGradient, kKernelGradient };

// One convolution's sizes and element type; NHWC activations, HWIO kernel.
struct Geometry {
  int64_t n, h, w, c, o, kh, kw, ho, wo, sh, sw, pt, pl, pb, pr;
  memory::data_type type;
  int threads = MaxThreads();  // the OpenMP threads it runs on (ClampedThreads of the call's attribute)
};

std::vector<int64_t> Key(Direction direction, const Geometry& g, bool direct) {
  return {static_cast<int64_t>(direction), direct, g.threads, g.n, g.h, g.w, g.c, g.o, g.kh, g.kw, g.ho, g.wo,
          g.sh, g.sw, g.pt, g.pl, g.pb, g.pr, static_cast<int64_t>(g.type)};
}

memory::desc Input(const Geometry& g) {
  return memory::desc({g.n, g.c, g.h, g.w}, g.type, memory::format_tag::nhwc);
}

memory::desc Output(const Geometry& g) {
  return memory::desc({g.n, g.o, g.ho, g.wo}, g.type, memory::format_tag::nhwc);
}

memory::desc Kernel(const Geometry& g, memory::format_tag tag) {
  return memory::desc({g.o, g.c, g.kh, g.kw}, g.type, tag);
}

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g) {
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      Input(g), Kernel(g, memory::format_tag::any), Output(g),
      {g.sh, g.sw}, {g.pt, g.pl}, {g.pb, g.pr}, UserScratchpad());
}

// Whether to take oneDNN's direct JIT kernel where its first choice is a brgemm one. A fixed rule, not timing
// at run time, so that every run computes the same sums in the same order. It follows what oneDNN 3.2 measured
// in this bridge on an AVX-512 processor (benchmarks/onednn_kernels.py; the figures in benchmarks/RESULTS.md,
// "oneDNN's kernel choice"): the direct kernel was faster for strided input gradients with 32 or fewer channels
// (oneDNN's `brgconv_strided`), for float32 input gradients with 16 or fewer channels, for a bfloat16 one with
// 6 input channels (LeNet's conv2), and for forward passes with 8 or fewer input channels. Elsewhere the
// brgemm kernels were mostly as fast or faster (32-channel float32 input gradients; ResNet-18's 128- and
// 256-channel layers; its 4x4 512-channel input gradient, faster with the direct kernel, is left to oneDNN).
// Kernel gradients have only the direct kernel.
bool PreferDirectKernel(Direction direction, const Geometry& g) {
  const int64_t fewest = std::min(g.c, g.o);
  const bool strided = g.sh > 1 || g.sw > 1;
  switch (direction) {
    case Direction::kForward:
      return g.c <= 8;
    case Direction::kInputGradient:
      return g.c <= 8 || (strided && fewest <= 32) || (g.type == memory::data_type::f32 && fewest <= 16);
    case Direction::kKernelGradient:
      return false;
  }
  return false;
}

// `DL4CV_ONEDNN_KERNELS=first` keeps oneDNN's first choice everywhere (to compare); read once.
bool KernelRuleOn() {
  static const bool on = [] {
    const char* value = std::getenv("DL4CV_ONEDNN_KERNELS");
    return value == nullptr || std::string(value) != "first";
  }();
  return on;
}

// The part of an implementation's name before the ':' ("brgconv", "jit", "jit_bf16") and the ISA after it.
std::string Family(const std::string& name) { return name.substr(0, name.find(':')); }
std::string Isa(const std::string& name) { return name.substr(name.rfind(':') + 1); }

// oneDNN's first implementation from `make()`, or its direct JIT one for the same ISA when `prefer_direct` and
// the first is a brgemm one (an ISA oneDNN has no direct kernel for keeps the first).
template <typename Desc, typename Make>
Desc ChooseKernel(Make make, bool prefer_direct) {
  Desc first = make();
  const std::string name = first.impl_info_str();
  if (!prefer_direct || name.rfind("brg", 0) != 0) return first;
  Desc candidate = make();  // a separate descriptor: next_impl() moves the one it is called on
  while (candidate.next_impl()) {
    const std::string other = candidate.impl_info_str();
    if ((Family(other) == "jit" || Family(other) == "jit_bf16") && Isa(other) == Isa(name)) return candidate;
  }
  return first;
}

// A primitive for one direction and geometry, with the reorder between the HWIO kernel and its own layout.
struct Plan {
  dnnl::primitive primitive;
  memory::desc kernel;  // the layout the primitive reads or writes its kernel in
  bool reorders;        // whether that differs from HWIO
  dnnl::reorder reorder;
  size_t scratchpad_bytes;
};

// Kernel reorders run on the calling thread alone, whatever the pass's count: a kernel is small (ResNet-18's
// largest, 3x3x512x512, is 9 MB in float32) and an OpenMP team cost more than it gave: ResNet-20's step was a
// little faster that way, ResNet-18's no slower (benchmarks/RESULTS.md).
constexpr int kReorderThreads = 1;

void ReorderKernel(const dnnl::reorder& reorder, dnnl::stream& stream, memory& from, memory& to) {
  const ThreadLimit one(kReorderThreads);
  reorder.execute(stream, from, to);
}

template <typename Primitive, typename Desc>
Plan MakePlan(const Desc& desc, const memory::desc& kernel, const Geometry& g, bool kernel_is_output) {
  const memory::desc hwio = Kernel(g, memory::format_tag::hwio);
  Plan plan{Primitive(desc), kernel, kernel != hwio, {}, desc.scratchpad_desc().get_size()};
  if (plan.reorders) {
    const ThreadLimit one(kReorderThreads);  // built for the count it runs on (ReorderKernel)
    plan.reorder = kernel_is_output ? dnnl::reorder(memory(kernel, Engine()), memory(hwio, Engine()))
                                    : dnnl::reorder(memory(hwio, Engine()), memory(kernel, Engine()));
  }
  return plan;
}

using ForwardPd = dnnl::convolution_forward::primitive_desc;
using InputGradientPd = dnnl::convolution_backward_data::primitive_desc;
using KernelGradientPd = dnnl::convolution_backward_weights::primitive_desc;

ForwardPd ChosenForward(const Geometry& g, bool prefer_direct) {
  return ChooseKernel<ForwardPd>([&] { return ForwardDesc(g); }, prefer_direct);
}

InputGradientPd ChosenInputGradient(const Geometry& g, const ForwardPd& forward, bool prefer_direct) {
  const memory::desc any = Kernel(g, memory::format_tag::any);
  return ChooseKernel<InputGradientPd>(
      [&] {
        return InputGradientPd(Engine(), dnnl::algorithm::convolution_direct, Input(g), any, Output(g),
                               {g.sh, g.sw}, {g.pt, g.pl}, {g.pb, g.pr}, forward, UserScratchpad());
      },
      prefer_direct);
}

// `direct`: whether the direct kernel replaces a brgemm first choice (Direct below).
KernelGradientPd KernelGradientDesc(const Geometry& g, const ForwardPd& forward) {
  const memory::desc any = Kernel(g, memory::format_tag::any);
  return KernelGradientPd(Engine(), dnnl::algorithm::convolution_direct, Input(g), any, Output(g), {g.sh, g.sw},
                          {g.pt, g.pl}, {g.pb, g.pr}, forward, UserScratchpad());
}

// The backward passes take oneDNN's first forward choice (ForwardDesc) as their hint.
Plan Build(Direction direction, const Geometry& g, bool direct) {
  switch (direction) {
    case Direction::kForward: {
      const auto chosen = ChosenForward(g, direct);
      return MakePlan<dnnl::convolution_forward>(chosen, chosen.weights_desc(), g, false);
    }
    case Direction::kInputGradient: {
      const auto desc = ChosenInputGradient(g, ForwardDesc(g), direct);
      return MakePlan<dnnl::convolution_backward_data>(desc, desc.weights_desc(), g, false);
    }
    case Direction::kKernelGradient: {
      const auto desc = KernelGradientDesc(g, ForwardDesc(g));
      return MakePlan<dnnl::convolution_backward_weights>(desc, desc.diff_weights_desc(), g, true);
    }
  }
  throw std::logic_error("unknown direction");
}

// Whether the bridge takes the direct kernel (`with_rule`), or oneDNN's first choice is asked for.
bool Direct(Direction direction, const Geometry& g, bool with_rule) {
  return with_rule && KernelRuleOn() && PreferDirectKernel(direction, g);
}

// The name of the implementation Build takes (`with_rule`) or oneDNN's first choice, e.g. "jit:avx512_core".
std::string KernelName(Direction direction, const Geometry& g, bool with_rule) {
  const bool direct = Direct(direction, g, with_rule);
  switch (direction) {
    case Direction::kForward:
      return ChosenForward(g, direct).impl_info_str();
    case Direction::kInputGradient:
      return ChosenInputGradient(g, ForwardDesc(g), direct).impl_info_str();
    case Direction::kKernelGradient:
      return KernelGradientDesc(g, ForwardDesc(g)).impl_info_str();
  }
  throw std::logic_error("unknown direction");
}

std::shared_ptr<const Plan> CachedPlan(Direction direction, const Geometry& g, bool direct) {
  return Cached<Plan>(Key(direction, g, direct), [&] { return Build(direction, g, direct); });
}

void Run(Direction direction, const Geometry& g, void* activations, void* kernel, void* gradient,
         bool with_rule = true) {
  // activations: the input (forward, kernel gradient) or its gradient (input gradient); gradient: the output
  // (forward) or its gradient.
  const ThreadLimit limit(g.threads);
  const auto plan = CachedPlan(direction, g, Direct(direction, g, with_rule));
  dnnl::stream& stream = ThreadStream();

  memory x(Input(g), Engine(), activations);
  memory y(Output(g), Engine(), gradient);
  memory hwio(Kernel(g, memory::format_tag::hwio), Engine(), kernel);
  memory own = plan->reorders ? memory(plan->kernel, Engine(), ThreadScratch(0, plan->kernel.get_size())) : hwio;
  memory scratchpad = ThreadScratchpad(plan->scratchpad_bytes);

  if (direction != Direction::kKernelGradient && plan->reorders) ReorderKernel(plan->reorder, stream, hwio, own);
  switch (direction) {
    case Direction::kForward:
      plan->primitive.execute(stream, {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, own}, {DNNL_ARG_DST, y},
                                       {DNNL_ARG_SCRATCHPAD, scratchpad}});
      break;
    case Direction::kInputGradient:
      plan->primitive.execute(stream, {{DNNL_ARG_DIFF_SRC, x}, {DNNL_ARG_WEIGHTS, own}, {DNNL_ARG_DIFF_DST, y},
                                       {DNNL_ARG_SCRATCHPAD, scratchpad}});
      break;
    case Direction::kKernelGradient:
      plan->primitive.execute(stream, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_WEIGHTS, own}, {DNNL_ARG_DIFF_DST, y},
                                       {DNNL_ARG_SCRATCHPAD, scratchpad}});
      if (plan->reorders) ReorderKernel(plan->reorder, stream, own, hwio);
      break;
  }
  stream.wait();
}

ffi::Error Convolve(Direction direction, Dims activations, Dims kernel, Dims outputs, Dims strides, Dims padding,
                    int64_t threads, ffi::DataType type, void* x, void* k, void* y) {
  if (activations.size() != 4 || kernel.size() != 4 || outputs.size() != 4 || strides.size() != 2 ||
      padding.size() != 4) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "onednn_conv: expects NHWC activations, an HWIO kernel, 2 strides and 4 pads");
  }
  if (type != ffi::DataType::F32 && type != ffi::DataType::BF16) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "onednn_conv: expects float32 or bfloat16 arrays");
  }
  const Geometry g{activations[0], activations[1], activations[2], activations[3], kernel[3],
                   kernel[0],      kernel[1],      outputs[1],     outputs[2],     strides[0],
                   strides[1],     padding[0],     padding[2],     padding[1],     padding[3],
                   type == ffi::DataType::F32 ? memory::data_type::f32 : memory::data_type::bf16,
                   ClampedThreads(threads)};
  try {
    Run(direction, g, x, k, y);
  } catch (const dnnl::error& error) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("onednn_conv: oneDNN failed: ") + error.what());
  }
  return ffi::Error::Success();
}

ffi::Error SameTypes(const ffi::AnyBuffer& a, const ffi::AnyBuffer& b, ffi::DataType result) {
  if (a.element_type() != b.element_type() || a.element_type() != result) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "onednn_conv: operands and result differ in type");
  }
  return ffi::Error::Success();
}

// padding: [top, bottom, left, right], as lax.conv_general_dilated's ((top, bottom), (left, right)).
ffi::Error ForwardImpl(ffi::AnyBuffer x, ffi::AnyBuffer k, ffi::Result<ffi::AnyBuffer> y, Dims strides, Dims padding,
                       int64_t threads) {
  if (auto error = SameTypes(x, k, y->element_type()); error.failure()) return error;
  return Convolve(Direction::kForward, x.dimensions(), k.dimensions(), y->dimensions(), strides, padding,
                  threads, x.element_type(), x.untyped_data(), k.untyped_data(), y->untyped_data());
}

ffi::Error InputGradientImpl(ffi::AnyBuffer g, ffi::AnyBuffer k, ffi::Result<ffi::AnyBuffer> dx, Dims strides,
                             Dims padding, int64_t threads) {
  if (auto error = SameTypes(g, k, dx->element_type()); error.failure()) return error;
  return Convolve(Direction::kInputGradient, dx->dimensions(), k.dimensions(), g.dimensions(), strides, padding,
                  threads, g.element_type(), dx->untyped_data(), k.untyped_data(), g.untyped_data());
}

ffi::Error KernelGradientImpl(ffi::AnyBuffer x, ffi::AnyBuffer g, ffi::Result<ffi::AnyBuffer> dk, Dims strides,
                              Dims padding, int64_t threads) {
  if (auto error = SameTypes(x, g, dk->element_type()); error.failure()) return error;
  return Convolve(Direction::kKernelGradient, x.dimensions(), dk->dimensions(), g.dimensions(), strides, padding,
                  threads, x.element_type(), x.untyped_data(), dk->untyped_data(), g.untyped_data());
}

// The 15 fields of Geometry in order, from ctypes.
Geometry FromSizes(const int64_t* z, int bfloat16) {
  return Geometry{z[0], z[1], z[2], z[3], z[4], z[5], z[6], z[7], z[8], z[9], z[10], z[11], z[12], z[13], z[14],
                  bfloat16 ? memory::data_type::bf16 : memory::data_type::f32};
}

}  // namespace

// For tests and benchmarks (ctypes): writes the name of the kernel that a geometry gets into `name` and
// returns 0, or -1 when oneDNN has none. `direction`: 0 forward, 1 input gradient, 2 kernel gradient; `sizes`:
// the 15 fields of Geometry in order; `with_rule` 0 asks for oneDNN's first choice instead of the bridge's.
extern "C" int Dl4cvOnednnConvKernelName(int direction, const int64_t* sizes, int bfloat16, int with_rule,
                                         char* name, int capacity) {
  const Geometry g = FromSizes(sizes, bfloat16);
  try {
    const std::string chosen = KernelName(static_cast<Direction>(direction), g, with_rule != 0);
    snprintf(name, capacity, "%s", chosen.c_str());
    return 0;
  } catch (const dnnl::error&) {
    return -1;
  }
}

// For benchmarks/onednn_kernels.py (ctypes): runs one pass `repetitions` times on zeroed arrays, as the custom
// call runs it (kernel reorders included), with the bridge's kernel (`with_rule`) or oneDNN's first choice, and
// writes each run's milliseconds into `milliseconds`. Returns 0, or -1 when oneDNN has no kernel.
extern "C" int Dl4cvOnednnConvTime(int direction, const int64_t* sizes, int bfloat16, int with_rule,
                                   int repetitions, double* milliseconds) {
  const Geometry g = FromSizes(sizes, bfloat16);
  const size_t item = bfloat16 ? 2 : 4;
  std::vector<char> x(item * g.n * g.h * g.w * g.c), k(item * g.kh * g.kw * g.c * g.o),
      y(item * g.n * g.ho * g.wo * g.o);
  try {
    for (int i = 0; i < repetitions; ++i) {
      const auto start = std::chrono::steady_clock::now();
      Run(static_cast<Direction>(direction), g, x.data(), k.data(), y.data(), with_rule != 0);
      milliseconds[i] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    }
    return 0;
  } catch (const dnnl::error&) {
    return -1;
  }
}

// Two operands and a result of one type (float32 or bfloat16), the strides, the pads and the OpenMP threads.
#define DL4CV_CONV_BINDING                                                              \
  ffi::Ffi::Bind()                                                                     \
      .Arg<ffi::AnyBuffer>()                                                           \
      .Arg<ffi::AnyBuffer>()                                                           \
      .Ret<ffi::AnyBuffer>()                                                           \
      .Attr<Dims>("strides")                                                           \
      .Attr<Dims>("padding")                                                           \
      .Attr<int64_t>("threads")

XLA_FFI_DEFINE_HANDLER_SYMBOL(Dl4cvOnednnConvForward, ForwardImpl, DL4CV_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(Dl4cvOnednnConvInputGradient, InputGradientImpl, DL4CV_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(Dl4cvOnednnConvKernelGradient, KernelGradientImpl, DL4CV_CONV_BINDING);
