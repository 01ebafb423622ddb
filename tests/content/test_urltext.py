"""text_from_url: words of a page with no crawl."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linksage.content.urltext import text_from_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://www.example.co.uk/2013/04/best-pizzaRecipes_for-kids.html?id=9",
            "example best pizza recipes for kids",
        ),
        (
            "https://www.nytimes.com/2013/04/05/us/politics/obama-budget-plan.html",
            "nytimes us politics obama budget plan",
        ),
        ("https://en.wikipedia.org/wiki/Albert_Einstein", "wikipedia wiki albert einstein"),
        ("http://www.bbc.co.uk/news/world-us-canada-22054134", "bbc news world us canada"),
        ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", "youtube watch"),
        ("http://i.imgur.com/Zoc1mXb.jpg#.UTZ-ET4OnsM.reddit", "imgur"),
        ("http://imgur.com/gallery/Xy7Qz1a", "imgur gallery"),
        ("http://blog.example.com/p/a1b2c3d4e5f6a7b8/index.php", "blog example"),
        ("http://shop.example.com/iPhone-eBay/covid19-windows10", "shop example iphone ebay covid 19 windows 10"),
        ("http://www.coinmapsusa.com/images/P/CoinMapUSA600-01.jpg", "coinmapsusa images coin map usa 600 01"),
        ("https://ja.wikipedia.org/wiki/%E6%9D%B1%E4%BA%AC%E9%83%BD", "wikipedia wiki 東京都"),
        ("example.com/some-thing", "example some thing"),
        ("http://user:pw@news.site.org:8080/a/b", "news site"),
    ],
)
def test_words_from_real_shaped_urls(url: str, expected: str) -> None:
    assert text_from_url(url) == expected


@pytest.mark.parametrize("url", ["", "http://", "http://[stone]/foo-bar", "::::", "http://%zz/%", "\x00", "?#"])
def test_malformed_urls_give_text_or_nothing_never_an_error(url: str) -> None:
    text = text_from_url(url)
    assert isinstance(text, str)


def test_malformed_bracket_host_still_yields_its_words() -> None:
    # Reddit has URLs like http://[stone]/...: urlsplit rejects them, we still read their words.
    assert text_from_url("http://[stone]/foo-bar") == "stone foo bar"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_string_gives_lowercase_space_separated_words(url: str) -> None:
    text = text_from_url(url)
    assert text == text.strip()
    assert "  " not in text
    for word in text.split():
        assert word == word.lower()
        assert re.fullmatch(r"[^\W_]+", word), word
        assert len(word) >= 2 or word.isdigit()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["best", "pizza", "recipes", "travel", "guide", "paris"]), min_size=1, max_size=6))
def test_slug_words_survive_any_separator(words: list[str]) -> None:
    for sep in ("-", "_", "+", "."):
        assert text_from_url("https://site.com/a/" + sep.join(words)).split()[1:] == words


def test_camel_case_and_digits_are_split() -> None:
    assert text_from_url("https://x.org/HowToCookPasta2Ways") == "how to cook pasta 2 ways"
