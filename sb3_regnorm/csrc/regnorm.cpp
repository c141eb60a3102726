// Fused CPU kernels of RegularityNorm (see sb3_regnorm/functional.py for the math they transcribe).
//
// Why C++: an RN step in PyTorch ops is ~15 small kernels and ~6 autograd nodes, each a few microseconds of
// dispatch; here the training forward is one op (a few sweeps over the data with double accumulators, one ATen
// exp for its vectorised SLEEF kernel) and its backward two sweeps, with the autograd formula registered in C++
// through torch.library, so no Python Function sits on the hot path. The op also reads and writes the float64
// running state in place (only after every check passed), so a training step never leaves C++.
//
// Errors are raised with a "sb3_regnorm:<code>" token that sb3_regnorm/_fused.py turns into Python's ValueError or
// FloatingPointError with the same message as the pure path.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr double kHalfLog2Pi = 0.918938533204672741780329736406;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double softplus(double a) { return a > 0 ? a + std::log1p(std::exp(-a)) : std::log1p(std::exp(a)); }

double sigmoid(double a) {
  if (a >= 0) return 1.0 / (1.0 + std::exp(-a));
  const double e = std::exp(a);
  return e / (1.0 + e);
}

[[noreturn]] void fail(const std::string& code) { TORCH_CHECK(false, "sb3_regnorm:", code, ":"); }

[[noreturn]] void fail_overflow(const Tensor& x, double gain, double var) {
  std::ostringstream msg;
  msg.precision(17);
  msg << "overflow:" << c10::toString(x.scalar_type()) << ":" << gain << ":" << var;
  fail(msg.str());
}

struct Merged {
  double mean, var, count, mean_slope, var_slope, var_shift;
};

// functional.merge_batch, for host scalars.
Merged merge_batch(double count, double mean, double var, int64_t n, double bm, double bv, bool exact_var) {
  const bool has_var = n >= 2;
  const double total = count + static_cast<double>(n);
  const double new_mean = count <= 0.0 ? bm : (count * mean + static_cast<double>(n) * bm) / total;
  const double weight_prev = std::max(count - 1.0, 0.0);
  const double weight_batch = has_var ? static_cast<double>(n - 1) : 0.0;
  const double sum_sq = weight_prev * var + (has_var ? weight_batch * bv : 0.0);
  double shift = 0.0, shift_grad = 0.0, denom;
  if (exact_var) {
    const double d = bm - mean;
    shift = count * static_cast<double>(n) / total * (d * d);
    denom = total - 1.0;
    shift_grad = 2.0 * d * count / total / (denom > 0.0 ? denom : 1.0);
  } else {
    denom = weight_prev + weight_batch;
  }
  const bool usable = denom > 0.0;
  const double safe = usable ? denom : 1.0;
  return {new_mean, usable ? (sum_sq + shift) / safe : var, total, 1.0 / total,
          (has_var && usable) ? 2.0 / safe : 0.0, usable ? shift_grad : 0.0};
}

// The layout both kernels iterate in: B samples x G' segments x R' contiguous elements; element (b, s, r) belongs to
// code-length group s for rln (G' = features, R' = spatial size) and to group 0 for rn (G' = 1, R' = features x spatial).
struct Layout {
  int64_t batch, segments, length, groups, numel;
  bool rln;
  Layout(const Tensor& x, bool per_unit) {
    numel = x.numel();
    batch = x.size(0);
    const int64_t features = x.size(1);
    const int64_t spatial = numel / (batch * features);
    rln = per_unit;
    segments = per_unit ? features : 1;
    length = per_unit ? spatial : features * spatial;
    groups = per_unit ? features : 1;
    columns = per_unit && spatial == 1;
  }
  int64_t group_size() const { return numel / groups; }
  // rln on (B, F): every row holds one element of each group, so the loops run along the row (SIMD across units)
  // with per-unit accumulators instead of over segments of one element.
  bool columns = false;
};

const double* maybe_log_prior(const c10::optional<Tensor>& lp) {
  return lp.has_value() && lp->defined() ? lp->data_ptr<double>() : nullptr;
}

// Element-wise math runs in the input's precision (as the pure path's kernels do, and at full SIMD width); sums
// run in that precision within one segment of a sample and in float64 across segments.

