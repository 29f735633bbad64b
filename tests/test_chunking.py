"""Chunking: passages fit the encoder's token budget, overlap their neighbours, and keep page spans and sections."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from tokenizers import BertWordPieceTokenizer, Tokenizer

from rag_engine.chunking import chunk_pages
from rag_engine.pdf import extract_pdf
from rag_engine.types import Chunk, ExtractedPdf, PageText
from tests.conftest import REAL_PDFS

PAPERS = ("1706.03762.pdf", "2204.10628.pdf", "2205.01068.pdf")
# (paper, page, sentence printed on that page), as read with MuPDF (tests/test_pdf.py checks the same ground truth).
PHRASES = [
    ("1706.03762.pdf", 3, "The encoder is composed of a stack of N = 6 identical layers"),
    ("1706.03762.pdf", 8, "Table 2: The Transformer achieves better BLEU scores than previous state-of-the-art models"),
    ("2204.10628.pdf", 6, "biasing the distribution in favor of ngrams with a high character overlap with the query"),
    ("2205.01068.pdf", 5, "we additionally evaluate OPT-175B on several open source dialogue datasets"),
]


def words(text: str) -> int:
    return len(text.split())


def _norm(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def papers() -> dict[str, ExtractedPdf]:
    return {
        name: extract_pdf((REAL_PDFS / name).read_bytes(), max_bytes=50 * 2**20, max_pages=600) for name in PAPERS
    }


@pytest.fixture(scope="module")
def wordpiece(papers: dict[str, ExtractedPdf]) -> Callable[[str], int]:
    """A BERT WordPiece tokenizer trained offline on the papers themselves; counts tokens without [CLS]/[SEP]."""
    tokenizer = BertWordPieceTokenizer(lowercase=True)
    texts = [page.text for paper in papers.values() for page in paper.pages]
    tokenizer.train_from_iterator(texts, vocab_size=2000, min_frequency=2, show_progress=False)
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


def _chunks(paper: ExtractedPdf, count: Callable[[str], int], max_tokens: int, overlap: int) -> list[Chunk]:
    return chunk_pages(paper.pages, count_tokens=count, max_tokens=max_tokens, overlap=overlap)


def _shared_words(before: str, after: str) -> str:
    """The longest run of words that ends `before` and starts `after`."""
    a, b = before.split(), after.split()
    for size in range(min(len(a), len(b)), 0, -1):
        if a[-size:] == b[:size]:
            return " ".join(b[:size])
    return ""


# --- size, order and overlap ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_tokens", [24, 64, 180, 400])
def test_no_chunk_exceeds_max_tokens(papers, wordpiece, max_tokens: int) -> None:
    paper = papers["1706.03762.pdf"]
    chunks = _chunks(paper, wordpiece, max_tokens, max_tokens // 6)
    assert chunks
    assert max(wordpiece(chunk.text) for chunk in chunks) <= max_tokens
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    assert all(chunk.text.strip() == chunk.text and chunk.text for chunk in chunks)
    assert all(1 <= chunk.page_start <= chunk.page_end <= paper.page_count for chunk in chunks)
    # Budget is used, not wasted: on average chunks are more than half full.
    assert sum(wordpiece(chunk.text) for chunk in chunks) / len(chunks) > max_tokens / 2


def test_without_overlap_chunks_are_the_text_in_order(papers, wordpiece) -> None:
    paper = papers["2204.10628.pdf"]
    chunks = _chunks(paper, wordpiece, 120, 0)
    assert _norm(" ".join(chunk.text for chunk in chunks)) == _norm(" ".join(page.text for page in paper.pages))


def test_neighbouring_chunks_could_not_be_one(papers, wordpiece) -> None:
    """No chunk is needlessly small: each pair of neighbours would be over the budget as one chunk."""
    chunks = _chunks(papers["1706.03762.pdf"], wordpiece, 180, 0)
    for before, after in zip(chunks, chunks[1:]):
        assert wordpiece(before.text + " " + after.text) > 180, before.ordinal


@pytest.mark.parametrize("overlap", [8, 32])
def test_neighbours_share_about_overlap_tokens(papers, wordpiece, overlap: int) -> None:
    chunks = _chunks(papers["2205.01068.pdf"], wordpiece, 180, overlap)
    shared_tokens = []
    for before, after in zip(chunks, chunks[1:]):
        shared = _shared_words(before.text, after.text)
        n = len(shared.split())
        one_more = " ".join(before.text.split()[-n - 1 :])
        # As many whole words as fit in the overlap budget: one more word would not (none if the last is too long).
        assert wordpiece(shared) <= overlap < wordpiece(one_more), (before.ordinal, shared)
        shared_tokens.append(wordpiece(shared))
    assert sum(shared_tokens) / len(shared_tokens) > 0.75 * overlap


def test_overlap_is_capped_to_leave_room(papers, wordpiece) -> None:
    chunks = _chunks(papers["1706.03762.pdf"], wordpiece, 40, 100)
    assert chunks and max(wordpiece(chunk.text) for chunk in chunks) <= 40


def test_a_counter_that_is_not_additive_still_bounds_chunks(papers) -> None:
    # One extra token per five words of a string: joining two pieces can cost more than the two pieces did.
    def lumpy(text: str) -> int:
        n = len(text.split())
        return n + n // 5

    chunks = _chunks(papers["1706.03762.pdf"], lumpy, 50, 10)
    assert chunks and max(lumpy(chunk.text) for chunk in chunks) <= 50


def test_real_bert_tokenizer_of_the_colbert_checkpoint(papers, tiny_models: Path) -> None:
    tokenizer = Tokenizer.from_file(str(tiny_models / "colbert" / "tokenizer.json"))

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    chunks = _chunks(papers["1706.03762.pdf"], count, 180, 32)
    assert max(count(chunk.text) for chunk in chunks) <= 180
    assert count("Attention is all you need") == 5  # bert-base-uncased: whole words, no [UNK]


# --- page spans -------------------------------------------------------------------------------------------------------
def _numbered_pages(n_pages: int, words_per_page: int) -> list[PageText]:
    """Pages whose every word says which page it is on: `p3w17` is word 17 of page 3."""
    sizes = itertools.cycle([9, 14, 6, 20, 11, 3, 17])  # paragraphs of uneven length, as in a paper
    pages = []
    for number in range(1, n_pages + 1):
        tokens = [f"p{number}w{i}" for i in range(words_per_page)]
        paragraphs, at = [], 0
        while at < words_per_page:
            size = next(sizes)
            paragraphs.append(" ".join(tokens[at : at + size]) + ".")
            at += size
        pages.append(PageText(number=number, text="\n\n".join(paragraphs)))
    return pages


@pytest.mark.parametrize(("max_tokens", "overlap"), [(40, 0), (64, 16), (200, 50)])
def test_page_span_is_exactly_the_pages_of_the_words(max_tokens: int, overlap: int) -> None:
    chunks = chunk_pages(_numbered_pages(6, 130), count_tokens=words, max_tokens=max_tokens, overlap=overlap)
    for chunk in chunks:
        on = {int(m) for m in re.findall(r"\bp(\d+)w\d+", chunk.text)}
        assert (chunk.page_start, chunk.page_end) == (min(on), max(on)), chunk
    assert any(chunk.page_start < chunk.page_end for chunk in chunks)


def test_empty_pages_keep_the_numbering() -> None:
    pages = _numbered_pages(4, 40)
    pages[1] = PageText(number=2, text="  \n ")
    chunks = chunk_pages(pages, count_tokens=words, max_tokens=30, overlap=0)
    assert all("p2w" not in chunk.text for chunk in chunks)
    assert {chunk.page_start for chunk in chunks} | {chunk.page_end for chunk in chunks} == {1, 3, 4}
    assert chunk_pages([PageText(1, ""), PageText(2, " \n")], count_tokens=words, max_tokens=30, overlap=5) == []


@pytest.mark.parametrize(("name", "page", "phrase"), PHRASES)
def test_real_phrase_lands_in_a_chunk_spanning_its_page(papers, wordpiece, name: str, page: int, phrase: str) -> None:
    chunks = _chunks(papers[name], wordpiece, 180, 32)
    holding = [chunk for chunk in chunks if phrase in _norm(chunk.text)]
    assert holding
    assert all(chunk.page_start <= page <= chunk.page_end for chunk in holding)


# --- sections ---------------------------------------------------------------------------------------------------------
def _sectioned_pages() -> list[PageText]:
    """Four pages; words name their section (`intro7`); headings sit mid-page, at a page's top and at its foot."""
    def para(section: str, start: int, n: int) -> str:
        return " ".join(f"{section}{i}" for i in range(start, start + n)) + "."

    texts_and_headings: list[tuple[list[str], list[int]]] = [
        ([para("preface", 0, 30), "1 Introduction", para("intro", 0, 60)], [1]),
        ([para("intro", 60, 40), "2 Method", para("method", 0, 50), para("method", 50, 30)], [1]),
        (["3 Results", para("results", 0, 70), "4 Discussion"], [0, 2]),  # a heading at the foot of a page
        ([para("discussion", 0, 40)], []),
    ]
    pages = []
    for number, (paragraphs, heading_at) in enumerate(texts_and_headings, start=1):
        text, headings = "", []
        for index, paragraph in enumerate(paragraphs):
            if text:
                text += "\n\n"
            if index in heading_at:
                headings.append((len(text), paragraph))
            text += paragraph
        pages.append(PageText(number=number, text=text, headings=tuple(headings)))
    return pages


