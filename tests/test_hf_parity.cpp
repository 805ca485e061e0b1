// HuggingFace parity: the encoder loaded from a HF checkpoint reproduces BertModel's outputs
// (golden values computed by transformers in float64) for both position-id schemes.

#include <string>

#include "dm2s2/backend/reference/reference_backend.hpp"
#include "dm2s2/io/hf_bert.hpp"
#include "test_support.hpp"

using namespace dm2s2;
using dm2s2::testing::golden;
using dm2s2::testing::golden_inputs;
using dm2s2::testing::max_abs_diff;

namespace {

template <class T, class Backend>
void check_parity(double tolerance)
{
    dm2s2::testing::check_hf_parity(load_hf_bert<T, Backend>(dm2s2::testing::tiny_bert_dir()), tolerance);
}

}  // namespace

TEST_CASE("HF BertModel parity, double, within 1e-10 of the f64 golden")
{
    check_parity<double, cpu_backend>(1e-10);
}

TEST_CASE("HF BertModel parity, float, within 2e-5 of the f64 golden")
{
    check_parity<float, cpu_backend>(2e-5);
}

TEST_CASE("HF BertModel parity through the reference backend")
{
    check_parity<double, reference_backend>(1e-10);
    check_parity<float, reference_backend>(2e-5);
}

TEST_CASE("the parity check detects a perturbed weight")
{
    auto model = load_hf_bert<double>(dm2s2::testing::tiny_bert_dir());
    model.for_each_parameter([](const std::string& name, tensor<double>& t) {
        if (name == "encoder.layer.1.output.dense.bias") t[3] += 1e-6;
    });
    const auto out = model.forward(golden_inputs(false));
    const double diff =
        max_abs_diff(out.last_hidden_state.values(), golden().read<double>("f64.default.last_hidden_state").values());
    CHECK(diff > 1e-10);
}