// Sum of (x - mu)^2 and, per group, the smallest (x - mu)^2 (the max-shift of the density's exponent). M is the
// precision of the element-wise math: T, or double where float32 squares overflow (as the pure path falls back).
template <typename T, typename M>
double centred_squares(const T* x, const Layout& L, double mu, std::vector<double>& min_sq) {
  double s2 = 0.0;
  min_sq.assign(L.groups, kInf);
  const M mu_t = static_cast<M>(mu);
  if (L.columns) {
    std::vector<M> lo(L.groups, std::numeric_limits<M>::infinity());
    M* lo_p = lo.data();
    for (int64_t b = 0; b < L.batch; ++b) {
      const T* row = x + b * L.groups;
      M acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t f = 0; f < L.groups; ++f) {
        const M c = static_cast<M>(row[f]) - mu_t;
        acc += c * c;
        lo_p[f] = std::min(lo_p[f], c * c);
      }
      s2 += static_cast<double>(acc);
    }
    for (int64_t f = 0; f < L.groups; ++f) min_sq[f] = std::isfinite(lo[f]) ? static_cast<double>(lo[f]) : 0.0;
    return s2;
  }
  for (int64_t b = 0; b < L.batch; ++b) {
    for (int64_t s = 0; s < L.segments; ++s) {
      const T* seg = x + (b * L.segments + s) * L.length;
      M acc = 0, lo = std::numeric_limits<M>::infinity();
#pragma omp simd reduction(+ : acc) reduction(min : lo)
      for (int64_t r = 0; r < L.length; ++r) {
        const M c = static_cast<M>(seg[r]) - mu_t;
        acc += c * c;
        lo = std::min(lo, c * c);
      }
      s2 += static_cast<double>(acc);
      min_sq[s] = std::min(min_sq[s], static_cast<double>(lo));
    }
  }
  for (auto& m : min_sq) m = std::isfinite(m) ? m : 0.0;
  return s2;
}

// Shifted densities p_i = exp(-((x_i - mu)^2 - min_sq_g) / 2var), and per group sum p, sum p c, sum p c^2. The
// exponents go into a buffer and ATen's exp (vectorised SLEEF, ~1 ulp) runs on all of it at once: measured faster
// here than a scalar exp in the loop, and than an inline polynomial exp that gcc would not vectorise. The densities
// are returned when `keep` (the backward needs them).
template <typename T, typename M>
Tensor densities(const Tensor& x_t, bool keep, const Layout& L, double mu, double var, const std::vector<double>& min_sq,
                 std::vector<double>& tot, std::vector<double>& pc, std::vector<double>& pc2) {
  const T* x = x_t.data_ptr<T>();
  const M inv2v = static_cast<M>(0.5 / var);
  const M mu_t = static_cast<M>(mu);
  Tensor p_t = at::empty_like(x_t);
  T* p = p_t.data_ptr<T>();
  if (L.columns) {
    const int64_t F = L.groups;
    std::vector<M> shift(F), acc(3 * F, 0);
    for (int64_t f = 0; f < F; ++f) shift[f] = static_cast<M>(min_sq[f]);
    const M* sh = shift.data();
    for (int64_t b = 0; b < L.batch; ++b) {
#pragma omp simd
      for (int64_t f = 0; f < F; ++f) {
        const M c = static_cast<M>(x[b * F + f]) - mu_t;
        p[b * F + f] = static_cast<T>(-(c * c - sh[f]) * inv2v);
      }
    }
    p_t.exp_();
    M* a0 = acc.data();
    M* a1 = a0 + F;
    M* a2 = a1 + F;
    for (int64_t b = 0; b < L.batch; ++b) {
#pragma omp simd
      for (int64_t f = 0; f < F; ++f) {
        const M w = static_cast<M>(p[b * F + f]);
        const M c = static_cast<M>(x[b * F + f]) - mu_t;
        a0[f] += w;
        a1[f] += w * c;
        a2[f] += w * c * c;
      }
    }
    tot.assign(a0, a0 + F);
    pc.assign(a1, a1 + F);
    pc2.assign(a2, a2 + F);
    return keep ? p_t : Tensor();
  }
  for (int64_t b = 0; b < L.batch; ++b) {
    for (int64_t s = 0; s < L.segments; ++s) {
      const int64_t off = (b * L.segments + s) * L.length;
      const M shift = static_cast<M>(min_sq[s]);
#pragma omp simd
      for (int64_t r = 0; r < L.length; ++r) {
        const M c = static_cast<M>(x[off + r]) - mu_t;
        p[off + r] = static_cast<T>(-(c * c - shift) * inv2v);
      }
    }
  }
  p_t.exp_();
  tot.assign(L.groups, 0.0);
  pc.assign(L.groups, 0.0);
  pc2.assign(L.groups, 0.0);
  for (int64_t b = 0; b < L.batch; ++b) {
    for (int64_t s = 0; s < L.segments; ++s) {
      const int64_t off = (b * L.segments + s) * L.length;
      M a0 = 0, a1 = 0, a2 = 0;
#pragma omp simd reduction(+ : a0, a1, a2)
      for (int64_t r = 0; r < L.length; ++r) {
        const M w = static_cast<M>(p[off + r]);
        const M c = static_cast<M>(x[off + r]) - mu_t;
        a0 += w;
        a1 += w * c;
        a2 += w * c * c;
      }
      tot[s] += static_cast<double>(a0);
      pc[s] += static_cast<double>(a1);
      pc2[s] += static_cast<double>(a2);
    }
  }
  return keep ? p_t : Tensor();
}

