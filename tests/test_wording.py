from shared.wording import counted


def test_one_is_singular_and_every_other_count_plural() -> None:
    assert counted(1, "node") == "1 node"
    assert counted(0, "node") == "0 nodes"
    assert counted(2, "team lead") == "2 team leads"
    assert counted(3, "more node") == "3 more nodes"


def test_an_irregular_plural_is_given() -> None:
    assert counted(2, "person", "people") == "2 people"
    assert counted(1, "person", "people") == "1 person"
