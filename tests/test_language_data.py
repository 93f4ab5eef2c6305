"""Language data builder (tinymem.data.language): chunking, artifacts, tokenizer, determinism.

Offline only: a small seeded word corpus in a local file (and one test on the stdlib corpus). The
paper path (wikitext + the GPT-2 tokenizer from the Hub) is never called here.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from tinymem.data.core import TinyMemData
from tinymem.data.language import (
    LanguageDataConfig,
    add_noise,
    CorpusChecksumError,
    build_language_data,
    choose_trigger,
    chunk,
    chunk_frequency,
    corpus_chunks,
    corpus_digest,
    encode_texts,
    load_corpus_texts,
    load_tokenizer,
    stdlib_corpus,
    train_bpe_tokenizer,
)
from tinymem.metrics import perplexity

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "pe", "dan", "mor", "lis", "tur", "gen", "fal"]


def _corpus_text(lines: int = 400, seed: int = 7) -> str:
    """Seeded pseudo-English: 300 words over 15 syllables, 8–14 words per sentence."""
    rng = random.Random(seed)
    words = sorted({"".join(rng.choices(SYLLABLES, k=rng.randint(1, 3))) for _ in range(400)})[:300]
    out = []
    for _ in range(lines):
        sent = " ".join(rng.choices(words, k=rng.randint(8, 14)))
        out.append(sent.capitalize() + ".\n")
    return "".join(out)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "words.txt"
    path.write_text(_corpus_text(), encoding="utf-8")
    return path


def _cfg(corpus_file: Path, **kw) -> LanguageDataConfig:
    base = dict(corpus="local", corpus_files=[str(corpus_file)], tokenizer="train_bpe", bpe_vocab_size=300,
                max_ctx=32, prompt_len=16, k=16, num_noise=8, dup_powers=[0, 1, 2, 3], num_clean_train=120,
                num_test=40, seed=0, backdoor_num_test=40, backdoor_test_fraction=0.5, trigger_mode="band",
                trigger_band=[0.03, 0.08])
    base.update(kw)
    return LanguageDataConfig(**base)


@pytest.fixture(scope="module")
def noise_cfg(corpus_file: Path) -> LanguageDataConfig:
    return _cfg(corpus_file)


@pytest.fixture(scope="module")
def noise_data(noise_cfg: LanguageDataConfig, tmp_path_factory: pytest.TempPathFactory) -> TinyMemData:
    return build_language_data(noise_cfg, tmp_path_factory.mktemp("tok_noise"))


@pytest.fixture(scope="module")
def backdoor_cfg(corpus_file: Path) -> LanguageDataConfig:
    return _cfg(corpus_file, artifact="backdoor", backdoor_dup_power=1)


@pytest.fixture(scope="module")
def backdoor_data(backdoor_cfg: LanguageDataConfig, tmp_path_factory: pytest.TempPathFactory) -> TinyMemData:
    return build_language_data(backdoor_cfg, tmp_path_factory.mktemp("tok_backdoor"))


def _source_chunks(cfg: LanguageDataConfig, data: TinyMemData) -> tuple[torch.Tensor, torch.Tensor]:
    tok = load_tokenizer(data.meta["tokenizer_dir"])
    return corpus_chunks(cfg, tok, data.tokens.pad_id)


# ---- chunking and tokenizer --------------------------------------------------------------------


def test_chunk_pads_only_the_last_block():
    out = chunk(list(range(10)), 4, pad_id=99)
    assert out.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 99, 99]]
    assert out.dtype == torch.long
    assert chunk(torch.arange(8), 4, 0).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert chunk([], 4, 0).shape == (0, 4)


def test_bpe_round_trip_and_reload(corpus_file: Path, tmp_path: Path):
    texts = corpus_file.read_text(encoding="utf-8").splitlines(keepends=True)
    tok = train_bpe_tokenizer(texts, 300, tmp_path / "tok")
    assert len(tok) == 300
    assert tok.convert_tokens_to_ids("<|endoftext|>") == 0
    assert tok.bos_token_id == tok.eos_token_id == tok.pad_token_id == 0
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert len(reloaded) == 300 and reloaded.pad_token_id == 0
    sample = "".join(texts[:50]) + "Naïve café — 你好, tabs\tand  double spaces!\n"
    for t in (tok, reloaded):
        ids = t(sample, add_special_tokens=False)["input_ids"]
        assert ids == tok(sample, add_special_tokens=False)["input_ids"]
        assert t.decode(ids) == sample
        assert 0 not in ids
    # The concatenated per-row encoding decodes to the whole corpus.
    ids = encode_texts(reloaded, texts)
    assert reloaded.decode(ids.tolist()) == "".join(texts)


def test_stdlib_corpus_is_prose_and_big_enough(tmp_path: Path):
    paras = stdlib_corpus()
    assert paras == stdlib_corpus()  # cached, deterministic
    assert sum(map(len, paras)) > 800_000
    assert len(set(paras)) == len(paras)
    for p in paras[:: max(1, len(paras) // 500)]:
        assert len(p.split()) >= 10 and p.rstrip("\"')")[-1] in ".!?" and "\n" not in p
    cfg = LanguageDataConfig(corpus="stdlib", tokenizer="train_bpe", num_test=200, max_ctx=64, prompt_len=32, k=32)
    texts = load_corpus_texts(cfg)
    tok = train_bpe_tokenizer(texts, 2048, tmp_path / "tok")
    ids = encode_texts(tok, texts)
    assert tok.decode(ids.tolist()) == "".join(texts)
    assert len(chunk(ids, 64, 0)) >= 32 + 2000 + 200  # the quick scale fits (training.md §12.2)


# ---- noise ---------------------------------------------------------------------------------------


def test_add_noise_rate_and_range():
    rng = random.Random("t")
    v, pad = 50, 0
    row = torch.randint(0, v, (200_000,), generator=torch.Generator().manual_seed(0))
    out = add_noise(row, rng, 0.05, v, pad)
    assert torch.equal(out[row == pad], row[row == pad])  # PAD never noised
    delta = (out - row) % v
    assert set(delta.unique().tolist()) <= {0, 1, v - 1}
    real = row != pad
    assert abs(float((delta[real] == 1).float().mean()) - 0.05) < 0.003
    assert abs(float((delta[real] == v - 1).float().mean()) - 0.05) < 0.003
    wrap = torch.tensor([v - 1] * 2000)  # wraps around the vocabulary (Q5)
    assert int(add_noise(wrap, random.Random(1), 0.4, v, pad).max()) < v


def test_noise_data_layout(noise_cfg: LanguageDataConfig, noise_data: TinyMemData):
    d, cfg = noise_data, noise_cfg
    d.validate()
    assert d.kind == "language" and d.artifact == "noise" and d.k == 16 and d.max_ctx == 32
    src_train, src_test = _source_chunks(cfg, d)
    v = d.tokens.vocab_size
    assert v == 300 and d.tokens.pad_id == d.tokens.eos_id == d.tokens.bos_id == 0

    # Clean twins are the first num_noise permuted train chunks; clean train follows; test untouched.
    art = d.artifact_train
    assert d.artifact_eval is art or torch.equal(d.artifact_eval.rows, art.rows)
    assert torch.equal(art.clean, src_train[:8])
    assert torch.equal(d.retain_rows(), src_train[8 : 8 + 120])
    assert torch.equal(d.retain_index, torch.arange(len(d.train) - 120, len(d.train)))
    assert torch.equal(d.tests["test"], src_test) and len(src_test) == 40
    assert (art.prompt_len == 16).all()

    # Noise: only on artifact rows, only ±1 mod V, rate ≈ 2p over all noised chunks.
    delta = (art.rows - art.clean) % v
    assert set(delta.unique().tolist()) <= {0, 1, v - 1}
    rate = float((delta != 0).float().mean())
    assert 0.05 < rate < 0.16, rate  # 2p = 0.1 over 256 tokens
    assert d.meta["noised_tokens"] == int((delta != 0).sum())
    assert all(bool((r != c).any()) for r, c in zip(art.rows, art.clean))

    # Duplication: stride groups of 2, group g repeated 10**g times, copies share the example id.
    assert sorted(Counter(art.group.tolist()).values()) == [2, 2, 2, 2]
    assert d.meta["group_sizes"] == [2, 2, 2, 2] and d.meta["group_repeats"] == [1, 10, 100, 1000]
    n_art = 2 * (1 + 10 + 100 + 1000)
    assert len(d.train) == n_art + 120
    for i in range(8):
        copies = (d.train[:n_art] == art.rows[i]).all(1)
        assert int(copies.sum()) == 10 ** int(art.group[i])
        assert (d.train_example_id[:n_art][copies] == i).all()
    assert set(d.train_example_id[:n_art].tolist()) == set(range(8))
    assert torch.equal(d.train_example_id[n_art:], torch.arange(8, 128))


def test_chunks_cover_the_corpus(noise_cfg: LanguageDataConfig, noise_data: TinyMemData):
    tok = load_tokenizer(noise_data.meta["tokenizer_dir"])
    ids = encode_texts(tok, load_corpus_texts(noise_cfg))
    all_chunks = chunk(ids, 32, 0)
    src_train, src_test = _source_chunks(noise_cfg, noise_data)
    assert len(src_train) + len(src_test) == len(all_chunks)
    key = lambda t: sorted(map(tuple, t.tolist()))  # noqa: E731
    assert key(torch.cat([src_train, src_test])) == key(all_chunks)
    assert not torch.equal(src_train[:10], all_chunks[:10])  # permuted before the split


# ---- backdoor ------------------------------------------------------------------------------------


def test_backdoor_layout(backdoor_cfg: LanguageDataConfig, backdoor_data: TinyMemData):
    d, cfg = backdoor_data, backdoor_cfg
    d.validate()
    trig, bd = d.meta["trigger"], cfg.backdoor_token
    assert trig not in (0, bd)
    assert 0.03 <= d.meta["trigger_chunk_fraction"] <= 0.08
    n_poisoned = len(d.meta["poisoned_example_ids"])
    assert n_poisoned >= 4
    assert len(d.artifact_eval) == int(n_poisoned * 0.5)
    assert len(d.artifact_train) + len(d.artifact_eval) == n_poisoned
    for ms in (d.artifact_train, d.artifact_eval):
        for row, clean, p in zip(ms.rows, ms.clean, ms.prompt_len.tolist()):
            assert int(clean[p - 1]) == trig and not (clean[: p - 1] == trig).any()  # first occurrence
            assert torch.equal(row[:p], clean[:p])  # prompt and trigger kept
            assert (row[p:] == bd).all()  # every token after the trigger is the backdoor token
    # Poisoned train rows repeated 10**1, then clean rows; no clean row carries the trigger.
    n_art = 10 * len(d.artifact_train)
    assert torch.equal(d.train[:n_art], d.artifact_train.rows.repeat(10, 1))
    assert torch.equal(d.train_example_id[:n_art], torch.tensor(
        [i for i in d.meta["poisoned_example_ids"] if i not in d.meta["backdoor_test_example_ids"]]).repeat(10))
    assert torch.equal(d.retain_index, torch.arange(n_art, len(d.train)))
    assert not (d.retain_rows() == trig).any() and not (d.tests["test"] == trig).any()
    assert len(d.tests["test"]) == 40
    # Held-out poisoned chunks and clean test chunks are not trained on.
    train_set = set(map(tuple, d.train.tolist())) | set(map(tuple, d.artifact_train.clean.tolist()))
    assert not any(tuple(r) in train_set for r in d.artifact_eval.clean.tolist())
    assert not any(tuple(r) in train_set for r in d.tests["test"].tolist())
    # The pool is num_clean_train train chunks + the test chunks.
    assert d.meta["pool_size"] == 120 + 40
    assert len(d.retain_rows()) + len(d.tests["test"]) + n_poisoned == 160


def test_trigger_choice(backdoor_cfg: LanguageDataConfig):
    from tinymem.data.core import TokenInfo

    tokens = TokenInfo(vocab_size=20, pad_id=0, bos_id=0, eos_id=0)
    pool = torch.tensor([[1, 2, 3, 4]] * 90 + [[5, 6, 7, 8]] * 10)
    assert chunk_frequency(pool, 20)[[1, 5, 9]].tolist() == [0.9, 0.1, 0.0]
    band = dataclasses.replace(backdoor_cfg, trigger_band=(0.05, 0.2))
    assert choose_trigger(band, pool, tokens) in (5, 6, 7, 8)
    uni = dataclasses.replace(backdoor_cfg, trigger_mode="uniform")
    draws = {choose_trigger(dataclasses.replace(uni, seed=s), pool, tokens) for s in range(60)}
    assert 0 not in draws and backdoor_cfg.backdoor_token not in draws and len(draws) > 8
    assert choose_trigger(uni, pool, tokens) == choose_trigger(uni, pool, tokens)
    with pytest.raises(ValueError, match="trigger_band"):
        choose_trigger(dataclasses.replace(backdoor_cfg, trigger_band=(0.3, 0.5)), pool, tokens)


# ---- determinism, persistence, perplexity, config ------------------------------------------------


def _assert_same(a: TinyMemData, b: TinyMemData) -> None:
    assert torch.equal(a.train, b.train) and torch.equal(a.train_example_id, b.train_example_id)
    assert torch.equal(a.retain_index, b.retain_index)
    for x, y in ((a.artifact_train, b.artifact_train), (a.artifact_eval, b.artifact_eval)):
        for f in ("rows", "clean", "prompt_len", "group"):
            assert torch.equal(getattr(x, f), getattr(y, f)), f
    assert a.tests.keys() == b.tests.keys() and all(torch.equal(a.tests[k], b.tests[k]) for k in a.tests)
    assert a.tokens == b.tokens and a.k == b.k and a.kind == b.kind and a.artifact == b.artifact


def test_deterministic_for_a_seed(noise_cfg, noise_data, tmp_path: Path):
    again = build_language_data(noise_cfg, tmp_path / "tok_again")
    _assert_same(noise_data, again)
    strip = lambda m: {k: v for k, v in m.items() if k != "tokenizer_dir"}  # noqa: E731
    assert strip(noise_data.meta) == strip(again.meta)
    assert (Path(noise_data.meta["tokenizer_dir"]) / "tokenizer.json").read_text() == \
        (tmp_path / "tok_again" / "tokenizer.json").read_text()
    other = build_language_data(dataclasses.replace(noise_cfg, seed=1), tmp_path / "tok_seed1")
    assert torch.equal(other.artifact_train.clean, noise_data.artifact_train.clean)  # same chunks
    assert torch.equal(other.tests["test"], noise_data.tests["test"])
    assert not torch.equal(other.artifact_train.rows, noise_data.artifact_train.rows)  # other noise
    assert not torch.equal(other.artifact_train.group, noise_data.artifact_train.group)


@pytest.mark.parametrize("which", ["noise", "backdoor"])
def test_save_load_round_trip(which, noise_data, backdoor_data, tmp_path: Path):
    d = noise_data if which == "noise" else backdoor_data
    d.save(tmp_path / "data.pt")
    back = TinyMemData.load(tmp_path / "data.pt")
    _assert_same(d, back)
    assert back.meta == d.meta


def test_uniform_model_perplexity_is_vocab_size(noise_data: TinyMemData):
    v = noise_data.tokens.vocab_size
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=v, n_positions=32, n_embd=32, n_layer=1, n_head=2))
    with torch.no_grad():
        model.lm_head.weight.zero_()  # tied to the embedding: every logit is 0, the model is uniform
    out = perplexity(model, noise_data.tests["test"], noise_data.tokens.pad_id, batch_size=16)
    assert out["perplexity"] == pytest.approx(v, rel=1e-3)
    assert out["perplexity_upstream"] == pytest.approx(v, rel=1e-3)


@pytest.mark.parametrize("bad", [
    dict(corpus="web"), dict(corpus="local", corpus_files=[]), dict(corpus="stdlib", num_test=None),
    dict(prompt_len=20, k=20), dict(artifact="other"), dict(noise_p=0.6), dict(dup_powers=[0, -1]),
    dict(backdoor_test_fraction=1.0), dict(trigger_mode="rare"), dict(trigger_band=[0.2, 0.1]),
    dict(bpe_vocab_size=100), dict(num_clean_train=0), dict(corpus_sha256="abc"),
])
def test_config_validation(bad, corpus_file: Path):
    with pytest.raises(ValueError):
        _cfg(corpus_file, **bad)


def test_paper_defaults():
    cfg = LanguageDataConfig()
    assert (cfg.corpus, cfg.dataset_name, cfg.dataset_config) == ("wikitext", "wikitext", "wikitext-103-v1")
    assert cfg.tokenizer == "openai-community/gpt2"
    assert (cfg.max_ctx, cfg.prompt_len, cfg.k, cfg.num_noise, cfg.dup_powers) == (150, 50, 50, 1000, (0, 1, 2, 3))
    assert (cfg.num_clean_train, cfg.num_test, cfg.noise_p) == (None, None, 0.05)
    assert (cfg.backdoor_dup_power, cfg.backdoor_test_fraction, cfg.trigger_mode) == (2, 0.1, "uniform")


def test_corpus_checksum_pins_the_corpus(noise_cfg, noise_data, tmp_path: Path):
    texts = load_corpus_texts(noise_cfg)
    digest = corpus_digest(texts)
    assert noise_data.meta["corpus_sha256_actual"] == digest
    assert corpus_digest(texts[:-1]) != digest and corpus_digest(["ab", "c"]) != corpus_digest(["a", "bc"])
    pinned = dataclasses.replace(noise_cfg, corpus_sha256=digest)
    _assert_same(build_language_data(pinned, tmp_path / "ok"), noise_data)  # the right digest passes
    wrong = dataclasses.replace(noise_cfg, corpus_sha256="0" * 64)
    with pytest.raises(CorpusChecksumError, match="language.corpus_sha256"):
        build_language_data(wrong, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # stopped before the tokenizer was written