// y = x * (gain_g - log s_b); raises on an output that overflows (an element non-finite where x was finite).
template <typename T>
void rescale(const T* x, T* y, const Layout& L, const std::vector<double>& gain, const double* log_prior, double var,
             const Tensor& xt) {
  bool ok = true;
  if (L.columns) {
    std::vector<double> row_scale(L.groups);
    std::vector<T> scale_t(L.groups);
    for (int64_t b = 0; b < L.batch && ok; ++b) {
      const double lp = log_prior ? log_prior[b] : 0.0;
      for (int64_t f = 0; f < L.groups; ++f) scale_t[f] = static_cast<T>(gain[f] - lp);
      const T* sc = scale_t.data();
      const int64_t off = b * L.groups;
      int bad = 0;
#pragma omp simd reduction(| : bad)
      for (int64_t f = 0; f < L.groups; ++f) {
        const T v = x[off + f] * sc[f];
        y[off + f] = v;
        bad |= static_cast<int>(!std::isfinite(v)) & static_cast<int>(std::isfinite(x[off + f]));
      }
      ok = bad == 0;
    }
  }
  for (int64_t b = 0; b < L.batch && !L.columns; ++b) {
    const double lp = log_prior ? log_prior[b] : 0.0;
    for (int64_t s = 0; s < L.segments; ++s) {
      const int64_t off = (b * L.segments + s) * L.length;
      const T scale = static_cast<T>(gain[L.rln ? s : 0] - lp);
      int bad = 0;
#pragma omp simd reduction(| : bad)
      for (int64_t r = 0; r < L.length; ++r) {
        const T v = x[off + r] * scale;
        y[off + r] = v;
        bad |= static_cast<int>(!std::isfinite(v)) & static_cast<int>(std::isfinite(x[off + r]));
      }
      ok = ok && bad == 0;
    }
  }
  if (!ok) {
    double largest = *std::max_element(gain.begin(), gain.end());
    if (log_prior) largest -= *std::min_element(log_prior, log_prior + L.batch);
    fail_overflow(xt, largest, var);
  }
}

double next_refsize(double updates, double refsize, int64_t group_size, double momentum) {
  const double k = static_cast<double>(group_size);
  if (updates == 0.0) return k;
  return momentum > 0.0 ? refsize + momentum * (k - refsize) : refsize + (k - refsize) / (updates + 1.0);
}

Tensor group_tensor(const std::vector<double>& values, bool rln) {
  const auto options = at::TensorOptions().dtype(at::kDouble);
  Tensor out = rln ? at::empty({static_cast<int64_t>(values.size())}, options) : at::empty({}, options);
  std::copy(values.begin(), values.end(), out.data_ptr<double>());
  return out;
}

void check_state(std::initializer_list<const Tensor*> buffers) {
  for (const Tensor* t : buffers) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kDouble && t->is_contiguous(),
                "RegularityNorm's fused kernel needs contiguous float64 CPU state");
  }
}

// Per-group backward coefficients, laid out as rows of `aux` (float64, shape (6, G) + [mu]):
// 0 applied gain, 1 sens (0 when capped or no slope), 2 1/(sum p var), 3 dS coefficient of sum_j (via the mean and
// the variance's constant part), 4 dS coefficient of c_j (via the variance's slope).
constexpr int kAuxRows = 5;

struct TrainResult {
  Tensor y, length, p, aux;
};

