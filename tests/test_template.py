"""The sandbox template (harness/templates/sandbox): prepare.py's data, tokenizer and metric, and a real train.py run.

Everything runs on a small generated corpus in a temp cache; subprocesses get the cache through
AUTORESEARCH_CACHE, as prepare.py reads it at import.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

TEMPLATE = Path(__file__).resolve().parents[1] / "harness" / "templates" / "sandbox"
WORDS = ("the king and queen of a castle by the sea said that all is well when night falls upon "
         "old towers where ravens sing to men who ride with swords through rain and fire").split()


def write_corpus(folder: Path, n_files: int = 5, words_per_file: int = 2000, seed: int = 0) -> Path:
    """Deterministic ASCII pseudo-prose: *.txt, *.md and *.py files plus one file to be ignored."""
    rng = random.Random(seed)
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    names = ["a.txt", "b.md", "sub/c.py", "sub/d.txt", "e.txt"][:n_files]
    for name in names:
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(words_per_file // 8)]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "ignored.csv").write_text("not,a,document\n", encoding="utf-8")
    return folder


def run_prepare(cache: Path, *args: str, cwd: Path = TEMPLATE) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUTORESEARCH_CACHE": str(cache)}
    env.pop("AUTORESEARCH_RESULT_FILE", None)
    return subprocess.run([sys.executable, "prepare.py", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def load_prepare(cache: Path, corpus: Path):
    """A fresh copy of the template's prepare module pointed at `cache` and `corpus`."""
    spec = importlib.util.spec_from_file_location(f"template_prepare_{id(cache)}_{random.random()}", TEMPLATE / "prepare.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.CACHE_ROOT, mod.CORPUS = Path(cache), str(corpus)
    mod._CONSTANTS["CORPUS"] = mod.CORPUS  # as if `harness init` had written it into the file
    return mod


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """(cache, corpus folder, stdout of prepare) for the small corpus, prepared once per session."""
    corpus = write_corpus(tmp_path_factory.mktemp("corpus"))
    cache = tmp_path_factory.mktemp("cache")
    proc = run_prepare(cache, "--corpus", str(corpus))
    assert proc.returncode == 0, proc.stderr
    return cache, corpus, proc.stdout


@pytest.fixture
def prep(prepared):
    cache, corpus, _ = prepared
    return load_prepare(cache, corpus)


class UniformModel(torch.nn.Module):
    """Logits all zero: every target costs ln(V) nats. Records the mode it was called in."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size, self.dummy, self.modes = vocab_size, torch.nn.Parameter(torch.zeros(1)), []

    def forward(self, idx):
        self.modes.append(self.training)
        return torch.zeros(*idx.shape, self.vocab_size) + 0 * self.dummy


# ----------------------------------------------------------------------------
# prepare.py: corpus, cache, tokenizer

def test_local_folder_corpus_prepares_every_artifact_and_metadata(prepared):
    cache, corpus, stdout = prepared
    (folder,) = [p for p in cache.iterdir() if p.is_dir() and p.name.startswith("local-")]
    assert str(folder) in stdout
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["documents"] == 5  # a.txt, b.md, sub/c.py, sub/d.txt, e.txt; not ignored.csv
    assert meta["corpus"] == str(corpus.resolve())
    assert meta["train_tokens"] > 10 * meta["val_tokens"] > 0
    for name in ("raw.txt", "tokenizer.json", "token_bytes.json", "train.bin", "val.bin"):
        assert (folder / name).stat().st_size > 0
    raw = (folder / "raw.txt").read_bytes()
    assert meta["bytes"] == len(raw) and raw.startswith(b"<|bos|>")
    assert len((folder / "val.bin").read_bytes()) == 2 * meta["val_tokens"]


def test_prepare_is_a_fast_noop_when_already_prepared(prepared):
    cache, corpus, _ = prepared
    (folder,) = [p for p in cache.iterdir() if p.is_dir() and p.name.startswith("local-")]
    before = (folder / "train.bin").stat().st_mtime_ns
    proc = run_prepare(cache, "--corpus", str(corpus))
    assert proc.returncode == 0 and "is ready in" in proc.stdout
    assert (folder / "train.bin").stat().st_mtime_ns == before


def test_missing_corpus_path_fails_with_a_clear_message(tmp_path):
    proc = run_prepare(tmp_path / "cache", "--corpus", "/nonexistent/corpus")
    assert proc.returncode != 0
    assert "corpus path not found: /nonexistent/corpus" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_empty_corpus_folder_fails_with_a_clear_message(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "data.csv").write_text("1,2\n")
    proc = run_prepare(tmp_path / "cache", "--corpus", str(tmp_path / "empty"))
    assert proc.returncode != 0 and "no text in" in proc.stderr


def test_two_concurrent_preparations_agree(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", n_files=2, words_per_file=800)
    env = {**os.environ, "AUTORESEARCH_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "prepare.py", "--corpus", str(corpus)], cwd=TEMPLATE, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    (folder,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir() and p.name.startswith("local-")]
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left
    assert json.loads((folder / "meta.json").read_text())["documents"] == 2


def test_unprepared_or_half_prepared_cache_raises_with_the_fix(tmp_path, prepared):
    cache, corpus, _ = prepared
    mod = load_prepare(tmp_path, corpus)
    with pytest.raises(mod.PrepareError, match=r"python prepare.py"):
        mod.Tokenizer.from_directory()
    (folder,) = [p for p in cache.iterdir() if p.is_dir() and p.name.startswith("local-")]
    half = mod.corpus_dir(str(corpus))  # every file but meta.json, as after a kill
    half.mkdir(parents=True)
    for p in folder.iterdir():
        if p.name != "meta.json":
            shutil.copy(p, half / p.name)
    with pytest.raises(mod.PrepareError, match="not prepared"):
        mod.make_dataloader(None, 2, 8, "train")


def test_split_keeps_all_text_and_cuts_at_a_line(prep):
    docs = ["alpha\n" * 50, "beta\n" * 30 + "gamma", "delta\n" * 20]
    train, val = prep._split(docs)
    assert "".join(train + val) == "".join(docs)
    assert train[-1].endswith("\n") and len("".join(val)) <= 0.06 * len("".join(docs)) + 6


def test_tokenizer_counts_every_byte_and_round_trips(prep):
    tok = prep.Tokenizer.from_directory()
    text = "The king said: naïve café, 東京 ☃ 🙂!\n\tdef f(x):\n        return x ** 2  \r\n"
    ids = tok.encode(text)
    assert sum(tok.token_bytes[i] for i in ids) == len(text.encode("utf-8"))
    assert tok.decode(ids) == text
    bos = tok.get_bos_token_id()
    assert tok.token_bytes[bos] == 0 and tok.encode(text, prepend=bos) == [bos] + ids
    assert tok.encode([text, "sea"], prepend="<|bos|>") == [[bos] + ids, [bos] + tok.encode("sea")]
    assert tok.get_vocab_size() == len(tok.token_bytes) <= prep.VOCAB_SIZE


def test_bytes_to_unicode_is_a_bijection_onto_printable_characters(prep):
    table = prep._bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert all(ch.isprintable() and not ch.isspace() for ch in table.values())
    assert table[ord("A")] == "A" and table[ord(" ")] == "\u0120"  # GPT-2's 'Ġ'


def test_dataloader_yields_shifted_pairs_and_deterministic_val(prep):
    tok = prep.Tokenizer.from_directory()
    x, y, epoch = next(prep.make_dataloader(tok, 3, 16, "train", device="cpu"))
    assert x.shape == y.shape == (3, 16) and x.dtype == y.dtype == torch.long and epoch == 1
    assert torch.equal(x[:, 1:], y[:, :-1])
    a, b = next(prep.make_dataloader(tok, 4, 16, "val")), next(prep.make_dataloader(tok, 4, 16, "val"))
    assert torch.equal(a[0], b[0]) and torch.equal(a[0].flatten().cpu(), prep._tokens("val")[:64])
    with pytest.raises(ValueError, match="split"):
        prep.make_dataloader(tok, 1, 8, "test")


# ----------------------------------------------------------------------------
# prepare.py: evaluate_bpb and the result file

def expected_uniform_bpb(prep, tok, eval_tokens: int) -> float:
    """log2(V) * scored targets / their bytes, counted from val.bin and single-token decoding."""
    raw = array("H", (prep.corpus_dir(prep.CORPUS) / "val.bin").read_bytes())
    targets = list(raw[1:eval_tokens + 1])
    bos = tok.get_bos_token_id()
    nbytes = sum(len(tok.decode([t]).encode("utf-8")) for t in targets if t != bos)  # ASCII corpus
    return math.log2(tok.get_vocab_size()) * sum(t != bos for t in targets) / nbytes


@pytest.mark.parametrize("eval_tokens", [300, 2**15])  # a partial window; all of a short val split
def test_uniform_model_scores_log2_vocab_bits_per_token(prep, eval_tokens):
    prep.EVAL_TOKENS = eval_tokens
    tok = prep.Tokenizer.from_directory()
    model = UniformModel(tok.get_vocab_size())
    bpb = prep.evaluate_bpb(model, tok, batch_size=2)
    n = min(eval_tokens, len(prep._tokens("val")) - 1)
    assert abs(bpb - expected_uniform_bpb(prep, tok, n)) < 1e-4
    assert model.training and model.modes and not any(model.modes)  # eval mode inside, restored after


def test_result_file_is_written_atomically_with_every_field(prep, tmp_path, monkeypatch):
    out = tmp_path / "res" / "metrics.json"
    out.parent.mkdir()
    monkeypatch.setenv("AUTORESEARCH_RESULT_FILE", str(out))
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(prep.os, "replace", lambda a, b: (replaced.append((Path(a), Path(b))), real_replace(a, b)))
    tok = prep.Tokenizer.from_directory()
    model = UniformModel(tok.get_vocab_size())
    first = prep.evaluate_bpb(model, tok, 4)
    data = json.loads(out.read_text())
    assert data["train_s"] is None and data["train_batches"] == data["train_tokens"] == 0  # no training batch yet
    loader = prep.make_dataloader(tok, 2, 8, "train", device="cpu")
    next(loader)
    next(prep.make_dataloader(tok, 4, 16, "val"))  # validation batches are not counted
    prep.evaluate_bpb(model, tok, 4)
    next(loader)  # drawn after the evaluation: not in its result
    data = json.loads(out.read_text())
    assert set(data) == {"val_bpb", "eval_tokens", "eval_bytes", "eval_s", "train_s", "eval_calls", "device",
                         "peak_vram_mb", "corpus", "causal", "causality_max_diff", "tampered",
                         "train_batches", "train_tokens", "num_params", "device_name",
                         "sample_prompt", "sample", "sample_s"}
    assert len(tok.encode(data["sample"])) >= prep.SAMPLE_TOKENS // 2 and data["sample_s"] > 0
    assert data["sample_prompt"] == tok.decode(prep._tokens("val")[:prep.SAMPLE_PROMPT_TOKENS].tolist())
    assert data["train_batches"] == 1 and data["train_tokens"] == 2 * 8
    assert data["num_params"] == 1 and data["device_name"] == "cpu"  # UniformModel: one dummy parameter
    assert data["causal"] is True and data["causality_max_diff"] == 0.0 and data["tampered"] == []
    assert data["val_bpb"] == pytest.approx(first) and data["eval_calls"] == 2 and data["device"] == "cpu"
    assert data["eval_tokens"] > 0 and data["eval_bytes"] > data["eval_tokens"] and data["peak_vram_mb"] == 0.0
    assert 0 <= data["train_s"] < 60 and data["eval_s"] >= 0 and data["corpus"] == prep.CORPUS
    # the score first, then again with the sample, at each of the two calls; temp files in the same folder
    assert [(a.parent, b) for a, b in replaced] == [(out.parent, out)] * 4
    assert sorted(p.name for p in out.parent.iterdir()) == ["metrics.json"]


class PeekingModel(UniformModel):
    """Logits that depend on the whole window (a bidirectional model): not causal."""

    def forward(self, idx):
        future = idx.float().mean(dim=1, keepdim=True)[..., None]  # (B, 1, 1), sees every position
        return torch.zeros(*idx.shape, self.vocab_size) + future * 1e-2 + 0 * self.dummy


def test_a_model_that_sees_the_future_is_reported_not_causal(prep, tmp_path, monkeypatch):
    out = tmp_path / "metrics.json"
    monkeypatch.setenv("AUTORESEARCH_RESULT_FILE", str(out))
    tok = prep.Tokenizer.from_directory()
    prep.evaluate_bpb(PeekingModel(tok.get_vocab_size()), tok, 2)
    data = json.loads(out.read_text())
    assert data["causal"] is False and data["causality_max_diff"] > prep.CAUSAL_TOLERANCE


def test_replaced_functions_and_constants_are_reported_and_not_used(prep, tmp_path, monkeypatch):
    out = tmp_path / "metrics.json"
    monkeypatch.setenv("AUTORESEARCH_RESULT_FILE", str(out))
    tok = prep.Tokenizer.from_directory()
    honest = prep.evaluate_bpb(UniformModel(tok.get_vocab_size()), tok, 2)
    monkeypatch.setattr(prep.F, "cross_entropy", lambda *a, **k: torch.zeros(1))
    monkeypatch.setattr(prep, "EVAL_TOKENS", prep.EVAL_TOKENS)  # same value: not reported
    monkeypatch.setattr(prep, "TIME_BUDGET", 10**6)
    again = prep.evaluate_bpb(UniformModel(tok.get_vocab_size()), tok, 2)
    data = json.loads(out.read_text())
    assert sorted(data["tampered"]) == ["TIME_BUDGET", "torch.nn.functional.cross_entropy"]
    assert again == pytest.approx(honest)  # the metric used the reference cross-entropy


def test_evaluate_bpb_rejects_a_model_that_returns_a_loss(prep):
    class LossModel(UniformModel):
        def forward(self, idx):
            return torch.zeros(()) + self.dummy.sum()

    tok = prep.Tokenizer.from_directory()
    with pytest.raises(ValueError, match="logits"):
        prep.evaluate_bpb(LossModel(tok.get_vocab_size()), tok, 2)


# ----------------------------------------------------------------------------
# train.py: real runs in a copy of the template

def set_line(source: str, name: str, value: str) -> str:
    source, n = re.subn(rf"^{name} = [^#\n]*", f"{name} = {value} ", source, flags=re.M)
    assert n == 1, name
    return source


def train_sandbox(tmp_path, prepared, time_budget: int = 2, **knobs: str) -> Path:
    """A copy of the template on the small corpus with TIME_BUDGET and train.py knobs set."""
    cache, corpus, _ = prepared
    sandbox = tmp_path / "sandbox"
    shutil.copytree(TEMPLATE, sandbox, ignore=shutil.ignore_patterns("__pycache__"))
    prep_src = (sandbox / "prepare.py").read_text()
    prep_src = set_line(set_line(prep_src, "TIME_BUDGET", str(time_budget)), "CORPUS", json.dumps(str(corpus)))
    (sandbox / "prepare.py").write_text(prep_src)
    train_src = (sandbox / "train.py").read_text()
    for name, value in knobs.items():
        train_src = set_line(train_src, name, value)
    (sandbox / "train.py").write_text(train_src)
    return sandbox


def run_train(tmp_path, prepared, time_budget: int = 2, **knobs: str) -> tuple[subprocess.CompletedProcess, Path]:
    cache = prepared[0]
    sandbox = train_sandbox(tmp_path, prepared, time_budget, **knobs)
    result = sandbox / "metrics.json"
    env = {**os.environ, "AUTORESEARCH_CACHE": str(cache), "AUTORESEARCH_RESULT_FILE": str(result)}
    proc = subprocess.run([sys.executable, "train.py"], cwd=sandbox, env=env, capture_output=True, text=True, timeout=300)
    return proc, result


def test_train_py_runs_end_to_end_and_reports_the_summary_block(tmp_path, prepared, monkeypatch):
    """A real run of the template through the harness's runner: the summary train.py prints, and
    what the runner records from the trusted result file (steps, tokens, throughput, model size)."""
    from harness.runner import run_experiment

    monkeypatch.setenv("AUTORESEARCH_CACHE", str(prepared[0]))
    sandbox = train_sandbox(tmp_path, prepared, time_budget=2)
    res = run_experiment(["python", "train.py"], sandbox, sandbox / "runs" / "1", 2, 240)
    stdout = res.log_path.read_text()
    assert res.outcome == "ok" and res.exit_code == 0, stdout
    summary = stdout.split("\n---\n", 1)[1]
    fields = dict(re.findall(r"^(\w+):\s+(\S+)$", summary, flags=re.M))
    assert {"val_bpb", "training_seconds", "total_seconds", "peak_vram_mb", "num_steps", "num_params_M"} <= set(fields)
    data = json.loads((res.log_path.parent / "metrics.json").read_text())
    assert data["eval_calls"] == 1 and abs(float(fields["val_bpb"]) - data["val_bpb"]) < 1e-6
    assert data["causal"] is True and data["tampered"] == []  # the template's GPT passes its own checks
    assert 2 <= float(fields["training_seconds"]) < 10 and data["train_s"] >= 2
    assert 0 < data["val_bpb"] < 20 and res.val_bpb == data["val_bpb"]
    # what the run did, counted by prepare.py: the template draws one batch ahead of its steps
    batch_size = int(re.search(r"^BATCH_SIZE = (\d+)", (sandbox / "train.py").read_text(), re.M)[1])
    seq_len = int(re.search(r"^MAX_SEQ_LEN = (\d+)", (sandbox / "prepare.py").read_text(), re.M)[1])
    assert res.steps == data["train_batches"] == int(fields["num_steps"]) + 1 > 1
    assert res.tokens == data["train_tokens"] == res.steps * batch_size * seq_len
    assert res.tokens_per_s == pytest.approx(res.tokens / res.train_s)
    printed = int(fields["num_steps"]) * batch_size * seq_len / float(fields["training_seconds"])  # first step left out
    assert 0.2 < res.tokens_per_s / printed < 2  # same throughput, give or take the warm-up step
    assert res.num_params == data["num_params"] and abs(res.num_params / 1e6 - float(fields["num_params_M"])) <= 0.005
    if not torch.cuda.is_available():
        assert res.device_name == "cpu" and res.mfu is None
    assert res.gpu_clock_mhz is None or res.gpu_clock_mhz > 0


def test_train_py_runs_with_odd_knob_values(tmp_path, prepared):
    proc, _ = run_train(tmp_path, prepared, time_budget=1, DEPTH="1", N_EMBD="50", N_HEAD="3", MLP_RATIO="1.5",
                        BATCH_SIZE="3", DROPOUT="0.1", GRAD_CLIP="0", WARMUP_FRAC="0", WARMDOWN_FRAC="0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "val_bpb:" in proc.stdout


def test_train_py_fails_fast_when_the_loss_diverges(tmp_path, prepared):
    proc, result = run_train(tmp_path, prepared, time_budget=30, LEARNING_RATE="1e9", WARMUP_FRAC="0", GRAD_CLIP="0")
    assert proc.returncode == 1
    assert re.search(r"^FAIL: loss (is nan|exploded)$", proc.stdout, flags=re.M), proc.stdout
    assert not result.exists()
