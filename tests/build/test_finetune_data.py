"""`edge-mm finetune` input side: parsers, bad input (file and line named), BIO, alignment, report figures."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from edge_mm.build.finetune import labels as lab
from edge_mm.build.finetune import report
from edge_mm.build.finetune.data import DataError, TextExample, TokenExample, read_examples
from tests.build.finetune.tiny import NER, SENTIMENT, conll_text, csv_text, tagged
from tests.conftest import need_import

TOKEN, TEXT = "token-classification", "text-classification"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- parsers -------------------------------------------------------------------------------------


def test_conll_columns_docstart_and_lines(tmp_path: Path) -> None:
    text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n"
    examples = read_examples(write(tmp_path, "train.txt", text), TOKEN)
    assert [(e.tokens, e.tags, e.lines) for e in examples if isinstance(e, TokenExample)] == [
        (["EU", "rejects"], ["B-ORG", "O"], [3, 4]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"], [6, 7]),
    ]


def test_conll_from_the_fixture_round_trips(tmp_path: Path) -> None:
    examples = read_examples(write(tmp_path, "a.conll", conll_text()), TOKEN)
    assert [(e.tokens, e.tags) for e in examples] == [tagged(t, s) for t, s in NER]  # type: ignore[union-attr]


def test_jsonl_both_tasks(tmp_path: Path) -> None:
    tokens = write(tmp_path, "t.jsonl", json.dumps({"tokens": ["Anna", "sings"], "tags": ["B-PER", "O"]}) + "\n\n")
    texts = write(
        tmp_path,
        "c.jsonl",
        json.dumps({"text": "fine", "label": "pos"}) + "\n" + json.dumps({"text": "meh", "label": 0}),
    )
    assert [(e.tokens, e.tags) for e in read_examples(tokens, TOKEN)] == [(["Anna", "sings"], ["B-PER", "O"])]  # type: ignore[union-attr]
    assert [(e.text, e.label, e.line) for e in read_examples(texts, TEXT)] == [("fine", "pos", 1), ("meh", "0", 2)]  # type: ignore[union-attr]


@pytest.mark.parametrize(("name", "text"), [("a.csv", csv_text()), ("a.tsv", csv_text().replace(",", "\t"))])
def test_csv_and_tsv_with_header(tmp_path: Path, name: str, text: str) -> None:
    examples = read_examples(write(tmp_path, name, text), TEXT)
    assert [(e.text, e.label) for e in examples] == SENTIMENT  # type: ignore[union-attr]
    assert [e.line for e in examples][:2] == [2, 3]  # type: ignore[union-attr]


def test_csv_without_header_and_quoted_commas(tmp_path: Path) -> None:
    examples = read_examples(write(tmp_path, "a.csv", '"yes, really good",pos\nawful,neg\n'), TEXT)
    assert [(e.text, e.label) for e in examples] == [("yes, really good", "pos"), ("awful", "neg")]  # type: ignore[union-attr]


def test_format_flag_overrides_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "data.dat", "x B-PER\ny O\n")
    with pytest.raises(DataError, match="--format"):
        read_examples(path, TOKEN)
    assert len(read_examples(path, TOKEN, "conll")) == 1


# --- bad input: each names the file and the line ---------------------------------------------------

BAD = [
    ("empty.conll", "\n\n  \n", TOKEN, r"empty.conll: the file is empty"),
    ("empty.csv", "", TEXT, r"empty.csv: the file is empty"),
    ("nolabel.conll", "John B-PER\nsmiles\n", TOKEN, r"nolabel.conll:2: .*no tag"),
    ("nolabel.csv", "text,label\ngood,pos\njust text\n", TEXT, r"nolabel.csv:3: .*no label"),
    ("nolabel.jsonl", '{"tokens": ["a"]}\n', TOKEN, r"nolabel.jsonl:1: missing 'tags'"),
    ("nolabel2.jsonl", '{"text": "a", "label": ""}\n', TEXT, r"nolabel2.jsonl:1: missing 'label'"),
    ("badtag.conll", "John B-PER\nworks O\nhere LOC\n", TOKEN, r"badtag.conll:3: tag 'LOC' is not BIO"),
    ("badjson.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": [\n', TOKEN, r"badjson.jsonl:2: not a JSON object"),
    ("len.jsonl", '{"tokens": ["a", "b"], "tags": ["O"]}\n', TOKEN, r"len.jsonl:1: 2 tokens but 1 tags"),
    ("cols.csv", "good,pos,extra\n", TEXT, r"cols.csv:1: expected 2 columns"),
    ("emptytext.csv", "text,label\n ,pos\n", TEXT, r"emptytext.csv:2: empty text"),
    ("mixed.conll", 'John B-PER\n{"tokens": ["a"], "tags": ["O"]}\n', TOKEN, r"mixed.conll:2: .*JSON.*mixed formats"),
    ("mixed2.conll", "John B-PER\ngood,pos\n", TOKEN, r"mixed2.conll:2: .*CSV.*mixed formats"),
    (
        "mixed.jsonl",
        '{"tokens": ["a"], "tags": ["O"]}\n{"text": "a", "label": "x"}\n',
        TOKEN,
        r"mixed.jsonl:2: .*mixed formats",
    ),
    ("mixed.tsv", "text\tlabel\ngood,pos\n", TEXT, r"mixed.tsv:2: .*no label.*mixed formats"),
    ("mixed.csv", 'text,label\n{"text": "a"}\n', TEXT, r"mixed.csv:2: .*looks like JSON"),
    ("task.conll", "a B-PER\n", TEXT, r"task.conll: CoNLL files hold token tags"),
    ("task.csv", "a,b\n", TOKEN, r"task.csv: CSV/TSV files hold"),
]


@pytest.mark.parametrize(("name", "text", "task", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_file_and_line(tmp_path: Path, name: str, text: str, task: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_examples(write(tmp_path, name, text), task)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_examples(tmp_path / "nope.conll", TOKEN)
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="bin.csv: not UTF-8"):
        read_examples(path, TEXT)


def test_one_label_only(tmp_path: Path) -> None:
    only_o = read_examples(write(tmp_path, "o.conll", "a O\nb O\n\nc O\n"), TOKEN)
    with pytest.raises(DataError, match=r"o.conll: every tag is 'O'.*one label only"):
        lab.label_list(TOKEN, only_o)
    one_class = read_examples(write(tmp_path, "one.csv", "a,pos\nb,pos\n"), TEXT)
    with pytest.raises(DataError, match=r"one.csv: every example has the label 'pos'"):
        lab.label_list(TEXT, one_class)


def test_labels_only_in_dev_are_an_error(tmp_path: Path) -> None:
    train = read_examples(write(tmp_path, "train.conll", "John B-PER\nsings O\n"), TOKEN)
    dev = read_examples(write(tmp_path, "dev.conll", "Anna B-PER\nin O\nRome B-LOC\n"), TOKEN)
    labels = lab.label_list(TOKEN, train)
    assert labels == ["O", "B-PER", "I-PER"]
    with pytest.raises(DataError, match=r"dev.conll:3: tag 'B-LOC' does not occur in the training data"):
        lab.check_known(labels, dev)
    texts = [TextExample("x", "neutral", "dev.csv", 4)]
    with pytest.raises(DataError, match=r"dev.csv:4: label 'neutral'"):
        lab.check_known(["neg", "pos"], texts)


# --- BIO -----------------------------------------------------------------------------------------


def test_bio_violation_reported_with_line_then_repaired(tmp_path: Path) -> None:
    text = "in O\nNew I-LOC\nYork I-LOC\nJohn B-PER\nAcme I-ORG\n"
    examples = read_examples(write(tmp_path, "iob1.conll", text), TOKEN)
    with pytest.raises(
        DataError, match=r"(?s)iob1.conll:2: 'I-LOC' after 'O'.*iob1.conll:5: 'I-ORG' after 'B-PER'.*--repair-bio"
    ):
        lab.check_bio(examples, repair=False)  # type: ignore[arg-type]
    assert lab.check_bio(examples, repair=True) == 2  # type: ignore[arg-type]
    assert examples[0].tags == ["O", "B-LOC", "I-LOC", "B-PER", "B-ORG"]  # type: ignore[union-attr]
    assert lab.check_bio(examples, repair=False) == 0  # type: ignore[arg-type]


# --- alignment -------------------------------------------------------------------------------------


def test_alignment_labels_first_piece_and_masks_the_rest() -> None:
    # [CLS] Wolf ##gang Amadeus ##_ works [SEP]: words 0 (2 pieces), 1 (2 pieces), 2
    word_ids = [None, 0, 0, 1, 1, 2, None]
    assert lab.align(word_ids, [1, 2, 0]) == [-100, 1, -100, 2, -100, 0, -100]
    assert lab.first_pieces(word_ids) == {0: 1, 1: 3, 2: 5}
    assert lab.first_pieces([None, 0, 0, None]) == {0: 1}  # words cut by max_length are absent


def test_alignment_with_a_real_fast_tokenizer(tmp_path: Path) -> None:
    from transformers import BertTokenizerFast

    from tests.build.finetune.tiny import make_base

    tok = BertTokenizerFast.from_pretrained(make_base(tmp_path / "base"))
    enc = tok(["john", "zq", "."], is_split_into_words=True)  # "zq" is not in the vocab: z ##q
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["[CLS]", "john", "z", "##q", ".", "[SEP]"]
    assert lab.align(enc.word_ids(), [1, 3, 0]) == [-100, 1, 3, -100, 0, -100]


# --- report figures ---------------------------------------------------------------------------------


def test_entities_follow_conlleval_chunking() -> None:
    assert report.entities(["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-ORG"]) == [
        ("PER", 0, 1),
        ("LOC", 3, 4),
        ("LOC", 5, 5),
        ("ORG", 6, 6),
    ]


def _random_tags(rng: random.Random, n: int) -> list[str]:
    return [
        rng.choice(["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "I-MISC"]) for _ in range(n)
    ]


def test_entity_figures_equal_seqeval() -> None:
    metrics = need_import("seqeval.metrics", "seqeval is a dev requirement (requirements/dev.txt)")
    rng = random.Random(7)
    true = [_random_tags(rng, rng.randint(1, 12)) for _ in range(300)]
    pred = [
        [t if rng.random() < 0.7 else rng.choice(["O", "B-PER", "I-LOC", "B-ORG", "I-ORG"]) for t in s] for s in true
    ]
    ours = report.entity_table(true, pred)
    theirs = metrics.classification_report(true, pred, output_dict=True, zero_division=0)
    assert set(ours) == set(theirs)
    for name, row in theirs.items():
        for key in ("precision", "recall", "f1-score", "support"):
            assert ours[name][key.removesuffix("-score")] == pytest.approx(row[key], abs=1e-9), (name, key)
    assert ours["micro avg"]["f1"] == pytest.approx(metrics.f1_score(true, pred, zero_division=0))
    assert ours["micro avg"]["precision"] == pytest.approx(metrics.precision_score(true, pred, zero_division=0))
    assert ours["micro avg"]["recall"] == pytest.approx(metrics.recall_score(true, pred, zero_division=0))


def test_classification_figures_and_confusion() -> None:
    figs = report.classification_figures(["a", "a", "b", "c"], ["a", "b", "b", "a"], ["a", "b", "c"])
    assert figs["accuracy"] == 0.5
    assert figs["confusion"]["matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert figs["classes"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert figs["classes"]["micro avg"]["f1"] == pytest.approx(0.5)
    assert figs["classes"]["macro avg"]["recall"] == pytest.approx((0.5 + 1 + 0) / 3)
    md = "\n".join(report.split_markdown("test", figs))
    assert "| true \\ predicted | a | b | c |" in md
    assert "| a | 1 | 1 | 0 |" in md


def test_tag_table_averages_leave_out_o() -> None:
    rows = report.tag_table([["B-PER", "O", "O"]], [["B-PER", "B-PER", "O"]], ["O", "B-PER", "I-PER"])
    assert rows["O"]["recall"] == 0.5
    assert rows["B-PER"]["precision"] == 0.5
    assert rows["micro avg"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert rows["macro avg"]["precision"] == 0.5  # I-PER (never seen or predicted) is not averaged in
