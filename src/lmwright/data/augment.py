"""Text augmentation for fine-tuning data: character noise, word noise (dropout, swap, replacement) and template
paraphrase of instructions. Off by default; pure functions of (text, settings, random source), seeded.

Augment training rows only, never val or test: an augmented copy of an evaluation example in the training set is
a leak. Labels and reference answers are never changed — only the inputs the model reads (`fields`). Each
augmented copy gets its own random stream from (seed, row index, copy index), so a row's copies do not depend on
the rows before it: adding rows leaves earlier copies as they were.

- Character noise (`char_rate`): each letter, with that probability, is deleted, doubled, swapped with the next
  character, or replaced by a neighbour on a QWERTY keyboard — the typos real users make.
- Word noise: `word_dropout` drops a word, `word_swap` swaps it with the next one, `word_replace` replaces it
  with another word of the same text (keeps the vocabulary in-domain, needs no word list). At least one word
  is always kept.
- Paraphrase (`paraphrase`): an instruction that starts with a known form ("Explain X", "What is X?",
  "How do I X?", "Write X", ...) is rewritten into another form of the same request ("Can you explain X?",
  "Could you tell me what X is?", "How can I X?"); anything else, and any instruction that carries material
  (a newline or a colon: "Summarise this: ..."), is left as it is rather than guessed at.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

_KEYBOARD = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]


def _neighbours() -> dict[str, str]:
    out: dict[str, str] = {}
    for r, row in enumerate(_KEYBOARD):
        for c, ch in enumerate(row):
            near = [row[c - 1]] if c else []
            near += [row[c + 1]] if c + 1 < len(row) else []
            for other in (r - 1, r + 1):
                if 0 <= other < len(_KEYBOARD):
                    near += [k for k in _KEYBOARD[other][max(0, c - 1): c + 2]]
            out[ch] = "".join(near)
    return out


_NEAR = _neighbours()


def char_noise(text: str, rate: float, rng: random.Random) -> str:
    """Typos: each letter with probability `rate` is deleted, doubled, swapped with the next, or replaced by a
    keyboard neighbour (case kept)."""
    if rate <= 0:
        return text
    out: list[str] = []
    chars = list(text)
    i = 0
    while i < len(chars):
        ch = chars[i]
        if not ch.isalpha() or rng.random() >= rate:
            out.append(ch)
            i += 1
            continue
        op = rng.randrange(4)
        if op == 0:  # delete
            pass
        elif op == 1:  # double
            out += [ch, ch]
        elif op == 2 and i + 1 < len(chars):  # swap with the next character
            out += [chars[i + 1], ch]
            i += 1
        else:  # a keyboard neighbour (or the letter itself, for one the keyboard map lacks)
            near = _NEAR.get(ch.lower(), ch.lower())
            sub = rng.choice(near)
            out.append(sub.upper() if ch.isupper() else sub)
        i += 1
    return "".join(out)


def word_noise(text: str, rng: random.Random, dropout: float = 0.0, swap: float = 0.0,
               replace: float = 0.0) -> str:
    """Drop, swap with the next, or replace (by another word of the same text) each word with the given
    probabilities. Whitespace is normalised to single spaces; at least one word survives."""
    words = text.split()
    if not words or not (dropout or swap or replace):
        return text
    vocab = sorted(set(words))
    if replace:
        words = [rng.choice(vocab) if rng.random() < replace else w for w in words]
    if swap:
        i = 0
        while i + 1 < len(words):
            if rng.random() < swap:
                words[i], words[i + 1] = words[i + 1], words[i]
                i += 1  # a swapped word is not swapped again
            i += 1
    if dropout:
        kept = [w for w in words if rng.random() >= dropout]
        words = kept or [rng.choice(words)]
    return " ".join(words)


# Instruction forms: a pattern that recognises one, and the templates that ask for the same thing. {x} is the
# rest of the instruction, {v} its verb in lower case.
_FORMS: list[tuple[re.Pattern[str], list[str]]] = [
    (re.compile(r"^(?:please\s+)?(explain|describe|summari[sz]e|list|define|compare|write|give|show|name)\s+"
                r"(?P<x>.+?)[.!?]?$", re.I),
     ["{V} {x}.", "Please {v} {x}.", "Can you {v} {x}?", "Could you {v} {x}?", "I would like you to {v} {x}."]),
    (re.compile(r"^(?:can|could) you (?:please\s+)?(explain|describe|summari[sz]e|list|define|compare|write|give|"
                r"show|name)\s+(?P<x>.+?)[.!?]?$", re.I),
     ["{V} {x}.", "Please {v} {x}.", "Could you {v} {x}?", "I would like you to {v} {x}."]),
    (re.compile(r"^what (?:is|are) (?P<x>.+?)\??$", re.I),
     ["What is {x}?", "Could you tell me what {x} is?", "Explain what {x} is."]),
    (re.compile(r"^how (?:do|can|should) i (?P<x>.+?)\??$", re.I),
     ["How do I {x}?", "How can I {x}?", "What is the way to {x}?", "Show me how to {x}."]),
]


def paraphrase(instruction: str, rng: random.Random) -> str:
    """Another wording of an instruction of a known form (a different template from the one it has, where the
    form has another); anything else unchanged."""
    text = instruction.strip()
    if "\n" in text or ":" in text:  # it carries material (a text to summarise, code): leave the wording alone
        return instruction
    for pattern, templates in _FORMS:
        m = pattern.match(text)
        if not m:
            continue
        verb = (m.group(1) if pattern.groups > 1 else "").lower()
        x = m.group("x")
        options = [t.format(V=verb.capitalize(), v=verb, x=x) for t in templates]
        options = [o for o in options if o != text] or options
        return rng.choice(options)
    return instruction


@dataclass(frozen=True)
class Augment:
    """What to do to each copy. The defaults do nothing: augmentation is off until a rate is set."""

    copies: int = 0  # augmented copies per row, added to the originals
    char_rate: float = 0.0
    word_dropout: float = 0.0
    word_swap: float = 0.0
    word_replace: float = 0.0
    paraphrase: bool = False  # the fields read as instructions (prompt, instruction) are paraphrased

    def apply(self, text: str, rng: random.Random, instruction: bool = False) -> str:
        if instruction and self.paraphrase:
            text = paraphrase(text, rng)
        text = word_noise(text, rng, self.word_dropout, self.word_swap, self.word_replace)
        return char_noise(text, self.char_rate, rng)


INSTRUCTION_FIELDS = ("prompt", "instruction")


def augment_rows(rows: list[dict], aug: Augment, seed: int, fields: tuple[str, ...] = ("text", "prompt")) \
        -> list[dict]:
    """The rows, then `aug.copies` augmented copies of each (marked `augmented: True`); only `fields` change.
    For training rows only (see the module's note on leaks)."""
    out = list(rows)
    for i, row in enumerate(rows):
        for k in range(aug.copies):
            rng = random.Random(f"{seed}:{i}:{k}")
            copy = dict(row)
            for f in fields:
                if isinstance(copy.get(f), str):
                    copy[f] = aug.apply(copy[f], rng, instruction=f in INSTRUCTION_FIELDS)
            copy["augmented"] = True
            out.append(copy)
    return out