template <typename T>
TrainResult train_typed(const Tensor& x, Tensor& mean_b, Tensor& var_b, Tensor& count_b, Tensor& comp_b,
                        Tensor& updates_b, Tensor& refsize_b, Tensor& score_b, const c10::optional<Tensor>& log_prior,
                        bool rln, double momentum, bool exact_var, double max_gain, double eps, bool do_rescale,
                        bool slope) {
  const Layout L(x, rln);
  const T* xp = x.data_ptr<T>();
  const int64_t n = L.numel;
  const double log_decay = momentum > 0.0 ? std::log1p(-momentum) : 0.0;
  const double count = count_b.data_ptr<double>()[0] * std::exp(log_decay);
  const double mean = mean_b.data_ptr<double>()[0];
  double s1 = 0.0;
#pragma omp simd reduction(+ : s1)
  for (int64_t i = 0; i < n; ++i) s1 += static_cast<double>(xp[i]);
  if (!std::isfinite(s1)) {
    bool finite = true;
    for (int64_t i = 0; i < n && finite; ++i) finite = std::isfinite(static_cast<double>(xp[i]));
    fail(finite ? "stats" : "nonfinite_train");
  }
  const double batch_mean = s1 / static_cast<double>(n);
  const double mu = count <= 0.0 ? batch_mean : (count * mean + static_cast<double>(n) * batch_mean) / (count + n);
  std::vector<double> min_sq;
  double s2 = centred_squares<T, T>(xp, L, mu, min_sq);
  const bool wide = !std::isfinite(s2);  // float32 squares overflowed: redo the element-wise math in float64
  if (wide) s2 = centred_squares<T, double>(xp, L, mu, min_sq);
  double batch_var = kNaN;
  if (n >= 2) {
    const double d = batch_mean - mu;
    batch_var = std::max((s2 - static_cast<double>(n) * (d * d)) / static_cast<double>(n - 1), 0.0);
  }
  const Merged merged = merge_batch(count, mean, var_b.data_ptr<double>()[0], n, batch_mean, batch_var, exact_var);
  if (!std::isfinite(merged.mean) || !std::isfinite(merged.var)) fail("stats");
  const double var = std::max(merged.var, eps * eps);
  std::vector<double> tot, pc, pc2;
  const Tensor p = wide ? densities<T, double>(x, slope, L, mu, var, min_sq, tot, pc, pc2)
                        : densities<T, T>(x, slope, L, mu, var, min_sq, tot, pc, pc2);
  const double log_norm = -std::log(std::sqrt(var)) - kHalfLog2Pi;
  const double inv2v = 0.5 / var;
  const double* comp_prev = comp_b.data_ptr<double>();
  std::vector<double> score(L.groups), gain(L.groups), new_comp(L.groups), aux(kAuxRows * L.groups + 1, 0.0);
  const bool clamped = merged.var < eps * eps;
  const double var_slope = clamped ? 0.0 : merged.var_slope;
  const double var_const = clamped ? 0.0 : var_slope * (merged.mean - batch_mean) + merged.var_shift;
  const double sigma = std::sqrt(var);
  for (int64_t g = 0; g < L.groups; ++g) {
    score[g] = std::log(tot[g]) - min_sq[g] * inv2v + log_norm;
    const double arg = comp_prev[g] + log_decay - score[g];
    gain[g] = softplus(arg);
    new_comp[g] = score[g] + gain[g];
    if (!std::isfinite(new_comp[g])) fail("stats");
    const bool capped = gain[g] > max_gain;
    aux[g] = capped ? max_gain : gain[g];
    aux[L.groups + g] = (slope && !capped) ? sigmoid(arg) : 0.0;
    if (slope) {
      const double tv = tot[g] * var;
      const double a_mean = pc[g] / tv;
      const double k_sigma = (pc2[g] / tv - 1.0) / sigma / (2.0 * sigma);
      aux[2 * L.groups + g] = 1.0 / tv;
      aux[3 * L.groups + g] = a_mean * merged.mean_slope + k_sigma * var_const;
      aux[4 * L.groups + g] = k_sigma * var_slope;
    }
  }
  aux[kAuxRows * L.groups] = mu;
  Tensor y;
  if (do_rescale) {
    y = at::empty_like(x);
    std::vector<double> applied(aux.begin(), aux.begin() + L.groups);
    rescale(xp, y.data_ptr<T>(), L, applied, maybe_log_prior(log_prior), merged.var, x);
  } else {
    y = at::empty({0}, x.options());
  }
  // every check passed: write the state
  const double updates = updates_b.data_ptr<double>()[0];
  double* refsize = refsize_b.data_ptr<double>();
  refsize[0] = next_refsize(updates, refsize[0], L.group_size(), momentum);
  mean_b.data_ptr<double>()[0] = merged.mean;
  var_b.data_ptr<double>()[0] = merged.var;
  count_b.data_ptr<double>()[0] = merged.count;
  std::copy(new_comp.begin(), new_comp.end(), comp_b.data_ptr<double>());
  std::copy(score.begin(), score.end(), score_b.data_ptr<double>());
  updates_b.data_ptr<double>()[0] = updates + 1.0;
  Tensor aux_t = at::empty({static_cast<int64_t>(aux.size())}, at::TensorOptions().dtype(at::kDouble));
  std::copy(aux.begin(), aux.end(), aux_t.data_ptr<double>());
  return {y, group_tensor(gain, rln), p, aux_t};
}

TrainResult train_impl(const Tensor& x_in, Tensor& mean, Tensor& var, Tensor& count, Tensor& comp, Tensor& updates,
                       Tensor& refsize, Tensor& score, const c10::optional<Tensor>& log_prior, bool rln, double momentum,
                       bool exact_var, double max_gain, double eps, bool do_rescale, bool slope) {
  TORCH_CHECK(x_in.device().is_cpu(), "RegularityNorm's fused kernel runs on CPU tensors");
  check_state({&mean, &var, &count, &comp, &updates, &refsize, &score});
  const Tensor x = x_in.contiguous();
  if (x.scalar_type() == at::kFloat) {
    return train_typed<float>(x, mean, var, count, comp, updates, refsize, score, log_prior, rln, momentum, exact_var,
                              max_gain, eps, do_rescale, slope);
  }
  TORCH_CHECK(x.scalar_type() == at::kDouble, "RegularityNorm's fused kernel handles float32 and float64");
  return train_typed<double>(x, mean, var, count, comp, updates, refsize, score, log_prior, rln, momentum, exact_var,
                             max_gain, eps, do_rescale, slope);
}

