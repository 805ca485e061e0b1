// Builds a one-layer DM²S² over two modalities and explains one record: the package's headers, its
// dependencies and the C++20 setting all reached this program.
#include <dm2s2/dm2s2.hpp>

#include <iostream>

int main()
{
    const dm2s2::schema schema({{.name = "words", .kind = dm2s2::modality_kind::tokens, .max_length = 4},
                                {.name = "tags", .kind = dm2s2::modality_kind::categorical, .max_length = 2, .categories = 3}});
    dm2s2::model_config config;
    config.bert = {.vocab_size = 20,
                   .hidden_size = 8,
                   .num_hidden_layers = 1,
                   .num_attention_heads = 2,
                   .intermediate_size = 16,
                   .max_position_embeddings = 16};
    config.num_outputs = 2;
    config.cls_id = 1;
    config.sep_id = 2;
    const dm2s2::model<float> model(schema, config, /*seed=*/1);
    dm2s2::sequence_set record(schema);
    record.set_tokens("words", {4, 5}).set_categorical("tags", {1});
    const auto out = model.forward(std::vector{record}, /*explain=*/true);
    const float total = out.explanation.beta_of(0, 0) + out.explanation.beta_of(0, 1);
    std::cout << "dm2s2 test_package: beta " << out.explanation.beta_of(0, 0) << " + " << out.explanation.beta_of(0, 1) << "\n";
    return total > 0.999f && total < 1.001f ? 0 : 1;
}
