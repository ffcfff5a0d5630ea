"""Class names as typed on the command line: any case, one match, or a clear error."""

from __future__ import annotations

import pytest
import torch

from tractable.cli.classes import class_by_name, class_index, parse_class_spec
from tractable.errors import ConfigError

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot"]


@pytest.mark.parametrize("typed", ["Trouser", "trouser", "TROUSER", " trouser "])
def test_a_class_name_matches_in_any_case(typed: str) -> None:
    y, n, _ = parse_class_spec(typed, 4, 10, FASHION)
    assert n == 4 and torch.equal(y, torch.full((4,), 1))
    assert class_index(typed, FASHION, len(FASHION), what="attribute") == 1


def test_blends_take_names_in_any_case_too() -> None:
    y, _, _ = parse_class_spec("trouser:0.5,ankle boot:0.5", 2, 10, FASHION)
    assert y[0, 1] == y[0, 9] == 0.5


def test_an_exact_name_wins_and_a_case_clash_is_ambiguous() -> None:
    assert class_by_name("cat", ["Cat", "cat"]) == 1
    with pytest.raises(ConfigError, match="ambiguous"):
        class_by_name("CAT", ["Cat", "cat"])
    assert class_by_name("dog", FASHION) is None
    with pytest.raises(ConfigError, match="unknown class 'dog'"):
        parse_class_spec("dog", 4, 10, FASHION)