// grad_x = (gain_g - log s_b) g + [slope] H_g (-p c / (sum p var)) + K1 + K2 c, H_g = -sens_g sum_{i in g} g_i x_i.
template <typename T>
Tensor train_backward_typed(const Tensor& grad, const Tensor& x, const Tensor& p, const Tensor& aux_t,
                            const c10::optional<Tensor>& log_prior, bool rln) {
  const Layout L(x, rln);
  const T* gp = grad.data_ptr<T>();
  const T* xp = x.data_ptr<T>();
  const double* aux = aux_t.data_ptr<double>();
  const int64_t G = L.groups;
  const double mu = aux[kAuxRows * G];
  const double* lp = maybe_log_prior(log_prior);
  Tensor out = at::empty_like(x);
  T* op = out.data_ptr<T>();
  std::vector<double> h(G, 0.0);
  double k1 = 0.0, k2 = 0.0;
  const bool has_slope = p.defined();
  if (has_slope) {
    std::vector<double> gx(G, 0.0);
    if (L.columns) {
      std::vector<T> acc(G, 0);
      T* a = acc.data();
      for (int64_t b = 0; b < L.batch; ++b) {
#pragma omp simd
        for (int64_t f = 0; f < G; ++f) a[f] += gp[b * G + f] * xp[b * G + f];
      }
      gx.assign(acc.begin(), acc.end());
    }
    for (int64_t b = 0; b < L.batch && !L.columns; ++b) {
      for (int64_t s = 0; s < L.segments; ++s) {
        const int64_t off = (b * L.segments + s) * L.length;
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t r = 0; r < L.length; ++r) acc += gp[off + r] * xp[off + r];
        gx[s] += static_cast<double>(acc);
      }
    }
    for (int64_t g = 0; g < G; ++g) {
      h[g] = -aux[G + g] * gx[g];
      k1 += h[g] * aux[3 * G + g];
      k2 += h[g] * aux[4 * G + g];
    }
  }
  const T* pp = has_slope ? p.data_ptr<T>() : nullptr;
  if (L.columns) {
    std::vector<T> sc(G), own(G);
    const T mu_t = static_cast<T>(mu), k1_t = static_cast<T>(k1), k2_t = static_cast<T>(k2);
    for (int64_t f = 0; f < G; ++f) own[f] = static_cast<T>(-h[f] * aux[2 * G + f]);
    for (int64_t b = 0; b < L.batch; ++b) {
      const double lpb = lp ? lp[b] : 0.0;
      for (int64_t f = 0; f < G; ++f) sc[f] = static_cast<T>(aux[f] - lpb);
      const T* scp = sc.data();
      const T* ownp = own.data();
      const int64_t off = b * G;
      if (!has_slope) {
#pragma omp simd
        for (int64_t f = 0; f < G; ++f) op[off + f] = gp[off + f] * scp[f];
        continue;
      }
#pragma omp simd
      for (int64_t f = 0; f < G; ++f) {
        const T c = xp[off + f] - mu_t;
        op[off + f] = scp[f] * gp[off + f] + ownp[f] * pp[off + f] * c + k1_t + k2_t * c;
      }
    }
    return out;
  }
  for (int64_t b = 0; b < L.batch; ++b) {
    const double lpb = lp ? lp[b] : 0.0;
    for (int64_t s = 0; s < L.segments; ++s) {
      const int64_t off = (b * L.segments + s) * L.length;
      const int64_t g = L.rln ? s : 0;
      const double scale = aux[g] - lpb;
      if (!has_slope) {
        const T sc = static_cast<T>(scale);
#pragma omp simd
        for (int64_t r = 0; r < L.length; ++r) op[off + r] = gp[off + r] * sc;
        continue;
      }
      const T own = static_cast<T>(-h[g] * aux[2 * G + g]), sc = static_cast<T>(scale), mu_t = static_cast<T>(mu);
      const T k1_t = static_cast<T>(k1), k2_t = static_cast<T>(k2);
#pragma omp simd
      for (int64_t r = 0; r < L.length; ++r) {
        const T c = xp[off + r] - mu_t;
        op[off + r] = sc * gp[off + r] + own * pp[off + r] * c + k1_t + k2_t * c;
      }
    }
  }
  return out;
}

Tensor train_backward(const Tensor& grad_in, const Tensor& x, const Tensor& p, const Tensor& aux,
                      const c10::optional<Tensor>& log_prior, bool rln) {
  const Tensor grad = grad_in.to(x.scalar_type()).contiguous();
  if (x.scalar_type() == at::kFloat) return train_backward_typed<float>(grad, x, p, aux, log_prior, rln);
  return train_backward_typed<double>(grad, x, p, aux, log_prior, rln);
}

struct EvalResult {
  Tensor y, length, aux;
};

