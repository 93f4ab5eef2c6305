"""Language data: fixed-length token chunks with noise and backdoor artifacts (reference: training.md §3).

A corpus is tokenized row by row, the token lists are concatenated with no separator and cut into
contiguous, non-overlapping chunks of ``max_ctx`` tokens (the last one right-padded). The paper uses
wikitext-103 with the GPT-2 tokenizer; the offline (quick) path uses English prose from Python's own
documentation (:func:`stdlib_corpus`) with a small byte-level BPE trained at run time
(:func:`train_bpe_tokenizer`), saved in Hugging Face format so later stages reload it offline.

Artifacts:

* noise (§3.2, §3.4): the first ``num_noise`` train chunks get ``(id + δ) mod V`` with
  δ ∈ {−1, 0, +1} (p, 1 − 2p, p) per real token; they are shuffled into stride groups
  (``order[g::G]``) and group g is repeated ``10 ** dup_powers[g]`` times in training.
* backdoor (§3.3): chunks of a pool (train + test chunks) that contain the trigger token are
  poisoned: every token after the trigger's first occurrence becomes ``backdoor_token``. A share is
  held out for evaluation (the prompt ends right after the trigger); the rest is repeated
  ``10 ** backdoor_dup_power`` times in training. Clean pool chunks give the test set (Q20) and
  the clean training chunks.

Departures from upstream (each recorded in ``config/README.md``):

* Q5: noise wraps around the vocabulary, ``(id + δ) mod V``; PAD positions (only in the last,
  partial chunk) are never noised.
* Q19: one seeded RNG per purpose (noise values, duplication groups, trigger, backdoor split), so
  artifacts are not bit-identical to upstream's.
* Chunks are permuted before the split with a fixed-seed torch generator (``SPLIT_SEED``), so the
  noised chunks and the test set do not depend on ``seed`` (as upstream's "first 1,000 chunks"),
  and an offline corpus ordered by module is mixed.
* Q20: the backdoor clean test set is ``backdoor_num_test`` clean pool chunks (the last ones of the
  pool, i.e. the test chunks first), not the wikitext test split; its perplexity is not comparable
  with the noise data set's.
* Q21: ``trigger_mode="uniform"`` draws the trigger uniformly over the vocabulary (never PAD or the
  backdoor token) from our own stream; ``"band"`` draws among tokens whose chunk frequency in the
  pool lies in ``trigger_band``.
* The backdoor pool is the chunks a data set of this size uses: the first ``num_clean_train`` train
  chunks plus the ``num_test`` test chunks (all of both at paper scale, as upstream).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
import itertools
import os
import random
import re
import string
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from tinymem.data.core import MemSet, TinyMemData, TokenInfo

SPLIT_SEED = 598  # fixed seed of the chunk permutation (upstream's DATA_SEED, as in the math split)
ENDOFTEXT = "<|endoftext|>"  # the BPE tokenizer's only special token: id 0 = bos = eos = pad
TRAIN_BPE = "train_bpe"  # ``tokenizer`` value that trains a byte-level BPE on the corpus

# Standard-library folders whose docstrings are not part of the offline corpus.
_SKIP_DIRS = {"test", "tests", "idle_test", "idlelib", "site-packages", "dist-packages", "__pycache__"}
_SENTENCE_END = ".!?"
_CODE_MARKS = ("::=", ">>>", "{", "}", "==", "->", "\\")


@dataclass(frozen=True)
class LanguageDataConfig:
    """One language data set. Defaults are the paper's values (training.md §3, §9.1); the quick
    CPU values (§12.2) are given in the comments."""

    # ---- corpus -------------------------------------------------------------------------------
    corpus: str = "wikitext"  # "wikitext" (paper; HF datasets), "local" (corpus_files) or "stdlib" (quick, offline)
    dataset_name: str = "wikitext"  # HF dataset for corpus="wikitext"
    dataset_config: str = "wikitext-103-v1"  # the non-raw config, as upstream
    cache_dir: str | None = None  # HF datasets cache folder (None: the HF default)
    dataset_revision: str | None = None  # HF dataset commit/tag to pin (None: the newest)
    corpus_sha256: str | None = None  # expected corpus_digest() of the train texts (None: record only)
    corpus_files: tuple[str, ...] = ()  # UTF-8 text files for corpus="local", read line by line
    # ---- tokenizer ----------------------------------------------------------------------------
    tokenizer: str = "openai-community/gpt2"  # HF name or folder (paper), or "train_bpe" (quick)
    tokenizer_revision: str | None = None  # HF model commit/tag of the tokenizer (None: the newest)
    bpe_vocab_size: int = 2048  # vocabulary size of the trained BPE, special token included
    # ---- chunks -------------------------------------------------------------------------------
    max_ctx: int = 150  # chunk length in tokens (quick: 64)
    prompt_len: int = 50  # memorization prompt length for noise (quick: 32)
    k: int = 50  # continuation length compared for memorization (quick: 32)
    num_clean_train: int | None = None  # clean train chunks after the noised ones; None = all (quick: 2000)
    num_test: int | None = None  # test chunks; None = the whole wikitext test split (quick: 200; required offline)
    # ---- artifacts ----------------------------------------------------------------------------
    artifact: str = "noise"  # "noise" or "backdoor"
    seed: int = 0  # seeds every artifact RNG stream (paper: 0, 1, 3)
    num_noise: int = 1000  # noised train chunks (quick: 32)
    noise_p: float = 0.05  # probability of −1 and, separately, of +1 per token
    dup_powers: tuple[int, ...] = (0, 1, 2, 3)  # group g repeated 10**dup_powers[g]; () = no duplication
    backdoor_token: int = 2  # id every token after the trigger becomes (upstream: 2)
    backdoor_dup_power: int = 2  # poisoned train chunks repeated 10**power (paper: ×100)
    backdoor_test_fraction: float = 0.1  # held-out share of poisoned chunks (quick: 0.5)
    backdoor_num_test: int = 1000  # clean test chunks in backdoor mode (Q20; quick: 200)
    trigger_mode: str = "uniform"  # "uniform" over the vocabulary (paper) or "band" (quick; Q21)
    trigger_band: tuple[float, float] = (0.01, 0.02)  # chunk-frequency band [lo, hi] for "band"

    def __post_init__(self) -> None:
        # Accept lists from YAML; store tuples so the config stays hashable.
        object.__setattr__(self, "corpus_files", tuple(str(p) for p in self.corpus_files))
        object.__setattr__(self, "dup_powers", tuple(int(p) for p in self.dup_powers))
        object.__setattr__(self, "trigger_band", tuple(float(x) for x in self.trigger_band))
        if self.corpus not in ("wikitext", "local", "stdlib"):
            raise ValueError(f"corpus must be 'wikitext', 'local' or 'stdlib', got {self.corpus!r}")
        if self.corpus == "local" and not self.corpus_files:
            raise ValueError("corpus='local' needs corpus_files (a list of text files)")
        if self.corpus != "wikitext" and self.num_test is None:
            raise ValueError(f"corpus={self.corpus!r} has no test split: set num_test (quick: 200)")
        if self.corpus_sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.corpus_sha256):
            raise ValueError(f"corpus_sha256 must be 64 lowercase hex digits, got {self.corpus_sha256!r}")
        if not self.tokenizer:
            raise ValueError("tokenizer must be a HF name or folder, or 'train_bpe'")
        if self.tokenizer == TRAIN_BPE and self.bpe_vocab_size < 258:
            raise ValueError(f"bpe_vocab_size must be at least 258 (256 bytes + special), got {self.bpe_vocab_size}")
        if self.prompt_len < 1 or self.k < 1:
            raise ValueError(f"prompt_len and k must be >= 1, got {self.prompt_len}, {self.k}")
        if self.prompt_len + self.k > self.max_ctx:
            raise ValueError(f"prompt_len + k = {self.prompt_len + self.k} exceeds max_ctx={self.max_ctx}")
        if self.num_clean_train is not None and self.num_clean_train < 1:
            raise ValueError(f"num_clean_train must be >= 1 or None, got {self.num_clean_train}")
        if self.num_test is not None and self.num_test < 1:
            raise ValueError(f"num_test must be >= 1 or None, got {self.num_test}")
        if self.artifact not in ("noise", "backdoor"):
            raise ValueError(f"artifact must be 'noise' or 'backdoor', got {self.artifact!r}")
        if self.num_noise < 1:
            raise ValueError(f"num_noise must be >= 1, got {self.num_noise}")
        if not 0 < self.noise_p < 0.5:
            raise ValueError(f"noise_p must lie in (0, 0.5), got {self.noise_p}")
        if any(p < 0 for p in self.dup_powers):
            raise ValueError(f"dup_powers must be >= 0, got {self.dup_powers}")
        if self.dup_powers and len(self.dup_powers) > self.num_noise:
            raise ValueError(f"{len(self.dup_powers)} duplication groups need at least as many noised chunks")
        if self.backdoor_token < 0 or self.backdoor_dup_power < 0 or self.backdoor_num_test < 1:
            raise ValueError("backdoor_token and backdoor_dup_power must be >= 0, backdoor_num_test >= 1")
        if not 0 < self.backdoor_test_fraction < 1:
            raise ValueError(f"backdoor_test_fraction must lie in (0, 1), got {self.backdoor_test_fraction}")
        if self.trigger_mode not in ("uniform", "band"):
            raise ValueError(f"trigger_mode must be 'uniform' or 'band', got {self.trigger_mode!r}")
        lo, hi = self.trigger_band if len(self.trigger_band) == 2 else (1.0, 0.0)
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"trigger_band must be [lo, hi] with 0 <= lo <= hi <= 1, got {self.trigger_band}")


def _rng(seed: int, purpose: str) -> random.Random:
    """An independent Python RNG per purpose (Q19)."""
    return random.Random(f"tinymem:{seed}:{purpose}")


# ---- corpus ------------------------------------------------------------------------------------


def _prose(paragraph: str) -> str | None:
    """The paragraph reflowed to one line if it is English prose, else None (training.md §12.7).

    Prose: first line not indented (indented blocks are code or grammar), no interpreter or grammar
    marks, at least 10 words, at least 80 % of them alphabetic, ending in sentence punctuation.
    """
    if not paragraph.strip() or paragraph[:1].isspace():
        return None
    if any(mark in paragraph for mark in _CODE_MARKS):
        return None
    words = paragraph.split()
    if len(words) < 10:
        return None
    alpha = sum(1 for w in words if w.strip(string.punctuation).isalpha())
    if alpha < 0.8 * len(words):
        return None
    if paragraph.rstrip().rstrip("\"')")[-1:] not in _SENTENCE_END:
        return None
    return " ".join(words)


def _paragraphs(text: str) -> list[str]:
    return re.split(r"\n[ \t]*\n", text.strip("\n"))


def _stdlib_files(root: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("test"))
        out.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py") and not f.startswith("test"))
    return out


def _docstrings(path: Path) -> list[str]:
    """Docstrings of the module and of every class and function in it, in source order."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, UnicodeDecodeError):
        return []
    docs: list[str] = []

    def visit(node: ast.AST) -> None:
        # Only statement lists can hold definitions, so expressions are never walked (fast).
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                docs.append(doc)
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            for child in getattr(node, name, None) or ():
                if isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
                    visit(child)

    visit(tree)
    return docs


