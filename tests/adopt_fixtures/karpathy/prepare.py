"""
Test fixture shaped like karpathy/autoresearch's prepare.py (not a copy of it).

Same public interface (constants, Tokenizer, get_token_bytes, make_dataloader, evaluate_bpb),
but tiny and offline: the "dataset" is a handful of Python standard-library source files and
the tokenizer is byte-level (ids 0-255 are bytes, 256 is BOS).

Usage:
    python prepare.py        # writes data and tokenizer under ~/.cache/autoresearch/
"""

import os
import sys
import math
import time
import sysconfig

import torch

# ---------------------------------------------------------------------------
# Constants (fixed, do not modify)
# ---------------------------------------------------------------------------

MAX_SEQ_LEN = 64           # context length
TIME_BUDGET = 2            # training time budget in seconds
EVAL_TOKENS = 8 * 1024     # number of tokens for val eval

# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "autoresearch")
DATA_DIR = os.path.join(CACHE_DIR, "data")
TOKENIZER_DIR = os.path.join(CACHE_DIR, "tokenizer")
VOCAB_SIZE = 257           # 256 byte tokens + BOS

SOURCE_FILES = ["textwrap.py", "argparse.py", "difflib.py", "shlex.py", "calendar.py"]
VAL_FRACTION = 0.1
BOS_ID = 256

# ---------------------------------------------------------------------------
# Data preparation
# ---------------------------------------------------------------------------

def prepare_data():
    """Write DATA_DIR/train.txt and DATA_DIR/val.txt from stdlib sources (skipped if present)."""
    train_path = os.path.join(DATA_DIR, "train.txt")
    val_path = os.path.join(DATA_DIR, "val.txt")
    if os.path.exists(train_path) and os.path.exists(val_path):
        print(f"Data: already prepared at {DATA_DIR}")
        return
    os.makedirs(DATA_DIR, exist_ok=True)
    stdlib = sysconfig.get_paths()["stdlib"]
    parts = []
    for name in SOURCE_FILES:
        with open(os.path.join(stdlib, name), encoding="utf-8") as f:
            parts.append(f.read())
        print(f"  Read {name} ({len(parts[-1]):,} chars)")
    text = "\n".join(parts)
    split = int(len(text) * (1 - VAL_FRACTION))
    for path, chunk in ((train_path, text[:split]), (val_path, text[split:])):
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(chunk)
        os.replace(tmp, path)
    print(f"Data: {split:,} train chars, {len(text) - split:,} val chars -> {DATA_DIR}")


def prepare_tokenizer():
    """Write TOKENIZER_DIR/token_bytes.pt: byte length of each token id (skipped if present)."""
    path = os.path.join(TOKENIZER_DIR, "token_bytes.pt")
    if os.path.exists(path):
        print(f"Tokenizer: already prepared at {TOKENIZER_DIR}")
        return
    os.makedirs(TOKENIZER_DIR, exist_ok=True)
    token_bytes = torch.ones(VOCAB_SIZE, dtype=torch.int32)
    token_bytes[BOS_ID] = 0  # special tokens count no bytes
    tmp = path + ".tmp"
    torch.save(token_bytes, tmp)
    os.replace(tmp, path)
    print(f"Tokenizer: byte-level, vocab size {VOCAB_SIZE} -> {TOKENIZER_DIR}")

# ---------------------------------------------------------------------------
# Runtime utilities (imported by train.py)
# ---------------------------------------------------------------------------

class Tokenizer:
    """Byte-level tokenizer: ids 0-255 are raw bytes, 256 is BOS."""

    def __init__(self, bos_token_id=BOS_ID):
        self.bos_token_id = bos_token_id

    @classmethod
    def from_directory(cls, tokenizer_dir=TOKENIZER_DIR):
        if not os.path.exists(os.path.join(tokenizer_dir, "token_bytes.pt")):
            raise FileNotFoundError(f"No tokenizer in {tokenizer_dir}; run `python prepare.py` first")
        return cls()

    def get_vocab_size(self):
        return VOCAB_SIZE

    def get_bos_token_id(self):
        return self.bos_token_id

    def encode(self, text, prepend=None):
        if isinstance(text, str):
            ids = list(text.encode("utf-8"))
            if prepend is not None:
                ids.insert(0, prepend)
            return ids
        return [self.encode(t, prepend=prepend) for t in text]

    def decode(self, ids):
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def get_token_bytes(device="cpu"):
    path = os.path.join(TOKENIZER_DIR, "token_bytes.pt")
    with open(path, "rb") as f:
        return torch.load(f, map_location=device)


def _load_split(tokenizer, split):
    assert split in ("train", "val")
    with open(os.path.join(DATA_DIR, f"{split}.txt"), encoding="utf-8") as f:
        text = f.read()
    return torch.tensor(tokenizer.encode(text, prepend=tokenizer.get_bos_token_id()), dtype=torch.long)


def make_dataloader(tokenizer, B, T, split):
    """
    Infinite iterator of (inputs, targets, epoch), each (B, T) int64 on the device.
    train: random windows; val: consecutive windows, deterministic.
    """
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokens = _load_split(tokenizer, split)
    n_windows = (len(tokens) - 1) // T
    assert n_windows > 0, f"{split} split too small for T={T}"
    gen = torch.Generator().manual_seed(1337)
    epoch, used, pos = 1, 0, 0
    while True:
        if split == "train":
            starts = torch.randint(0, len(tokens) - T - 1, (B,), generator=gen)
        else:
            starts = []
            for _ in range(B):
                if pos + T + 1 > len(tokens):
                    pos = 0
                    epoch += 1
                starts.append(pos)
                pos += T
            starts = torch.tensor(starts)
        rows = torch.stack([tokens[s:s + T + 1] for s in starts.tolist()])
        batch = rows.to(device, non_blocking=True)
        yield batch[:, :-1].contiguous(), batch[:, 1:].contiguous(), epoch
        if split == "train":
            used += B
            if used >= n_windows:
                used -= n_windows
                epoch += 1

# ---------------------------------------------------------------------------
# Evaluation (DO NOT CHANGE -- this is the fixed metric)
# ---------------------------------------------------------------------------

@torch.no_grad()
def evaluate_bpb(model, tokenizer, batch_size):
    """
    Bits per byte: summed per-token cross-entropy (nats) over summed target byte lengths,
    converted to bits. Tokens with byte length 0 (BOS) are left out of both sums.
    """
    device = "cuda" if torch.cuda.is_available() else "cpu"
    token_bytes = get_token_bytes(device=device)
    val_loader = make_dataloader(tokenizer, batch_size, MAX_SEQ_LEN, "val")
    steps = max(1, EVAL_TOKENS // (batch_size * MAX_SEQ_LEN))
    total_nats = 0.0
    total_bytes = 0
    for _ in range(steps):
        x, y, _ = next(val_loader)
        loss_flat = model(x, y, reduction='none').view(-1)
        y_flat = y.view(-1)
        nbytes = token_bytes[y_flat]
        mask = nbytes > 0
        total_nats += (loss_flat * mask).sum().item()
        total_bytes += nbytes.sum().item()
    return total_nats / (math.log(2) * total_bytes)

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

if __name__ == "__main__":
    t0 = time.time()
    print(f"Cache directory: {CACHE_DIR}")
    print()
    prepare_data()
    prepare_tokenizer()
    print()
    print(f"Done in {time.time() - t0:.1f}s. Ready to train: python train.py")
    sys.exit(0)