template <typename T>
EvalResult eval_typed(const Tensor& x, const Tensor& mean_b, const Tensor& var_b, const Tensor& comp_b,
                      const Tensor& updates_b, const Tensor& refsize_b, const Tensor& score_b,
                      const c10::optional<Tensor>& log_prior, bool rln, double momentum, bool frozen,
                      bool size_correction, double max_gain, double eps, bool do_rescale) {
  const Layout L(x, rln);
  const T* xp = x.data_ptr<T>();
  const double* lp = maybe_log_prior(log_prior);
  std::vector<double> gain(L.groups, kNaN), applied(L.groups, 1.0);
  const bool started = updates_b.data_ptr<double>()[0] > 0.0;
  double var = 1.0;
  if (started) {
    const double log_decay = momentum > 0.0 ? std::log1p(-momentum) : 0.0;
    var = std::max(var_b.data_ptr<double>()[0], eps * eps);
    const double* comp = comp_b.data_ptr<double>();
    std::vector<double> score(score_b.data_ptr<double>(), score_b.data_ptr<double>() + L.groups);
    if (!frozen) {
      const double mu = mean_b.data_ptr<double>()[0];
      std::vector<double> min_sq;
      double s2 = centred_squares<T, T>(xp, L, mu, min_sq);
      if (std::isnan(s2)) fail("nan_eval");
      const bool wide = !std::isfinite(s2);  // float32 squares overflowed (or an element is infinite)
      std::vector<double> tot, pc, pc2;
      if (wide) {
        centred_squares<T, double>(xp, L, mu, min_sq);
        densities<T, double>(x, false, L, mu, var, min_sq, tot, pc, pc2);
      } else {
        densities<T, T>(x, false, L, mu, var, min_sq, tot, pc, pc2);
      }
      const double correction = size_correction
                                    ? std::log(refsize_b.data_ptr<double>()[0] / static_cast<double>(L.group_size()))
                                    : 0.0;
      for (int64_t g = 0; g < L.groups; ++g) {
        score[g] = std::log(tot[g]) - min_sq[g] * 0.5 / var - std::log(std::sqrt(var)) - kHalfLog2Pi + correction;
      }
    }
    for (int64_t g = 0; g < L.groups; ++g) {
      gain[g] = softplus(comp[g] + log_decay - score[g]);
      applied[g] = std::min(gain[g], max_gain);
    }
  }
  Tensor y;
  if (do_rescale) {
    y = at::empty_like(x);
    rescale(xp, y.data_ptr<T>(), L, applied, lp, var, x);
  } else {
    y = at::empty({0}, x.options());
  }
  Tensor aux = at::empty({L.groups}, at::TensorOptions().dtype(at::kDouble));
  std::copy(applied.begin(), applied.end(), aux.data_ptr<double>());
  return {y, group_tensor(gain, rln), aux};
}

EvalResult eval_impl(const Tensor& x_in, const Tensor& mean, const Tensor& var, const Tensor& comp,
                     const Tensor& updates, const Tensor& refsize, const Tensor& score,
                     const c10::optional<Tensor>& log_prior, bool rln, double momentum, bool frozen,
                     bool size_correction, double max_gain, double eps, bool do_rescale) {
  TORCH_CHECK(x_in.device().is_cpu(), "RegularityNorm's fused kernel runs on CPU tensors");
  check_state({&mean, &var, &comp, &updates, &refsize, &score});
  const Tensor x = x_in.contiguous();
  if (x.scalar_type() == at::kFloat) {
    return eval_typed<float>(x, mean, var, comp, updates, refsize, score, log_prior, rln, momentum, frozen,
                             size_correction, max_gain, eps, do_rescale);
  }
  TORCH_CHECK(x.scalar_type() == at::kDouble, "RegularityNorm's fused kernel handles float32 and float64");
  return eval_typed<double>(x, mean, var, comp, updates, refsize, score, log_prior, rln, momentum, frozen,
                            size_correction, max_gain, eps, do_rescale);
}

// grad_x = (applied_g - log s_b) g: the eval gain is a constant of the batch (as in the pure path).
Tensor eval_backward(const Tensor& grad_in, const Tensor& x, const Tensor& aux, const c10::optional<Tensor>& log_prior,
                     bool rln) {
  const Tensor grad = grad_in.to(x.scalar_type()).contiguous();
  const int64_t groups = aux.numel();
  std::vector<int64_t> shape(x.dim(), 1);
  if (rln) shape[1] = groups;
  Tensor scale = aux.reshape(shape);
  if (log_prior.has_value() && log_prior->defined()) {
    std::vector<int64_t> per_sample(x.dim(), 1);
    per_sample[0] = x.size(0);
    scale = scale - log_prior->reshape(per_sample);
  }
  return grad * scale.to(x.scalar_type());
}