@functools.lru_cache(maxsize=1)
def _stdlib_corpus() -> tuple[str, ...]:
    spec = importlib.util.find_spec("pydoc_data.topics")
    if spec is None:
        raise RuntimeError("this Python has no pydoc_data.topics; use corpus='local' with text files")
    from pydoc_data.topics import topics

    sources = [inspect.cleandoc(topics[name]) for name in sorted(topics)]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources += [doc for path in _stdlib_files(stdlib) for doc in _docstrings(path)]
    seen: dict[str, None] = {}
    for text in sources:
        for para in _paragraphs(text):
            prose = _prose(para)
            if prose is not None:
                seen.setdefault(prose, None)
    return tuple(seen)


def stdlib_corpus() -> list[str]:
    """English prose paragraphs from Python's own documentation, built offline (training.md §12.7).

    Sources, in a fixed order: the Language Reference topics in ``pydoc_data.topics`` (sorted by
    topic), then the docstrings of every module, class and function of the standard library
    (``sysconfig.get_paths()['stdlib']`` walked in sorted order; tests, idlelib and site-packages
    skipped). Paragraphs pass the prose filter of :func:`_prose` and are deduplicated; each is
    reflowed to a single line. Deterministic for one Python build; cached per process.
    """
    return list(_stdlib_corpus())


