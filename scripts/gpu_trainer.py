"""GPU check: a real transformers Trainer (randomly initialised GPT-2, no download) trains on
the GPU under Eco2AICallback; prints the callback's summary and run directory."""
import json
import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from hf_eco2ai import CarbonConfig, Eco2AICallback


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n=4096, seq=256, vocab=8192):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab, (n, seq), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


out_dir = sys.argv[1]
cfg = CarbonConfig(project_name="gpu-check", model_name="gpt2-small-random", country="US",
                   output_dir=out_dir, price_per_kwh=0.15, gpu_hour_usd=3.0)
cb = Eco2AICallback(config=cfg)
model = GPT2LMHeadModel(GPT2Config(vocab_size=8192, n_positions=256, n_embd=768, n_layer=12, n_head=12))
args = TrainingArguments(output_dir=out_dir + "/hf", max_steps=150, per_device_train_batch_size=32,
                         logging_steps=10, save_strategy="no", report_to=[], bf16=True,
                         disable_tqdm=True)
Trainer(model=model, args=args, train_dataset=Tokens(), callbacks=[cb]).train()
print(json.dumps({"run_dir": cb.run_dir, "summary": cb.summary}, default=str))
