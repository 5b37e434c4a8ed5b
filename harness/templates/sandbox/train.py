"""Train a small GPT for a fixed time budget and report validation bits per byte.

This is the file the research agent edits. Hyperparameters are the ALL_CAPS constants below.
The data, tokenizer, time budget and metric come from prepare.py, which is read-only.
Defaults are sized for a 2-core CPU and a 60 s budget (~430 steps, val_bpb ~2.24 on shakespeare).
On a CUDA GPU the same code runs with bf16 autocast and TF32; raise BATCH_SIZE, N_EMBD and DEPTH
and try COMPILE = True for a 300 s budget. The GPU path has not been measured yet (CPU-only tests).
"""
import math
import sys
import time

t_start = time.perf_counter()

import torch
import torch.nn as nn
import torch.nn.functional as F

from prepare import MAX_SEQ_LEN, TIME_BUDGET, Tokenizer, evaluate_bpb, make_dataloader

# ----------------------------------------------------------------------------
# Hyperparameters (plain literals: the harness's knob tool rewrites them)

DEPTH = 4  # transformer blocks
N_EMBD = 128  # model width (residual stream channels)
N_HEAD = 4  # attention heads; head dim = N_EMBD // N_HEAD, rounded down to even
MLP_RATIO = 4  # MLP hidden width = MLP_RATIO * N_EMBD
BATCH_SIZE = 8  # sequences of MAX_SEQ_LEN tokens per optimizer step (raise it on a GPU)
LEARNING_RATE = 3e-3  # peak AdamW learning rate
WEIGHT_DECAY = 0.1  # AdamW decoupled weight decay on matrices and embeddings
BETA1 = 0.9  # AdamW first-moment decay
BETA2 = 0.95  # AdamW second-moment decay
WARMUP_FRAC = 0.05  # share of the time budget spent warming the learning rate up
WARMDOWN_FRAC = 0.3  # share of the time budget at the end spent decaying it linearly
FINAL_LR_FRAC = 0.0  # learning rate at the end, as a fraction of the peak
GRAD_CLIP = 1.0  # max global gradient norm; 0 disables clipping
DROPOUT = 0.0  # dropout on attention weights and residual branches
ROPE_BASE = 10000.0  # rotary embedding base frequency
SEED = 42  # random seed for initialization and batch sampling
EVAL_BATCH_SIZE = 16  # sequences per forward pass during evaluation
LOG_EVERY = 10  # print a progress line every this many steps
COMPILE = False  # torch.compile the model (CUDA only)

# ----------------------------------------------------------------------------
# Model: GPT with RMSNorm, rotary position embeddings, causal attention, ReLU^2 MLP