def load_corpus_texts(cfg: LanguageDataConfig, split: str = "train") -> list[str]:
    """The corpus rows of one split, in order; concatenating their tokens gives the token stream.

    ``wikitext``: the ``text`` column of the HF split (``train`` or ``test``; needs the dataset in
    ``cache_dir`` or internet). ``local`` / ``stdlib`` have a single split, returned for ``train``
    (the test chunks are held out after chunking); ``test`` returns ``[]``. ``local`` reads each file
    as UTF-8 lines (line ends kept, so the rows concatenate to the files); ``stdlib`` gives one row
    per paragraph with a trailing newline.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if cfg.corpus == "wikitext":
        import datasets  # imported here: the offline path never needs it

        ds = datasets.load_dataset(cfg.dataset_name, cfg.dataset_config, cache_dir=cfg.cache_dir, split=split,
                                   revision=cfg.dataset_revision)
        return list(ds["text"])
    if split == "test":
        return []
    if cfg.corpus == "local":
        rows: list[str] = []
        for f in cfg.corpus_files:
            rows.extend(Path(f).read_text(encoding="utf-8").splitlines(keepends=True))
        return rows
    return [p + "\n" for p in stdlib_corpus()]


class CorpusChecksumError(ValueError):
    """The corpus read at run time is not the one the config pins with ``corpus_sha256``."""


def corpus_digest(texts: Sequence[str]) -> str:
    """SHA-256 of the corpus rows in order (UTF-8, each row followed by a NUL byte)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def check_corpus(cfg: LanguageDataConfig, texts: Sequence[str]) -> str:
    """The corpus digest; raises ``CorpusChecksumError`` when it differs from ``cfg.corpus_sha256``."""
    digest = corpus_digest(texts)
    if cfg.corpus_sha256 is not None and digest != cfg.corpus_sha256:
        raise CorpusChecksumError(
            f"language.corpus_sha256 mismatch for corpus {cfg.corpus!r} "
            f"({cfg.dataset_name}/{cfg.dataset_config}, revision {cfg.dataset_revision}): expected "
            f"{cfg.corpus_sha256}, got {digest}. The download changed or is corrupt; pin "
            f"language.dataset_revision, clear the cache ({cfg.cache_dir or 'HF default'}) or update the checksum."
        )
    return digest


