#pragma once
/// \file
/// Umbrella header: everything a user of dm2s2 needs, except the text pipeline (dm2s2/text/: the
/// WordPiece tokenizer and the JSON Lines records of the tools), which needs utf8proc and the
/// `dm2s2::text` target.

#include "dm2s2/backend/default_backend.hpp"
#include "dm2s2/backend/reference/reference_backend.hpp"
#include "dm2s2/core/error.hpp"
#include "dm2s2/core/random.hpp"
#include "dm2s2/core/tensor.hpp"
#include "dm2s2/data/category_table.hpp"
#include "dm2s2/data/encoded_records.hpp"
#include "dm2s2/data/packing.hpp"
#include "dm2s2/data/schema.hpp"
#include "dm2s2/data/sequence_set.hpp"
#include "dm2s2/distributed/communicator.hpp"
#include "dm2s2/explain/attribution.hpp"
#include "dm2s2/explain/faithfulness.hpp"
#include "dm2s2/io/checkpoint.hpp"
#include "dm2s2/io/hf_encoder.hpp"
#include "dm2s2/io/safetensors.hpp"
#include "dm2s2/model/bert_model.hpp"
#include "dm2s2/model/dm2s2_model.hpp"
#include "dm2s2/train/dataset.hpp"
#include "dm2s2/train/evaluation.hpp"
#include "dm2s2/train/losses.hpp"
#include "dm2s2/train/metrics.hpp"
#include "dm2s2/train/optimizer.hpp"
#include "dm2s2/train/progress.hpp"
#include "dm2s2/train/train_step.hpp"
#include "dm2s2/train/trainer.hpp"
#include "dm2s2/train/training_checkpoint.hpp"
