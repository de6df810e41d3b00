#!/usr/bin/env python3
"""How accurately Maestra's personal-data minimisation finds personal data, beside Presidio's
pattern recognisers, on the same synthetic sentences (issue 30).

    python3 scripts/bench_minimise.py [--maestra target/release/maestra] [--count 2000]
        [--seed 42] [--json OUT] [--dump-misses N] [--samples N] [--skip-maestra]

The script sets up its own venv, .venv-bench (scripts/bench_minimise.requirements.txt), the
first time and then runs itself in it.

Data: presidio-evaluator's PresidioSentenceFaker (its templates and Faker, en_US) with a fixed
seed gives sentences with labelled character spans.
Maestra: `maestra privacy test --jsonl` reads one JSON string (a sentence) a line and writes one
`{"withheld": [{"type", "start", "end"}]}` a line, offsets in characters, end exclusive.
Presidio: presidio-analyzer's AnalyzerEngine with only its pattern-based recognisers for the
types Maestra withholds, and Presidio's NoOpNlpEngine, so no spaCy model is needed (none can be
downloaded here). Its PERSON and LOCATION come from such a model, so Presidio is not scored on
PERSON or ADDRESS.

Scoring is per type, in Maestra's type names. The main rule: a predicted span is correct when
it overlaps a gold span of the same type, and a gold span is found when a predicted span of the
same type overlaps it. The exact rule: start, end and type must all match. The report prints
Markdown for BENCHMARKS.md.
"""

import argparse
import contextlib
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-bench"
REQUIREMENTS = Path(__file__).resolve().with_name("bench_minimise.requirements.txt")

MAESTRA_COMMAND = ("privacy", "test", "--jsonl")
MAESTRA_TYPES = tuple("EMAIL PHONE CARD IBAN IP URL SSN NINO SECRET PERSON ADDRESS".split())

# The generator's labels in Maestra's names. Left out, so listed but not scored: GPE (a city,
# state or country on its own is not an address), ZIP_CODE (the generator's {{zipcode}}, mostly
# on its own: "My zip code is ..."; its {{postcode}} inside addresses is STREET_ADDRESS),
# ORGANIZATION, DATE_TIME, AGE, TITLE, NRP, US_DRIVER_LICENSE.
GOLD_TO_MAESTRA = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP",
    "DOMAIN_NAME": "URL",  # what the generator calls its {{url}}: whole https://... URLs
    "URL": "URL",
    "US_SSN": "SSN",
    "UK_NINO": "NINO",
    "PERSON": "PERSON",
    "STREET_ADDRESS": "ADDRESS",  # a whole address, or a street, number, flat or postcode
    "ADDRESS": "ADDRESS",
}

# Presidio's predefined recognisers that work without an NLP model, for Maestra's types.
# UkNinoRecognizer is off in Presidio's default configuration; it is on here.
PRESIDIO_RECOGNISERS = (
    "EmailRecognizer",
    "PhoneRecognizer",
    "CreditCardRecognizer",
    "IbanRecognizer",
    "IpRecognizer",
    "UrlRecognizer",
    "UsSsnRecognizer",
    "UkNinoRecognizer",
)
PRESIDIO_TO_MAESTRA = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP",
    "URL": "URL",
    "US_SSN": "SSN",
    "UK_NINO": "NINO",
}
PRESIDIO_TYPES = tuple(PRESIDIO_TO_MAESTRA.values())

# Faker's dates run up to today; a fixed "today" keeps a seed's sentences the same on every day.
FIXED_NOW = datetime(2026, 1, 1)


