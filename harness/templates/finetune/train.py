"""Fine-tune a pretrained causal language model for a fixed time budget; report validation bits per byte.

This is the file the research agent edits. Hyperparameters are the ALL_CAPS constants below. The
base model, data, tokenizer, time budget and metric come from prepare.py, which is read-only:
`load_base_model()` returns the pretrained model (BASE_MODEL in prepare.py, SmolLM2-135M-Instruct
by default). By default a LoRA adapter (Hu et al. 2021, arXiv:2106.09685, via peft) on the
attention's query and value projections trains and the pretrained weights stay frozen;
FULL_FINETUNE = True trains every weight instead. Sized for a 2-core CPU and a 60 s budget.
"""
import math
import sys
import time

t_start = time.perf_counter()

import torch

from peft import LoraConfig, get_peft_model
from prepare import MAX_SEQ_LEN, TIME_BUDGET, Tokenizer, evaluate_bpb, load_base_model, make_dataloader

# ----------------------------------------------------------------------------
# Hyperparameters (plain literals: the harness's knob tool rewrites them)

FULL_FINETUNE = False  # train every weight instead of a LoRA adapter
LORA_RANK = 8  # rank r of each LoRA update B @ A
LORA_ALPHA = 16  # LoRA scaling: the update is multiplied by LORA_ALPHA / LORA_RANK
LORA_DROPOUT = 0.0  # dropout on the LoRA branch's input
LORA_QV = True  # adapters on the attention's query and value projections
LORA_KO = False  # adapters on the attention's key and output projections
LORA_MLP = False  # adapters on the MLP's gate, up and down projections
TRAIN_LAST_LAYERS = 0  # 0: every layer trains; N: only the last N transformer layers
BATCH_SIZE = 4  # sequences per optimizer step
TRAIN_SEQ_LEN = 128  # tokens per training sequence (at most MAX_SEQ_LEN; evaluation always uses MAX_SEQ_LEN)
LEARNING_RATE = 1e-3  # peak AdamW learning rate
WEIGHT_DECAY = 0.0  # AdamW decoupled weight decay
BETA1 = 0.9  # AdamW first-moment decay
BETA2 = 0.99  # AdamW second-moment decay
WARMUP_FRAC = 0.1  # share of the time budget spent warming the learning rate up
WARMDOWN_FRAC = 0.3  # share of the time budget at the end spent decaying it linearly
FINAL_LR_FRAC = 0.0  # learning rate at the end, as a fraction of the peak
GRAD_CLIP = 1.0  # max global gradient norm; 0 disables clipping
SEED = 42  # random seed for the adapter's initialization and batch sampling
EVAL_BATCH_SIZE = 8  # sequences per forward pass during evaluation
LOG_EVERY = 1  # print a progress line every this many steps

# ----------------------------------------------------------------------------
# Setup: device, data, model, optimizer

torch.manual_seed(SEED)
device = torch.device("cuda" if torch.cuda.is_available()
                      else "mps" if torch.backends.mps.is_available() else "cpu")
autocast = torch.autocast("cuda" if device.type == "cuda" else "cpu", dtype=torch.bfloat16,
                          enabled=device.type == "cuda")  # bf16 on CUDA only

tokenizer = Tokenizer.from_directory()
model = load_base_model(device)
num_layers = model.config.num_hidden_layers
first_trained = max(0, num_layers - int(TRAIN_LAST_LAYERS)) if TRAIN_LAST_LAYERS > 0 else 0
if FULL_FINETUNE:
    for name, p in model.named_parameters():
        layer = next((int(part) for part in name.split(".") if part.isdigit()), None)
        p.requires_grad = layer is None or layer >= first_trained
else:
    targets = (["q_proj", "v_proj"] if LORA_QV else []) + (["k_proj", "o_proj"] if LORA_KO else []) + \
              (["gate_proj", "up_proj", "down_proj"] if LORA_MLP else [])
    if not targets:
        print("FAIL: no LoRA targets (set LORA_QV, LORA_KO or LORA_MLP)", flush=True)
        sys.exit(1)
    lora = LoraConfig(r=max(1, int(LORA_RANK)), lora_alpha=LORA_ALPHA, lora_dropout=LORA_DROPOUT,
                      target_modules=targets, layers_to_transform=list(range(first_trained, num_layers)))
    model = get_peft_model(model, lora)
