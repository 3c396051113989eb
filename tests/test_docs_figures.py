"""Every speed figure in the docs names the machine it was measured on.

A figure in texts/s means little without its machine: ALBERT-base in bfloat16 measured
353.8 texts/s on a 2-core Intel VM with AMX, and a user saw 147-150 on a 2-core AMD EPYC.
Each paragraph of README.md, docs/*.rst and examples/*.py that quotes a throughput
(``353.8 texts/s``, ``99 to 108 SST-2 dev texts/s``, ``1.2x the texts/s``) must also name a
CPU or GPU (AMD EPYC, Intel, an NVIDIA card, ...) within the same paragraph.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.rst")),
    *sorted((ROOT / "examples").glob("*.py")),
]
SPEED = re.compile(
    r"\d[\d,.]*\s*(?:[A-Za-z0-9-]+\s+){0,3}(?:texts|sentences|tokens|documents|posts)/s\b"
    r"|\dx the texts/s",
    re.IGNORECASE,
)
MACHINE = re.compile(
    r"EPYC|Xeon|Intel|AMD|Apple M\d|Graviton|\bARM\b|\bGPU\b|NVIDIA|H100|H200|A100|\bT4\b|\bL4\b",
    re.IGNORECASE,
)


def paragraphs(page):
    """``(line, text)`` of each blank-line-separated paragraph of ``page``."""
    line = 1
    for block in re.split(r"(\n\s*\n)", page.read_text(encoding="utf-8")):
        if block.strip():
            yield line, block
        line += block.count("\n")


def figures_without_machine(page):
    return [
        f"{page.name}:{line}: {SPEED.search(text).group()!r}"
        for line, text in paragraphs(page)
        if SPEED.search(text) and not MACHINE.search(text)
    ]


def test_the_pattern_finds_figures_and_machines():
    assert SPEED.search("(335.5 against 353.8 texts/s; rounds 0.96)")
    assert SPEED.search("from 99 to\n108 SST-2 dev texts/s on one thread")
    assert SPEED.search("ran at 5.4-6.0x the texts/s of sentence-transformers")
    assert not SPEED.search("    texts/s of one worker  x  number of workers")
    assert MACHINE.search("on a shared 2-core AMD EPYC VM") and not MACHINE.search("a 2-core VM")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_speed_figure_names_its_machine(page):
    assert figures_without_machine(page) == []