// RN is differentiable once (both paths: the pure one adds its code-length slope as a first-order term), and this
// backward is one C++ pass whose result carries no graph, so a gradient of it (create_graph=True, e.g. a gradient
// penalty through the layer) would silently lack RN's part. Refuse it, as Python's @once_differentiable does.
void check_first_order() {
  TORCH_CHECK(!at::GradMode::is_enabled(),
              "RegularityNorm is differentiable once: backward with create_graph=True (a gradient of a gradient, e.g. "
              "a gradient penalty through the layer) is not supported");
}

class TrainFunction : public torch::autograd::Function<TrainFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& x, Tensor mean, Tensor var, Tensor count, Tensor comp,
                               Tensor updates, Tensor refsize, Tensor score, const c10::optional<Tensor>& log_prior,
                               bool rln, double momentum, bool exact_var, double max_gain, double eps, bool do_rescale,
                               bool slope) {
    TrainResult r = train_impl(x, mean, var, count, comp, updates, refsize, score, log_prior, rln, momentum, exact_var,
                               max_gain, eps, do_rescale, slope);
    const Tensor lp = log_prior.has_value() ? *log_prior : Tensor();
    ctx->save_for_backward({x.contiguous(), r.p, r.aux, lp});
    ctx->saved_data["rln"] = rln;
    ctx->mark_non_differentiable({r.length});
    return {r.y, r.length};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    check_first_order();
    const auto saved = ctx->get_saved_variables();
    const c10::optional<Tensor> lp = saved[3].defined() ? c10::optional<Tensor>(saved[3]) : c10::nullopt;
    Tensor grad_x;
    if (grads[0].defined()) grad_x = train_backward(grads[0], saved[0], saved[1], saved[2], lp, ctx->saved_data["rln"].toBool());
    variable_list out(16);
    out[0] = grad_x;
    return out;
  }
};

class EvalFunction : public torch::autograd::Function<EvalFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& mean, const Tensor& var,
                               const Tensor& comp, const Tensor& updates, const Tensor& refsize, const Tensor& score,
                               const c10::optional<Tensor>& log_prior, bool rln, double momentum, bool frozen,
                               bool size_correction, double max_gain, double eps, bool do_rescale) {
    EvalResult r = eval_impl(x, mean, var, comp, updates, refsize, score, log_prior, rln, momentum, frozen,
                             size_correction, max_gain, eps, do_rescale);
    const Tensor lp = log_prior.has_value() ? *log_prior : Tensor();
    ctx->save_for_backward({x, r.aux, lp});
    ctx->saved_data["rln"] = rln;
    ctx->mark_non_differentiable({r.length});
    return {r.y, r.length};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    check_first_order();
    const auto saved = ctx->get_saved_variables();
    const c10::optional<Tensor> lp = saved[2].defined() ? c10::optional<Tensor>(saved[2]) : c10::nullopt;
    variable_list out(15);
    if (grads[0].defined()) out[0] = eval_backward(grads[0], saved[0], saved[1], lp, ctx->saved_data["rln"].toBool());
    return out;
  }
};

std::tuple<Tensor, Tensor> train_cpu(const Tensor& x, Tensor& mean, Tensor& var, Tensor& count, Tensor& comp,
                                     Tensor& updates, Tensor& refsize, Tensor& score,
                                     const c10::optional<Tensor>& log_prior, bool rln, double momentum, bool exact_var,
                                     double max_gain, double eps, bool do_rescale, bool /*detach_gain*/) {
  TrainResult r = train_impl(x, mean, var, count, comp, updates, refsize, score, log_prior, rln, momentum, exact_var,
                             max_gain, eps, do_rescale, false);
  return {r.y, r.length};
}

std::tuple<Tensor, Tensor> train_autograd(const Tensor& x, Tensor& mean, Tensor& var, Tensor& count, Tensor& comp,
                                          Tensor& updates, Tensor& refsize, Tensor& score,
                                          const c10::optional<Tensor>& log_prior, bool rln, double momentum,
                                          bool exact_var, double max_gain, double eps, bool do_rescale,
                                          bool detach_gain) {
  if (!(do_rescale && x.requires_grad() && at::GradMode::is_enabled())) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return train_cpu(x, mean, var, count, comp, updates, refsize, score, log_prior, rln, momentum, exact_var, max_gain,
                     eps, do_rescale, false);
  }
  auto out = TrainFunction::apply(x, mean, var, count, comp, updates, refsize, score, log_prior, rln, momentum,
                                  exact_var, max_gain, eps, do_rescale, !detach_gain);
  return {out[0], out[1]};
}

std::tuple<Tensor, Tensor> eval_cpu(const Tensor& x, const Tensor& mean, const Tensor& var, const Tensor& comp,
                                    const Tensor& updates, const Tensor& refsize, const Tensor& score,
                                    const c10::optional<Tensor>& log_prior, bool rln, double momentum, bool frozen,
                                    bool size_correction, double max_gain, double eps, bool do_rescale) {
  EvalResult r = eval_impl(x, mean, var, comp, updates, refsize, score, log_prior, rln, momentum, frozen,
                           size_correction, max_gain, eps, do_rescale);
  return {r.y, r.length};
}

