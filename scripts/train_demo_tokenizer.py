#!/usr/bin/python3
"""Trains the embedded demo tokenizer (src/RecurrentGemma.Text/Demo/demo-tokenizer.model).

A small SentencePiece BPE model with Gemma's layout: <pad> 0, <eos> 1, <bos> 2, <unk> 3, then
Gemma's USER_DEFINED block (<mask>, <2mass>, [@BOS@], <unused0..98>, <start_of_turn> 106,
<end_of_turn> 107, newline runs x1..31 = 108..138, space runs x2..31 = 139..168), tab runs
x2..31 = 169..198, then byte pieces <0x00>..<0xFF>. Identity normalizer, no dummy prefix,
whitespace kept, byte fallback, split digits - Gemma's settings. The real Gemma tokenizer is not
ours to ship; this one only has to exercise the same code paths for the demo model.

Needs Debian's python3-sentencepiece (apt-get install python3-sentencepiece). The corpus is
text found on any Debian machine plus this repository's docs; regenerating elsewhere may give a
slightly different model - the committed .model file is the artifact.
Run: /usr/bin/python3 scripts/train_demo_tokenizer.py
"""
import glob, io, os, sentencepiece as spm

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out = os.path.join(root, "src", "RecurrentGemma.Text", "Demo", "demo-tokenizer")

lines = []
for path in sorted(glob.glob("/usr/share/common-licenses/*")) + sorted(glob.glob(os.path.join(root, "*.md"))) \
        + sorted(glob.glob(os.path.join(root, "docs", "*.md"))):
    try:
        with open(path, encoding="utf-8") as f:
            lines += [l.rstrip("\n") for l in f if l.strip()]
    except (UnicodeDecodeError, IsADirectoryError):
        pass
corpus = "\n".join(dict.fromkeys(lines))[:2_000_000]

user_defined = ["<mask>", "<2mass>", "[@BOS@]"] + [f"<unused{i}>" for i in range(99)] \
    + ["<start_of_turn>", "<end_of_turn>"] + ["\n" * k for k in range(1, 32)] \
    + ["\u2581" * k for k in range(2, 32)] + ["\t" * k for k in range(2, 32)]

spm.SentencePieceTrainer.train(
    sentence_iterator=iter(corpus.split("\n")), model_prefix=out, model_type="bpe", vocab_size=4096,
    byte_fallback=True, split_digits=True, normalization_rule_name="identity", add_dummy_prefix=False,
    remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, character_coverage=0.9995,
    pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
    unk_piece="<unk>", user_defined_symbols=user_defined, max_sentencepiece_length=16,
    train_extremely_large_corpus=False, num_threads=2)
os.remove(out + ".vocab")

sp = spm.SentencePieceProcessor(model_file=out + ".model")
assert [sp.piece_to_id(p) for p in ["<start_of_turn>", "<end_of_turn>", "\n", "<bos>", "<eos>"]] == [106, 107, 108, 2, 1]
print(out + ".model", sp.get_piece_size(), "pieces;", sp.encode("<start_of_turn>user\nHello there!<end_of_turn>\n"))