def rms_norm(x):
    """RMSNorm without a gain (Zhang & Sennrich 2019): x / sqrt(mean(x^2) + eps) over the last dim."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


def rotary_tables(seq_len, head_dim, base, device):
    """cos, sin of shape (seq_len, head_dim // 2) for rotary embeddings (Su et al. 2021, RoFormer)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32, device=device), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x, cos, sin):
    """Rotate pairs (first half, second half) of the last dim of x (B, H, T, D) by position."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos[: x.size(-2)].to(x.dtype), sin[: x.size(-2)].to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Attention(nn.Module):
    def __init__(self, n_embd, n_head, head_dim):
        super().__init__()
        self.n_head, self.head_dim = n_head, head_dim
        self.qkv = nn.Linear(n_embd, 3 * n_head * head_dim, bias=False)
        self.proj = nn.Linear(n_head * head_dim, n_embd, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(rms_norm(q), cos, sin), apply_rotary(rms_norm(k), cos, sin)  # QK-norm
        p = DROPOUT if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        return self.proj(y.transpose(1, 2).reshape(B, T, -1))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, head_dim, hidden):
        super().__init__()
        self.attn = Attention(n_embd, n_head, head_dim)
        self.fc = nn.Linear(n_embd, hidden, bias=False)
        self.fc_out = nn.Linear(hidden, n_embd, bias=False)
        self.drop = nn.Dropout(DROPOUT)

    def forward(self, x, cos, sin):
        x = x + self.drop(self.attn(rms_norm(x), cos, sin))
        return x + self.drop(self.fc_out(F.relu(self.fc(rms_norm(x))).square()))  # ReLU^2 (So et al. 2021)


class GPT(nn.Module):
    """Decoder-only transformer. forward(idx (B, T) int64) -> logits (B, T, vocab) float32, or,
    given targets (B, T), the cross-entropy loss in nats (mean, or per token with reduction="none")."""

    def __init__(self, vocab_size, depth, n_embd, n_head, mlp_ratio, seq_len):
        super().__init__()
        head_dim = max(2, n_embd // n_head // 2 * 2)  # even, so any N_EMBD / N_HEAD pair works
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, head_dim, max(1, int(mlp_ratio * n_embd)))
                                    for _ in range(depth))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.head_dim, self.seq_len = head_dim, seq_len
        for name, p in self.named_parameters():  # output projections start at zero: blocks start as identity
            if name.endswith(("proj.weight", "fc_out.weight")):
                nn.init.zeros_(p)
            else:
                nn.init.normal_(p, std=0.02)
        self.set_rotary(seq_len, torch.device("cpu"))

    def set_rotary(self, seq_len, device):
        self.cos, self.sin = rotary_tables(seq_len, self.head_dim, ROPE_BASE, device)

    def forward(self, idx, targets=None, reduction="mean"):
        if idx.size(1) > self.cos.size(0) or self.cos.device != idx.device:
            self.set_rotary(max(idx.size(1), self.seq_len), idx.device)
        x = self.wte(idx)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        logits = self.lm_head(rms_norm(x)).float()
        if targets is None:
            return logits
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction=reduction)


# ----------------------------------------------------------------------------
# Setup: device, data, model, optimizer

torch.manual_seed(SEED)
device = torch.device("cuda" if torch.cuda.is_available()
                      else "mps" if torch.backends.mps.is_available() else "cpu")
if device.type == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
autocast = torch.autocast("cuda" if device.type == "cuda" else "cpu", dtype=torch.bfloat16,
                          enabled=device.type == "cuda")  # bf16 on CUDA only

tokenizer = Tokenizer.from_directory()
vocab_size = tokenizer.get_vocab_size()
model = GPT(vocab_size, max(1, int(DEPTH)), max(2, int(N_EMBD)), max(1, int(N_HEAD)), MLP_RATIO, MAX_SEQ_LEN).to(device)
num_params = sum(p.numel() for p in model.parameters())
train_model = torch.compile(model) if COMPILE and device.type == "cuda" else model
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
groups = [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]
optimizer = torch.optim.AdamW(groups, lr=LEARNING_RATE, betas=(BETA1, BETA2), fused=device.type == "cuda")
batch_size, eval_batch_size = max(1, int(BATCH_SIZE)), max(1, int(EVAL_BATCH_SIZE))
log_every = max(1, int(LOG_EVERY))
train_loader = make_dataloader(tokenizer, batch_size, MAX_SEQ_LEN, "train", device=device)
print(f"device {device} | params {num_params / 1e6:.2f}M | vocab {vocab_size} | "
      f"batch {batch_size}x{MAX_SEQ_LEN} tokens | budget {TIME_BUDGET} s", flush=True)


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

training_seconds, step, tokens_seen = 0.0, 0, 0
x, y, epoch = next(train_loader)
while True:
    t0 = time.perf_counter()
    lr = LEARNING_RATE * lr_multiplier(training_seconds / TIME_BUDGET)
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast:
        loss = train_model(x, y)
    loss.backward()
    if GRAD_CLIP > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    x, y, epoch = next(train_loader)
    loss_value = loss.item()  # waits for the step to finish
    dt = time.perf_counter() - t0
    if step > 0:  # the first step (allocation, compilation) is warm-up and not counted
        training_seconds += dt
    step += 1
    tokens_seen += batch_size * MAX_SEQ_LEN
    if not math.isfinite(loss_value):
        print("FAIL: loss is nan", flush=True)
        sys.exit(1)
    if loss_value > 100:
        print("FAIL: loss exploded", flush=True)
        sys.exit(1)
    if step % log_every == 0 or step == 1:
        print(f"step {step:5d} | loss {loss_value:.4f} | lr {lr:.2e} | {dt * 1000:.0f} ms | "
              f"{batch_size * MAX_SEQ_LEN / dt:,.0f} tok/s | epoch {epoch} | "
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
print(f"depth:            {DEPTH}")
print(f"device:           {device}", flush=True)