trained = [p for p in model.parameters() if p.requires_grad]
num_params = sum(p.numel() for p in model.parameters())
num_trained = sum(p.numel() for p in trained)
decay = [p for p in trained if p.dim() >= 2]
no_decay = [p for p in trained if p.dim() < 2]
groups = [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]
optimizer = torch.optim.AdamW(groups, lr=LEARNING_RATE, betas=(BETA1, BETA2))
batch_size, eval_batch_size = max(1, int(BATCH_SIZE)), max(1, int(EVAL_BATCH_SIZE))
seq_len = max(8, min(int(TRAIN_SEQ_LEN), MAX_SEQ_LEN))
train_loader = make_dataloader(tokenizer, batch_size, seq_len, "train", device=device)
print(f"device {device} | params {num_params / 1e6:.1f}M, training {num_trained / 1e6:.2f}M | "
      f"batch {batch_size}x{seq_len} tokens | budget {TIME_BUDGET} s", flush=True)


def lr_multiplier(progress):
    """Learning-rate factor at `progress` = training seconds / TIME_BUDGET: linear warmup,
    constant, then linear warmdown to FINAL_LR_FRAC."""
    if WARMUP_FRAC > 0 and progress < WARMUP_FRAC:
        return (progress + 1e-3) / WARMUP_FRAC
    if WARMDOWN_FRAC > 0 and progress > 1 - WARMDOWN_FRAC:
        frac = min(1.0, max(0.0, (1 - progress) / WARMDOWN_FRAC))
        return FINAL_LR_FRAC + (1 - FINAL_LR_FRAC) * frac
    return 1.0


# ----------------------------------------------------------------------------
# Training loop: stops when the measured training time reaches TIME_BUDGET seconds

model.train()
training_seconds, step, tokens_seen = 0.0, 0, 0
x, y, epoch = next(train_loader)
while True:
    t0 = time.perf_counter()
    lr = LEARNING_RATE * lr_multiplier(training_seconds / TIME_BUDGET)
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast:
        logits = model(x).logits
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())
    loss.backward()
    if GRAD_CLIP > 0:
        torch.nn.utils.clip_grad_norm_(trained, GRAD_CLIP)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    x, y, epoch = next(train_loader)
    loss_value = loss.item()  # waits for the step to finish
    dt = time.perf_counter() - t0
    training_seconds += dt  # a pretrained model needs no compilation warm-up: every step counts
    step += 1
    tokens_seen += batch_size * seq_len
    if not math.isfinite(loss_value):
        print("FAIL: loss is nan", flush=True)
        sys.exit(1)
    if loss_value > 100:
        print("FAIL: loss exploded", flush=True)
        sys.exit(1)
    if step % LOG_EVERY == 0 or step == 1:
        print(f"step {step:4d} | loss {loss_value:.4f} | lr {lr:.2e} | {dt * 1000:.0f} ms | "
              f"{batch_size * seq_len / dt:,.0f} tok/s | epoch {epoch} | "
              f"{training_seconds:.1f}/{TIME_BUDGET} s", flush=True)
    if training_seconds >= TIME_BUDGET:
        break

# ----------------------------------------------------------------------------
# Evaluation and summary (the harness reads val_bpb from prepare.py's result file)

with autocast:
    val_bpb = evaluate_bpb(model, tokenizer, eval_batch_size)
peak_vram_mb = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0
print("---")
print(f"val_bpb:          {val_bpb:.6f}")
print(f"training_seconds: {training_seconds:.1f}")
print(f"total_seconds:    {time.perf_counter() - t_start:.1f}")
print(f"peak_vram_mb:     {peak_vram_mb:.1f}")
print(f"total_tokens_M:   {tokens_seen / 1e6:.2f}")
print(f"num_steps:        {step}")
print(f"num_params_M:     {num_params / 1e6:.2f}")
print(f"trained_params_M: {num_trained / 1e6:.3f}")
print(f"device:           {device}", flush=True)
