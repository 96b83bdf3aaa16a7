from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicepipe.text import SentenceSplitter, split_sentences


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("Hello there. How are you? Fine!", ["Hello there.", " How are you?", " Fine!"]),
        ("Dr. Smith is in. Mr. J. Doe is out.", ["Dr. Smith is in.", " Mr. J. Doe is out."]),
        ("Pi is 3.14 today. Yes.", ["Pi is 3.14 today.", " Yes."]),
        ("Write to juan@gmail.com. Thanks.", ["Write to juan@gmail.com.", " Thanks."]),
        (
            "See https://example.com/a.html now. Ok.",
            ["See https://example.com/a.html now.", " Ok."],
        ),
        ("Well... maybe not. Wait... No.", ["Well... maybe not.", " Wait...", " No."]),
        ("Bring e.g. apples, i.e. fruit. Done.", ["Bring e.g. apples, i.e. fruit.", " Done."]),
        ('He said "stop." Then left.', ['He said "stop."', " Then left."]),
        ("First line\nSecond line.", ["First line", "\nSecond line."]),
        ("no end in sight", ["no end in sight"]),
    ],
)
def test_split_whole_texts(text: str, pieces: list[str]) -> None:
    assert split_sentences(text) == pieces


def test_streaming_decides_at_the_sentence_end_without_waiting() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("Hello") == []
    assert splitter.push(" there.") == ["Hello there."]  # no need to see the next token
    assert splitter.push(" It costs 3.") == []  # may be a decimal: wait
    assert splitter.push("50") == []
    assert splitter.push(". Bye") == [" It costs 3.50."]
    assert splitter.push("!") == [" Bye!"]
    assert splitter.flush() == ""


def test_streaming_holds_abbreviations_emails_and_urls() -> None:
    splitter = SentenceSplitter()
    for delta in ["Ask Dr.", " Who at who@bbc.", "co.uk or www.bbc.", "co.uk today."]:
        pieces = splitter.push(delta)
    assert pieces == ["Ask Dr. Who at who@bbc.co.uk or www.bbc.co.uk today."]


def test_long_text_without_an_end_is_cut_at_a_comma() -> None:
    splitter = SentenceSplitter(max_chars=40)
    pieces = splitter.push("one two three four five, six seven eight nine ten eleven")
    assert pieces == ["one two three four five,"]


@given(st.text(alphabet=st.sampled_from(list("ab .!?…,@:/\n3\"'")), max_size=200))
def test_pieces_join_back_to_the_input(text: str) -> None:
    assert "".join(split_sentences(text)) == text


@given(st.lists(st.text(max_size=12), max_size=30), st.integers(10, 300))
def test_streamed_pieces_join_back_for_any_chunking(deltas: list[str], max_chars: int) -> None:
    splitter = SentenceSplitter(max_chars=max_chars)
    pieces = [piece for delta in deltas for piece in splitter.push(delta)]
    pieces.append(splitter.flush())
    assert "".join(pieces) == "".join(deltas)
    assert all(pieces[:-1])  # no empty piece before the end
