"""Run by tests/test_distributed.py under torchrun (2 ranks, gloo): sharded sampling and log-prob scoring
must give exactly what one process computes, and gather must undo shard."""

import json
import sys
from pathlib import Path

from transformers import GPT2Config

from mpo.infra import distributed
from mpo.models.policies import Decoding, HFPolicy
from mpo.models.sampling import Samples, sample
from mpo.training.sft import build_base_model

out = Path(sys.argv[1])
distributed.init(120)
texts = [f"review {i}: the food was {'good' if i % 2 else 'bad'} and the staff {i % 5}" for i in range(64)]
model_dir = out / "model"
if distributed.is_main():
    build_base_model(texts, 128, GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=64), model_dir)
distributed.barrier("building the model")
policy = HFPolicy.from_pretrained(model_dir)
prompts = [f"review {i}:" for i in range(7)]
decoding = Decoding(max_new_tokens=8, batch_size=4, seed=3)  # 21 responses: 6 chunks, uneven between 2 ranks
sharded = sample(policy, prompts, 3, decoding, shard=True)
alone = sample(policy, prompts, 3, decoding)
same_samples = sharded == alone and isinstance(sharded, Samples)
items = list(range(11))
same_order = distributed.gather(distributed.shard(items), "test") == items
if distributed.is_main():
    (out / "ranks.json").write_text(json.dumps({"same_samples": same_samples, "same_order": same_order,
                                                "responses": len(sharded.responses)}))
distributed.close()