std::tuple<Tensor, Tensor> eval_autograd(const Tensor& x, const Tensor& mean, const Tensor& var, const Tensor& comp,
                                         const Tensor& updates, const Tensor& refsize, const Tensor& score,
                                         const c10::optional<Tensor>& log_prior, bool rln, double momentum,
                                         bool frozen, bool size_correction, double max_gain, double eps,
                                         bool do_rescale) {
  if (!(do_rescale && x.requires_grad() && at::GradMode::is_enabled())) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return eval_cpu(x, mean, var, comp, updates, refsize, score, log_prior, rln, momentum, frozen, size_correction,
                    max_gain, eps, do_rescale);
  }
  auto out = EvalFunction::apply(x, mean, var, comp, updates, refsize, score, log_prior, rln, momentum, frozen,
                                 size_correction, max_gain, eps, do_rescale);
  return {out[0], out[1]};
}

// The registered ops take the options as one float64 tensor (built once per layer): parsing a tensor is cheaper
// than parsing seven scalars on every call.
struct Options {
  const double* v;
  explicit Options(const Tensor& t) : v(t.data_ptr<double>()) {
    TORCH_CHECK(t.scalar_type() == at::kDouble && t.numel() == 7 && t.is_contiguous(), "bad RegularityNorm options");
  }
  bool flag(int i) const { return v[i] != 0.0; }
};

// options: [rln, momentum (0: none), exact_var, max_gain (inf: none), eps, rescale, detach_gain]
std::tuple<Tensor, Tensor> rn_train_cpu(const Tensor& x, Tensor& mean, Tensor& var, Tensor& count, Tensor& comp,
                                        Tensor& updates, Tensor& refsize, Tensor& score,
                                        const c10::optional<Tensor>& log_prior, const Tensor& options) {
  const Options o(options);
  return train_cpu(x, mean, var, count, comp, updates, refsize, score, log_prior, o.flag(0), o.v[1], o.flag(2), o.v[3],
                   o.v[4], o.flag(5), o.flag(6));
}

std::tuple<Tensor, Tensor> rn_train_autograd(const Tensor& x, Tensor& mean, Tensor& var, Tensor& count, Tensor& comp,
                                             Tensor& updates, Tensor& refsize, Tensor& score,
                                             const c10::optional<Tensor>& log_prior, const Tensor& options) {
  const Options o(options);
  return train_autograd(x, mean, var, count, comp, updates, refsize, score, log_prior, o.flag(0), o.v[1], o.flag(2),
                        o.v[3], o.v[4], o.flag(5), o.flag(6));
}

// options: [rln, momentum (0: none), frozen, size_correction, max_gain (inf: none), eps, rescale]
std::tuple<Tensor, Tensor> rn_eval_cpu(const Tensor& x, const Tensor& mean, const Tensor& var, const Tensor& comp,
                                       const Tensor& updates, const Tensor& refsize, const Tensor& score,
                                       const c10::optional<Tensor>& log_prior, const Tensor& options) {
  const Options o(options);
  return eval_cpu(x, mean, var, comp, updates, refsize, score, log_prior, o.flag(0), o.v[1], o.flag(2), o.flag(3),
                  o.v[4], o.v[5], o.flag(6));
}

std::tuple<Tensor, Tensor> rn_eval_autograd(const Tensor& x, const Tensor& mean, const Tensor& var, const Tensor& comp,
                                            const Tensor& updates, const Tensor& refsize, const Tensor& score,
                                            const c10::optional<Tensor>& log_prior, const Tensor& options) {
  const Options o(options);
  return eval_autograd(x, mean, var, comp, updates, refsize, score, log_prior, o.flag(0), o.v[1], o.flag(2), o.flag(3),
                       o.v[4], o.v[5], o.flag(6));
}

}  // namespace

TORCH_LIBRARY(sb3_regnorm, m) {
  m.def(
      "rn_train(Tensor x, Tensor(a!) mean, Tensor(b!) var, Tensor(c!) count, Tensor(d!) comp, Tensor(e!) updates, "
      "Tensor(f!) refsize, Tensor(g!) score, Tensor? log_prior, Tensor options) -> (Tensor, Tensor)");
  m.def(
      "rn_eval(Tensor x, Tensor mean, Tensor var, Tensor comp, Tensor updates, Tensor refsize, Tensor score, "
      "Tensor? log_prior, Tensor options) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(sb3_regnorm, CPU, m) {
  m.impl("rn_train", &rn_train_cpu);
  m.impl("rn_eval", &rn_eval_cpu);
}

TORCH_LIBRARY_IMPL(sb3_regnorm, Autograd, m) {
  m.impl("rn_train", &rn_train_autograd);
  m.impl("rn_eval", &rn_eval_autograd);
}