@pytest.mark.parametrize(("max_tokens", "overlap"), [(20, 0), (35, 8), (90, 20)])
def test_chunks_carry_their_section(max_tokens: int, overlap: int) -> None:
    names = {
        "preface": None, "intro": "1 Introduction", "method": "2 Method", "results": "3 Results",
        "discussion": "4 Discussion",
    }
    chunks = chunk_pages(_sectioned_pages(), count_tokens=words, max_tokens=max_tokens, overlap=overlap)
    sections_seen = set()
    for chunk in chunks:
        kinds = set(re.findall(r"\b([a-z]+)\d+\b", chunk.text))
        if len(kinds) == 1:  # a chunk inside one section carries exactly that section's heading
            assert chunk.section == names[kinds.pop()], chunk
        sections_seen.add(chunk.section)
    assert sections_seen == set(names.values())
    # Headings stay with the text they head, even across a page break.
    for heading, first_word in [("1 Introduction", "intro0"), ("2 Method", "method0"), ("4 Discussion", "discussion0")]:
        [chunk] = [c for c in chunks if heading in c.text and first_word in c.text.split(heading, 1)[1][:20]]
        assert chunk.section == heading
        if heading == "4 Discussion":
            assert chunk.page_start <= 3 and chunk.page_end == 4


def test_real_chunk_carries_its_subsection(papers, wordpiece) -> None:
    chunks = _chunks(papers["1706.03762.pdf"], wordpiece, 180, 32)
    [chunk] = [c for c in chunks if "We call our particular attention" in c.text and c.text.index("We call") < 200]
    assert chunk.section == "3.2.1 Scaled Dot-Product Attention"
    assert chunk.page_start == 4
    assert chunks[0].section == "Attention Is All You Need"  # the title block comes before "Abstract"
