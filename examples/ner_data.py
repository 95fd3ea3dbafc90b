"""Make a small labelled NER data set (CoNLL, BIO tags PER / ORG / LOC) that runs offline.

What it is: sentences from 40 hand-written templates (business-news and small-talk
phrasing) with the slots filled from gazetteers that the `faker` package ships:
- PER: real given names and surnames from Faker's en_US, en_GB, de_DE, fr_FR, it_IT and
  nl_NL person lists, as "First Last" or a surname alone;
- LOC: real place names: Faker's English country list, the 50 US states, and the German,
  Dutch, Swedish, Polish and Portuguese city lists;
- ORG: synthetic company names in Faker's own pattern (a surname + a legal suffix or a
  sector word: "Hoffmann GmbH", "Keller & Brandt", "Ortega Logistics"); no real companies.
Train, dev and test use disjoint names (each name goes to one split by a hash of its text),
and 8 of the 40 templates appear only in dev and test, so a test score measures whether
the model learned the context and the shape of names, not a memorised list.

What it is not: real text. The sentences are short and regular, every sentence has at least
one entity, there is no MISC type, and names never nest or span a line. A score on it says
the fine-tuning loop works and roughly how well a small encoder generalises to unseen names;
it is not a CoNLL-2003 score and predicts nothing about news, mail or chat text.

Usage: python examples/ner_data.py --out build/examples/ner   (needs `pip install faker`)
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
from pathlib import Path

TRAIN_TEMPLATES = [
    "{PER} joined {ORG} as head of sales last spring .",
    "{ORG} opened a new office in {LOC} on Monday .",
    "{PER} was born in {LOC} and studied law there .",
    "Shares of {ORG} fell after {PER} resigned .",
    "{PER} flew from {LOC} to {LOC} for the meeting .",
    "The board of {ORG} named {PER} chief executive .",
    "According to {PER} , {ORG} will hire two hundred people in {LOC} .",
    "{ORG} and {ORG} agreed to merge their operations .",
    "I met {PER} at the station in {LOC} yesterday .",
    "{PER} thanked the team at {ORG} for their support .",
    "Heavy rain closed several roads around {LOC} .",
    "{ORG} reported record profits for the third quarter .",
    "Our new neighbour {PER} moved here from {LOC} .",
    "{PER} and {PER} will present the results on Friday .",
    "The factory near {LOC} belongs to {ORG} .",
    "Please send the invoice to {PER} at {ORG} .",
    "{PER} said the talks in {LOC} went well .",
    "A spokesman for {ORG} declined to comment .",
    "Tourists from {LOC} crowded the old town of {LOC} .",
    "{PER} has worked for {ORG} for ten years .",
    "The mayor of {LOC} , {PER} , opened the bridge .",
    "{ORG} is moving its headquarters to {LOC} .",
    "Call {PER} if the delivery from {ORG} is late .",
    "{PER} won the regional chess title in {LOC} .",
    "Analysts expect {ORG} to cut prices next month .",
    "The train to {LOC} was delayed by an hour .",
    "{PER} signed a two-year contract with {ORG} .",
    "Investors in {LOC} welcomed the news from {ORG} .",
    "My sister {PER} teaches music in {LOC} .",
    "{ORG} recalled thousands of heaters sold in {LOC} .",
    "{PER} visited {LOC} with a delegation from {ORG} .",
    "Nobody at {ORG} expected {PER} to leave so soon .",
]
HELD_OUT_TEMPLATES = [  # dev and test only
    "Last week {PER} bought a small flat in {LOC} .",
    "{ORG} sponsors the football club of {LOC} .",
    "The letter from {PER} reached {ORG} two days late .",
    "Engineers from {ORG} inspected the dam near {LOC} .",
    "{PER} told reporters that {ORG} had paid in full .",
    "Flights between {LOC} and {LOC} resume in May .",
    "{PER} , a nurse from {LOC} , won the lottery .",
    "The auditors of {ORG} questioned {PER} for hours .",
]
ORG_WORDS = ["Logistics", "Bank", "Motors", "Foods", "Labs", "Energy", "Pharma", "Media", "Textiles", "Systems"]
ORG_SUFFIXES = ["Inc", "LLC", "Ltd", "PLC", "Group", "GmbH", "AG", "BV", "NV", "AB", "SA", "SPA"]
SPLITS = ("train", "dev", "test")


def _keys(x: object) -> list[str]:
    return [str(k) for k in (x.keys() if isinstance(x, dict) else x)]  # type: ignore[attr-defined]


def gazetteers() -> dict[str, list[str]]:
    """Name lists from faker's providers (deduplicated, sorted, single-line)."""
    from faker import Faker

    firsts: set[str] = set()
    lasts: set[str] = set()
    for loc in ("en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "nl_NL"):
        person = next(p for p in Faker(loc).providers if type(p).__module__.endswith(f"person.{loc}"))
        firsts.update(_keys(person.first_names))
        lasts.update(_keys(person.last_names))
    places: set[str] = set()
    for loc in ("en_US", "de_DE", "nl_NL", "sv_SE", "pl_PL", "pt_PT"):
        addr = next(p for p in Faker(loc).providers if type(p).__module__.endswith(f"address.{loc}"))
        places.update(getattr(addr, "cities", ()))
        if loc == "en_US":
            places.update(addr.countries)
            places.update(addr.states)
    clean = lambda xs: sorted(x for x in xs if x and re.fullmatch(r"[^\W\d_][\w'.-]*(?: [\w'.-]+)*", x))  # noqa: E731
    return {"first": clean(firsts), "last": clean(lasts), "place": clean(places)}


def split_of(name: str) -> str:
    """Stable split for a name: 70 % train, 10 % dev, 20 % test."""
    b = hashlib.sha1(name.lower().encode()).digest()[0] % 10
    return "test" if b < 2 else "dev" if b < 3 else "train"


def _words(text: str) -> list[str]:
    return text.split()


class Maker:
    def __init__(self, gaz: dict[str, list[str]], split: str, seed: int) -> None:
        self.rng = random.Random(f"{seed}-{split}")
        pick = lambda xs: [x for x in xs if split_of(x) == split]  # noqa: E731
        self.first, self.last, self.place = pick(gaz["first"]), pick(gaz["last"]), pick(gaz["place"])
        self.templates = TRAIN_TEMPLATES + (HELD_OUT_TEMPLATES if split != "train" else [])

    def fill(self, slot: str) -> list[str]:
        r = self.rng
        if slot == "PER":
            return (
                _words(r.choice(self.first) + " " + r.choice(self.last))
                if r.random() < 0.8
                else _words(r.choice(self.last))
            )
        if slot == "LOC":
            return _words(r.choice(self.place))
        kind = r.random()
        if kind < 0.45:
            return _words(f"{r.choice(self.last)} {r.choice(ORG_SUFFIXES)}")
        if kind < 0.75:
            return _words(f"{r.choice(self.last)} {r.choice(ORG_WORDS)}")
        return _words(f"{r.choice(self.last)} & {r.choice(self.last)}")

    def sentence(self) -> tuple[list[str], list[str]]:
        tokens: list[str] = []
        tags: list[str] = []
        for piece in re.split(r"(\{[A-Z]+\})", self.rng.choice(self.templates)):
            if piece.startswith("{"):
                slot = piece[1:-1]
                words = self.fill(slot)
                tokens += words
                tags += [f"B-{slot}"] + [f"I-{slot}"] * (len(words) - 1)
            else:
                for w in piece.split():
                    tokens.append(w)
                    tags.append("O")
        return tokens, tags


def generate(out: Path, *, train: int = 1500, dev: int = 200, test: int = 400, seed: int = 0) -> dict[str, Path]:
    """Write train.conll, dev.conll and test.conll ('token TAG' lines, blank line between sentences)."""
    gaz = gazetteers()
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, n in zip(SPLITS, (train, dev, test), strict=True):
        maker = Maker(gaz, split, seed)
        lines = ["-DOCSTART- -X- O O", ""]
        for _ in range(n):
            tokens, tags = maker.sentence()
            lines += [f"{t} {g}" for t, g in zip(tokens, tags, strict=True)] + [""]
        paths[split] = out / f"{split}.conll"
        paths[split].write_text("\n".join(lines), encoding="utf-8")
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("build/examples/ner"))
    p.add_argument("--train", type=int, default=1500)
    p.add_argument("--dev", type=int, default=200)
    p.add_argument("--test", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    for split, path in generate(a.out, train=a.train, dev=a.dev, test=a.test, seed=a.seed).items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