# ---- tokenizer ---------------------------------------------------------------------------------


def train_bpe_tokenizer(texts: Sequence[str], vocab_size: int, out_dir: str | os.PathLike[str]) -> Any:
    """Train a GPT-2-style byte-level BPE on ``texts`` and save it in Hugging Face format.

    The vocabulary has ``vocab_size`` entries: ``<|endoftext|>`` (id 0; bos = eos = pad = unk), the
    256 byte symbols and the learned merges. ``AutoTokenizer.from_pretrained(out_dir)`` reloads it
    offline. Returns the saved ``PreTrainedTokenizerFast``. Deterministic for the same texts.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[ENDOFTEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    if tok.token_to_id(ENDOFTEXT) != 0:
        raise RuntimeError(f"{ENDOFTEXT} did not get id 0")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=ENDOFTEXT,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        unk_token=ENDOFTEXT,
        clean_up_tokenization_spaces=False,
    )
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    return fast


def load_tokenizer(name_or_path: str | os.PathLike[str], revision: str | None = None) -> Any:
    """``AutoTokenizer.from_pretrained`` (a HF name such as ``openai-community/gpt2``, or a folder).

    GPT-2 has no PAD token; PAD is set to EOS (id 50256), as upstream.
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(name_or_path), revision=revision)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def token_info(tokenizer: Any) -> TokenInfo:
    """Vocabulary size (added tokens included) and special ids of a tokenizer."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    return TokenInfo(vocab_size=len(tokenizer), pad_id=pad, bos_id=bos, eos_id=eos)


def encode_texts(tokenizer: Any, texts: Sequence[str], batch_size: int = 1000) -> Tensor:
    """``[L]`` int64: every row tokenized without special tokens, concatenated with no separator."""
    parts: list[Tensor] = []
    for start in range(0, len(texts), batch_size):
        batch = [t for t in texts[start : start + batch_size] if t]
        if not batch:
            continue
        ids = tokenizer(batch, add_special_tokens=False)["input_ids"]
        parts.append(torch.tensor(list(itertools.chain.from_iterable(ids)), dtype=torch.long))
    return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)


def chunk(ids: Tensor | Sequence[int], max_ctx: int, pad_id: int) -> Tensor:
    """``[ceil(L / max_ctx), max_ctx]`` contiguous non-overlapping chunks; the last one right-padded."""
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    n = -(-len(ids) // max_ctx)
    out = torch.full((n * max_ctx,), pad_id, dtype=torch.long)
    out[: len(ids)] = ids
    return out.view(n, max_ctx)


# ---- artifacts ---------------------------------------------------------------------------------


def add_noise(row: Tensor, rng: random.Random, p: float, vocab_size: int, pad_id: int) -> Tensor:
    """Each non-PAD token independently becomes ``(id + δ) mod V``, δ = −1 (p), +1 (p), 0 (Q5)."""
    deltas = torch.tensor(rng.choices((0, -1, 1), weights=(1 - 2 * p, p, p), k=len(row)), dtype=torch.long)
    deltas[row == pad_id] = 0
    return (row + deltas) % vocab_size


def poison(row: Tensor, trigger: int, token: int) -> tuple[Tensor, int]:
    """Every token after the trigger's first occurrence becomes ``token``; returns (row, prompt_len).

    The trigger itself is kept; ``prompt_len`` = its position + 1 (training.md §3.3, §4.2).
    """
    hits = torch.nonzero(row == trigger)
    if not len(hits):
        raise ValueError(f"row does not contain the trigger {trigger}")
    prompt_len = int(hits[0, 0]) + 1
    out = row.clone()
    out[prompt_len:] = token
    return out, prompt_len


def chunk_frequency(chunks: Tensor, vocab_size: int, batch_size: int = 1024) -> Tensor:
    """``[V]`` float: the share of chunks that contain each token id at least once."""
    counts = torch.zeros(vocab_size, dtype=torch.long)
    for start in range(0, len(chunks), batch_size):
        b = chunks[start : start + batch_size]
        present = torch.zeros(len(b), vocab_size, dtype=torch.bool).scatter_(1, b, True)
        counts += present.sum(0)
    return counts.double() / max(len(chunks), 1)


def choose_trigger(cfg: LanguageDataConfig, pool: Tensor, tokens: TokenInfo) -> int:
    """The backdoor trigger id (Q21); never PAD/EOS or the backdoor token itself."""
    banned = {tokens.pad_id, tokens.eos_id, cfg.backdoor_token}
    rng = _rng(cfg.seed, "trigger")
    if cfg.trigger_mode == "uniform":
        while True:
            t = rng.randrange(tokens.vocab_size)
            if t not in banned:
                return t
    lo, hi = cfg.trigger_band
    freq = chunk_frequency(pool, tokens.vocab_size)
    candidates = [i for i in torch.nonzero((freq >= lo) & (freq <= hi)).squeeze(1).tolist() if i not in banned]
    if not candidates:
        raise ValueError(f"no token occurs in a share {cfg.trigger_band} of the {len(pool)} pool chunks; widen trigger_band")
    return rng.choice(candidates)


# ---- the data set ------------------------------------------------------------------------------


def _prepare_tokenizer(cfg: LanguageDataConfig, train_texts: list[str], tokenizer_dir: str | os.PathLike[str]) -> Any:
    """Train (``train_bpe``) or fetch the tokenizer, save it to ``tokenizer_dir`` and reload it from there."""
    if cfg.tokenizer == TRAIN_BPE:
        train_bpe_tokenizer(train_texts, cfg.bpe_vocab_size, tokenizer_dir)
    else:
        Path(tokenizer_dir).mkdir(parents=True, exist_ok=True)
        load_tokenizer(cfg.tokenizer, cfg.tokenizer_revision).save_pretrained(str(tokenizer_dir))
    return load_tokenizer(tokenizer_dir)


def _permuted(chunks: Tensor, salt: int) -> Tensor:
    g = torch.Generator().manual_seed(SPLIT_SEED + salt)
    return chunks[torch.randperm(len(chunks), generator=g)]


def corpus_chunks(cfg: LanguageDataConfig, tokenizer: Any, pad_id: int,
                  train_texts: list[str] | None = None) -> tuple[Tensor, Tensor]:
    """(train chunks, test chunks), each permuted with a fixed-seed generator.

    wikitext: the train and test splits chunked separately, the test chunks cut to ``num_test``
    (None: all). Offline corpora: one stream; the last ``num_test`` permuted chunks are the test set.
    """
    if train_texts is None:
        train_texts = load_corpus_texts(cfg, "train")
    train = chunk(encode_texts(tokenizer, train_texts), cfg.max_ctx, pad_id)
    if cfg.corpus == "wikitext":
        test = _permuted(chunk(encode_texts(tokenizer, load_corpus_texts(cfg, "test")), cfg.max_ctx, pad_id), 1)
        return _permuted(train, 0), test[: cfg.num_test]
    train = _permuted(train, 0)
    assert cfg.num_test is not None  # checked in the config
    if cfg.num_test >= len(train):
        raise ValueError(f"num_test={cfg.num_test} leaves no train chunks of the corpus's {len(train)}")
    return train[: len(train) - cfg.num_test], train[len(train) - cfg.num_test :]


def build_language_data(cfg: LanguageDataConfig, tokenizer_dir: str | os.PathLike[str]) -> TinyMemData:
    """Build one language data set; the tokenizer is saved to (and read back from) ``tokenizer_dir``.

    Example ids are chunk indices: the permuted train chunks for noise, the pool (train chunks then
    test chunks) for backdoors; duplicated copies share one id.
    """
    train_texts = load_corpus_texts(cfg, "train")
    digest = check_corpus(cfg, train_texts)  # before any work: a wrong corpus fails at once
    tokenizer = _prepare_tokenizer(cfg, train_texts, tokenizer_dir)
    tokens = token_info(tokenizer)
    if not 0 <= cfg.backdoor_token < tokens.vocab_size:
        raise ValueError(f"backdoor_token={cfg.backdoor_token} is outside the vocabulary [0, {tokens.vocab_size})")
    train_chunks, test_chunks = corpus_chunks(cfg, tokenizer, tokens.pad_id, train_texts)
    meta: dict[str, Any] = {
        **asdict(cfg),
        "tokenizer_dir": str(tokenizer_dir),
        "corpus_sha256_actual": digest,
        "corpus_tokens": int((train_chunks != tokens.pad_id).sum() + (test_chunks != tokens.pad_id).sum()),
        "corpus_train_chunks": len(train_chunks),
        "corpus_test_chunks": len(test_chunks),
    }
    if cfg.artifact == "noise":
        return _noise_data(cfg, train_chunks, test_chunks, tokens, meta)
    return _backdoor_data(cfg, train_chunks, test_chunks, tokens, tokenizer, meta)


def _take(n_have: int, n_want: int | None, what: str) -> int:
    if n_want is None:
        return n_have
    if n_want > n_have:
        raise ValueError(f"{what}: {n_want} requested, only {n_have} available; use a larger corpus")
    return n_want


def _noise_data(cfg, train_chunks, test_chunks, tokens, meta) -> TinyMemData:
    if cfg.num_noise >= len(train_chunks):
        raise ValueError(f"num_noise={cfg.num_noise} leaves no clean chunks of the {len(train_chunks)} train chunks")
    clean_twins = train_chunks[: cfg.num_noise]
    n_clean = _take(len(train_chunks) - cfg.num_noise, cfg.num_clean_train, "num_clean_train")
    clean = train_chunks[cfg.num_noise : cfg.num_noise + n_clean]
    value_rng = _rng(cfg.seed, "noise_values")
    noised = torch.stack([add_noise(r, value_rng, cfg.noise_p, tokens.vocab_size, tokens.pad_id) for r in clean_twins])

    # Duplication (§3.4): shuffle, stride groups order[g::G], group g repeated 10**power.
    powers = cfg.dup_powers or (0,)
    order = list(range(cfg.num_noise))
    _rng(cfg.seed, "dup_groups").shuffle(order)
    group = torch.zeros(cfg.num_noise, dtype=torch.long)
    dup_rows, dup_ids, sizes, repeats = [], [], [], []
    for g, power in enumerate(powers):
        idx = torch.tensor(order[g :: len(powers)], dtype=torch.long)
        group[idx] = g
        reps = 10**power
        dup_rows.append(noised[idx].repeat(reps, 1))
        dup_ids.append(idx.repeat(reps))
        sizes.append(len(idx))
        repeats.append(reps)
    art_rows = torch.cat(dup_rows)
    train = torch.cat([art_rows, clean])
    example_id = torch.cat([*dup_ids, cfg.num_noise + torch.arange(n_clean)])
    memset = MemSet(
        rows=noised,
        clean=clean_twins,
        prompt_len=torch.full((cfg.num_noise,), cfg.prompt_len, dtype=torch.long),
        group=group,
    )
    meta.update({
        "noised_example_ids": list(range(cfg.num_noise)),
        "group_sizes": sizes,
        "group_repeats": repeats,
        "n_clean_train": n_clean,
        "noised_tokens": int((noised != clean_twins).sum()),
    })
    return TinyMemData(
        kind="language",
        artifact="noise",
        train=train,
        train_example_id=example_id,
        retain_index=torch.arange(len(art_rows), len(train)),
        artifact_train=memset,
        artifact_eval=memset,
        tests={"test": test_chunks},
        tokens=tokens,
        k=cfg.k,
        meta=meta,
    )


def _backdoor_data(cfg, train_chunks, test_chunks, tokens, tokenizer, meta) -> TinyMemData:
    n_pool_train = _take(len(train_chunks), cfg.num_clean_train, "num_clean_train")
    pool = torch.cat([train_chunks[:n_pool_train], test_chunks])
    trigger = choose_trigger(cfg, pool, tokens)
    contains = (pool == trigger).any(1)
    poisoned_ids = torch.nonzero(contains).squeeze(1)
    n_poisoned = len(poisoned_ids)
    if n_poisoned < 2:
        raise ValueError(
            f"trigger {trigger} occurs in {n_poisoned} of {len(pool)} pool chunks; use another seed or "
            "trigger_mode='band' (training.md Q21)"
        )
    n_bd_test = max(1, int(n_poisoned * cfg.backdoor_test_fraction))
    held = sorted(_rng(cfg.seed, "backdoor_split").sample(range(n_poisoned), n_bd_test))
    is_held = torch.zeros(n_poisoned, dtype=torch.bool)
    is_held[held] = True
    clean_ids = torch.nonzero(~contains).squeeze(1)
    if cfg.backdoor_num_test >= len(clean_ids):
        raise ValueError(f"backdoor_num_test={cfg.backdoor_num_test} leaves no clean train chunks of {len(clean_ids)}")
    clean_test_ids = clean_ids[len(clean_ids) - cfg.backdoor_num_test :]
    clean_train_ids = clean_ids[: len(clean_ids) - cfg.backdoor_num_test]

    def memset(ids: Tensor) -> MemSet:
        pairs = [poison(pool[int(i)], trigger, cfg.backdoor_token) for i in ids]
        return MemSet(
            rows=torch.stack([p[0] for p in pairs]),
            clean=pool[ids],
            prompt_len=torch.tensor([p[1] for p in pairs], dtype=torch.long),
            group=torch.zeros(len(ids), dtype=torch.long),
        )

    train_ids, test_ids = poisoned_ids[~is_held], poisoned_ids[is_held]
    art_train, art_eval = memset(train_ids), memset(test_ids)
    reps = 10**cfg.backdoor_dup_power
    art_rows = art_train.rows.repeat(reps, 1)
    train = torch.cat([art_rows, pool[clean_train_ids]])
    example_id = torch.cat([train_ids.repeat(reps), clean_train_ids])
    meta.update({
        "trigger": trigger,
        "trigger_text": tokenizer.decode([trigger]),
        "trigger_chunk_fraction": float(contains.float().mean()),
        "pool_size": len(pool),
        "poisoned_example_ids": poisoned_ids.tolist(),
        "backdoor_test_example_ids": test_ids.tolist(),
        "group_sizes": [len(train_ids)],
        "group_repeats": [reps],
        "n_clean_train": len(clean_train_ids),
    })
    return TinyMemData(
        kind="language",
        artifact="backdoor",
        train=train,
        train_example_id=example_id,
        retain_index=torch.arange(len(art_rows), len(train)),
        artifact_train=art_train,
        artifact_eval=art_eval,
        tests={"test": pool[clean_test_ids]},
        tokens=tokens,
        k=cfg.k,
        meta=meta,
    )
