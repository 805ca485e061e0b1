// A downstream program: builds a tiny random DM²S² model and runs one sample through it.
#include <dm2s2/dm2s2.hpp>

#include <cmath>
#include <iostream>

int main()
{
    dm2s2::schema schema({{"title", dm2s2::modality_kind::tokens, 8}, {"price", dm2s2::modality_kind::numeric, 1}});
    dm2s2::model_config config;
    config.bert.vocab_size = 50;
    config.bert.hidden_size = 16;
    config.bert.num_hidden_layers = 1;
    config.bert.num_attention_heads = 2;
    config.bert.intermediate_size = 32;
    config.bert.max_position_embeddings = 32;
    config.num_outputs = 2;
    config.cls_id = 1;
    config.sep_id = 2;
    dm2s2::model<float> model(schema, config, 7);

    dm2s2::sequence_set sample(schema);
    sample.set_tokens("title", {5, 6, 7});
    sample.set_numeric("price", {3.5});
    const auto out = model.forward(std::vector{sample}, true);
    const bool ok = out.logits.size() == 2 && std::isfinite(out.logits[0]) &&
                    std::abs(out.explanation.beta[0] + out.explanation.beta[1] - 1.0f) < 1e-5f;
    std::cout << "consumer: logits " << out.logits[0] << " " << out.logits[1] << (ok ? " ok" : " FAILED") << "\n";
    return ok ? 0 : 1;
}