def ensure_venv() -> None:
    """Run in .venv-bench, creating it or bringing it up to the pinned versions first."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    stamp = VENV / ".requirements"
    wanted = REQUIREMENTS.read_text()
    if not python.exists() or not stamp.exists() or stamp.read_text() != wanted:
        print(f"setting up {VENV} (about 1 GB, a few minutes)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
        stamp.write_text(wanted)
    os.execv(python, [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])


def quiet_imports() -> None:
    """Settings read when the libraries are imported, so set before any of them is."""
    # presidio-evaluator calls load_dotenv() on import, which finds a .env by walking up from
    # its own directory, that is from inside this repo: keep the repo's .env out of os.environ
    # (and so out of Maestra's environment).
    os.environ["PYTHON_DOTENV_DISABLED"] = "1"
    # tldextract (Presidio's e-mail check) would fetch the public suffix list over the network;
    # an empty list of URLs makes it use the snapshot its pinned version ships.
    os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""
    os.environ["TQDM_DISABLE"] = "1"
    # presidio-analyzer imports transformers, which warns that PyTorch is missing: not needed.
    os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    type: str

    def overlaps(self, other: "Span") -> bool:
        return self.start < other.end and other.start < self.end


@dataclass
class Sentence:
    text: str
    labels: list[Span]  # the generator's spans, its label names
    gold: list[Span] = field(default_factory=list)  # scored types, Maestra's names


def merge_adjacent(text: str, spans: list[Span]) -> list[Span]:
    """Join same-type spans with only whitespace between them.

    The generator fills "{{building_number}} {{street_name}}" as two spans, and a street and
    the flat on the next line too; to a reader (and a minimiser) each is one address."""
    out: list[Span] = []
    for s in sorted(spans, key=lambda s: (s.start, s.end)):
        last = out[-1] if out else None
        if (
            last
            and last.type == s.type
            and last.end <= s.start
            and not text[last.end : s.start].strip()
        ):
            out[-1] = Span(last.start, s.end, s.type)
        else:
            out.append(s)
    return out


def generate(count: int, seed: int) -> list[Sentence]:
    from faker.providers.date_time import Provider as DateTimeProvider
    from presidio_evaluator.data_generator import (
        PresidioSentenceFaker,
        presidio_additional_entity_providers,
        presidio_templates_file_path,
    )
    from presidio_evaluator.data_generator.faker_extensions import HospitalProvider

    class FixedClock(DateTimeProvider):
        def date_time(self, tzinfo=None, end_datetime=None):
            return super().date_time(tzinfo, end_datetime or FIXED_NOW)

    # 22 of the templates spell line breaks as a backslash and an n; make them line breaks,
    # which is what a letter or a signature in a message has.
    templates = [
        line.strip().replace("\\n", "\n")
        for line in presidio_templates_file_path.read_text().splitlines()
        if line.strip()
    ]
    # HospitalProvider queries Wikidata when it is created (no template uses it).
    providers = [p for p in presidio_additional_entity_providers if p is not HospitalProvider]
    # The constructor draws from `random` (the names of its person records) before it seeds.
    PresidioSentenceFaker.seed(seed)
    with contextlib.redirect_stdout(sys.stderr):  # it prints its warnings to stdout
        faker = PresidioSentenceFaker(
            locale="en_US",
            # This version lower-cases only the span values, not the sentence, so any ratio
            # above 0 would only make labels disagree with the text.
            lower_case_ratio=0.0,
            sentence_templates=templates,
            entity_providers=providers,
            entity_type_mapping=dict(PresidioSentenceFaker.ENTITY_TYPE_MAPPING),
            provider_aliases=list(PresidioSentenceFaker.PROVIDER_ALIASES),
            random_seed=seed,
        )
        faker.add_provider(FixedClock)
        samples = faker.generate_new_fake_sentences(num_samples=count)

    sentences = []
    for sample in samples:
        text = sample.full_text
        labels = []
        for s in sample.spans:
            # The generator computes offsets while it substitutes; check them against the text.
            if text[s.start_position : s.end_position] != s.entity_value:
                raise SystemExit(f"generator span does not match its text: {s!r} in {text!r}")
            labels.append(Span(s.start_position, s.end_position, s.entity_type))
        labels.sort(key=lambda s: (s.start, s.end))
        gold = [
            Span(s.start, s.end, GOLD_TO_MAESTRA[s.type])
            for s in labels
            if s.type in GOLD_TO_MAESTRA
        ]
        sentences.append(Sentence(text, labels, merge_adjacent(text, gold)))
    return sentences


def fingerprint(sentences: list[Sentence]) -> str:
    """A short hash of the sentences and labels: the same value means the same data."""
    h = hashlib.sha256()
    for s in sentences:
        h.update(json.dumps([s.text, [(x.start, x.end, x.type) for x in s.labels]]).encode())
    return h.hexdigest()[:12]


def run_presidio(sentences: list[Sentence]) -> tuple[list[list[Span]], list[str], Counter, float]:
    import presidio_analyzer.predefined_recognizers as predefined
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    recognisers = [getattr(predefined, name)() for name in PRESIDIO_RECOGNISERS]
    # The whole AnalyzerEngine rather than each recogniser's analyze(), so that Presidio's own
    # de-duplication and score threshold (0 by default) apply as in a normal deployment. Without
    # tokens, context words cannot raise scores; at threshold 0 that changes scores, not which
    # spans come back.
    engine = AnalyzerEngine(
        registry=RecognizerRegistry(recognizers=recognisers),
        nlp_engine=NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}]),
    )
    ran = [f"{r.name} ({', '.join(r.supported_entities)})" for r in engine.registry.recognizers]
    per_recogniser: Counter = Counter()
    predictions = []
    start = time.perf_counter()
    for s in sentences:
        spans = set()
        for r in engine.analyze(text=s.text, language="en"):
            per_recogniser[(r.recognition_metadata or {}).get("recognizer_name", "?")] += 1
            if r.entity_type in PRESIDIO_TO_MAESTRA:
                spans.add(Span(r.start, r.end, PRESIDIO_TO_MAESTRA[r.entity_type]))
        predictions.append(sorted(spans, key=lambda x: (x.start, x.end)))
    return predictions, ran, per_recogniser, time.perf_counter() - start


def find_maestra(path: str | None) -> Path:
    candidates = (
        [Path(path)] if path else [ROOT / "target/release/maestra", ROOT / "target/debug/maestra"]
    )
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c.resolve()
    raise SystemExit(
        f"no Maestra binary at {' or '.join(map(str, candidates))}: build it "
        "(cargo build --release), pass --maestra PATH, or --skip-maestra to score Presidio alone"
    )


def maestra_env(home: str) -> dict[str, str]:
    # The caller's own MAESTRA_HOME or MAESTRA_CONFIG would point Maestra at their real setup.
    env = {k: v for k, v in os.environ.items() if k not in ("MAESTRA_HOME", "MAESTRA_CONFIG")}
    env["MAESTRA_HOME"] = home
    return env


def maestra_version(binary: Path) -> str:
    try:
        out = subprocess.run(
            [binary, "--version"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30
        )
        return out.stdout.strip() if out.returncode == 0 else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def seed_names(binary: Path, home: str, sentences: list[Sentence]) -> int:
    """Puts every distinct PERSON value of the data on the home's names list, as if each person
    in the sentences were one of the user's contacts: what the list matcher finds when the
    list is complete (boundaries, case, names inside longer text), not name recognition."""
    env = maestra_env(home)
    names = sorted({s.text[g.start:g.end].strip() for s in sentences for g in s.gold if g.type == "PERSON"})
    names = [n for n in names if 2 <= len(n) <= 200 and n.isprintable()]
    subprocess.run([str(binary), "init"], env=env, capture_output=True, stdin=subprocess.DEVNULL, check=True)
    for i in range(0, len(names), 400):
        subprocess.run([str(binary), "privacy", "names", "add", *names[i:i + 400]],
                       env=env, capture_output=True, stdin=subprocess.DEVNULL, check=True)
    return len(names)


def run_maestra(
    binary: Path, sentences: list[Sentence], home: str, level: str
) -> tuple[list[list[Span]], float]:
    env = maestra_env(home)
    stdin = "".join(json.dumps(s.text, ensure_ascii=False) + "\n" for s in sentences)
    cmd = [str(binary), *MAESTRA_COMMAND, "--level", level]

    def attempt():
        start = time.perf_counter()
        p = subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=env,
            timeout=1800,
        )
        return p, time.perf_counter() - start

    proc, seconds = attempt()
    if proc.returncode != 0:
        # A fresh MAESTRA_HOME may need `maestra init` (keys, database) first.
        init = subprocess.run(
            [str(binary), "init"],
            stdin=subprocess.DEVNULL,  # nothing to answer a prompt with
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        if init.returncode != 0:
            raise SystemExit(
                f"{shlex.join(cmd)} failed:\n{proc.stderr[-2000:]}\nand maestra init too:\n{init.stderr[-2000:]}"
            )
        proc, seconds = attempt()
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return parse_maestra(proc.stdout, sentences), seconds


def parse_maestra(stdout: str, sentences: list[Sentence]) -> list[list[Span]]:
    # Split on "\n" only: str.splitlines() would also split on U+2028 and friends, which JSON
    # may carry unescaped inside a string.
    lines = stdout.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != len(sentences):
        raise SystemExit(f"maestra wrote {len(lines)} lines for {len(sentences)} sentences")
    predictions, errors, unknown = [], [], Counter()
    for i, (line, s) in enumerate(zip(lines, sentences, strict=True)):
        spans = set()
        try:
            withheld = json.loads(line)["withheld"]
            for w in withheld:
                span = Span(w["start"], w["end"], w["type"])
                if not (
                    isinstance(span.start, int)
                    and isinstance(span.end, int)
                    and 0 <= span.start < span.end <= len(s.text)
                ):
                    errors.append(
                        f"#{i}: span {w} outside the {len(s.text)} characters of {s.text!r}"
                    )
                    continue
                if span.type not in MAESTRA_TYPES:
                    unknown[span.type] += 1
                spans.add(span)
        except (ValueError, KeyError, TypeError) as e:
            errors.append(f"#{i}: {e!r} in {line[:200]!r}")
        predictions.append(sorted(spans, key=lambda x: (x.start, x.end)))
    if errors:
        raise SystemExit("maestra's output breaks the contract:\n" + "\n".join(errors[:10]))
    if unknown:
        print(
            f"warning: maestra emitted types outside the contract, scored as such: {dict(unknown)}",
            file=sys.stderr,
        )
    return predictions


@dataclass
class Tally:
    gold: int = 0
    pred: int = 0
    pred_hits: int = 0  # predicted spans that are correct under the rule
    gold_hits: int = 0  # gold spans found under the rule

    def add(self, other: "Tally") -> None:
        self.gold += other.gold
        self.pred += other.pred
        self.pred_hits += other.pred_hits
        self.gold_hits += other.gold_hits

    def precision(self) -> float | None:
        return self.pred_hits / self.pred if self.pred else None

    def recall(self) -> float | None:
        return self.gold_hits / self.gold if self.gold else None

    def f1(self) -> float | None:
        p, r = self.precision(), self.recall()
        if p is None or r is None:
            return None
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict:
        return {
            "gold": self.gold,
            "predicted": self.pred,
            "correct_predicted": self.pred_hits,
            "found_gold": self.gold_hits,
            "precision": self.precision(),
            "recall": self.recall(),
            "f1": self.f1(),
        }


def score(
    sentences: list[Sentence], predictions: list[list[Span]], exact: bool
) -> dict[str, Tally]:
    tallies: dict[str, Tally] = defaultdict(Tally)
    for s, pred in zip(sentences, predictions, strict=True):
        gold = s.gold
        for g in gold:
            t = tallies[g.type]
            t.gold += 1
            t.gold_hits += any(
                p.type == g.type and (p == g if exact else p.overlaps(g)) for p in pred
            )
        for p in pred:
            t = tallies[p.type]
            t.pred += 1
            t.pred_hits += any(
                g.type == p.type and (g == p if exact else g.overlaps(p)) for g in gold
            )
    return tallies


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def prf(t: Tally | None) -> list[str]:
    if t is None:
        return ["n/a"] * 3
    return [pct(t.precision()), pct(t.recall()), pct(t.f1())]


def table(
    gold_counts: Counter, maestra: dict[str, Tally] | None, presidio: dict[str, Tally]
) -> list[str]:
    rows = [
        "| type | gold | Maestra P | Maestra R | Maestra F1 | Presidio P | Presidio R | Presidio F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    types = [t for t in MAESTRA_TYPES] + sorted(t for t in gold_counts if t not in MAESTRA_TYPES)
    types += sorted(t for t in (maestra or {}) if t not in types)
    for t in types:
        m = (maestra.get(t) or Tally()) if maestra is not None else None
        p = (presidio.get(t) or Tally()) if t in PRESIDIO_TYPES else None
        rows.append(f"| {t} | {gold_counts[t]} | " + " | ".join(prf(m) + prf(p)) + " |")

    def total(tallies, types):
        out = Tally()
        for t in types:
            out.add(tallies.get(t) or Tally())
        return out

    both = list(PRESIDIO_TYPES)
    rows.append(
        f"| all pattern types | {sum(gold_counts[t] for t in both)} | "
        + " | ".join(
            prf(total(maestra, both) if maestra is not None else None) + prf(total(presidio, both))
        )
        + " |"
    )
    if maestra is not None:
        everything = sorted(set(MAESTRA_TYPES) | set(maestra))
        rows.append(
            f"| all Maestra types | {sum(gold_counts[t] for t in everything)} | "
            + " | ".join(prf(total(maestra, everything)) + ["n/a"] * 3)
            + " |"
        )
    return rows


def show(text: str, spans: list[Span], width: int = 50) -> str:
    """A sentence cut around `spans`, each marked ⟦…⟧, line breaks as ⏎."""
    lo = max(0, min(s.start for s in spans) - width)
    hi = min(len(text), max(s.end for s in spans) + width)
    out, pos = [], lo
    for s in sorted(spans, key=lambda s: s.start):
        if s.start < pos:
            continue
        out += [text[pos : s.start], "⟦", text[s.start : s.end], "⟧"]
        pos = s.end
    out.append(text[pos:hi])
    return ("…" if lo else "") + "".join(out).replace("\n", "⏎") + ("…" if hi < len(text) else "")


def dump_misses(
    tool: str, sentences: list[Sentence], predictions: list[list[Span]], n: int
) -> list[str]:
    """Per type, up to n missed gold spans (FN), wrong predictions (FP) under the overlap rule,
    and predictions that overlap the right gold span with other boundaries (EDGE)."""
    kinds: dict[tuple[str, str], list[str]] = defaultdict(list)
    for i, (s, pred) in enumerate(zip(sentences, predictions, strict=True)):
        for g in s.gold:
            same = [p for p in pred if p.type == g.type and p.overlaps(g)]
            if not same and len(kinds[g.type, "FN"]) < n:
                kinds[g.type, "FN"].append(f"#{i} {show(s.text, [g])}")
            for p in same:
                if p != g and len(kinds[g.type, "EDGE"]) < n:
                    kinds[g.type, "EDGE"].append(
                        f"#{i} predicted {show(s.text, [p], 20)}  gold {show(s.text, [g], 20)}"
                    )
        for p in pred:
            if (
                not any(g.type == p.type and g.overlaps(p) for g in s.gold)
                and len(kinds[p.type, "FP"]) < n
            ):
                under = sorted({lab.type for lab in s.labels if lab.overlaps(p)})
                where = f"  (labelled there: {', '.join(under)})" if under else ""
                kinds[p.type, "FP"].append(f"#{i} {show(s.text, [p])}{where}")
    out = [
        f"### {tool} misses, up to {n} per type and kind (FN missed, FP wrong, EDGE other boundaries)",
        "",
    ]
    for t in sorted({t for t, _ in kinds}):
        for kind in ("FN", "FP", "EDGE"):
            for line in kinds.get((t, kind), []):
                out.append(f"- {t} {kind} {line}")
    return out


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {
        p: version(p)
        for p in ("presidio-evaluator", "presidio-analyzer", "faker", "phonenumbers", "tldextract")
    }
    out["python"] = sys.version.split()[0]
    return out


def git_commit() -> str:
    def git(*args):
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "?"
    return commit + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--maestra",
        metavar="PATH",
        help="the binary (default target/release/maestra, else target/debug/maestra)",
    )
    ap.add_argument("--skip-maestra", action="store_true", help="score Presidio alone")
    ap.add_argument(
        "--maestra-home",
        metavar="DIR",
        help="an existing MAESTRA_HOME (its maestra.toml applies); default a new temporary one",
    )
    ap.add_argument(
        "--level",
        choices=["off", "standard", "strict"],
        default="standard",
        help="Maestra's minimise level (default standard, a cloud provider's default)",
    )
    ap.add_argument(
        "--names-from-data",
        action="store_true",
        help="put the data's PERSON values on the new home's names list (the list matcher's F1)",
    )
    ap.add_argument("--count", type=int, default=2000, help="sentences (default 2000)")
    ap.add_argument("--seed", type=int, default=42, help="generator seed (default 42)")
    ap.add_argument("--json", metavar="OUT", help="also write the raw numbers here")
    ap.add_argument(
        "--dump-misses",
        type=int,
        default=0,
        metavar="N",
        help="print up to N misses per type and kind",
    )
    ap.add_argument(
        "--dump-tool",
        choices=("maestra", "presidio"),
        default="maestra",
        help="whose misses --dump-misses prints",
    )
    ap.add_argument(
        "--samples",
        type=int,
        default=0,
        metavar="N",
        help="print the first N sentences with their labels",
    )
    args = ap.parse_args()
    command = shlex.join(["python3", "scripts/bench_minimise.py", *sys.argv[1:]])

    binary = None if args.skip_maestra else find_maestra(args.maestra)
    timings = {}

    start = time.perf_counter()
    sentences = generate(args.count, args.seed)
    timings["generate_s"] = time.perf_counter() - start
    labels = Counter(lab.type for s in sentences for lab in s.labels)
    gold_counts = Counter(g.type for s in sentences for g in s.gold)

    presidio_pred, recognisers, per_recogniser, timings["presidio_s"] = run_presidio(sentences)

    maestra_pred = None
    listed = 0
    if binary and args.maestra_home:
        maestra_pred, timings["maestra_s"] = run_maestra(binary, sentences, args.maestra_home, args.level)
    elif binary:
        with tempfile.TemporaryDirectory(prefix="maestra-bench-") as home:
            if args.names_from_data:
                listed = seed_names(binary, home, sentences)
            maestra_pred, timings["maestra_s"] = run_maestra(binary, sentences, home, args.level)

    results = {}
    for rule, exact in (("overlap", False), ("exact", True)):
        results[rule] = {
            "maestra": score(sentences, maestra_pred, exact) if maestra_pred is not None else None,
            "presidio": score(sentences, presidio_pred, exact),
        }

    v = versions()
    unscored = {k: n for k, n in labels.most_common() if k not in GOLD_TO_MAESTRA}
    with_breaks = sum("\n" in s.text for s in sentences)
    non_ascii = sum(not s.text.isascii() for s in sentences)
    out = [
        f"Command: `{command}` (commit {git_commit()})",
        "",
        f"- Data: presidio-evaluator {v['presidio-evaluator']} `PresidioSentenceFaker` (en_US, its "
        f"templates, Faker {v['faker']}), seed {args.seed}, {len(sentences)} sentences, fingerprint "
        f"`{fingerprint(sentences)}`; {with_breaks} with line breaks, {non_ascii} with non-ASCII characters.",
        f"- Generator labels: {', '.join(f'{k} {n}' for k, n in labels.most_common())}.",
        f"- Scored as: {', '.join(f'{k} → {m}' for k, m in GOLD_TO_MAESTRA.items() if k in labels)}; "
        "same-type spans with only whitespace between them joined (a house number and its street, "
        "a street and its flat).",
        f"- Not scored (neither tool targets them): {', '.join(f'{k} {n}' for k, n in unscored.items())}.",
        f"- Presidio: presidio-analyzer {v['presidio-analyzer']} (phonenumbers {v['phonenumbers']}, "
        f"tldextract {v['tldextract']}), `AnalyzerEngine` with `NoOpNlpEngine` (no spaCy model, so no "
        f"NER: Presidio n/a for PERSON and ADDRESS), score threshold 0 (its default), recognisers: "
        f"{', '.join(recognisers)}.",
    ]
    if binary:
        out.append(
            f"- Maestra: `{binary.relative_to(ROOT) if binary.is_relative_to(ROOT) else binary}` "
            f"(`--version`: {maestra_version(binary)}), `{' '.join(('maestra', *MAESTRA_COMMAND, '--level', args.level))}`, "
            f"{'MAESTRA_HOME ' + args.maestra_home if args.maestra_home else 'a new MAESTRA_HOME'}"
            + (
                f", its names list holding the data's {listed} distinct PERSON values (as if every "
                "person in the sentences were a contact: the list matcher measured, not recognition)."
                if listed
                else ", its names list empty (Maestra has no name recogniser: PERSON is found only "
                "from the user's list)."
            )
        )
    else:
        out.append("- Maestra: not run (--skip-maestra).")
    out.append(
        f"- Time: generation {timings['generate_s']:.1f} s, Presidio {timings['presidio_s']:.1f} s"
        + (
            f", Maestra {timings['maestra_s']:.1f} s (the whole process, start included)"
            if "maestra_s" in timings
            else ""
        )
        + f"; Python {v['python']}."
    )
    out += [
        "",
        "Overlap rule: a withheld span is correct when it overlaps a gold span of the same type; a "
        "gold span is found when a withheld span of the same type overlaps it. P = correct / withheld, "
        'R = found / gold, in %; — where there is nothing to divide by. "all pattern types" adds up '
        f"{', '.join(PRESIDIO_TYPES)}, which both tools target.",
        "",
        *table(gold_counts, results["overlap"]["maestra"], results["overlap"]["presidio"]),
        "",
        "Exact rule: start, end and type all equal. The generator cuts names and addresses into parts "
        "(city and country are separate labels inside an address), so for PERSON and ADDRESS this mostly "
        "measures where the parts are cut.",
        "",
        *table(gold_counts, results["exact"]["maestra"], results["exact"]["presidio"]),
    ]
    print("\n".join(out))

    if args.samples:
        print(f"\n### The first {args.samples} sentences\n")
        for i, s in enumerate(sentences[: args.samples]):
            print(
                f"- #{i} {s.text!r}: "
                + "; ".join(f"{lab.type} {s.text[lab.start : lab.end]!r}" for lab in s.labels)
            )
    if args.dump_misses:
        pred = maestra_pred if args.dump_tool == "maestra" else presidio_pred
        if pred is None:
            print("\n(no Maestra run: no misses to print)")
        else:
            print("\n" + "\n".join(dump_misses(args.dump_tool, sentences, pred, args.dump_misses)))

    if args.json:
        raw = {
            "command": command,
            "commit": git_commit(),
            "seed": args.seed,
            "count": len(sentences),
            "fingerprint": fingerprint(sentences),
            "versions": v,
            "labels": dict(labels.most_common()),
            "gold": dict(gold_counts),
            "unscored_labels": unscored,
            "label_mapping": GOLD_TO_MAESTRA,
            "presidio_recognisers": recognisers,
            "presidio_results_per_recogniser": dict(per_recogniser),
            "maestra_binary": str(binary) if binary else None,
            "timings_s": timings,
            "results": {
                rule: {
                    tool: (
                        {t: x.as_dict() for t, x in sorted(tallies.items())}
                        if tallies is not None
                        else None
                    )
                    for tool, tallies in by_tool.items()
                }
                for rule, by_tool in results.items()
            },
        }
        Path(args.json).write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    ensure_venv()
    quiet_imports()
    main()
